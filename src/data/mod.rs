//! The data layer: items and their titles (`catalog`), datasets in D3 form and raw logs with
//! the leave-one-out split (`dataset`, reading Python literals with `pyliteral`), the one
//! prompt template (`prompt`) and the tokenizer (`tokenizer`).
//!
//! May import: `error`, `util`, `kernel`. Knows nothing of the model or of scoring.
//!
//! Module order: catalog → pyliteral → prompt → dataset → tokenizer

pub mod catalog;
pub mod dataset;
pub mod prompt;
pub mod pyliteral;
pub mod tokenizer;
