//! Progress bars (hidden when stderr is not a terminal, e.g. in tests and CI logs).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps labelled `what`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}
