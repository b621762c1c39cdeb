//! Progress of long commands (train, memory, eval, build): a bar on a terminal; otherwise one
//! plain line every `L2D_PROGRESS_SECONDS` (default 30) with step / total, rate and ETA, so
//! `nohup` runs and CI logs show where a job stands.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Seconds between plain progress lines when stderr is not a terminal.
fn line_interval() -> Duration {
    let seconds = std::env::var("L2D_PROGRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(30.0);
    Duration::from_secs_f64(seconds)
}

/// `h:mm:ss` for a duration in seconds.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A progress reporter for `total` units of `what`.
pub struct Progress {
    what: String,
    total: u64,
    position: u64,
    /// When this reporter was made (elapsed time counts from here).
    created: Instant,
    /// Position and time of the first update: the rate counts from here, so a resumed run
    /// (which starts mid-way) and a job that advances by whole batches both read right.
    first: Option<(u64, Instant)>,
    last_line: Instant,
    interval: Duration,
    message: String,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new(total: usize, what: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}}) {{msg}}"
                ))
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        let now = Instant::now();
        Progress {
            what: what.to_string(),
            total: total as u64,
            position: 0,
            created: now,
            first: None,
            last_line: now,
            interval: line_interval(),
            message: String::new(),
            bar,
        }
    }

    /// Changes the total.
    pub fn set_length(&mut self, total: usize) {
        self.total = total as u64;
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
        }
    }

    /// Moves to `position`.
    pub fn set_position(&mut self, position: usize) {
        let position = position as u64;
        self.first.get_or_insert((position, Instant::now()));
        self.position = position;
        match &self.bar {
            Some(bar) => bar.set_position(position),
            None => {
                if self.last_line.elapsed() >= self.interval || position == self.total {
                    self.last_line = Instant::now();
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    /// A short status shown after the counts (loss, tokens/s).
    pub fn set_message(&mut self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.clone());
        }
        self.message = message;
    }

    /// Prints a line without breaking the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar (plain mode has printed its last line already).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// `what: pos/total (pct%), rate/s, elapsed, eta, message`.
    fn line(&self) -> String {
        let elapsed = self.created.elapsed().as_secs_f64();
        let rate = self.first.map_or(0.0, |(position, at)| {
            self.position.saturating_sub(position) as f64 / at.elapsed().as_secs_f64().max(1e-9)
        });
        let left = self.total.saturating_sub(self.position) as f64;
        let eta = if rate > 0.0 {
            clock(left / rate)
        } else {
            "?".into()
        };
        let pct = 100.0 * self.position as f64 / self.total.max(1) as f64;
        let mut line = format!(
            "{}: {}/{} ({pct:.1}%), {rate:.2}/s, elapsed {}, eta {eta}",
            self.what,
            self.position,
            self.total,
            clock(elapsed)
        );
        if !self.message.is_empty() {
            line += &format!(", {}", self.message);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats_hours_minutes_seconds() {
        for (seconds, text) in [(0.0, "0:00:00"), (59.6, "0:01:00"), (3725.0, "1:02:05")] {
            assert_eq!(clock(seconds), text);
        }
    }
}
