//! `final_loss_statistics.json` and the lines of `metrics.jsonl`.

use serde::{Deserialize, Serialize};

/// `final_loss_statistics.json` (the seed's keys, then ours; ours default when reading a seed file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalStats {
    /// `null` when the run has no dev examples.
    pub best_dev_loss: Option<f64>,
    pub current_train_loss: TrainLoss,
    pub training_completed: bool,
    /// Epochs run, 1-based as the seed writes it (`epoch + 1` after the last epoch; 0 when no epoch ran).
    pub final_epoch: usize,
    pub total_steps: usize,
    /// Ours: whether patience ran out, and the optimizer step whose state was kept.
    #[serde(default)]
    pub early_stopped: bool,
    #[serde(default)]
    pub best_step: Option<usize>,
}

/// Mean losses of the last epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainLoss {
    pub mse: f64,
    pub ce: f64,
    pub total: f64,
}

/// One line of `metrics.jsonl`: one optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    pub step: usize,
    /// 0-based epoch of the step.
    pub epoch: usize,
    /// Mean over the step's examples.
    pub train: TrainLoss,
    /// Dev loss when it was evaluated after this step.
    pub dev: Option<TrainLoss>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub weight_norm: f64,
    pub lr: f64,
    pub examples: usize,
    pub seconds: f64,
}

/// Reads `metrics.jsonl` (one [`MetricsRecord`] per line), naming the line on error.
pub fn read_metrics(path: &std::path::Path) -> anyhow::Result<Vec<MetricsRecord>> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}: line {}", path.display(), i + 1))
        })
        .collect()
}
