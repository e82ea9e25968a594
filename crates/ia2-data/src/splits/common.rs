//! File plumbing shared by the split commands: loading `main.json` with clear errors, skip-or-force writing,
//! progress bars.

use crate::schema::MainFile;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// `<data_dir>/<name>/main.json`.
pub fn main_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(name).join("main.json")
}

/// Loads `<data_dir>/<name>/main.json`, failing with the path when the dataset directory or the file is
/// missing.
pub fn load_main(data_dir: &Path, name: &str) -> Result<MainFile> {
    let dir = data_dir.join(name);
    if !dir.is_dir() {
        bail!(
            "unknown dataset {name:?}: directory {} does not exist (run `ia2 data prepare` first)",
            dir.display()
        );
    }
    let path = main_path(data_dir, name);
    if !path.is_file() {
        bail!(
            "dataset {name:?} has no {} (run `ia2 data prepare` first)",
            path.display()
        );
    }
    crate::io::read_json(&path).with_context(|| format!("loading dataset {name:?}"))
}

/// What [`write_unless_exists`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    Skipped,
}

/// Writes `value` atomically to `path`, unless the file exists and `force` is off (then logs and skips).
pub fn write_unless_exists<T: Serialize>(
    path: &Path,
    force: bool,
    value: impl FnOnce() -> Result<T>,
) -> Result<WriteOutcome> {
    if path.exists() && !force {
        tracing::info!(
            "{} already exists, skipping (use --force to rebuild)",
            path.display()
        );
        return Ok(WriteOutcome::Skipped);
    }
    let v = value()?;
    crate::io::write_json_atomic(path, &v)?;
    tracing::debug!("wrote {}", path.display());
    Ok(WriteOutcome::Written)
}

/// A progress bar over `len` files, hidden for a single file.
pub fn progress(len: usize, what: &str) -> ProgressBar {
    if len <= 1 {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Like [`write_unless_exists`] for a file derived from `sources` (its `main.json` files): an existing file
/// is kept only when its sidecar (`.{file}.ia2-source.json`, see [`ia2_runs::provenance`]) says it was built
/// from the sources as they are now; one built from an older version is rebuilt (with a warning), and one
/// without a sidecar (built before sidecars existed) is kept with a warning. The sidecar is written with
/// the file.
pub fn write_derived<T: Serialize>(
    path: &Path,
    sources: &[&Path],
    force: bool,
    value: impl FnOnce() -> Result<T>,
) -> Result<WriteOutcome> {
    use ia2_runs::provenance::{SourceCheck, check_sources, record_sources};
    let mut force = force;
    if path.exists() && !force {
        match check_sources(path, sources)? {
            SourceCheck::Current => {}
            SourceCheck::Unknown => tracing::warn!(
                "{} has no record of the main.json it was built from (built by an older ia2?): kept; \
                 --force rebuilds it",
                path.display()
            ),
            SourceCheck::Changed(changed) => {
                tracing::warn!(
                    "{} was built from an older {}: rebuilding it",
                    path.display(),
                    changed.join(", ")
                );
                force = true;
            }
        }
    }
    let outcome = write_unless_exists(path, force, value)?;
    if outcome == WriteOutcome::Written {
        record_sources(path, sources)?;
    }
    Ok(outcome)
}
