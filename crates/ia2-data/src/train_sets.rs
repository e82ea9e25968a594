//! `ia2 data train-sets`: training sets with ICL demos, `data/<name>/train/{N}_{run}.json`, equal in content to
//! the seed's `create_training_datasets.py`.
//!
//! For each N and run `r`: `RandomState(r)` shuffles the positions of `main.json`'s `train_examples`; the first
//! N are the training examples, the next `min(num_dev, N / 2)` the dev examples, the rest `remaining_indices`
//! (the pool that evaluation demos are later drawn from). Demos are rendered `question + answer` strings:
//!
//! * default ("unique", `demo_type: "unique"`): training example `i` gets the other N-1 training examples
//!   (a `choice` of `min(max_icl_demos, N-1)` of them when there are more), shuffled; dev example `d` reuses
//!   training example `d`'s list;
//! * `--fixed-demos` (`demo_type: "fixed"`, written under `train_fixed/`): one list shared by all examples,
//!   `min(max_icl_demos, N-1)` examples drawn from `remaining_indices`, shuffled.
//!
//! `--shuffle-demos --num-shuffles K` only changes the file name, to `shuffled_{K}_{N}_{run}.json`, exactly as the
//! seed: the demo orderings are re-shuffled at training time, the file content is the same.
//!
//! A dataset whose training pool is empty (evaluation-only) gets the seed's stub
//! `{"remaining_indices": [0..|val_examples|)}`.
//!
//! Schema: [`crate::splits::schema::TrainFile`]; our `config` key records the seed and counts.

use crate::schema::{Example, MainFile};
use crate::splits::common::{WriteOutcome, load_main, main_path, progress, write_derived};
use crate::splits::sample::{DemoIndices, demo_cap, training_split};
use crate::splits::schema::{IclDemos, Split, TrainFile, render_demo};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Defaults of `ia2 data train-sets` (the seed's), used by [`TrainSetsConfig::new`] and `Default`.
const DEFAULT_NUM_RUNS: u32 = 5;
const DEFAULT_MAX_ICL_DEMOS: usize = 48;
const DEFAULT_NUM_DEV_EXAMPLES: usize = 48;
const DEFAULT_NUM_SHUFFLES: usize = 5;

/// The options of `ia2 data train-sets` as plain data (`..Default::default()` for the rest; the flags are in the binary,
/// `crates/ia2/src/cli/data.rs`). Required flags default to empty here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSetsConfig {
    /// Dataset name: reads `<data-dir>/<dataset>/main.json`.
    pub dataset: String,
    /// Training-set sizes N (one file per N and run).
    pub num_train_examples: Vec<usize>,
    /// Number of runs; run r uses seed r.
    pub num_runs: u32,
    /// Cap on demos per example (also capped at N-1).
    pub max_icl_demos: usize,
    /// Cap on dev examples (also capped at N/2).
    pub num_dev_examples: usize,
    /// Name files `shuffled_{K}_{N}_{run}.json` (demos are re-shuffled K times at training time).
    pub shuffle_demos: bool,
    /// K for `--shuffle-demos`.
    pub num_shuffles: usize,
    /// One shared demo list drawn from the remaining pool; files go to `train_fixed/`.
    pub fixed_demos: bool,
    /// Root data directory.
    pub data_dir: PathBuf,
    /// Rebuild files that already exist.
    pub force: bool,
}

impl Default for TrainSetsConfig {
    fn default() -> Self {
        TrainSetsConfig::new(String::new(), "data", Vec::new())
    }
}

impl TrainSetsConfig {
    /// The options `ia2 data train-sets --dataset D --num-train-examples N... --data-dir DIR` runs with:
    /// every other option at its default (`num_runs` 5, unique unshuffled demos, no `--force`).
    pub fn new(
        dataset: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        num_train_examples: Vec<usize>,
    ) -> TrainSetsConfig {
        TrainSetsConfig {
            dataset: dataset.into(),
            num_train_examples,
            num_runs: DEFAULT_NUM_RUNS,
            max_icl_demos: DEFAULT_MAX_ICL_DEMOS,
            num_dev_examples: DEFAULT_NUM_DEV_EXAMPLES,
            shuffle_demos: false,
            num_shuffles: DEFAULT_NUM_SHUFFLES,
            fixed_demos: false,
            data_dir: data_dir.into(),
            force: false,
        }
    }

    /// Output path of one (N, run) file.
    pub fn output_path(&self, n: usize, run: u32) -> PathBuf {
        train_file_path(
            &self.data_dir,
            &self.dataset,
            n,
            run,
            self.fixed_demos,
            self.shuffle_demos.then_some(self.num_shuffles),
        )
    }
}

/// `<data_dir>/<name>/{train|train_fixed}/[shuffled_{K}_]{N}_{run}.json`.
pub fn train_file_path(
    data_dir: &Path,
    name: &str,
    n: usize,
    run: u32,
    fixed: bool,
    shuffles: Option<usize>,
) -> PathBuf {
    let dir = data_dir
        .join(name)
        .join(if fixed { "train_fixed" } else { "train" });
    match shuffles {
        Some(k) => dir.join(format!("shuffled_{k}_{n}_{run}.json")),
        None => dir.join(format!("{n}_{run}.json")),
    }
}

/// Builds the content of one training file (pure: no I/O).
pub fn build_train_file(
    main: &MainFile,
    args: &TrainSetsConfig,
    n: usize,
    run: u32,
) -> Result<TrainFile> {
    let pool = &main.train_examples;
    if pool.is_empty() {
        return Ok(TrainFile {
            train: None,
            dev: None,
            remaining_indices: (0..main.val_examples.len()).collect(),
            demo_type: None,
            config: None,
        });
    }
    if n > pool.len() {
        bail!(
            "N = {n} training examples requested but dataset {:?} has only {} train_examples",
            args.dataset,
            pool.len()
        );
    }
    let s = training_split(
        pool.len(),
        n,
        args.num_dev_examples,
        args.max_icl_demos,
        args.fixed_demos,
        run,
    );
    if s.dev.len() < args.num_dev_examples.min(n / 2) {
        tracing::warn!(
            "N = {n}: the pool of {} leaves only {} dev examples",
            pool.len(),
            s.dev.len()
        );
    }
    let pick = |ids: &[usize]| -> Vec<Example> { ids.iter().map(|&i| pool[i].clone()).collect() };
    let train_examples = pick(&s.train);
    let dev_examples = pick(&s.dev);
    let (train_demos, dev_demos, demo_type) = match &s.demos {
        DemoIndices::PerExample(lists) => {
            let rendered: Vec<Vec<String>> = lists
                .iter()
                .map(|l| l.iter().map(|&p| render_demo(&train_examples[p])).collect())
                .collect();
            let dev = rendered[..dev_examples.len().min(rendered.len())].to_vec();
            (
                IclDemos::PerExample(rendered),
                IclDemos::PerExample(dev),
                "unique",
            )
        }
        DemoIndices::Fixed(ids) => {
            let rendered: Vec<String> = ids.iter().map(|&i| render_demo(&pool[i])).collect();
            (
                IclDemos::Fixed(rendered.clone()),
                IclDemos::Fixed(rendered),
                "fixed",
            )
        }
    };
    let config = json!({
        "tool": "ia2 data train-sets",
        "dataset": args.dataset,
        "seed": run,
        "num_train_examples": n,
        "num_dev_examples": s.dev.len(),
        "max_icl_demos": args.max_icl_demos,
        "demos_per_example": demo_cap(args.max_icl_demos, n),
        "pool_size": pool.len(),
        "demo_type": demo_type,
        "shuffle_demos": args.shuffle_demos,
        "num_shuffles": args.shuffle_demos.then_some(args.num_shuffles),
        "train_idx": s.train,
        "dev_idx": s.dev,
    });
    Ok(TrainFile {
        train: Some(Split {
            examples: train_examples,
            icl_demos: train_demos,
        }),
        dev: Some(Split {
            examples: dev_examples,
            icl_demos: dev_demos,
        }),
        remaining_indices: s.remaining,
        demo_type: Some(demo_type.to_string()),
        config: Some(config),
    })
}

impl TrainSetsConfig {
    /// Checks the options before anything is read or written.
    pub fn validate(&self) -> Result<()> {
        if self.num_train_examples.contains(&0) {
            bail!("--num-train-examples must be at least 1 (got 0)");
        }
        if !(1..=MAX_RUNS).contains(&self.num_runs) {
            bail!(
                "--num-runs must be between 1 and {MAX_RUNS} (got {})",
                self.num_runs
            );
        }
        if self.shuffle_demos && !(1..=10_000).contains(&self.num_shuffles) {
            bail!(
                "--num-shuffles must be between 1 and 10000 (got {})",
                self.num_shuffles
            );
        }
        Ok(())
    }
}

/// The most runs `data train-sets`, `eval-demos` and `ldr` accept.
pub const MAX_RUNS: u32 = 100_000;

pub fn run(args: TrainSetsConfig) -> Result<()> {
    args.validate()?;
    let main = load_main(&args.data_dir, &args.dataset)?;
    if main.train_examples.is_empty() {
        tracing::warn!(
            "dataset {:?} has no train_examples: writing the seed's evaluation-only stub (remaining_indices over {} val_examples)",
            args.dataset,
            main.val_examples.len()
        );
    }
    // Check every N before writing anything.
    if !main.train_examples.is_empty()
        && let Some(&n) = args
            .num_train_examples
            .iter()
            .find(|&&n| n > main.train_examples.len())
    {
        bail!(
            "--num-train-examples: N = {n} training examples requested but dataset {:?} has only {} \
             train_examples",
            args.dataset,
            main.train_examples.len()
        );
    }
    let jobs: Vec<(usize, u32)> = args
        .num_train_examples
        .iter()
        .flat_map(|&n| (0..args.num_runs).map(move |r| (n, r)))
        .collect();
    let pb = progress(jobs.len(), &format!("{} training sets", args.dataset));
    let (mut written, mut skipped) = (0, 0);
    for (n, r) in jobs {
        let path = args.output_path(n, r);
        let source = main_path(&args.data_dir, &args.dataset);
        match write_derived(&path, &[&source], args.force, || {
            build_train_file(&main, &args, n, r)
        })? {
            WriteOutcome::Written => written += 1,
            WriteOutcome::Skipped => skipped += 1,
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    tracing::info!(
        "{}: {written} training files written, {skipped} skipped",
        args.dataset
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TrainSetsConfig;

    #[test]
    fn new_is_the_default_with_the_required_options() {
        let built = TrainSetsConfig::new("sst2", "somewhere", vec![4, 8]);
        let expected = TrainSetsConfig {
            dataset: "sst2".into(),
            num_train_examples: vec![4, 8],
            data_dir: "somewhere".into(),
            ..TrainSetsConfig::default()
        };
        assert_eq!(built, expected);
        assert_eq!(
            (built.num_runs, built.max_icl_demos, built.num_dev_examples),
            (5, 48, 48)
        );
    }
}
