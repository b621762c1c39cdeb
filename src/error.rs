//! The library's one error type. Every variant names what a reader needs to fix the input:
//! the file, the line, the field, and what was expected versus found.

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in l2d, grouped by concern.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- files and parsing -------------------------------------------------------------
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A value in a data file is malformed.
    #[error("{file}:{line}: field `{field}`: {message}")]
    Parse {
        file: String,
        line: u64,
        field: String,
        message: String,
    },
    /// A CSV file lacks a column the importer needs.
    #[error("{file}: missing column `{column}` (header has: {found})")]
    MissingColumn {
        file: String,
        column: String,
        found: String,
    },
    /// A dataset split (train, valid or test) is not present.
    #[error("{dataset}: split `{split}` is absent ({detail})")]
    MissingSplit {
        dataset: String,
        split: String,
        detail: String,
    },
    /// Something that must contain data is empty.
    #[error("{what} is empty{detail}")]
    Empty { what: String, detail: String },
    /// An identifier is not known where it must be.
    #[error("{what}: unknown item id `{id}`")]
    UnknownItem { what: String, id: String },
    /// A value has the wrong size, count or kind.
    #[error("{what}: expected {expected}, found {found}")]
    Mismatch {
        what: String,
        expected: String,
        found: String,
    },
    /// A JSON document does not have the expected shape.
    #[error("{file}: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },

    // ---- model -------------------------------------------------------------------------
    /// Tensor computation failed (shapes, dtypes, safetensors content).
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    /// The tokenizer could not be built, loaded or run.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The item-representation blob is malformed or belongs to another model.
    #[error("blob: {0}")]
    Blob(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Invalid configuration or option.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A parse error at `file:line` in `field`.
    pub fn parse(
        file: impl Into<String>,
        line: u64,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Parse {
            file: file.into(),
            line,
            field: field.into(),
            message: message.into(),
        }
    }

    /// An invalid option or configuration value.
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    /// A size/count/kind mismatch.
    pub fn mismatch(
        what: impl Into<String>,
        expected: impl ToString,
        found: impl ToString,
    ) -> Self {
        Error::Mismatch {
            what: what.into(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
}
