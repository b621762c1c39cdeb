//! `l2d build`: the stages from a raw log to a deployable folder, each one the command of the
//! same name with the recipe's defaults. Which stage runs is decided by `l2d::offline::site` (the hashes
//! of its options and of the stage before it, never a file merely existing).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use l2d::data::dataset::{Dataset, Split};
use l2d::latent::score::DType;
use l2d::offline::cost::{CostModel, Parallelism};
use l2d::offline::methods::Method;
use l2d::offline::site::{files_under, inputs_key, stage_key, BuildLog, Decision, STAGES};
use l2d::offline::train::TrainState;

use super::commands::{self, train_model, write_manifest};
use super::evaluate;
use super::prepare::{self, import_source, source_log};
use super::{
    BlobsArgs, BuildArgs, ChooseArgs, ConvertArgs, Engine, EvalArgs, MemoryArgs, ModelAndData,
    SiteArgs, Source, TokenizerArgs,
};

/// The build directory's parts.
struct Layout {
    root: PathBuf,
}

impl Layout {
    fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    fn model(&self) -> PathBuf {
        self.root.join("model")
    }
    fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    fn site(&self) -> PathBuf {
        self.root.join("site")
    }
    fn memory(&self) -> PathBuf {
        self.work().join("memory.safetensors")
    }
    fn io(&self) -> ModelAndData {
        ModelAndData {
            model: self.model(),
            dataset: self.data(),
        }
    }
}

/// Runs stages in order, keeping build.json up to date.
struct Runner<'a> {
    layout: &'a Layout,
    log: BuildLog,
    upstream: String,
    start: Instant,
    /// (stage, ran) in order.
    done: Vec<(&'static str, bool)>,
}

impl Runner<'_> {
    /// Runs `stage` unless it finished with the same key; `run` gets whether to resume and
    /// returns the stage's output files (relative to the build directory).
    fn stage(
        &mut self,
        stage: &'static str,
        options: serde_json::Value,
        run: impl FnOnce(bool) -> Result<Vec<PathBuf>>,
    ) -> Result<()> {
        let number = STAGES.iter().position(|s| *s == stage).expect("a stage") + 1;
        let key = stage_key(stage, &options, &self.upstream);
        let root = &self.layout.root;
        let decision = self.log.decide(root, stage, &key)?;
        let elapsed = self.start.elapsed().as_secs_f64();
        if decision == Decision::Skip {
            eprintln!(
                "build: stage {number}/{} {stage}: skipped (finished with the same inputs and options)",
                STAGES.len()
            );
            self.done.push((stage, false));
        } else {
            eprintln!(
                "build: stage {number}/{} {stage}: {} (elapsed {elapsed:.0} s)",
                STAGES.len(),
                if decision == Decision::Resume {
                    "resuming"
                } else {
                    "running"
                }
            );
            let started = Instant::now();
            self.log.start(root, stage, &key)?;
            let outputs =
                run(decision == Decision::Resume).with_context(|| format!("stage {stage}"))?;
            let seconds = started.elapsed().as_secs_f64();
            self.log.finish(root, stage, &key, &outputs, seconds)?;
            eprintln!(
                "build: stage {number}/{} {stage}: done in {seconds:.1} s",
                STAGES.len()
            );
            self.done.push((stage, true));
        }
        self.upstream = key;
        Ok(())
    }
}

/// The input files of a source (hashed into the prepare stage's key).
fn source_files(source: &Source) -> Result<(PathBuf, Vec<PathBuf>)> {
    if let Some(dir) = &source.d3 {
        let files = files_under(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .into_iter()
            .map(|f| dir.join(f))
            .collect();
        return Ok((dir.clone(), files));
    }
    let (spec, from) = source_log(source)?;
    Ok((from, vec![spec.interactions, spec.items]))
}

/// `files` relative to the build directory.
fn relative(layout: &Layout, files: &[PathBuf]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|f| f.strip_prefix(&layout.root).unwrap_or(f).to_path_buf())
        .collect()
}

fn under(layout: &Layout, dir: &Path) -> Result<Vec<PathBuf>> {
    let files: Vec<PathBuf> = files_under(dir)?.into_iter().map(|f| dir.join(f)).collect();
    Ok(relative(layout, &files))
}

fn eval_args(layout: &Layout, split: Split, sasrec_minutes: f64, json: PathBuf) -> EvalArgs {
    // The conventional baselines next to L2D: popularity, the item-to-item follows alone
    // (what the `follows` scoring option adds), SASRec when it has minutes.
    let mut methods = vec![Method::Popularity, Method::Follows];
    if sasrec_minutes > 0.0 {
        methods.push(Method::SasRec);
    }
    EvalArgs {
        io: layout.io(),
        memory: layout.memory(),
        split,
        methods,
        shipped: true,
        reference: Some("shipped".into()),
        m: vec![20],
        beam: vec![],
        fractions: vec![1.0],
        treatments: vec![],
        dtype: DType::F32,
        limit: None,
        sasrec_refit: false,
        sasrec_minutes,
        // The valid and the test report train on the same samples: the test one loads the run.
        sasrec_cache: Some(layout.work().join("sasrec")),
        beam_limit: 0,
        json: Some(json),
    }
}

/// The Ray driver, carried in the binary so an installed `l2d` needs no checkout.
const RAY_DRIVER: &str = include_str!("../../scripts/ray_memory.py");

/// The memory stage as Ray tasks: writes the driver into the work directory and runs it with
/// this binary as the workers' `l2d`.
fn memory_on_ray(
    layout: &Layout,
    batch: usize,
    shards: usize,
    address: Option<&str>,
) -> Result<()> {
    let driver = layout.work().join("ray_memory.py");
    l2d::util::write_atomic(&driver, RAY_DRIVER)?;
    let exe = std::env::current_exe().context("locating the l2d binary for the Ray workers")?;
    let mut command = std::process::Command::new("python3");
    command
        .arg(&driver)
        .arg("--dataset")
        .arg(layout.data())
        .arg("--model")
        .arg(layout.model())
        .arg("--out")
        .arg(layout.memory())
        .args([
            "--shards",
            &shards.to_string(),
            "--batch",
            &batch.to_string(),
        ])
        .arg("--l2d")
        .arg(exe);
    if let Some(address) = address {
        command.args(["--address", address]);
    }
    let status = command
        .status()
        .with_context(|| format!("running python3 {}", driver.display()))?;
    anyhow::ensure!(
        status.success(),
        "the memory stage on Ray failed ({status}); the driver's lines above say why"
    );
    Ok(())
}

pub fn build(args: BuildArgs) -> Result<()> {
    let layout = Layout {
        root: args.out.clone(),
    };
    for dir in [layout.data(), layout.model(), layout.work()] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = BuildLog::load(&layout.root)?;
    let mut runner = Runner {
        layout: &layout,
        log,
        upstream: String::new(),
        start: Instant::now(),
        done: Vec::new(),
    };
    let (from, inputs) = source_files(&args.source)?;
    let options = json!({
        "inputs": inputs_key(&from, &inputs)?,
        "d3": args.source.d3.is_some(),
        "columns": args.source.columns,
        "name": args.source.name,
    });
    runner.stage("prepare", options, |_| {
        let dataset = import_source(&args.source)?;
        dataset
            .write_dir(&layout.data())
            .with_context(|| format!("writing {}", layout.data().display()))?;
        under(&layout, &layout.data())
    })?;

    let options = json!({
        "vocab_size": args.vocab_size, "template": args.template, "category": args.category,
    });
    runner.stage("tokenizer", options, |_| {
        prepare::tokenizer(TokenizerArgs {
            dataset: layout.data(),
            out: layout.model(),
            vocab_size: args.vocab_size,
            template: args.template.clone(),
            category: args.category.clone(),
        })?;
        Ok(relative(
            &layout,
            &[
                layout.model().join(l2d::model::TOKENIZER_FILE),
                layout.model().join(l2d::model::META_FILE),
            ],
        ))
    })?;

    let dataset = Dataset::read_dir(&layout.data())?;
    let cfg = args.recipe.config(dataset.split(Split::Train)?.len())?;
    runner.stage("train", serde_json::to_value(&cfg)?, |resume| {
        let checkpoint = layout.model().join("checkpoint");
        if !resume && checkpoint.exists() {
            // A checkpoint of other options: start over.
            std::fs::remove_dir_all(&checkpoint)
                .with_context(|| format!("removing {}", checkpoint.display()))?;
        }
        train_model(
            &dataset,
            &layout.model(),
            &cfg,
            &args.recipe.run(resume, None),
        )?;
        commands::convert(ConvertArgs {
            model: layout.model(),
            dtype: "f16".into(),
        })?;
        Ok(relative(
            &layout,
            &[
                layout.model().join(l2d::model::CONFIG_FILE),
                layout.model().join(l2d::model::WEIGHTS_FILE),
                layout.model().join("train.json"),
            ],
        ))
    })?;

    let batch = 64;
    // The engine does not enter the stage's options: both write the same bytes.
    runner.stage("memory", json!({ "batch": batch }), |_| {
        match args.engine {
            Engine::Local => commands::memory(MemoryArgs {
                io: layout.io(),
                split: Split::Train,
                fraction: 1.0,
                seed: 0,
                batch,
                shard: None,
                merge: vec![],
                out: layout.memory(),
            })?,
            Engine::Ray => memory_on_ray(&layout, batch, args.shards, args.ray_address.as_deref())?,
        }
        Ok(relative(&layout, &[layout.memory()]))
    })?;

    runner.stage("blobs", json!({ "budget": args.budget }), |_| {
        commands::blobs(BlobsArgs {
            io: layout.io(),
            memory: layout.memory(),
            budget: args.budget,
            memory_dtype: None,
        })?;
        Ok(relative(
            &layout,
            &[
                layout.model().join("global.blob"),
                layout.model().join("memory.blob"),
            ],
        ))
    })?;

    let command = build_command();
    let manifest = layout.model().join(l2d::serve::manifest::MANIFEST_FILE);
    let choice = layout.work().join("choose-valid.json");
    runner.stage("choose", json!({ "split": "valid" }), |_| {
        // An earlier build's evaluation is not this model's.
        let eval = layout.model().join(l2d::serve::manifest::EVAL_FILE);
        if eval.exists() {
            std::fs::remove_file(&eval).with_context(|| format!("removing {}", eval.display()))?;
        }
        let dataset = Dataset::read_dir(&layout.data())?;
        write_manifest(
            &layout.model(),
            &dataset,
            l2d::serve::manifest::Scoring::default(),
            &command,
        )?;
        evaluate::choose(ChooseArgs {
            io: layout.io(),
            split: Split::Valid,
            json: Some(choice.clone()),
        })?;
        // The manifest is rewritten by the eval stage: the choice's record is this file.
        Ok(relative(&layout, std::slice::from_ref(&choice)))
    })?;

    let valid_eval = layout.work().join("eval-valid.json");
    let test_eval = layout.model().join(l2d::serve::manifest::EVAL_FILE);
    let options = json!({ "sasrec_minutes": args.sasrec_minutes, "splits": ["valid", "test"] });
    runner.stage("eval", options, |_| {
        evaluate::eval(eval_args(
            &layout,
            Split::Valid,
            args.sasrec_minutes,
            valid_eval.clone(),
        ))?;
        evaluate::eval(eval_args(
            &layout,
            Split::Test,
            args.sasrec_minutes,
            test_eval.clone(),
        ))?;
        let chosen = chosen_scoring(&choice)?;
        let dataset = Dataset::read_dir(&layout.data())?;
        write_manifest(&layout.model(), &dataset, chosen, &command)?;
        Ok(relative(
            &layout,
            &[valid_eval.clone(), test_eval.clone(), manifest.clone()],
        ))
    })?;

    runner.stage("site", json!({}), |_| {
        site(SiteArgs {
            model: layout.model(),
            out: layout.site(),
        })?;
        under(&layout, &layout.site())
    })?;

    let ran: Vec<&str> = runner
        .done
        .iter()
        .filter(|(_, ran)| *ran)
        .map(|(s, _)| *s)
        .collect();
    let report = report(&layout, &runner.log, &args.widget_url)?;
    let path = layout.root.join("report.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    println!("{report}");
    println!(
        "build {}: ran {} of {} stages ({}) in {:.1} s; report in {}",
        layout.root.display(),
        ran.len(),
        STAGES.len(),
        if ran.is_empty() {
            "all skipped".to_string()
        } else {
            ran.join(", ")
        },
        runner.start.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(())
}

pub fn site(args: SiteArgs) -> Result<()> {
    let site = l2d::offline::site::write_site(&args.model, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {}: {} files under content-hashed names and manifest.json",
        args.out.display(),
        site.files.len()
    );
    Ok(())
}

/// The scoring `l2d choose --json` recorded as chosen.
fn chosen_scoring(path: &Path) -> Result<l2d::serve::manifest::Scoring> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    serde_json::from_value(value["chosen"].clone())
        .with_context(|| format!("{}: field `chosen` (a scoring)", path.display()))
}

/// This process's command line, recorded in the manifest as how the model was made.
fn build_command() -> String {
    let mut args = std::env::args();
    let _binary = args.next();
    std::iter::once("l2d".to_string())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// (method, R@20, N@20) of each report in an `l2d eval --json` file, and its warnings (a
/// baseline cut short, say).
type EvalRows = (Vec<(String, f64, f64)>, Vec<String>);
fn eval_rows(path: &Path) -> Result<EvalRows> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let k20 = l2d::offline::eval::KS
        .iter()
        .position(|&k| k == 20)
        .expect("20 is a K");
    let warnings = value["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|w| w.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let rows = value["reports"]
        .as_array()
        .map(|reports| {
            reports
                .iter()
                .map(|r| {
                    (
                        r["method"].as_str().unwrap_or("?").to_string(),
                        r["overall"]["recall"][k20].as_f64().unwrap_or(f64::NAN),
                        r["overall"]["ndcg"][k20].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((rows, warnings))
}

/// The report's stage table with the cost model (`offline::cost`): measured times and
/// throughputs, and projections to larger logs on more cores.
fn cost_section(layout: &Layout, dataset: &Dataset, log: &BuildLog) -> Result<String> {
    let samples: usize = dataset.counts().iter().filter_map(|(_, c)| *c).sum();
    let train_samples = dataset.split(Split::Train)?.len();
    let train: Option<TrainState> = std::fs::read(layout.model().join("train.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let tokens = train.as_ref().map_or(f64::NAN, |t| t.tokens as f64);
    // The last run that trained: its threads and the share of its steps that did not split.
    let training = match train.as_ref().and_then(|t| t.runs.last()) {
        Some(run) => Parallelism::DataParallel {
            threads: run.threads,
            serial: run.times.serial_fraction(),
        },
        None => Parallelism::Serial,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = CostModel::of_build(log, samples, train_samples, tokens, training, cores);
    Ok(format!(
        "Stages and their cost on this machine ({cores} cores; times of this run or of the one that \
         produced the kept outputs), projected to logs of 10⁶–10⁸ samples (≈ interactions) on 1, \
         16 and 64 cores, every stage linear in the log (the model in `l2d::offline::cost`; \
         training by Amdahl's law from its measured serial share):\n\n{}",
        model.markdown()
    ))
}

/// The build's report: split counts, valid and test quality next to the baselines, sizes,
/// stage times with the cost model, and the snippet that embeds the widget.
fn report(layout: &Layout, log: &BuildLog, widget_url: &str) -> Result<String> {
    let dataset = Dataset::read_dir(&layout.data())?;
    let (_, site) = commands::load_manifest(&layout.site())?;
    let mut out = format!("# l2d build: {}\n\n", layout.root.display());
    out += &format!(
        "Dataset `{}`: {} items; samples {}.\n\n",
        dataset.name,
        dataset.catalog.len(),
        dataset
            .counts()
            .iter()
            .map(|(s, c)| match c {
                Some(c) => format!("{} {c}", s.name()),
                None => format!("{} absent", s.name()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (valid, valid_warnings) = eval_rows(&layout.work().join("eval-valid.json"))?;
    let (test, test_warnings) = eval_rows(&layout.model().join(l2d::serve::manifest::EVAL_FILE))?;
    out += &format!(
        "Quality (the shipped variant is the manifest's scoring, {}, chosen on valid; test evaluated once):\n\n",
        site.scoring.label()
    );
    out += "| method | valid R@20 | valid N@20 | test R@20 | test N@20 |\n|---|---|---|---|---|\n";
    for (method, recall, ndcg) in &test {
        let v = valid.iter().find(|(m, _, _)| m == method);
        let (vr, vn) = v.map_or((f64::NAN, f64::NAN), |(_, r, n)| (*r, *n));
        out += &format!("| {method} | {vr:.4} | {vn:.4} | {recall:.4} | {ndcg:.4} |\n");
    }
    for (split, warning) in std::iter::repeat("valid")
        .zip(&valid_warnings)
        .chain(std::iter::repeat("test").zip(&test_warnings))
    {
        out += &format!("\nWarning ({split} report): {warning}.\n");
    }
    let first_visit: u64 = site
        .fetched_files("memory", "site manifest")?
        .into_iter()
        .filter_map(|name| site.files.get(name).map(|f| f.bytes))
        .sum();
    let all: u64 = site.files.values().map(|f| f.bytes).sum();
    out += &format!(
        "\nSizes: a first visit downloads {:.2} MB (model files, memory blob, items parts); the site holds {:.2} MB in {} files.\n\n",
        first_visit as f64 / 1e6,
        all as f64 / 1e6,
        site.files.len() + 1
    );
    out += &cost_section(layout, &dataset, log)?;
    out += &format!(
        "\n\nDeploy: serve `{}` as it is (file names carry their content hash: cache them forever; \
         give `manifest.json` a short cache lifetime). Embed the widget with:\n\n```html\n{}\n```\n",
        layout.site().display(),
        l2d::offline::site::embed_snippet(widget_url, "https://cdn.example/SITE/manifest.json")
    );
    Ok(out)
}
