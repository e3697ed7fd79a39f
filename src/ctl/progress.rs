//! A job's progress while byokctl follows it: an indicatif bar on standard error, in keys
//! ("7/20 keys") for a job that pushes keys and in percent otherwise, fitted to the terminal's
//! width; one plain line per change when standard error is not a terminal.
//!
//! It owns drawing only; the caller fetches the job.

use super::output::{key_counts, note, progress_text};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

pub struct Progress {
    bar: ProgressBar,
    /// Whether the bar counts keys (else thousandths).
    keys: Option<bool>,
    last: String,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            bar: ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr()),
            keys: None,
            last: String::new(),
        }
    }

    /// Shows the job's state (the job as the API answers it).
    pub fn update(&mut self, job: &Value) {
        let state = job.get("state").and_then(Value::as_str).unwrap_or("?");
        let step = job.get("step").and_then(Value::as_str).unwrap_or("");
        let id = job.get("id").and_then(Value::as_str).unwrap_or("?");
        let line = format!("job {id} {state} {}: {step}", progress_text(job));
        if line == self.last {
            return;
        }
        self.last = line;
        if self.bar.is_hidden() {
            note(&self.last);
            return;
        }
        let counts = key_counts(job);
        if self.keys != Some(counts.is_some()) {
            self.keys = Some(counts.is_some());
            let template = if counts.is_some() {
                "{bar:30} {pos}/{len} keys {wide_msg}"
            } else {
                "{bar:30} {percent:>3}% {wide_msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                self.bar.set_style(style.progress_chars("#>."));
            }
        }
        let (pos, len) = counts.unwrap_or_else(|| {
            let done = job.pointer("/progress/done").and_then(Value::as_u64);
            let total = job.pointer("/progress/total").and_then(Value::as_u64);
            (done.unwrap_or(0), total.unwrap_or(1000).max(1))
        });
        self.bar.set_length(len);
        self.bar.set_position(pos.min(len));
        self.bar.set_message(format!("{state}: {step}"));
    }

    /// Ends the bar, leaving its last state on the screen.
    pub fn finish(&mut self) {
        if !self.bar.is_hidden() {
            self.bar.abandon();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
