//! Run directories, written so that an interrupted run never looks finished.
//!
//! Everything is written into a hidden sibling `.{name}.partial-{pid}` and renamed to `{name}` at the very end.
//! A directory called `{name}` is therefore complete; leftovers of interrupted runs are removed when the run
//! starts again.

use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "training_config.json";
pub const STATS_FILE: &str = "final_loss_statistics.json";
pub const METRICS_FILE: &str = "metrics.jsonl";

/// `final_loss_statistics.json` (the seed's keys).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FinalStats {
    /// `null` when the run has no dev examples.
    pub best_dev_loss: Option<f64>,
    pub current_train_loss: TrainLoss,
    pub training_completed: bool,
    /// 0-based index of the last epoch, as the seed records it.
    pub final_epoch: usize,
    pub total_steps: usize,
    /// Ours: whether patience ran out, and the optimizer step whose state was kept.
    pub early_stopped: bool,
    pub best_step: Option<usize>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TrainLoss {
    pub mse: f64,
    pub ce: f64,
    pub total: f64,
}

/// Whether `dir` holds a finished run.
pub fn is_complete(dir: &Path) -> bool {
    let stats: Option<FinalStats> = std::fs::read(dir.join(STATS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    stats.is_some_and(|s| s.training_completed)
        && dir.join(CONFIG_FILE).is_file()
        && dir.join(ia2_adapters::CONFIG_FILE).is_file()
}

/// A run directory being written.
pub struct RunDir {
    pub final_dir: PathBuf,
    pub tmp: PathBuf,
    /// Where an older finished run is moved while the new one takes its place.
    old: PathBuf,
    metrics: std::fs::File,
    finished: bool,
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
    /// Starts `final_dir` afresh: removes leftovers of interrupted runs and creates the temporary directory.
    pub fn start(final_dir: &Path) -> Result<RunDir> {
        let parent = final_dir.parent().context("run directory has no parent")?;
        let name = final_dir
            .file_name()
            .context("run directory has no name")?
            .to_string_lossy()
            .to_string();
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let stale = format!(".{name}.partial-");
        for entry in std::fs::read_dir(parent)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&stale) {
                tracing::info!(path = %entry.path().display(), "removing an interrupted run");
                std::fs::remove_dir_all(entry.path()).ok();
            }
        }
        let tmp = parent.join(format!("{stale}{}", std::process::id()));
        let old = parent.join(format!(".{name}.replaced-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let metrics = std::fs::File::create(tmp.join(METRICS_FILE))
            .with_context(|| format!("creating {}", tmp.join(METRICS_FILE).display()))?;
        Ok(RunDir {
            final_dir: final_dir.to_path_buf(),
            tmp,
            old,
            metrics,
            finished: false,
        })
    }

    /// Appends one line to metrics.jsonl.
    pub fn log<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record)?;
        writeln!(self.metrics, "{line}").context("writing metrics.jsonl")
    }

    pub fn write_json<T: Serialize>(&self, file: &str, value: &T) -> Result<()> {
        let path = self.tmp.join(file);
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Moves the finished run into place (replacing an older finished run of the same name).
    pub fn finish(mut self) -> Result<PathBuf> {
        // From here on the temporary directory is either renamed into place or left for the next start.
        self.finished = true;
        self.metrics.flush()?;
        self.metrics.sync_all().ok();
        if self.final_dir.exists() {
            let old = &self.old;
            std::fs::rename(&self.final_dir, old)
                .with_context(|| format!("moving the old {} aside", self.final_dir.display()))?;
            std::fs::rename(&self.tmp, &self.final_dir)?;
            std::fs::remove_dir_all(old).ok();
        } else {
            std::fs::rename(&self.tmp, &self.final_dir).with_context(|| {
                format!(
                    "renaming {} to {}",
                    self.tmp.display(),
                    self.final_dir.display()
                )
            })?;
        }
        Ok(self.final_dir.clone())
    }
}
