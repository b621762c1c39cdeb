//! The cost model of `l2d build`'s report: each stage's measured time, what it is linear in,
//! its throughput per core, and a projection of its time for larger logs on N cores.
//!
//! The projection assumes a log that grows as this one would — more users with as many
//! interactions each, the catalog fixed — so every stage's work is proportional to the log's
//! samples (one per interaction after a user's first): training's target tokens, the memory's
//! forward passes, the blob's states, the valid and test queries of choose and eval. A stage
//! that runs on one core gains nothing from more cores; the memory stage splits across cores
//! and machines (shards). Training is data-parallel: its steps' micro-batches (forward,
//! backward, batching) split over threads, the rest of a step (gradient sum, optimizer,
//! bookkeeping) does not, so it is projected by Amdahl's law with the serial share the run
//! measured — assuming the batch grows with the cores so micro-batches stay as large as the
//! measured ones. Small stages (prepare, tokenizer, site) are projected the same way; they stay
//! small.

use crate::offline::site::BuildLog;

/// How a stage uses cores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Parallelism {
    /// One core, whatever the machine.
    Serial,
    /// Every core of the machine it ran on (rayon), and shards across machines.
    Cores,
    /// Data-parallel steps measured on `threads` threads, of which a share `serial` of the
    /// step time did not split.
    DataParallel { threads: usize, serial: f64 },
}

impl Parallelism {
    /// Time on `cores` cores relative to one core's.
    fn time_on(self, cores: usize) -> f64 {
        let cores = cores.max(1) as f64;
        match self {
            Parallelism::Serial => 1.0,
            Parallelism::Cores => 1.0 / cores,
            Parallelism::DataParallel { serial, .. } => serial + (1.0 - serial) / cores,
        }
    }

    /// The cores the measurement ran on.
    fn measured_on(self, machine: usize) -> usize {
        match self {
            Parallelism::Serial => 1,
            Parallelism::Cores => machine,
            Parallelism::DataParallel { threads, .. } => threads,
        }
    }
}

/// One stage's measured cost.
#[derive(Debug, Clone, PartialEq)]
pub struct StageCost {
    pub stage: String,
    pub seconds: f64,
    /// The work it did, in `unit`s (e.g. target tokens), and what that unit is.
    pub work: f64,
    pub unit: &'static str,
    pub parallelism: Parallelism,
}

/// What the build measured: stage times with the work behind them, on `cores` cores, for a
/// log of `samples` samples.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    pub stages: Vec<StageCost>,
    pub samples: f64,
    pub cores: usize,
}

/// The log sizes (samples ≈ interactions) and core counts of the projection table.
pub const PROJECTED_SAMPLES: [f64; 3] = [1e6, 1e7, 1e8];
pub const PROJECTED_CORES: [usize; 3] = [1, 16, 64];

impl CostModel {
    /// The cost model of a build whose log is `log`: `samples` samples in all, `train_samples`
    /// of them in train, `train_tokens` target tokens trained on as `training` says, on
    /// `cores` cores.
    pub fn of_build(
        log: &BuildLog,
        samples: usize,
        train_samples: usize,
        train_tokens: f64,
        training: Parallelism,
        cores: usize,
    ) -> Self {
        let stage = |name: &str, work: f64, unit: &'static str, parallelism| {
            log.stages.get(name).map(|r| StageCost {
                stage: name.to_string(),
                seconds: r.seconds,
                work,
                unit,
                parallelism,
            })
        };
        let held_out = (samples - train_samples.min(samples)) as f64;
        let stages = [
            stage("prepare", samples as f64, "samples", Parallelism::Serial),
            stage("tokenizer", samples as f64, "samples", Parallelism::Serial),
            stage("train", train_tokens, "target tokens", training),
            stage(
                "memory",
                train_samples as f64,
                "train samples",
                Parallelism::Cores,
            ),
            stage(
                "blobs",
                train_samples as f64,
                "memory states",
                Parallelism::Serial,
            ),
            stage("choose", held_out, "held-out samples", Parallelism::Cores),
            stage("eval", held_out, "held-out samples", Parallelism::Cores),
            stage("site", samples as f64, "samples", Parallelism::Serial),
        ];
        CostModel {
            stages: stages.into_iter().flatten().collect(),
            samples: samples as f64,
            cores: cores.max(1),
        }
    }

    /// A stage's work per second on one core: what one core would do alone, from the time
    /// measured on the cores it ran on.
    pub fn per_core(&self, stage: &StageCost) -> f64 {
        let p = stage.parallelism;
        let one_core_seconds = stage.seconds.max(1e-9) / p.time_on(p.measured_on(self.cores));
        stage.work / one_core_seconds
    }

    /// Projected seconds of `stage` for a log of `samples` samples on `cores` cores.
    pub fn projected_seconds(&self, stage: &StageCost, samples: f64, cores: usize) -> f64 {
        let scale = samples / self.samples.max(1.0);
        stage.work * scale / self.per_core(stage) * stage.parallelism.time_on(cores)
    }

    /// The report's table: per stage, measured time and throughput, and the projections.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| stage | linear in | on | measured | throughput per core |");
        let columns: Vec<(f64, usize)> = PROJECTED_SAMPLES
            .iter()
            .flat_map(|&n| PROJECTED_CORES.iter().map(move |&c| (n, c)))
            .collect();
        for (n, c) in &columns {
            out += &format!(" {:.0e} on {c} |", n);
        }
        out += "\n|---|---|---|---|---|";
        out += &"---|".repeat(columns.len());
        out += "\n";
        for stage in &self.stages {
            out += &format!(
                "| {} | {} | {} | {} | {:.0} {}/s |",
                stage.stage,
                stage.unit,
                match stage.parallelism {
                    Parallelism::Serial => "1 core".to_string(),
                    Parallelism::Cores => "all cores".to_string(),
                    Parallelism::DataParallel { threads, serial } => format!(
                        "{threads} threads, {:.1} % of a step serial",
                        100.0 * serial
                    ),
                },
                duration(stage.seconds),
                self.per_core(stage),
                stage.unit
            );
            for &(n, c) in &columns {
                out += &format!(" {} |", duration(self.projected_seconds(stage, n, c)));
            }
            out += "\n";
        }
        let total = |n: f64, c: usize| {
            self.stages
                .iter()
                .map(|s| self.projected_seconds(s, n, c))
                .sum::<f64>()
        };
        out += &format!(
            "| **all** | | | {} | |",
            duration(self.stages.iter().map(|s| s.seconds).sum())
        );
        for &(n, c) in &columns {
            out += &format!(" {} |", duration(total(n, c)));
        }
        out + "\n"
    }
}

/// Seconds as the table shows them: s, min, h or days.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        "—".into()
    } else if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else if seconds < 172_800.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} days", seconds / 86_400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::site::StageRecord;

    fn log(stages: &[(&str, f64)]) -> BuildLog {
        BuildLog {
            stages: stages
                .iter()
                .map(|(name, seconds)| {
                    (
                        name.to_string(),
                        StageRecord {
                            key: String::new(),
                            finished: true,
                            outputs: Default::default(),
                            seconds: *seconds,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn projections_scale_with_the_log_and_with_cores_where_a_stage_uses_them() {
        // 1,000 samples, 800 in train, 10,000 target tokens, 2 cores; training measured on
        // 2 threads with a fifth of its step serial: one core would take 100 / 0.6 s.
        let training = Parallelism::DataParallel {
            threads: 2,
            serial: 0.2,
        };
        let model = CostModel::of_build(
            &log(&[("train", 100.0), ("memory", 10.0), ("eval", 4.0)]),
            1000,
            800,
            10_000.0,
            training,
            2,
        );
        // (stage, per-core throughput, projected seconds for 1e6 samples on 1 and on 16 cores)
        let cases = [
            ("train", 60.0, 1e7 / 60.0, 1e7 / 60.0 * (0.2 + 0.8 / 16.0)),
            ("memory", 40.0, 20_000.0, 1_250.0),
            ("eval", 25.0, 8_000.0, 500.0),
        ];
        for (name, per_core, one, sixteen) in cases {
            let stage = model.stages.iter().find(|s| s.stage == name).unwrap();
            assert!((model.per_core(stage) - per_core).abs() < 1e-6, "{name}");
            assert!(
                (model.projected_seconds(stage, 1e6, 1) - one).abs() < 1e-6,
                "{name}"
            );
            assert!(
                (model.projected_seconds(stage, 1e6, 16) - sixteen).abs() < 1e-6,
                "{name}"
            );
        }
        // Stages that did not run are left out, and the table has a row per stage and a total.
        assert_eq!(model.stages.len(), 3);
        assert_eq!(model.markdown().lines().count(), 2 + 3 + 1);
    }

    #[test]
    fn durations_read_in_their_unit() {
        let cases = [
            (5.0, "5.0 s"),
            (600.0, "10 min"),
            (36_000.0, "10.0 h"),
            (864_000.0, "10.0 days"),
        ];
        for (seconds, want) in cases {
            assert_eq!(duration(seconds), want);
        }
    }
}
