//! `ia2 toy ...`: the project's own tiny in-context learner (see the `ia2-toy` crate).

use anyhow::Result;
use ia2_toy::{PretrainConfig, Sampling, ToyModelInfo, ToyModelOptions};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum ToyCommand {
    /// Pretrain the toy Qwen3 model on the synthetic in-context task family (all weights trained), or reuse
    /// the cached copy. Prints the model directory; its toy_model.json holds the held-out ICL accuracy.
    Pretrain(PretrainArgs),
    /// Write one held-out toy task as `<data-dir>/<name>/main.json` (for `ia2 data train-sets` and training).
    Dataset(DatasetArgs),
}

#[derive(Debug, clap::Args)]
pub struct PretrainArgs {
    /// Write the model here instead of the cache (`$IA2_CACHE/toy` or ~/.cache/ia2/toy).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the initialisation and the training data.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Optimizer steps (default: the cached model's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Retrain even when a valid model is already there.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct DatasetArgs {
    /// Seed choosing the held-out task (its classes and labels) and the examples.
    #[arg(long, default_value_t = 0)]
    pub task_seed: u64,
    /// Dataset name: writes `<data-dir>/<name>/main.json`.
    #[arg(long, default_value = "toy")]
    pub name: String,
    /// Root data directory.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Training pool size (words repeat beyond 24).
    #[arg(long, default_value_t = 24)]
    pub num_train_samples: usize,
    /// Validation set size (words repeat beyond 24).
    #[arg(long, default_value_t = 24)]
    pub num_val_samples: usize,
    /// Replace an existing main.json that holds another dataset.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: ToyCommand) -> Result<()> {
    match cmd {
        ToyCommand::Pretrain(a) => {
            let mut config = PretrainConfig::default();
            if let Some(s) = a.seed {
                config.seed = s;
            }
            if let Some(s) = a.steps {
                config.steps = s;
            }
            let dir = match &a.out {
                Some(out) => {
                    ia2_toy::pretrain_to(out, &config, a.force)?;
                    out.clone()
                }
                None => ia2_toy::ensure_toy_model(&ToyModelOptions {
                    config,
                    force: a.force,
                    ..ToyModelOptions::default()
                })?,
            };
            let info = ia2_toy::verify(&dir, None)?;
            print_summary(&info);
            println!("{}", dir.display());
            Ok(())
        }
        ToyCommand::Dataset(a) => {
            for (flag, v) in [
                ("--num-train-samples", a.num_train_samples),
                ("--num-val-samples", a.num_val_samples),
            ] {
                anyhow::ensure!(v > 0, "{flag} must be at least 1");
                anyhow::ensure!(
                    v <= 1_000_000,
                    "{flag} {v} is implausibly large (at most 1000000)"
                );
            }
            let path = ia2_toy::write_task_dataset_with(
                a.task_seed,
                &a.data_dir,
                &a.name,
                a.num_train_samples,
                a.num_val_samples,
                a.force,
            )?;
            println!("wrote {}", path.display());
            Ok(())
        }
    }
}

/// Held-out accuracy per demo count, on stderr (stdout carries the directory, for scripts).
fn print_summary(info: &ToyModelInfo) {
    let r = &info.icl_eval;
    eprintln!(
        "toy model: {} parameters, {} steps in {:.0} s; held-out in-context accuracy (chance {:.3}, {:.2} within the task's labels):",
        info.training.parameters,
        info.training.steps,
        info.training.seconds,
        r.chance_full_vocabulary,
        r.chance_in_label_set
    );
    for sampling in [Sampling::Random, Sampling::Balanced] {
        let cells: Vec<String> = r
            .results
            .iter()
            .filter(|x| x.sampling == sampling)
            .map(|x| format!("k={}: {:.3}", x.demos, x.accuracy))
            .collect();
        eprintln!("  {sampling:?} demos: {}", cells.join("  "));
    }
}
