//! Discovery: finished runs and result files under an outputs directory (for eval, sweep, report, analyze).

use crate::config::RunConfig;
use crate::layout::{CONFIG_FILE, STATS_FILE};
use crate::lenient::TrainingConfig;
use crate::method::TrainingMethod;
use crate::results::ResultFile;
use crate::stats::FinalStats;
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A finished run directory.
#[derive(Debug, Clone)]
pub struct FoundRun {
    /// `outputs/{method}/{dataset}/{name}`.
    pub dir: PathBuf,
    pub method: TrainingMethod,
    pub dataset: String,
    pub name: String,
    /// `training_config.json` as written.
    pub raw_config: Value,
    /// Read leniently (seed configs too).
    pub config: TrainingConfig,
    /// Read strictly (`None` for configs not written by this version of ia2).
    pub run_config: Option<RunConfig>,
    pub stats: FinalStats,
}

impl FoundRun {
    /// The run's identity (recorded, else computed from an ia2 config; `None` for seed runs).
    pub fn identity(&self) -> Option<String> {
        self.config
            .identity
            .clone()
            .or_else(|| self.run_config.as_ref().map(RunConfig::identity))
    }
}

/// Visible subdirectories of `dir`, sorted (temporary and lock names start with a dot).
pub fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if e.path().is_dir() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads one finished run directory (`Err` with the reason when it is not one).
pub fn read_run(dir: &Path) -> Result<FoundRun> {
    anyhow::ensure!(
        crate::rundir::is_complete(dir),
        "{} is not a finished run",
        dir.display()
    );
    let path = dir.join(CONFIG_FILE);
    let raw_config: Value = crate::tmp::read_json(&path)?;
    let config = TrainingConfig::from_value(&raw_config, &path)?;
    let method: TrainingMethod = config
        .training_method
        .as_deref()
        .with_context(|| format!("{}: no training_method", path.display()))?
        .parse()
        .with_context(|| format!("{}: training_method", path.display()))?;
    let dataset = config
        .dataset
        .clone()
        .with_context(|| format!("{}: no dataset", path.display()))?;
    Ok(FoundRun {
        dir: dir.to_path_buf(),
        method,
        dataset,
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        run_config: serde_json::from_value(raw_config.clone()).ok(),
        raw_config,
        config,
        stats: crate::tmp::read_json(&dir.join(STATS_FILE))?,
    })
}

/// Every finished run under `outputs/{method}/{dataset}/{name}`, sorted by path, and the directories passed
/// over with the reason.
pub fn list_runs(outputs: &Path) -> Result<(Vec<FoundRun>, Vec<String>)> {
    let mut runs = Vec::new();
    let mut passed_over = Vec::new();
    if !outputs.is_dir() {
        return Ok((runs, passed_over));
    }
    for method_dir in subdirs(outputs)? {
        let is_method = method_dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.parse::<TrainingMethod>().is_ok());
        if !is_method {
            continue;
        }
        for dataset_dir in subdirs(&method_dir)? {
            for dir in subdirs(&dataset_dir)? {
                match read_run(&dir) {
                    Ok(r) => runs.push(r),
                    Err(e) => passed_over.push(format!("{e:#}")),
                }
            }
        }
    }
    Ok((runs, passed_over))
}

/// A finished result file.
#[derive(Debug, Clone)]
pub struct FoundResult {
    pub path: PathBuf,
    pub file: ResultFile,
}

/// Every finished result file under `outputs/evaluations/`, sorted by path, and the files passed over
/// (unreadable or incomplete) with the reason.
pub fn list_results(outputs: &Path) -> Result<(Vec<FoundResult>, Vec<String>)> {
    let mut found = Vec::new();
    let mut passed_over = Vec::new();
    for path in crate::results::result_paths(outputs)? {
        match crate::results::read_result(&path) {
            Ok(file) => match file.incomplete_reason() {
                None => found.push(FoundResult { path, file }),
                Some(why) => passed_over.push(format!("{}: {why}", path.display())),
            },
            Err(e) => passed_over.push(format!("{e:#}")),
        }
    }
    Ok((found, passed_over))
}
