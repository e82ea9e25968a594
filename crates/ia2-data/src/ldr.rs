//! `ia2 data ldr`: low-data-regime (LDR) training sets, `data/<name>-ldr/train/{N}_{M}_{K}_{run}.json`.
//!
//! The seed reads these files (`train_unified.py --ldr_mode`) through the same loader as the stage-2 training
//! files (`train.examples`, `train.icl_demos[i]`, `dev.examples`, `dev.icl_demos[i]`) but ships no builder, so
//! the semantics are ours:
//!
//! * `RandomState(run).permutation(|train_examples|)` of `data/<name>/main.json`'s training pool gives, in order:
//!   the **N labelled demos**, the **M unlabelled training queries**, then `min(num_dev, M / 2)` dev queries
//!   (fewer if the pool runs out); the rest is `remaining_indices`. Demos and queries are therefore disjoint.
//! * The same generator then draws **P = min(K, N!) distinct orders** of the N demos: all N! orders (in
//!   lexicographic order, then shuffled) when `N! <= K`, else successive `permutation(N)` draws, repeats skipped.
//! * Query `j` (training or dev) is prompted with the N demos in order `j mod P`, so every query sees all N
//!   labelled demos and the orders are used evenly.
//! * Queries keep their `answer` (the seed's loader needs one); in LDR they are meant to be trained on ICL
//!   outputs, not on these labels.
//!
//! The file is a [`crate::splits::schema::TrainFile`] with `demo_type: "unique"` (one demo list per example) and a
//! `config` block recording the seed, N, M, K, P, the labelled pool positions and the P orders.

use crate::schema::{Example, MainFile};
use crate::splits::common::{WriteOutcome, load_main, main_path, progress, write_derived};
use crate::splits::sample::ldr_split;
use crate::splits::schema::{IclDemos, Split, TrainFile, render_demo};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The options of `ia2 data ldr` as plain data (`..Default::default()` for the rest; the flags are in the binary,
/// `crates/ia2/src/cli/data.rs`). Required flags default to empty here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdrConfig {
    /// Dataset name: reads `<data-dir>/<dataset>/main.json`, writes `<data-dir>/<dataset>-ldr/train/`.
    pub dataset: String,
    /// N: labelled demos.
    pub num_labelled: Vec<usize>,
    /// M: unlabelled training queries.
    pub num_unlabelled: Vec<usize>,
    /// K: maximum number of distinct demo orders.
    pub max_permutations: Vec<usize>,
    /// Number of runs; run r uses seed r.
    pub num_runs: u32,
    /// Cap on dev queries (also capped at M/2).
    pub num_dev_examples: usize,
    /// Root data directory.
    pub data_dir: PathBuf,
    /// Rebuild files that already exist.
    pub force: bool,
}

impl Default for LdrConfig {
    fn default() -> Self {
        LdrConfig {
            dataset: String::new(),
            num_labelled: Vec::new(),
            num_unlabelled: Vec::new(),
            max_permutations: vec![24],
            num_runs: 5,
            num_dev_examples: 48,
            data_dir: "data".into(),
            force: false,
        }
    }
}

/// `<data_dir>/<name>-ldr/train/{N}_{M}_{K}_{run}.json`.
pub fn ldr_file_path(
    data_dir: &Path,
    name: &str,
    n: usize,
    m: usize,
    k: usize,
    run: u32,
) -> PathBuf {
    data_dir
        .join(format!("{name}-ldr"))
        .join("train")
        .join(format!("{n}_{m}_{k}_{run}.json"))
}

fn check_sizes(name: &str, pool_len: usize, n: usize, m: usize, k: usize) -> Result<()> {
    if n == 0 {
        bail!("--num-labelled: LDR needs at least one labelled demo (N = 0)");
    }
    if k == 0 {
        bail!("--max-permutations: LDR needs at least one demo order (K = 0)");
    }
    if n.saturating_add(m) > pool_len {
        bail!(
            "--num-labelled / --num-unlabelled: N = {n} labelled + M = {m} unlabelled examples requested but \
             dataset {name:?} has only {pool_len} train_examples"
        );
    }
    Ok(())
}

/// Builds one LDR file (pure: no I/O).
pub fn build_ldr_file(
    main: &MainFile,
    name: &str,
    n: usize,
    m: usize,
    k: usize,
    num_dev: usize,
    run: u32,
) -> Result<TrainFile> {
    let pool = &main.train_examples;
    check_sizes(name, pool.len(), n, m, k)?;
    let s = ldr_split(pool.len(), n, m, k, num_dev, run);
    let demos: Vec<String> = s.labelled.iter().map(|&i| render_demo(&pool[i])).collect();
    let lists = |count: usize| -> Vec<Vec<String>> {
        (0..count)
            .map(|j| s.order_for(j).iter().map(|&p| demos[p].clone()).collect())
            .collect()
    };
    let pick = |ids: &[usize]| -> Vec<Example> { ids.iter().map(|&i| pool[i].clone()).collect() };
    let config = json!({
        "tool": "ia2 data ldr",
        "dataset": name,
        "seed": run,
        "num_labelled": n,
        "num_unlabelled": m,
        "max_permutations": k,
        "num_permutations": s.permutations.len(),
        "num_dev_examples": s.dev.len(),
        "pool_size": pool.len(),
        "labelled_idx": s.labelled,
        "permutations": s.permutations,
    });
    Ok(TrainFile {
        train: Some(Split {
            examples: pick(&s.queries),
            icl_demos: IclDemos::PerExample(lists(s.queries.len())),
        }),
        dev: Some(Split {
            examples: pick(&s.dev),
            icl_demos: IclDemos::PerExample(lists(s.dev.len())),
        }),
        remaining_indices: s.remaining,
        demo_type: Some("unique".to_string()),
        config: Some(config),
    })
}

pub fn run(args: LdrConfig) -> Result<()> {
    if !(1..=crate::train_sets::MAX_RUNS).contains(&args.num_runs) {
        bail!(
            "--num-runs must be between 1 and {} (got {})",
            crate::train_sets::MAX_RUNS,
            args.num_runs
        );
    }
    let main = load_main(&args.data_dir, &args.dataset)?;
    let mut jobs = Vec::new();
    for &n in &args.num_labelled {
        for &m in &args.num_unlabelled {
            for &k in &args.max_permutations {
                check_sizes(&args.dataset, main.train_examples.len(), n, m, k)?;
                jobs.extend((0..args.num_runs).map(|r| (n, m, k, r)));
            }
        }
    }
    let pb = progress(jobs.len(), &format!("{} LDR sets", args.dataset));
    let (mut written, mut skipped) = (0, 0);
    for (n, m, k, r) in jobs {
        let path = ldr_file_path(&args.data_dir, &args.dataset, n, m, k, r);
        let source = main_path(&args.data_dir, &args.dataset);
        match write_derived(&path, &[&source], args.force, || {
            build_ldr_file(&main, &args.dataset, n, m, k, args.num_dev_examples, r)
        })? {
            WriteOutcome::Written => written += 1,
            WriteOutcome::Skipped => skipped += 1,
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    tracing::info!(
        "{}: {written} LDR files written, {skipped} skipped",
        args.dataset
    );
    Ok(())
}
