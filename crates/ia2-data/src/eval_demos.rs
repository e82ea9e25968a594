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
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct EvalDemosArgs {
    /// Evaluation dataset: its `val_examples` are the queries.
    #[arg(long)]
    pub eval_dataset: String,
    /// Dataset whose held-out training pool supplies the demos.
    #[arg(long)]
    pub icl_source: String,
    /// Training-set sizes N whose `train/{N}_{run}.json` define the held-out pool.
    #[arg(long, num_args = 1.., required = true)]
    pub num_train_examples: Vec<usize>,
    /// Number of runs; run r uses seed r and `train/{N}_{r}.json`.
    #[arg(long, default_value_t = 5)]
    pub num_runs: u32,
    /// Requested demo counts (one file per count).
    #[arg(long, num_args = 1.., default_values_t = [48])]
    pub icl_max_demos: Vec<usize>,
    /// Do not cap the demo count at N-1.
    #[arg(long)]
    pub no_n_cap: bool,
    /// Root data directory.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Rebuild files that already exist.
    #[arg(long)]
    pub force: bool,
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
    args: &EvalDemosArgs,
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

pub fn run(args: EvalDemosArgs) -> Result<()> {
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
