//! Run directories, written so that an interrupted run never looks finished and concurrent writers never
//! destroy each other's work.
//!
//! 1. [`RunSlot::acquire`] takes the run's lock (a second process waits, with a log line, or fails) and
//!    cleans up after crashed writers ([`crate::replace::recover`]).
//! 2. [`RunSlot::existing`] says what is there: nothing, an incomplete directory, a finished run of the same
//!    identity (reuse it) or of another one (say what differs; replacing it needs `--force`).
//! 3. [`RunSlot::start`] creates the temporary directory `.ia2-tmp-{pid}-{nonce}-{name}`; [`RunDir::finish`]
//!    puts it in place ([`crate::replace::replace_dir`]). A run that fails removes its temporary; a killed
//!    one leaves it for the next start.

use crate::config::RunConfig;
use crate::layout::{ADAPTER_CONFIG_FILE, CONFIG_FILE, METRICS_FILE, STATS_FILE};
use crate::lock::{Lock, Wait};
use crate::stats::FinalStats;
use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Whether `dir` holds a finished run (statistics say completed, both configs present).
pub fn is_complete(dir: &Path) -> bool {
    let stats: Option<FinalStats> = std::fs::read(dir.join(STATS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    stats.is_some_and(|s| s.training_completed)
        && dir.join(CONFIG_FILE).is_file()
        && dir.join(ADAPTER_CONFIG_FILE).is_file()
}

/// What a run directory holds, compared with the run about to be trained.
#[derive(Debug, Clone, PartialEq)]
pub enum ExistingRun {
    Missing,
    /// Something that is not a finished run (the reason).
    Incomplete(String),
    /// A finished run of the same identity.
    Same(Box<FinalStats>),
    /// A finished run of another configuration: the differing fields (`field: old → new`).
    Different(Vec<String>),
}

/// What `dir` holds compared with `current` (a sealed config, see [`RunConfig::seal`]).
pub fn existing_run(dir: &Path, current: &RunConfig) -> ExistingRun {
    if std::fs::symlink_metadata(dir).is_err() {
        return ExistingRun::Missing;
    }
    if !is_complete(dir) {
        return ExistingRun::Incomplete(format!("{} is not a finished run", dir.display()));
    }
    let stats: FinalStats = match crate::tmp::read_json(&dir.join(STATS_FILE)) {
        Ok(s) => s,
        Err(e) => return ExistingRun::Incomplete(format!("{e:#}")),
    };
    let recorded: RunConfig = match crate::tmp::read_json(&dir.join(CONFIG_FILE)) {
        Ok(c) => c,
        Err(e) => {
            return ExistingRun::Different(vec![format!(
                "training_config.json is not an ia2 config of this version ({e:#})"
            )]);
        }
    };
    if recorded.identity() == current.identity() {
        return ExistingRun::Same(Box::new(stats));
    }
    ExistingRun::Different(crate::identity::diff(
        &recorded.identity_inputs(),
        &current.identity_inputs(),
    ))
}

/// A locked run directory (finished or not); the lock is held until this (or the [`RunDir`] made from it)
/// is dropped.
#[derive(Debug)]
pub struct RunSlot {
    pub final_dir: PathBuf,
    lock: Lock,
}

impl RunSlot {
    /// Locks `final_dir` and cleans up after crashed writers.
    pub fn acquire(final_dir: &Path, wait: Wait) -> Result<RunSlot> {
        let parent = final_dir.parent().context("run directory has no parent")?;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let lock = Lock::acquire(final_dir, wait)?;
        crate::replace::recover(final_dir)?;
        Ok(RunSlot {
            final_dir: final_dir.to_path_buf(),
            lock,
        })
    }

    /// See [`existing_run`].
    pub fn existing(&self, current: &RunConfig) -> ExistingRun {
        existing_run(&self.final_dir, current)
    }

    /// Creates the temporary directory the run is written into.
    pub fn start(self) -> Result<RunDir> {
        let name = self
            .final_dir
            .file_name()
            .context("run directory has no name")?
            .to_string_lossy()
            .to_string();
        let parent = self
            .final_dir
            .parent()
            .context("run directory has no parent")?;
        let tmp = parent.join(crate::tmp::tmp_name(&name));
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let metrics = std::fs::File::create(tmp.join(METRICS_FILE))
            .with_context(|| format!("creating {}", tmp.join(METRICS_FILE).display()))?;
        Ok(RunDir {
            final_dir: self.final_dir,
            tmp,
            metrics,
            finished: false,
            _lock: self.lock,
        })
    }
}

/// A run directory being written (under its temporary name).
pub struct RunDir {
    pub final_dir: PathBuf,
    pub tmp: PathBuf,
    metrics: std::fs::File,
    finished: bool,
    _lock: Lock,
}

impl Drop for RunDir {
    /// A run that fails leaves nothing behind (a killed one leaves its temporary directory, removed by the
    /// next start).
    fn drop(&mut self) {
        if !self.finished {
            std::fs::remove_dir_all(&self.tmp).ok();
        }
    }
}

impl RunDir {
    /// Locks `final_dir`, cleans up, and starts writing (replacing whatever is there when finished).
    pub fn start(final_dir: &Path) -> Result<RunDir> {
        RunSlot::acquire(final_dir, Wait::Block)?.start()
    }

    /// Appends one line to metrics.jsonl.
    pub fn log<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record)?;
        writeln!(self.metrics, "{line}").context("writing metrics.jsonl")
    }

    /// Writes `file` (pretty JSON) into the run directory.
    pub fn write_json<T: Serialize>(&self, file: &str, value: &T) -> Result<()> {
        let path = self.tmp.join(file);
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Moves the finished run into place, replacing an older run of the same name atomically.
    pub fn finish(self) -> Result<PathBuf> {
        self.finish_with(crate::replace::ReplaceOptions::default())
    }

    #[doc(hidden)]
    pub fn finish_with(mut self, opts: crate::replace::ReplaceOptions) -> Result<PathBuf> {
        self.metrics.flush()?;
        self.metrics.sync_all().ok();
        // From here on the temporary directory is either renamed into place or left for the next start.
        self.finished = true;
        crate::replace::replace_dir_with(&self.tmp, &self.final_dir, opts)?;
        Ok(self.final_dir.clone())
    }
}
