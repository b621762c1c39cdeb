//! Argument parsing and dispatch for the `l2d` binary: `commands` (one function per subcommand), `prepare` (prepare, tokenizer),
//! `evaluate` (eval, choose, probe), `bench` (bench, synth), `update`, `pipeline` (`l2d build`, `l2d site`) and `progress`.
//!
//! Module order: progress → commands → prepare → evaluate → bench → update → pipeline

mod bench;
mod commands;
mod evaluate;
mod pipeline;
mod prepare;
mod progress;
mod update;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

use l2d::offline::train::TrainConfig;

#[derive(Parser)]
#[command(name = "l2d", version, about = "Light Latent-space Decoding: LLM recommendation decoded in latent space", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a dataset (raw interaction log or D3-format directory) into a prepared directory
    /// (catalog + train/valid/test as JSON lines) and print its counts.
    Prepare(PrepareArgs),
    /// Train a byte-level BPE tokenizer on a prepared dataset's titles and the template text;
    /// writes tokenizer.json and l2d.json (the template) into the model directory.
    Tokenizer(TokenizerArgs),
    /// Train the Qwen2-style model on the train split (valid loss selects the exported
    /// weights); checkpoints regularly, `--resume` continues an interrupted run.
    Train(TrainArgs),
    /// Print, as JSON, the exact prompt, its token ids and the last-token hidden state for a
    /// history (item ids or exact titles) — to check the forward pass against another
    /// implementation.
    Hidden(HiddenArgs),
    /// Greedy, unconstrained continuation of the prompt for a history: the title the model
    /// writes on its own, and whether it is a catalog title.
    Generate(HiddenArgs),
    /// Build the L2D memory: one forward pass per train sample (or a seeded random fraction),
    /// storing (hidden state, target item).
    Memory(MemoryArgs),
    /// Write the item-representation blob the browser fetches (global vectors or memory).
    Blob(BlobArgs),
    /// Write the recipe's two blobs into the model directory: global (f16) and memory (int4,
    /// the newest states that keep the first visit's model files + blob within the download
    /// budget), both with cold-start title vectors.
    Blobs(BlobsArgs),
    /// Evaluate popularity, the follows baseline, L2D-G, L2D-L, beam search and SASRec:
    /// Recall/NDCG@{5,10,20,50,100}.
    Eval(EvalArgs),
    /// Choose the browser's default scoring on the valid split, on the shipped memory blob
    /// itself (mode and M, then popularity prior, then the adaptive local/global threshold,
    /// then the follows weight when the blob stores follow weights, then the cold-start
    /// pseudo-count when it has cold-start vectors; last, the cheapest to
    /// serve among those valid cannot tell from the best), and write it
    /// into MODEL/manifest.json.
    Choose(ChooseArgs),
    /// The in-training recall probe (L2D-L M=10 Recall@20, memory from a seeded train
    /// fraction, a fixed valid subset) of any model, with a training run's seeds and sizes.
    Probe(ProbeArgs),
    /// Per-query latency of history → top-20 for L2D-G, L2D-L and beam 1/5/10, plus scoring
    /// throughput, in one run on the same model and queries.
    Bench(BenchArgs),
    /// Write a synthetic L2D-G blob of N items for a model (scale benchmarks and tests): vectors
    /// with a real blob's statistics, titles from a word list, seeded.
    Synth(SynthArgs),
    /// Rewrite a model's weights in another float type (f16 halves the download).
    Convert(ConvertArgs),
    /// Write MODEL/manifest.json: sha256 and size of every file the browser fetches, the blobs,
    /// and how the model was made (from train.json and the dataset).
    Manifest(ManifestArgs),
    /// Recommend for a history (item ids or exact titles) with a model and a blob.
    Recommend(RecommendArgs),
    /// Append new interactions (and items) to a deployed model's memory without retraining:
    /// rewrites the dataset, the memory, the blobs and the manifest; keeps the model.
    Update(UpdateArgs),
    /// From a raw log (or a D3 directory) to a deployable folder in one resumable run:
    /// prepare → tokenizer → train → memory → blobs → choose → eval → site, with the recipe's
    /// defaults; finished stages are skipped by the hashes of their inputs and options.
    Build(Box<BuildArgs>),
    /// Write a deployable folder from a model directory: the files its manifest lists under
    /// content-hashed names and a manifest naming them (what `l2d build` ends with; after
    /// `l2d update`, this alone refreshes the folder).
    Site(SiteArgs),
}

/// The model directory and prepared dataset most commands work on.
/// The cold-start rule a blob stores: items without states rank last (the paper's rule), or
/// they get title vectors (`eval --treatments cold=title`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ColdStart {
    Last,
    Title,
}

#[derive(clap::Args)]
struct ModelAndData {
    /// Model directory (config.json, model.safetensors, tokenizer.json, l2d.json).
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Prepared dataset directory (from `l2d prepare`).
    #[arg(long, default_value = "target/data/ml-latest-small")]
    dataset: PathBuf,
}

/// Column names of a raw log (MovieLens names by default).
#[derive(clap::Args, Clone, serde::Serialize)]
struct LogColumns {
    /// User column of the interactions CSV.
    #[arg(long, default_value = "userId")]
    user_column: String,
    /// Item column of the interactions CSV.
    #[arg(long, default_value = "movieId")]
    item_column: String,
    /// Timestamp column of the interactions CSV (integer).
    #[arg(long, default_value = "timestamp")]
    time_column: String,
    /// Id column of the items CSV.
    #[arg(long, default_value = "movieId")]
    item_id_column: String,
    /// Title column of the items CSV.
    #[arg(long, default_value = "title")]
    title_column: String,
}

impl LogColumns {
    fn spec(&self, interactions: &Path, items: Option<&Path>) -> l2d::data::dataset::RawLogSpec {
        l2d::data::dataset::RawLogSpec {
            interactions: interactions.to_path_buf(),
            items: items.map(Path::to_path_buf).unwrap_or_default(),
            user_column: self.user_column.clone(),
            item_column: self.item_column.clone(),
            time_column: self.time_column.clone(),
            item_id_column: self.item_id_column.clone(),
            title_column: self.title_column.clone(),
        }
    }
}

#[derive(clap::Args)]
struct UpdateArgs {
    /// The deployed model directory: its blobs and manifest are rewritten, the model is kept.
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// The prepared dataset the model was built from (rewritten in place: new items in the
    /// catalog, new samples in train).
    #[arg(long, default_value = "target/data/ml-latest-small")]
    dataset: PathBuf,
    /// The full train memory (`l2d memory`), appended in place.
    #[arg(long, default_value = "target/l2d/memory.safetensors")]
    memory: PathBuf,
    /// New interactions CSV (user, item, timestamp columns as in prepare).
    #[arg(long)]
    interactions: PathBuf,
    /// New items CSV (id, title); items already in the catalog must keep their title.
    #[arg(long)]
    items: Option<PathBuf>,
    #[command(flatten)]
    columns: LogColumns,
    /// Prompts per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Download budget in bytes for the model files plus the memory blob, which keeps the
    /// newest states that fit (the rule of `l2d blobs`).
    #[arg(long, default_value_t = l2d::offline::recipe::DOWNLOAD_BUDGET)]
    budget: u64,
}

#[derive(clap::Args)]
struct BlobsArgs {
    #[command(flatten)]
    io: ModelAndData,
    /// Memory file from `l2d memory`.
    #[arg(long, default_value = "target/l2d/memory.safetensors")]
    memory: PathBuf,
    /// Download budget in bytes for the model files plus the memory blob.
    #[arg(long, default_value_t = l2d::offline::recipe::DOWNLOAD_BUDGET)]
    budget: u64,
    /// Element type of the memory blob's rows: `i8`, or `i4` (15 levels per row, two values
    /// per byte: half the bytes, so the budget holds twice the states); default: the recipe's,
    /// `i4`.
    #[arg(long)]
    memory_dtype: Option<l2d::latent::score::DType>,
}

/// The input of `prepare` and `build`: a MovieLens directory, a D3 directory, or a raw log.
#[derive(clap::Args, Clone)]
struct Source {
    /// Directory in MovieLens layout (ratings.csv + movies.csv); shorthand for
    /// --interactions DIR/ratings.csv --items DIR/movies.csv.
    #[arg(long, conflicts_with_all = ["d3", "interactions"])]
    movielens: Option<PathBuf>,
    /// D3-format directory (info/*.txt, {train,valid,test}/*.csv; absent splits are reported).
    #[arg(long, conflicts_with = "interactions")]
    d3: Option<PathBuf>,
    /// Raw interactions CSV (one row per interaction).
    #[arg(long, requires = "items")]
    interactions: Option<PathBuf>,
    /// Items CSV with an id and a title column.
    #[arg(long)]
    items: Option<PathBuf>,
    #[command(flatten)]
    columns: LogColumns,
    /// Dataset name (default: the source directory's name).
    #[arg(long)]
    name: Option<String>,
}

#[derive(clap::Args)]
struct BuildArgs {
    #[command(flatten)]
    source: Source,
    /// Output directory: data/, model/, work/, site/ (what a CDN serves), build.json, report.md.
    #[arg(long)]
    out: PathBuf,
    /// Tokenizer vocabulary size (including special tokens).
    #[arg(long, default_value_t = 4000)]
    vocab_size: usize,
    /// Prompt template: `compact` or `d3`.
    #[arg(long, default_value = "compact")]
    template: String,
    /// Item category noun for the d3 template.
    #[arg(long, default_value = "item")]
    category: String,
    #[command(flatten)]
    recipe: TrainRecipe,
    /// Download budget in bytes for the model files plus the memory blob.
    #[arg(long, default_value_t = l2d::offline::recipe::DOWNLOAD_BUDGET)]
    budget: u64,
    /// Wall-clock cap on the SASRec baseline's training, in minutes (0: no SASRec row).
    #[arg(long, default_value_t = l2d::offline::sasrec::SasRecConfig::default().max_minutes)]
    sasrec_minutes: f64,
    /// URL of l2d-widget.js in the embed snippet of the report.
    #[arg(long, default_value = "https://cdn.example/l2d/www/l2d-widget.js")]
    widget_url: String,
    /// Where the memory stage runs: `local` (this process, every core) or `ray` (one Ray task
    /// per shard, merged here: byte-identical; needs `pip install ray`).
    #[arg(long, value_enum, default_value_t = Engine::Local)]
    engine: Engine,
    /// The Ray cluster (`auto`, `ray://HOST:10001`; default: a local Ray instance).
    #[arg(long)]
    ray_address: Option<String>,
    /// Shards (Ray tasks) of the memory stage under `--engine ray`.
    #[arg(long, default_value_t = 4)]
    shards: usize,
}

#[derive(clap::Args)]
struct SiteArgs {
    /// Model directory with its manifest.json (from `l2d manifest`, `l2d update` or a build).
    #[arg(long)]
    model: PathBuf,
    /// The folder to write (the previous build's files there stay, older ones are deleted).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct PrepareArgs {
    #[command(flatten)]
    source: Source,
    /// Output directory (default: target/data/NAME).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TokenizerArgs {
    /// Prepared dataset directory (from `l2d prepare`).
    #[arg(long, default_value = "target/data/ml-latest-small")]
    dataset: PathBuf,
    /// Model directory to write tokenizer.json and l2d.json into.
    #[arg(long, default_value = "models/default")]
    out: PathBuf,
    /// Vocabulary size (including special tokens).
    #[arg(long, default_value_t = 4000)]
    vocab_size: usize,
    /// Prompt template: `compact` (small from-scratch models) or `d3` (instruction layout).
    #[arg(long, default_value = "compact")]
    template: String,
    /// Item category noun for the d3 template.
    #[arg(long, default_value = "movie")]
    category: String,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Prepared dataset directory.
    #[arg(long, default_value = "target/data/ml-latest-small")]
    dataset: PathBuf,
    /// Model directory holding tokenizer.json and l2d.json; weights are written here.
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Continue from MODEL/checkpoint (same options required).
    #[arg(long)]
    resume: bool,
    /// Stop (with a checkpoint) once this many steps are done; continue later with --resume.
    #[arg(long)]
    until_step: Option<usize>,
    #[command(flatten)]
    recipe: TrainRecipe,
}

/// The training options of the recipe (`l2d train` and `l2d build`), defaults from
/// `TrainConfig::recipe` (the defaults with the data's epoch ceiling).
#[derive(clap::Args, Clone)]
struct TrainRecipe {
    /// Hidden size.
    #[arg(long, default_value_t = TrainConfig::default().hidden_size)]
    hidden: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = TrainConfig::default().layers)]
    layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = TrainConfig::default().heads)]
    heads: usize,
    /// MLP intermediate size.
    #[arg(long, default_value_t = TrainConfig::default().intermediate_size)]
    intermediate: usize,
    /// Most passes over the train split (default: the ceiling the train split's size gives,
    /// `l2d::offline::schedule::epoch_ceiling`; early stopping ends the run sooner). With
    /// `--schedule cosine`, the length of the decay.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    epochs: Option<usize>,
    /// Learning-rate schedule after warmup: `stable-decay` (the peak rate until patience runs
    /// out, then a decay over a fifth of the steps done) or `cosine` (over every epoch).
    #[arg(long, default_value = "stable-decay")]
    schedule: l2d::offline::schedule::Schedule,
    /// Padded tokens per batch.
    #[arg(long, default_value_t = TrainConfig::default().batch_tokens)]
    batch_tokens: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = TrainConfig::default().warmup_steps)]
    warmup: usize,
    /// Random seed (initialisation, batch order, window cuts).
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Evaluate valid loss every N steps.
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    eval_every: usize,
    /// Dropout rate for embeddings, attention probabilities, residual branches and the MLP
    /// (training only; default 0, chosen on valid); the four flags below override single places.
    #[arg(long)]
    dropout: Option<f32>,
    /// Dropout on the token embeddings.
    #[arg(long)]
    dropout_embedding: Option<f32>,
    /// Dropout on attention probabilities.
    #[arg(long)]
    dropout_attention: Option<f32>,
    /// Dropout on residual branch outputs.
    #[arg(long)]
    dropout_residual: Option<f32>,
    /// Dropout on the MLP's hidden activations.
    #[arg(long)]
    dropout_mlp: Option<f32>,
    /// Label smoothing ε on target tokens.
    #[arg(long, default_value_t = TrainConfig::default().label_smoothing)]
    label_smoothing: f64,
    /// Probability of cropping a train window / history to a random shorter length.
    #[arg(long, default_value_t = TrainConfig::default().history_crop)]
    history_crop: f64,
    /// Probability of dropping each item of a train window / history.
    #[arg(long, default_value_t = TrainConfig::default().item_dropout)]
    item_dropout: f64,
    /// What selects the exported weights: `recall` (L2D-L Recall@20 on a valid subset, memory
    /// from a seeded train fraction), `loss` (valid loss) or `final` (the last weights, no
    /// early stop: a refit on train + valid, `scripts/refit.sh`).
    #[arg(long, default_value = "recall")]
    select: l2d::offline::train::Selection,
    /// Fraction of train samples in the in-training recall's memory.
    #[arg(long, default_value_t = TrainConfig::default().select_memory_fraction)]
    select_memory_fraction: f64,
    /// Valid samples the in-training recall ranks.
    #[arg(long, default_value_t = TrainConfig::default().select_samples)]
    select_samples: usize,
    /// After this many evaluations without improvement the decay begins (`cosine`: the run
    /// stops); 0 = never.
    #[arg(long, default_value_t = TrainConfig::default().patience)]
    patience: usize,
    /// Threads of the data-parallel training steps, one micro-batch each (default: every
    /// core). Not part of the recipe: a given count gives the same weights on every run.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
}

#[derive(clap::Args)]
struct HiddenArgs {
    #[command(flatten)]
    io: ModelAndData,
    /// History items, oldest first: item ids or exact titles.
    history: Vec<String>,
}

/// Where `l2d build` runs its memory stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Engine {
    /// This process.
    Local,
    /// Ray tasks, one per shard (`scripts/ray_memory.py`, carried in the binary).
    Ray,
}

#[derive(clap::Args)]
struct MemoryArgs {
    #[command(flatten)]
    io: ModelAndData,
    /// Split whose samples are encoded: `train` (the L2D memory) or `valid` / `test` (their
    /// query states, with their targets, e.g. to study scoring rules outside l2d).
    #[arg(long, default_value = "train")]
    split: l2d::data::dataset::Split,
    /// Fraction of the split's samples to keep (seeded random subsample).
    #[arg(long, default_value_t = 1.0)]
    fraction: f64,
    /// Subsampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Prompts per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Compute shard i of n (`i/n`, 0-based) only, for n processes or machines; the shard files
    /// are put together with --merge.
    #[arg(long, conflicts_with = "merge")]
    shard: Option<String>,
    /// Merge these shard files (all n of one run, any order) into --out: byte-identical to a
    /// single run.
    #[arg(long, num_args = 1..)]
    merge: Vec<PathBuf>,
    /// Output file (safetensors).
    #[arg(long, default_value = "target/l2d/memory.safetensors")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct BlobArgs {
    #[command(flatten)]
    io: ModelAndData,
    /// Memory file from `l2d memory`.
    #[arg(long, default_value = "target/l2d/memory.safetensors")]
    memory: PathBuf,
    /// `global` (one vector per item) or `memory` (states grouped by item, for L2D-L).
    #[arg(long, default_value = "global")]
    kind: l2d::latent::blob::BlobKind,
    /// `f32`, `f16`, `i8` or `i4` (int8 rows on 15 levels, stored two per byte).
    #[arg(long, default_value = "f16")]
    dtype: l2d::latent::score::DType,
    /// Keep a fraction of the memory (memory blobs).
    #[arg(long, default_value_t = 1.0)]
    fraction: f64,
    /// Which states a fraction keeps: `newest` (the last in sample order, i.e. in time for
    /// the D3 protocol), `per-item` (every item's newest, up to one cap the fraction allows)
    /// or `random` (seeded by --seed).
    #[arg(long, default_value = "random")]
    keep: l2d::latent::memory::Keep,
    /// Subsampling seed (`--keep random`).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Largest blob size in bytes: a memory blob keeps the largest seeded fraction (at most
    /// --fraction) that fits (a download budget, not a tuned constant).
    #[arg(long)]
    max_bytes: Option<u64>,
    /// Cold-start rule stored in the blob: `last` (items without states rank last, the
    /// paper's rule) or `title` (they get title vectors; see `eval --treatments cold=title`).
    #[arg(long, value_enum, default_value = "last")]
    cold_start: ColdStart,
    /// Store follow weights (which items followed which in the train samples) for the
    /// `follows` scoring option.
    #[arg(long)]
    follows: bool,
    /// Output file (its items parts, the ids and titles, are written beside it).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct EvalArgs {
    #[command(flatten)]
    io: ModelAndData,
    /// Memory file from `l2d memory` (built on the full train split).
    #[arg(long, default_value = "target/l2d/memory.safetensors")]
    memory: PathBuf,
    /// Split to evaluate: valid or test.
    #[arg(long, default_value = "valid")]
    split: l2d::data::dataset::Split,
    /// Methods, comma-separated: popularity, follows (the item-to-item baseline alone: what
    /// followed the history's items in the train samples), global, local, beam, sasrec
    /// (trained here on the train split, early-stopped on valid).
    #[arg(long, value_delimiter = ',', default_value = "popularity,global,local")]
    methods: Vec<l2d::offline::methods::Method>,
    /// Also evaluate exactly what the browser ships by default: MODEL/manifest.json's scoring
    /// applied to the blob file it names (`memory`).
    #[arg(long)]
    shipped: bool,
    /// The row every other row is compared with (paired difference with a 95 % bootstrap
    /// interval); `shipped` names the --shipped row; default: the first row.
    #[arg(long)]
    reference: Option<String>,
    /// M values for L2D-L.
    #[arg(long, value_delimiter = ',', default_value = "20")]
    m: Vec<usize>,
    /// Beam widths for the beam baseline.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10")]
    beam: Vec<usize>,
    /// Memory fractions (seeded subsamples of the memory).
    #[arg(long, value_delimiter = ',', default_value = "1.0")]
    fractions: Vec<f64>,
    /// Latent-space treatments to add, comma-separated: center, cosine, center+cosine,
    /// prior=W (popularity prior weight), cold=title (cold-start items get their title state
    /// plus the mean title→item offset instead of ranking last), local>=T (items with fewer
    /// than T states use their global vector in local mode), combinable with `+`.
    #[arg(long, value_delimiter = ',')]
    treatments: Vec<String>,
    /// Round memory states through this element type first (f32, f16, i8), as a blob stores them.
    #[arg(long, default_value = "f32")]
    dtype: l2d::latent::score::DType,
    /// Evaluate a seeded random subset of this many samples (all when absent).
    #[arg(long)]
    limit: Option<usize>,
    /// With sasrec on test: also retrain SASRec from scratch on train + valid for the epoch
    /// count valid chose, no selection (the comparison for a memory updated with the valid
    /// interactions, `l2d update`).
    #[arg(long)]
    sasrec_refit: bool,
    /// Wall-clock cap on SASRec training, in minutes.
    #[arg(long, default_value_t = l2d::offline::sasrec::SasRecConfig::default().max_minutes)]
    sasrec_minutes: f64,
    /// Keep finished SASRec runs in this directory, keyed by their configuration and samples,
    /// and load them instead of training again (e.g. the test report after the valid one).
    #[arg(long)]
    sasrec_cache: Option<PathBuf>,
    /// Samples for beam search (slow), a seeded subset of the evaluated ones.
    #[arg(long, default_value_t = 1000)]
    beam_limit: usize,
    /// Write the reports as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ChooseArgs {
    #[command(flatten)]
    io: ModelAndData,
    /// Split to choose on (never test).
    #[arg(long, default_value = "valid")]
    split: l2d::data::dataset::Split,
    /// Write the reports as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ProbeArgs {
    #[command(flatten)]
    io: ModelAndData,
    /// Training seed whose probe subsets to use.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Fraction of train samples in the probe's memory.
    #[arg(long, default_value_t = TrainConfig::default().select_memory_fraction)]
    select_memory_fraction: f64,
    /// Valid queries.
    #[arg(long, default_value_t = TrainConfig::default().select_samples)]
    select_samples: usize,
}

#[derive(clap::Args)]
struct BenchArgs {
    #[command(flatten)]
    io: ModelAndData,
    /// Memory file from `l2d memory`.
    #[arg(long, default_value = "target/l2d/memory.safetensors")]
    memory: PathBuf,
    /// Number of queries.
    #[arg(long, default_value_t = 50)]
    queries: usize,
    /// M for L2D-L.
    #[arg(long, default_value_t = 20)]
    m: usize,
    /// CPU threads for the model's matrix products, for every method alike: 1 is the browser's
    /// configuration (and the baseline's fastest here); 0 uses every core (candle's default).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Instead of the methods: a catalog-size sweep of scoring + top-20 (one thread) on
    /// synthetic L2D-G catalogs of these sizes in int8 and f16 (`l2d synth`, statistics of
    /// MODEL/global.blob), next to this machine's memory-read bandwidth. Needs no memory file.
    #[arg(long, value_delimiter = ',')]
    catalog_sizes: Vec<usize>,
    /// How the model's linear layers multiply: f32, or int8 (as `l2d manifest --weights`).
    #[arg(long, default_value = "f32")]
    weights: l2d::model::Weights,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Model the catalog is for (fingerprint and dimension).
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Real blob whose row statistics the vectors follow (default: MODEL/global.blob).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Number of items.
    #[arg(long)]
    items: usize,
    /// `i8`, `f16` or `f32`.
    #[arg(long, default_value = "i8")]
    dtype: l2d::latent::score::DType,
    /// Seed of vectors and titles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output blob file (its items parts are written beside it).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct ConvertArgs {
    /// Model directory.
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Target float type: f32, f16 or bf16.
    #[arg(long, default_value = "f16")]
    dtype: String,
}

/// Scoring options: what a manifest sets as the browser's default, and what `l2d recommend`
/// ranks with.
#[derive(clap::Args)]
struct ScoringArgs {
    /// Mode: global (L2D-G), local (L2D-L, needs a memory blob) or density (kernel density of
    /// the memory states, needs a memory blob and --bandwidth).
    #[arg(long, default_value = "global")]
    mode: l2d::latent::aggregate::ModeKind,
    /// M for local mode.
    #[arg(long, default_value_t = 20)]
    m: usize,
    /// Popularity-prior weight (0 = plain L2; global and local modes).
    #[arg(long, default_value_t = 0.0)]
    popularity_prior: f32,
    /// Adaptive local/global: items with fewer memory states than this use their global vector
    /// in local mode (0 = off).
    #[arg(long, default_value_t = 0)]
    local_min_states: u32,
    /// Density mode: kernel bandwidth in squared-distance units (`l2d choose` picks it).
    #[arg(long)]
    bandwidth: Option<f32>,
    /// Weight of the follows term: items that followed the history's items in the memory's
    /// samples score better (0 = off; needs a blob with follow weights, `l2d choose` picks it).
    #[arg(long, default_value_t = 0.0)]
    follows: f32,
    /// Density mode: exponent of the state-count correction (0 = kernel sum, 1 = mean).
    #[arg(long, default_value_t = 0.0)]
    count_exponent: f32,
    /// How the model's linear layers multiply: f32, or int8 (weights quantized per row at
    /// load, integer products; what the browser then runs too). Default f32, or with
    /// `--keep-scoring` the kept manifest's.
    #[arg(long)]
    weights: Option<l2d::model::Weights>,
}

impl ScoringArgs {
    fn scoring(&self) -> l2d::serve::manifest::Scoring {
        l2d::serve::manifest::Scoring {
            mode: self.mode,
            m: self.m,
            popularity_prior: self.popularity_prior,
            local_min_states: self.local_min_states,
            density: self.bandwidth.map(|bandwidth| {
                l2d::latent::aggregate::Density::new(bandwidth, self.count_exponent)
            }),
            follows: self.follows,
            weights: self.weights.unwrap_or_default(),
        }
    }
}

#[derive(clap::Args)]
struct ManifestArgs {
    #[command(flatten)]
    io: ModelAndData,
    /// The command that trained the model, recorded verbatim.
    #[arg(long, default_value = "scripts/train-default.sh")]
    command: String,
    /// The browser's default scoring.
    #[command(flatten)]
    scoring: ScoringArgs,
    /// Keep the scoring of the existing MODEL/manifest.json (e.g. chosen by `l2d choose`)
    /// instead of the scoring options; the files are listed anew.
    #[arg(long)]
    keep_scoring: bool,
}

#[derive(clap::Args)]
struct RecommendArgs {
    /// Model directory.
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Blob file (its catalog resolves ids and titles).
    #[arg(long, default_value = "models/default/memory.blob")]
    blob: PathBuf,
    /// Number of recommendations.
    #[arg(long, short, default_value_t = 10)]
    k: usize,
    #[command(flatten)]
    scoring: ScoringArgs,
    /// Keep history items in the list.
    #[arg(long)]
    include_history: bool,
    /// History items, oldest first: item ids or exact titles.
    history: Vec<String>,
}

/// Parses the command line and runs the chosen subcommand.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    // The commands split their work over threads themselves (training micro-batches, memory
    // sub-shards, evaluation queries). candle's own pool for element-wise operations has one
    // lock: with two threads calling it they queue while its worker spins for a core. Off
    // unless the environment sets it (read once, before any tensor is made).
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    match cli.command {
        Command::Prepare(args) => prepare::prepare(args),
        Command::Tokenizer(args) => prepare::tokenizer(args),
        Command::Train(args) => commands::train(args),
        Command::Hidden(args) => commands::hidden(args),
        Command::Generate(args) => commands::generate(args),
        Command::Memory(args) => commands::memory(args),
        Command::Blob(args) => commands::blob(args),
        Command::Eval(args) => evaluate::eval(args),
        Command::Choose(args) => evaluate::choose(args),
        Command::Probe(args) => evaluate::probe(args),
        Command::Bench(args) => bench::bench(args),
        Command::Synth(args) => bench::synth(args),
        Command::Recommend(args) => commands::recommend(args),
        Command::Convert(args) => commands::convert(args),
        Command::Manifest(args) => commands::manifest(args),
        Command::Update(args) => update::update(args),
        Command::Blobs(args) => commands::blobs(args),
        Command::Build(args) => pipeline::build(*args),
        Command::Site(args) => pipeline::site(args),
    }
}
