//! The `l2d` binary end to end on a small seeded raw log generated here: prepare → tokenizer →
//! train with stderr redirected to a file (as under `nohup` or in CI), so the test sees what a
//! log file shows: progress lines with step / total, rate and ETA, the in-training recall, and
//! both curves in train.json.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;
use std::process::{Command, Stdio};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A MovieLens-format log: `users` users with 12–20 interactions each over 30 items, seeded.
fn write_raw_log(dir: &Path, users: usize) {
    let mut rng = StdRng::seed_from_u64(17);
    let mut ratings = String::from("userId,movieId,rating,timestamp\n");
    let mut t = 1_000_000u64;
    for u in 1..=users {
        // Each user walks a neighbourhood of the catalog, so next items are predictable.
        let mut item = rng.random_range(1..=30u32);
        for _ in 0..rng.random_range(12..=20) {
            ratings += &format!("{u},{item},4.0,{t}\n");
            t += 1;
            item = (item + rng.random_range(1..=3)) % 30 + 1;
        }
    }
    let mut movies = String::from("movieId,title,genres\n");
    for i in 1..=30 {
        movies += &format!("{i},Film number {i} ({}),Drama\n", 1980 + i);
    }
    std::fs::write(dir.join("ratings.csv"), ratings).unwrap();
    std::fs::write(dir.join("movies.csv"), movies).unwrap();
}

/// The tiny model shape of these tests (`l2d train` and `l2d build` flags).
const TINY_SHAPE: [&str; 10] = [
    "--hidden",
    "32",
    "--layers",
    "1",
    "--heads",
    "2",
    "--intermediate",
    "64",
    "--batch-tokens",
    "512",
];

/// Runs `l2d args…` with stderr into `log`; panics with the log when it fails.
fn l2d(args: &[&str], log: &Path) {
    let file = std::fs::File::create(log).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_l2d"))
        .args(args)
        .env("L2D_PROGRESS_SECONDS", "0")
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "l2d {args:?} failed:\n{}",
        std::fs::read_to_string(log).unwrap()
    );
}

/// `l2d build` of the seeded log under `root` (from [`write_raw_log`]) into `out`, with a
/// small vocabulary, the tiny model shape and `extra` options.
fn tiny_build_args(root: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let s = |p: &Path| p.display().to_string();
    let fixed = [
        "build".to_string(),
        "--interactions".into(),
        s(&root.join("ratings.csv")),
        "--items".into(),
        s(&root.join("movies.csv")),
        "--out".into(),
        s(out),
        "--vocab-size".into(),
        "300".into(),
    ];
    fixed
        .into_iter()
        .chain(extra.iter().chain(&TINY_SHAPE).map(|a| a.to_string()))
        .collect()
}

/// Prepares the seeded log and a tokenizer under `root`, then trains a tiny model with the
/// shape below plus `train_flags`, stderr into `root/train.log`; returns (dataset, model dirs).
fn tiny_model(root: &Path, train_flags: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    write_raw_log(root, 80);
    let (data, model) = (root.join("data"), root.join("model"));
    let (d, m) = (data.display().to_string(), model.display().to_string());
    let (ratings, movies) = (root.join("ratings.csv"), root.join("movies.csv"));
    let (ratings, movies) = (ratings.display().to_string(), movies.display().to_string());
    let log = root.join("setup.log");
    l2d(
        &[
            "prepare",
            "--interactions",
            &ratings,
            "--items",
            &movies,
            "--out",
            &d,
        ],
        &log,
    );
    l2d(
        &[
            "tokenizer",
            "--dataset",
            &d,
            "--out",
            &m,
            "--vocab-size",
            "300",
        ],
        &log,
    );
    let args: Vec<&str> = ["train", "--dataset", &d, "--model", &m]
        .iter()
        .chain(&TINY_SHAPE)
        .chain(train_flags)
        .copied()
        .collect();
    l2d(&args, &root.join("train.log"));
    (data, model)
}

/// `l2d memory --shard i/4` in four concurrent processes, then `--merge`, writes the very
/// bytes a single `l2d memory` run writes.
#[test]
fn four_memory_shards_merge_to_the_single_run_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (data, model) = tiny_model(root, &["--epochs", "1", "--select", "loss"]);
    let s = |p: &Path| p.display().to_string();
    let common = [
        "--dataset".to_string(),
        s(&data),
        "--model".into(),
        s(&model),
        "--batch".into(),
        "16".into(),
    ];
    let single = root.join("single.safetensors");
    let mut args: Vec<String> = vec!["memory".into()];
    args.extend(common.iter().cloned());
    args.extend(["--out".into(), s(&single)]);
    l2d(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &root.join("single.log"),
    );
    let children: Vec<(std::process::Child, std::path::PathBuf)> = (0..4)
        .map(|i| {
            let out = root.join(format!("shard{i}.safetensors"));
            let child = Command::new(env!("CARGO_BIN_EXE_l2d"))
                .arg("memory")
                .args(&common)
                .args(["--shard", &format!("{i}/4"), "--out", &s(&out)])
                .env("RAYON_NUM_THREADS", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let mut shards = Vec::new();
    for (mut child, out) in children {
        assert!(child.wait().unwrap().success(), "shard process failed");
        shards.push(out);
    }
    let merged = root.join("merged.safetensors");
    let mut args: Vec<String> = vec![
        "memory".into(),
        "--out".into(),
        s(&merged),
        "--merge".into(),
    ];
    // Any order of the shard files gives the same result.
    args.extend(shards.iter().rev().map(|p| s(p)));
    l2d(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &root.join("merge.log"),
    );
    let (a, b) = (
        std::fs::read(&single).unwrap(),
        std::fs::read(&merged).unwrap(),
    );
    assert!(a.len() > 1000);
    assert!(a == b, "merged memory differs from the single run");
    // A missing shard is refused, not silently merged into a shorter memory.
    let status = Command::new(env!("CARGO_BIN_EXE_l2d"))
        .args([
            "memory",
            "--out",
            &s(&root.join("bad.safetensors")),
            "--merge",
            &s(&shards[0]),
            &s(&shards[1]),
        ])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!status.status.success());
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn training_logs_progress_lines_and_both_curves_to_a_non_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let flags = [
        "--epochs",
        "3",
        "--eval-every",
        "4",
        "--select",
        "recall",
        "--select-memory-fraction",
        "0.5",
        "--patience",
        "0",
    ];
    let (_, model) = tiny_model(root, &flags);
    let log = root.join("train.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let progress: Vec<&str> = text.lines().filter(|l| l.starts_with("steps: ")).collect();
    assert!(!progress.is_empty(), "no progress line in:\n{text}");
    for line in &progress {
        for part in ["/", "%)", "/s, elapsed ", ", eta ", "tok/s"] {
            assert!(line.contains(part), "`{part}` missing in `{line}`");
        }
    }
    assert!(
        text.lines().any(|l| l.contains("valid L2D-L (M=10) R@20")),
        "no in-training recall line in:\n{text}"
    );
    assert!(!text.contains('\r'), "a terminal bar leaked into the log");

    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("train.json")).unwrap()).unwrap();
    let losses = state["history"].as_array().unwrap();
    let recalls = state["valid_recall"].as_array().unwrap();
    assert!(!losses.is_empty());
    assert_eq!(losses.len(), recalls.len(), "one recall per evaluation");
    let best = state["best_step"].as_u64().unwrap();
    let best_recall = state["best_valid_recall"].as_f64().unwrap();
    let max = recalls
        .iter()
        .map(|r| r[1].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(
        best_recall, max,
        "the exported weights are the best-recall ones"
    );
    assert!(recalls
        .iter()
        .any(|r| r[0].as_u64() == Some(best) && r[1].as_f64() == Some(max)));
    assert!(model.join("model.safetensors").exists());
}

/// `--threads N` splits each step into N micro-batches: the same count twice gives the same
/// weights byte for byte; one thread and two follow the same path up to summation order; the
/// run's record says how many threads and where the step time went.
#[test]
fn a_thread_count_repeats_its_weights_exactly_and_two_threads_follow_one() {
    let flags = |threads: &'static str| {
        [
            "--epochs",
            "2",
            "--eval-every",
            "3",
            "--select",
            "final",
            "--threads",
            threads,
        ]
    };
    // (thread count, run) → (weights, train.json, train.log)
    let run = |threads: &'static str| {
        let dir = tempfile::tempdir().unwrap();
        let (_, model) = tiny_model(dir.path(), &flags(threads));
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(model.join("train.json")).unwrap()).unwrap();
        let log = std::fs::read_to_string(dir.path().join("train.log")).unwrap();
        (
            std::fs::read(model.join("model.safetensors")).unwrap(),
            state,
            log,
        )
    };
    let (two_a, state, log) = run("2");
    let (two_b, _, _) = run("2");
    let (one, state_one, _) = run("1");
    assert!(
        two_a == two_b,
        "two runs on 2 threads gave different weights"
    );
    assert!(
        two_a != one,
        "1 and 2 threads should differ in the last bits"
    );
    let last_loss = |s: &serde_json::Value| {
        let h = s["history"].as_array().unwrap();
        h.last().unwrap()[2].as_f64().unwrap()
    };
    let (a, b) = (last_loss(&state), last_loss(&state_one));
    assert!(
        (a - b).abs() < 1e-3 * b,
        "valid loss {a} on 2 threads, {b} on 1"
    );
    let runs = state["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["threads"].as_u64(), Some(2));
    assert_eq!(runs[0]["steps"], state["step"]);
    assert!(runs[0]["times"]["backward"].as_f64().unwrap() > 0.0);
    assert!(log.contains("steps on 2 threads: "), "{log}");
    // No thread at all is refused with the option's name.
    let out = Command::new(env!("CARGO_BIN_EXE_l2d"))
        .args(["train", "--threads", "0", "--model", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("threads"), "{err}");
}

/// `--select final` (a refit on train + valid) exports the last weights and never stops
/// early, whatever the patience; its decay is the ceiling's.
#[test]
fn a_final_selection_exports_the_last_step_without_stopping_early() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--epochs",
        "2",
        "--eval-every",
        "2",
        "--select",
        "final",
        "--patience",
        "1",
    ];
    let (_, model) = tiny_model(dir.path(), &flags);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("train.json")).unwrap()).unwrap();
    let total = state["total_steps"].as_u64().unwrap();
    assert!(state["history"].as_array().unwrap().len() > 1);
    assert_eq!(state["step"].as_u64(), Some(total), "ran to the end");
    assert_eq!(
        state["best_step"].as_u64(),
        Some(total),
        "exported the last"
    );
    assert!(state["stopped_early_at"].is_null());
    assert!(state["valid_recall"].as_array().unwrap().is_empty());
    // Nothing selects, so the default schedule decays over the ceiling's last stretch: from
    // where the rest is a fifth of the steps before it, to the last step.
    let decay = &state["decay"];
    let start = decay["start"].as_u64().unwrap();
    assert_eq!(start + decay["steps"].as_u64().unwrap(), total, "{decay}");
    assert_eq!(start, (total as f64 / 1.2).ceil() as u64, "{decay}");
}

/// `l2d synth` for the shipped model: seeded (same arguments, same bytes; another seed,
/// other bytes), loadable as it is by the library and by `l2d recommend`, in int8 and f16.
#[test]
fn synthetic_catalogs_load_for_the_shipped_model() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let model =
        l2d::model::Model::from_files(&l2d::model::ModelFiles::read_dir(&model_dir).unwrap())
            .unwrap();
    let log = dir.path().join("synth.log");
    for (dtype, seed, items) in [("i8", "4", 300usize), ("f16", "4", 250)] {
        let blob_of = |name: &str, seed: &str| {
            let out = dir.path().join(name);
            l2d(
                &[
                    "synth",
                    "--model",
                    model_dir.to_str().unwrap(),
                    "--items",
                    &items.to_string(),
                    "--dtype",
                    dtype,
                    "--seed",
                    seed,
                    "--out",
                    out.to_str().unwrap(),
                ],
                &log,
            );
            std::fs::read(out).unwrap()
        };
        let (a, b, c) = (
            blob_of("a.blob", seed),
            blob_of("b.blob", seed),
            blob_of("c.blob", "5"),
        );
        assert_eq!(a, b, "{dtype}: same seed, same bytes");
        assert_ne!(a, c, "{dtype}: another seed");
        let blob = l2d::latent::blob::Blob::read_file(&dir.path().join("a.blob")).unwrap();
        let (catalog, reps) =
            l2d::serve::recommend::load_blob(&model, blob.clone(), "a.blob").unwrap();
        assert_eq!(catalog.len(), items);
        assert_eq!(reps.cold_items(), 0);
        let a_path = dir.path().join("a.blob");
        l2d(
            &[
                "recommend",
                "--model",
                model_dir.to_str().unwrap(),
                "--blob",
                a_path.to_str().unwrap(),
                "-k",
                "5",
                "synth-1",
                "synth-2",
            ],
            &log,
        );
    }
}

/// `l2d update` on a tiny deployed model: a new item and new interactions are appended
/// (memory, dataset, blobs, manifest), the model files stay byte for byte, the new item is in
/// the blob's catalog, the previous catalog's items parts are removed, the same log applied
/// twice appends nothing, and a memory from another run is refused with both counts named.
#[test]
fn update_appends_new_interactions_and_items_without_touching_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (data, model) = tiny_model(root, &["--epochs", "1", "--select", "loss"]);
    let s = |p: &Path| p.display().to_string();
    let memory = root.join("memory.safetensors");
    let log = root.join("steps.log");
    let io = ["--dataset", &s(&data), "--model", &s(&model)].map(String::from);
    let ms = s(&memory);
    let args = |cmd: &str, rest: &[&str]| -> Vec<String> {
        std::iter::once(cmd.to_string())
            .chain(io.iter().cloned())
            .chain(rest.iter().map(|r| r.to_string()))
            .collect()
    };
    let call = |a: Vec<String>| l2d(&a.iter().map(String::as_str).collect::<Vec<_>>(), &log);
    call(args("memory", &["--out", &ms]));
    call(args("blobs", &["--memory", &ms]));
    call(args("manifest", &[]));
    let read = |name: &str| std::fs::read(model.join(name)).unwrap();
    let before: Vec<Vec<u8>> = ["model.safetensors", "tokenizer.json", "config.json"]
        .map(read)
        .to_vec();
    let blob_before = read("memory.blob");
    let states = |path: &Path| l2d::latent::memory::Memory::load(path).unwrap().len();
    let states_before = states(&memory);
    let manifest_before: serde_json::Value =
        serde_json::from_slice(&read("manifest.json")).unwrap();
    let parts_before: Vec<String> = manifest_before["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();

    std::fs::write(
        root.join("new_items.csv"),
        "movieId,title\n31,A Brand New Film (2026)\n",
    )
    .unwrap();
    std::fs::write(
        root.join("new.csv"),
        "userId,movieId,timestamp\n1,31,9000000\n2,31,9000001\n2,5,9000002\n",
    )
    .unwrap();
    let (new, items) = (s(&root.join("new.csv")), s(&root.join("new_items.csv")));
    let update = args(
        "update",
        &["--memory", &ms, "--interactions", &new, "--items", &items],
    );
    call(update.clone());
    assert_eq!(states(&memory), states_before + 3);
    let after: Vec<Vec<u8>> = ["model.safetensors", "tokenizer.json", "config.json"]
        .map(read)
        .to_vec();
    assert!(after == before, "the model files changed");
    let blob = l2d::latent::blob::Blob::read_file(&model.join("memory.blob")).unwrap();
    assert_ne!(read("memory.blob"), blob_before);
    let new_item = blob
        .items
        .iter()
        .position(|i| i.id == "31")
        .expect("new item in the blob");
    assert_eq!(blob.counts[new_item], 2, "two states for the new item");
    // The follow weights are rebuilt with the new samples: user 2 went from the new item to 5.
    let follows = blob
        .follows
        .as_ref()
        .expect("the recipe's blobs store follow weights");
    let five = blob.items.iter().position(|i| i.id == "5").unwrap() as u32;
    assert!(follows
        .of(new_item as u32)
        .any(|(target, _)| target == five));
    let manifest: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    assert_eq!(
        manifest["files"]["memory.blob"]["sha256"],
        l2d::util::sha256_hex(&read("memory.blob"))
    );
    // The new item's title is in the items part the manifest lists (a new name: new content).
    let parts = manifest["items"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    let part = parts[0].as_str().unwrap();
    assert_eq!(
        manifest["files"][part]["sha256"],
        l2d::util::sha256_hex(&read(part))
    );
    assert!(String::from_utf8(read(part))
        .unwrap()
        .contains("A Brand New Film (2026)"));
    // The previous catalog's parts, which no manifest lists any more, are gone.
    for old in &parts_before {
        assert_ne!(old, part, "the catalog changed, so did its part's name");
        assert!(!model.join(old).exists(), "stale items part {old} kept");
    }
    assert_eq!(
        manifest["files"]["model.safetensors"]["sha256"],
        l2d::util::sha256_hex(&before[0])
    );
    // The same log again: nothing new.
    call(update.clone());
    assert_eq!(states(&memory), states_before + 3);
    // A memory that does not match the dataset's train split is refused.
    let other = root.join("other.safetensors");
    l2d::latent::memory::Memory::load(&memory)
        .unwrap()
        .select(&[0, 1])
        .save(&other)
        .unwrap();
    let os = s(&other);
    let out = Command::new(env!("CARGO_BIN_EXE_l2d"))
        .args(args("update", &["--memory", &os, "--interactions", &new]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("other.safetensors has 2 states") && err.contains("train samples"),
        "{err}"
    );
}

/// `l2d build` from a raw log of 300 users, stderr into a file: every stage runs and logs
/// progress lines; the site holds content-hashed files its manifest names (each with its
/// sha256); a rerun skips every stage; changing one option reruns exactly the stages from the
/// one it belongs to; a changed input file reruns everything.
#[test]
fn build_runs_resumable_stages_from_a_raw_log_to_a_site() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_raw_log(root, 300);
    let out = root.join("build");
    let base = tiny_build_args(root, &out, &["--epochs", "2", "--sasrec-minutes", "0.01"]);
    let log = root.join("build.log");
    // Runs a build with `extra` options; returns the stages it ran, in order.
    let build = |extra: &[&str]| -> Vec<String> {
        let args: Vec<&str> = base
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .collect();
        l2d(&args, &log);
        let text = std::fs::read_to_string(&log).unwrap();
        let ran: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("build: stage "))
            .filter(|l| l.ends_with(" s") && l.contains(": done in "))
            .map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap()
                    .trim_end_matches(':')
                    .to_string()
            })
            .collect();
        let skipped = text.lines().filter(|l| l.contains(": skipped (")).count();
        assert_eq!(
            ran.len() + skipped,
            l2d::offline::site::STAGES.len(),
            "{text}"
        );
        ran
    };
    let stages_from = |first: &str| -> Vec<String> {
        let at = l2d::offline::site::STAGES
            .iter()
            .position(|s| *s == first)
            .unwrap();
        l2d::offline::site::STAGES[at..]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };

    assert_eq!(build(&[]), stages_from("prepare"));
    let text = std::fs::read_to_string(&log).unwrap();
    for what in ["steps: ", "samples: ", "queries: "] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(what) && l.contains(", eta ")),
            "no `{what}` progress line in:\n{text}"
        );
    }
    assert!(!text.contains('\r'), "a terminal bar leaked into the log");

    // The site: the manifest names content-hashed files that exist with their sha256.
    let site = out.join("site");
    let manifest: l2d::serve::manifest::Manifest = serde_json::from_slice(
        &std::fs::read(site.join(l2d::serve::manifest::MANIFEST_FILE)).unwrap(),
    )
    .unwrap();
    for name in l2d::model::MODEL_FILES
        .iter()
        .copied()
        .chain(["global.blob", "memory.blob", "eval.json"])
        .chain(manifest.items.iter().map(String::as_str))
    {
        let entry = manifest.file(name, "site").unwrap();
        let path = entry.path.as_deref().expect("a hashed path");
        assert_eq!(path, l2d::offline::site::hashed_name(name, &entry.sha256));
        let bytes = std::fs::read(site.join(path)).unwrap();
        assert_eq!(l2d::util::sha256_hex(&bytes), entry.sha256, "{name}");
    }
    let files = std::fs::read_dir(&site).unwrap().count();
    assert_eq!(
        files,
        manifest.files.len() + 1,
        "the site holds exactly what it lists"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for part in [
        "| popularity |",
        "| SASRec |",
        "| shipped: ",
        "<l2d-recommendations",
    ] {
        assert!(
            report.contains(part),
            "`{part}` missing in the report:\n{report}"
        );
    }
    // `--sasrec-minutes 0.01` may cut SASRec short (a slow or busy machine): then, and only
    // then, the report says so.
    let test_eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model/eval.json")).unwrap()).unwrap();
    let capped = !test_eval["warnings"].as_array().unwrap().is_empty();
    assert_eq!(
        report.contains("Warning (test report): SASRec stopped by the 0.01-minute cap"),
        capped,
        "{report}"
    );

    assert_eq!(
        build(&[]),
        Vec::<String>::new(),
        "a rerun skips every stage"
    );
    assert_eq!(build(&["--budget", "16000000"]), stages_from("blobs"));
    assert_eq!(
        build(&["--budget", "16000000", "--seed", "5"]),
        stages_from("train")
    );
    // The previous site's files stay for browsers holding the old manifest; older ones go.
    let files = std::fs::read_dir(&site).unwrap().count();
    assert!(
        files <= 2 * manifest.files.len() + 1,
        "{files} files in the site"
    );
    // A changed input file reruns everything.
    let ratings = root.join("ratings.csv");
    let mut text = std::fs::read_to_string(&ratings).unwrap();
    text += "1,2,4.0,99999999\n";
    std::fs::write(&ratings, text).unwrap();
    assert_eq!(
        build(&["--budget", "16000000", "--seed", "5"]),
        stages_from("prepare")
    );
}

/// `l2d manifest --weights int8` writes the int8 weights file beside model.safetensors and
/// lists it (the page then fetches it); `--weights f32` removes and unlists it; a manifest
/// described over a stale int8 file (made from other weights) or without one is refused,
/// naming the file.
#[test]
fn the_manifest_lists_the_int8_weights_file_exactly_when_the_weights_are_int8() {
    use l2d::model::int8_file::INT8_WEIGHTS_FILE;
    use l2d::serve::manifest::{Manifest, Scoring};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (data, model) = tiny_model(root, &["--epochs", "1", "--select", "loss"]);
    let s = |p: &Path| p.display().to_string();
    let log = root.join("manifest.log");
    let manifest = |weights: &str| {
        l2d(
            &[
                "manifest",
                "--dataset",
                &s(&data),
                "--model",
                &s(&model),
                "--weights",
                weights,
            ],
            &log,
        );
        let text = std::fs::read(model.join("manifest.json")).unwrap();
        Manifest::from_json(&text, "manifest.json").unwrap()
    };
    let int8 = manifest("int8");
    assert!(model.join(INT8_WEIGHTS_FILE).exists());
    assert!(int8.files.contains_key(INT8_WEIGHTS_FILE));
    assert_eq!(int8.weights_file(), INT8_WEIGHTS_FILE);
    let f32 = manifest("f32");
    assert!(!model.join(INT8_WEIGHTS_FILE).exists());
    assert!(!f32.files.contains_key(INT8_WEIGHTS_FILE));
    assert_eq!(f32.weights_file(), l2d::model::WEIGHTS_FILE);

    let dataset = l2d::data::dataset::Dataset::read_dir(&data).unwrap();
    let scoring = Scoring {
        weights: l2d::model::Weights::Int8,
        ..Scoring::default()
    };
    let describe = || Manifest::describe(&model, &dataset, scoring.clone(), "test");
    let missing = describe().unwrap_err().to_string();
    assert!(missing.contains(INT8_WEIGHTS_FILE), "{missing}");
    // An int8 file made from other weights: the shipped model's.
    let other = std::fs::read(shipped_weights()).unwrap();
    std::fs::write(
        model.join(INT8_WEIGHTS_FILE),
        l2d::model::int8_file::write(&other).unwrap(),
    )
    .unwrap();
    let stale = describe().unwrap_err().to_string();
    assert!(stale.contains("the source model"), "{stale}");
    let fresh = std::fs::read(model.join(l2d::model::WEIGHTS_FILE)).unwrap();
    std::fs::write(
        model.join(INT8_WEIGHTS_FILE),
        l2d::model::int8_file::write(&fresh).unwrap(),
    )
    .unwrap();
    assert!(describe().is_ok());
}

/// The shipped model's weights file (other weights than a tiny model's).
fn shipped_weights() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default/model.safetensors")
}

/// `l2d build --engine ray`: the memory stage as four Ray tasks on a local Ray instance (two
/// workers), merged on the driver, writes the bytes the single-process stage writes; the build
/// then goes on from it. Runs where Ray is installed (`pip install ray`; `scripts/test.sh`
/// installs it and sets `L2D_REQUIRE_RAY=1`, so there a missing Ray fails instead of skipping).
#[test]
fn build_with_the_ray_engine_writes_the_single_process_memory() {
    let has_ray = Command::new("python3")
        .args(["-c", "import ray"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_ray {
        assert!(
            std::env::var("L2D_REQUIRE_RAY").is_err(),
            "L2D_REQUIRE_RAY is set but python3 cannot import ray"
        );
        eprintln!("skipped: python3 cannot import ray (pip install ray)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_raw_log(root, 80);
    let out = root.join("build");
    let build = tiny_build_args(root, &out, &["--epochs", "1", "--sasrec-minutes", "0"]);
    let args = |extra: &[&str]| -> Vec<String> {
        build
            .iter()
            .cloned()
            .chain(extra.iter().map(|a| a.to_string()))
            .collect()
    };
    let log = root.join("ray.log");
    let run = |a: &[String]| l2d(&a.iter().map(String::as_str).collect::<Vec<_>>(), &log);
    run(&args(&["--engine", "ray", "--shards", "4"]));
    let memory = out.join("work/memory.safetensors");
    let on_ray = std::fs::read(&memory).unwrap();
    // The same stage in this process, from scratch.
    std::fs::remove_file(&memory).unwrap();
    run(&args(&[]));
    let local = std::fs::read(&memory).unwrap();
    assert!(
        on_ray == local,
        "the memory built on Ray differs from the single-process one ({} vs {} bytes)",
        on_ray.len(),
        local.len()
    );
}
