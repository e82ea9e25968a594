//! `ia2 data eval-demos`: evaluation demo sets, `data/<eval>/val/<icl_source>/{N}_{run}_d{D}.json`.
//!
//! Semantics (the seed's `create_or_load_evaluation_dataset`): the demo pool is the ICL source's
//! `train_examples[remaining_indices]` of its training file `data/<icl_source>/train/{N}_{run}.json` (examples held
//! out from that run's train and dev). One `RandomState(run)` walks the evaluation dataset's `val_examples` in
//! order; each gets `choice(|pool|, D, replace=False)` demos, kept in sampled order and rendered
//! `question + answer`.
//!
//! `D = min(icl_max_demos, N - 1, |pool|)`, the cap at N-1 matching what the seed passes for trained models
//! (`--no-n-cap` drops it, as the seed does for base-model evaluation with ICL).
//!
//! **Difference from the seed (bug fix):** the seed caches under `{N}_{run}.json`, so two demo counts collide on
//! one file. Here the effective count `D` is part of the name: `{N}_{run}_d{D}.json`.
//!
//! Schema ([`crate::splits::schema::EvalDemosFile`]), readable by the seed's loader:
//! ```json
//! {"examples": [{idx, question, answer}, ...],          // eval val_examples, in order
//!  "icl_demos": [["<q><a>", ... D strings], ...],        // one list per example
//!  "config": {"eval_dataset": E, "icl_source": S, "icl_max_demos": D, "seed": run,
//!             "num_train_examples": N, "pool_size": |pool|}}
//! ```

use crate::schema::Example;
use crate::splits::common::{WriteOutcome, load_main, main_path, progress, write_derived};
use crate::splits::sample::eval_demo_positions;
use crate::splits::schema::{EvalDemosConfig, EvalDemosFile, TrainFile, render_demo};
use crate::train_sets::train_file_path;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The options of `ia2 data eval-demos` as plain data (`..Default::default()` for the rest; the flags are in the binary,
/// `crates/ia2/src/cli/data.rs`). Required flags default to empty here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalDemoSetsConfig {
    /// Evaluation dataset: its `val_examples` are the queries.
    pub eval_dataset: String,
    /// Dataset whose held-out training pool supplies the demos.
    pub icl_source: String,
    /// Training-set sizes N whose `train/{N}_{run}.json` define the held-out pool.
    pub num_train_examples: Vec<usize>,
    /// Number of runs; run r uses seed r and `train/{N}_{r}.json`.
    pub num_runs: u32,
    /// Requested demo counts (one file per count).
    pub icl_max_demos: Vec<usize>,
    /// Do not cap the demo count at N-1.
    pub no_n_cap: bool,
    /// Root data directory.
    pub data_dir: PathBuf,
    /// Rebuild files that already exist.
    pub force: bool,
}

impl Default for EvalDemoSetsConfig {
    fn default() -> Self {
        EvalDemoSetsConfig {
            eval_dataset: String::new(),
            icl_source: String::new(),
            num_train_examples: Vec::new(),
            num_runs: 5,
            icl_max_demos: vec![48],
            no_n_cap: false,
            data_dir: "data".into(),
            force: false,
        }
    }
}

/// `<data_dir>/<eval>/val/<icl_source>/{N}_{run}_d{D}.json`.
pub fn eval_demos_path(
    data_dir: &Path,
    eval: &str,
    icl_source: &str,
    n: usize,
    run: u32,
    d: usize,
) -> PathBuf {
    data_dir
        .join(eval)
        .join("val")
        .join(icl_source)
        .join(format!("{n}_{run}_d{d}.json"))
}

/// The effective demo count `min(requested, N - 1 unless no_n_cap, pool_len)`.
pub fn effective_demos(requested: usize, n: usize, no_n_cap: bool, pool_len: usize) -> usize {
    let capped = if no_n_cap {
        requested
    } else {
        requested.min(n.saturating_sub(1))
    };
    capped.min(pool_len)
}

/// Builds one evaluation demo set (pure: no I/O) from the eval examples and the demo pool.
pub fn build_eval_demos(
    eval_examples: &[Example],
    pool: &[Example],
    d: usize,
    run: u32,
    config: EvalDemosConfig,
) -> EvalDemosFile {
    let positions = eval_demo_positions(eval_examples.len(), pool.len(), d, run);
    EvalDemosFile {
        examples: eval_examples.to_vec(),
        icl_demos: positions
            .iter()
            .map(|l| l.iter().map(|&p| render_demo(&pool[p])).collect())
            .collect(),
        config,
    }
}

/// The held-out demo pool of `<icl_source>/train/{N}_{run}.json`.
fn load_pool(
    args: &EvalDemoSetsConfig,
    source_train: &[Example],
    n: usize,
    run: u32,
) -> Result<Vec<Example>> {
    let path = train_file_path(&args.data_dir, &args.icl_source, n, run, false, None);
    if !path.is_file() {
        bail!(
            "training file {} not found (run `ia2 data train-sets --dataset {} --num-train-examples {n}` first)",
            path.display(),
            args.icl_source
        );
    }
    let tf: TrainFile = crate::io::read_json(&path)?;
    tf.remaining_indices
        .iter()
        .map(|&i| {
            source_train.get(i).cloned().with_context(|| {
                format!(
                    "{}: remaining index {i} is outside {}'s {} train_examples",
                    path.display(),
                    args.icl_source,
                    source_train.len()
                )
            })
        })
        .collect()
}

pub fn run(args: EvalDemoSetsConfig) -> Result<()> {
    if args.num_train_examples.contains(&0) {
        bail!("--num-train-examples must be at least 1 (got 0)");
    }
    if !(1..=crate::train_sets::MAX_RUNS).contains(&args.num_runs) {
        bail!(
            "--num-runs must be between 1 and {} (got {})",
            crate::train_sets::MAX_RUNS,
            args.num_runs
        );
    }
    let eval_main = load_main(&args.data_dir, &args.eval_dataset)?;
    let source_main = load_main(&args.data_dir, &args.icl_source)?;
    if source_main.train_examples.is_empty() {
        bail!(
            "ICL source {:?} has no train_examples to draw demos from",
            args.icl_source
        );
    }
    let mut jobs: Vec<(usize, u32, usize)> = Vec::new();
    for &n in &args.num_train_examples {
        for r in 0..args.num_runs {
            jobs.extend(args.icl_max_demos.iter().map(|&d| (n, r, d)));
        }
    }
    let pb = progress(
        jobs.len(),
        &format!("{} eval demos from {}", args.eval_dataset, args.icl_source),
    );
    let (mut written, mut skipped) = (0, 0);
    let mut pool_cache: Option<((usize, u32), Vec<Example>)> = None;
    for (n, r, requested) in jobs {
        if pool_cache.as_ref().map(|(k, _)| *k) != Some((n, r)) {
            pool_cache = Some(((n, r), load_pool(&args, &source_main.train_examples, n, r)?));
        }
        let pool = &pool_cache.as_ref().expect("just filled").1;
        let d = effective_demos(requested, n, args.no_n_cap, pool.len());
        if d < requested.min(if args.no_n_cap {
            usize::MAX
        } else {
            n.saturating_sub(1)
        }) {
            tracing::warn!(
                "N = {n}, run {r}: only {} held-out examples, using {d} demos instead of {requested}",
                pool.len()
            );
        }
        let path = eval_demos_path(
            &args.data_dir,
            &args.eval_dataset,
            &args.icl_source,
            n,
            r,
            d,
        );
        let (eval_src, icl_src) = (
            main_path(&args.data_dir, &args.eval_dataset),
            main_path(&args.data_dir, &args.icl_source),
        );
        let outcome = write_derived(&path, &[&eval_src, &icl_src], args.force, || {
            let config = EvalDemosConfig {
                eval_dataset: args.eval_dataset.clone(),
                icl_source: args.icl_source.clone(),
                icl_max_demos: d,
                seed: r,
                num_train_examples: Some(n),
                pool_size: Some(pool.len()),
            };
            Ok(build_eval_demos(
                &eval_main.val_examples,
                pool,
                d,
                r,
                config,
            ))
        })?;
        match outcome {
            WriteOutcome::Written => written += 1,
            WriteOutcome::Skipped => skipped += 1,
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    tracing::info!(
        "{} <- {}: {written} evaluation demo files written, {skipped} skipped",
        args.eval_dataset,
        args.icl_source
    );
    Ok(())
}
