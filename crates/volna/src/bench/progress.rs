//! The progress bar scenarios show on the terminal (hidden with `--quiet`).

use indicatif::{ProgressBar, ProgressStyle};

pub(super) fn progress(quiet: bool, len: u64, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what:>12} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} ({{per_sec}})"
        ))
        .expect("valid template"),
    );
    bar
}
