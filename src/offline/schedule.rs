//! How long a run trains and at what learning rate: the epoch ceiling a dataset's size gives,
//! and the schedule after warmup.
//!
//! The recipe's schedule is *warmup–stable–decay*: the peak rate holds until the in-training
//! probe has not improved for `patience` evaluations (the model has learned what this rate can
//! teach), then the rate decays to `min_lr_ratio` of the peak over a share ([`DECAY_SHARE`]) of
//! the steps done so far, and the run ends. Early stopping decides the length; the epoch
//! ceiling only bounds it (its last stretch is kept for the decay, so a run still improving at
//! the ceiling decays there). Runs written before the field existed used a cosine decay over
//! all their epochs ([`Schedule::Cosine`]), which a fixed epoch count must guess.
//!
//! The decay length proportional to the stable phase, and the cool-down's gain, are those of
//! Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations"
//! (NeurIPS 2024) and Hu et al., "MiniCPM" (2024): a constant rate followed by a short decay
//! matches a cosine schedule of the same length, without fixing that length in advance.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Share of the steps done before the decay that the decay lasts (20 %, the length the papers
/// above find to match cosine; the same for every dataset).
pub const DECAY_SHARE: f64 = 0.2;

/// Train-sample passes the epoch ceiling allows: the ceiling is this many samples divided by
/// the train split's size, within [`MIN_EPOCHS`]…[`MAX_EPOCHS`]. A compute bound, not a tuned
/// length (early stopping picks that): a log of 10⁵ samples may train for up to 20 epochs (on
/// 2 cores here, under 90 min), one of 10⁶ for 2, and a larger one for 1.
pub const CEILING_SAMPLE_PASSES: f64 = 2.0e6;
/// Fewest epochs the ceiling allows.
pub const MIN_EPOCHS: usize = 1;
/// Most epochs the ceiling allows, however small the log.
pub const MAX_EPOCHS: usize = 32;

/// The epoch ceiling of a train split of `train_samples` samples ([`CEILING_SAMPLE_PASSES`]).
pub fn epoch_ceiling(train_samples: usize) -> usize {
    let epochs = (CEILING_SAMPLE_PASSES / train_samples.max(1) as f64).round() as usize;
    epochs.clamp(MIN_EPOCHS, MAX_EPOCHS)
}

/// How the learning rate moves after the linear warmup.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Cosine decay to `min_lr_ratio` over every step of the epochs (what a run written before
    /// the field existed did, so serde fills it in for a missing field).
    #[default]
    Cosine,
    /// The peak rate until patience runs out or the ceiling's last stretch begins, then a
    /// cosine decay over [`DECAY_SHARE`] of the steps done, then the end.
    StableDecay,
}

impl std::str::FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cosine" => Ok(Schedule::Cosine),
            "stable-decay" | "stable_decay" | "wsd" => Ok(Schedule::StableDecay),
            other => Err(Error::invalid(
                "schedule",
                format!("`{other}` (expected stable-decay or cosine)"),
            )),
        }
    }
}

/// The decay of a stable–decay run once it has begun: its first step and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decay {
    pub start: usize,
    pub steps: usize,
}

impl Decay {
    /// The decay that begins at `step` (at least one step long).
    pub fn from(step: usize) -> Decay {
        Decay {
            start: step,
            steps: ((DECAY_SHARE * step as f64).round() as usize).max(1),
        }
    }

    /// The step after the last one.
    pub fn end(&self) -> usize {
        self.start + self.steps
    }

    /// The step at which a run still improving begins its decay: where the rest of the
    /// ceiling's `total` steps is [`DECAY_SHARE`] of the steps before it.
    pub fn latest_start(total: usize) -> usize {
        (total as f64 / (1.0 + DECAY_SHARE)).ceil() as usize
    }

    /// The decay from `step` to the ceiling's `total` steps.
    pub fn until(step: usize, total: usize) -> Decay {
        Decay {
            start: step,
            steps: total.saturating_sub(step),
        }
    }
}

/// The rates and lengths a schedule reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub peak: f64,
    /// Final rate as a fraction of the peak.
    pub min_ratio: f64,
    pub warmup_steps: usize,
}

impl Rates {
    /// The rate at `step` of a run of `total` steps (the ceiling) under `schedule`, with the
    /// stable–decay run's decay when it has begun.
    pub fn at(&self, schedule: Schedule, step: usize, total: usize, decay: Option<Decay>) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let progress = match (schedule, decay) {
            (Schedule::Cosine, _) => {
                (step - self.warmup_steps) as f64
                    / total.saturating_sub(self.warmup_steps).max(1) as f64
            }
            (Schedule::StableDecay, None) => 0.0,
            (Schedule::StableDecay, Some(d)) => {
                step.saturating_sub(d.start) as f64 / d.steps.max(1) as f64
            }
        };
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
        self.peak * (self.min_ratio + (1.0 - self.min_ratio) * cosine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: Rates = Rates {
        peak: 2e-3,
        min_ratio: 0.05,
        warmup_steps: 200,
    };

    #[test]
    fn every_schedule_warms_up_linearly() {
        for schedule in [Schedule::Cosine, Schedule::StableDecay] {
            assert!(RATES.at(schedule, 0, 1000, None) < RATES.at(schedule, 199, 1000, None));
            assert!((RATES.at(schedule, 199, 1000, None) - RATES.peak).abs() < 1e-12);
        }
    }

    #[test]
    fn the_rate_at_a_step() {
        let decay = Some(Decay::from(1000));
        let min = RATES.peak * RATES.min_ratio;
        // (case, schedule, step, total, decay, expected rate)
        type Case = (&'static str, Schedule, usize, usize, Option<Decay>, f64);
        let cases: [Case; 6] = [
            (
                "cosine at the warmup's end",
                Schedule::Cosine,
                200,
                1000,
                None,
                RATES.peak,
            ),
            ("cosine at the end", Schedule::Cosine, 1000, 1000, None, min),
            (
                "stable before the decay",
                Schedule::StableDecay,
                900,
                5000,
                None,
                RATES.peak,
            ),
            (
                "stable at the decay's start",
                Schedule::StableDecay,
                1000,
                5000,
                decay,
                RATES.peak,
            ),
            (
                "stable-decay halfway",
                Schedule::StableDecay,
                1100,
                5000,
                decay,
                (RATES.peak + min) / 2.0,
            ),
            (
                "stable-decay at its end",
                Schedule::StableDecay,
                1200,
                5000,
                decay,
                min,
            ),
        ];
        for (name, schedule, step, total, decay, expected) in cases {
            let rate = RATES.at(schedule, step, total, decay);
            assert!(
                (rate - expected).abs() < 1e-12,
                "{name}: {rate} vs {expected}"
            );
        }
    }

    #[test]
    fn a_decay_lasts_its_share_and_the_latest_one_ends_at_the_ceiling() {
        assert_eq!(Decay::from(1000).steps, 200);
        assert_eq!(Decay::from(1).steps, 1);
        for total in [1, 2, 7, 100, 1001, 2702, 9456] {
            let latest = Decay::latest_start(total);
            let decay = Decay::until(latest, total);
            assert_eq!(decay.end(), total, "{total}");
            // The last stretch is the decay's share of what came before, to a step.
            assert!(
                decay.steps <= Decay::from(latest).steps
                    && Decay::from(latest).steps <= decay.steps + 1,
                "{total}: {decay:?}"
            );
        }
    }

    #[test]
    fn the_ceiling_scales_with_the_train_split() {
        let cases = [
            ("a tiny log: the most", 100, MAX_EPOCHS),
            ("ml-latest-small's size", 71_520, 28),
            ("10⁵ samples", 100_000, 20),
            ("10⁶ samples", 1_000_000, 2),
            ("10⁸ samples: the fewest", 100_000_000, MIN_EPOCHS),
            ("an empty split does not divide by zero", 0, MAX_EPOCHS),
        ];
        for (name, samples, epochs) in cases {
            assert_eq!(epoch_ceiling(samples), epochs, "{name}");
        }
    }

    #[test]
    fn schedules_parse_by_name() {
        assert_eq!(
            "stable-decay".parse::<Schedule>().unwrap(),
            Schedule::StableDecay
        );
        assert_eq!("cosine".parse::<Schedule>().unwrap(), Schedule::Cosine);
        let err = "linear".parse::<Schedule>().unwrap_err().to_string();
        assert!(
            err.contains("linear") && err.contains("stable-decay"),
            "{err}"
        );
    }
}
