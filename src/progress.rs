//! Progress bars for long work (stderr; hidden with --quiet or when stderr is not a terminal).

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipeline::run_folder::Progress;

/// A spinner showing documents/s, MB/s and the kept share of a text stage.
pub struct TextProgress {
    bar: ProgressBar,
    start: Instant,
}

impl TextProgress {
    pub fn new(label: &str, quiet: bool) -> Self {
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
        if !quiet {
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        }
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {elapsed_precise} {msg}").expect("valid template"),
        );
        bar.set_prefix(label.to_string());
        Self { bar, start: Instant::now() }
    }

    pub fn update(&self, p: Progress) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let kept = if p.documents > 0 { 100.0 * p.kept as f64 / p.documents as f64 } else { 0.0 };
        self.bar.set_message(format!(
            "{} docs · {:.0} docs/s · {:.1} MB/s · kept {kept:.1}%",
            p.documents,
            p.documents as f64 / secs,
            p.bytes as f64 / 1e6 / secs
        ));
        self.bar.tick();
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A bar counting `unit` (steps, requests) towards a length set later; hidden with --quiet.
pub fn counter(unit: &str, with_message: bool, quiet: bool) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    if !quiet {
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    }
    let message = if with_message { " · {msg}" } else { "" };
    bar.set_style(
        ProgressStyle::with_template(&format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit}{message} · ETA {{eta}}"))
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}
