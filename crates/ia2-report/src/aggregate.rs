//! Aggregation over runs at the selected hyper-parameter point of each (key, N): per metric the mean, the
//! population std (ddof 0), the per-run values and a seeded percentile-bootstrap 95 % interval over runs;
//! and, for every trained method, a paired comparison with SFT (the `tok` method of the same adapter and
//! setting) on the same runs and the same examples.
//!
//! Paired comparison (without-ICL accuracy, the mode adapters are used in):
//! - the difference method − SFT in accuracy points per common run, its mean, and a percentile-bootstrap
//!   95 % interval of that mean over runs (runs resampled with replacement, seeded);
//! - an exact two-sided sign test (McNemar's exact test) on the discordant examples pooled over the common
//!   runs: b = examples only the method gets right, c = only SFT; p = P(|X − (b+c)/2| ≥ |b − (b+c)/2|) for
//!   X ~ Binomial(b + c, ½). Examples are matched by run and example `idx`.
//!
//! A (key, N) with fewer runs than other points of the same setting is listed as a [`Problem`]
//! (`missing_runs`); a key with one run has std 0 and [`Aggregate::single_run`] set.

use crate::select::EvalKey;
use crate::select::{HpPoint, HpSelection, Loaded, Problem, ResultEntry, Selection, select};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Aggregation settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AggregateConfig {
    pub selection: HpSelection,
    /// Bootstrap resamples (0: no intervals).
    pub bootstrap_resamples: usize,
    /// Seed of every bootstrap.
    pub seed: u64,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            selection: HpSelection::DevLoss,
            bootstrap_resamples: 2000,
            seed: 0,
        }
    }
}

/// Statistics of one metric over runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricStats {
    pub mean: f64,
    /// Population std (ddof 0); 0 for a single run.
    pub std: f64,
    /// Per-run values, in run order.
    pub values: Vec<f64>,
    pub runs: Vec<u32>,
    /// Percentile-bootstrap 95 % interval of the mean over runs (`None` with fewer than 2 runs).
    pub ci95: Option<(f64, f64)>,
}

/// One (key, N) at its selected hyper-parameter point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Aggregate {
    pub key: EvalKey,
    pub n: usize,
    pub selection: HpSelection,
    pub hp: HpPoint,
    /// Mean best dev loss of the selected point (trained methods).
    pub mean_dev_loss: Option<f64>,
    pub runs: Vec<u32>,
    pub single_run: bool,
    /// Runs other points of the same (setting, N) have but this one lacks.
    pub missing_runs: Vec<u32>,
    pub metrics: BTreeMap<String, MetricStats>,
    pub result_files: Vec<PathBuf>,
    pub run_dirs: Vec<PathBuf>,
    pub selection_note: Option<String>,
}

impl Aggregate {
    pub fn metric(&self, name: &str) -> Option<&MetricStats> {
        self.metrics.get(name)
    }
}

/// A method against SFT on the same runs and examples (see the module notes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairedComparison {
    pub key: EvalKey,
    pub n: usize,
    /// The SFT key compared with.
    pub reference: EvalKey,
    pub metric: String,
    pub common_runs: Vec<u32>,
    /// Per common run: method − SFT, accuracy points.
    pub differences: Vec<f64>,
    pub mean_difference: f64,
    pub ci95: Option<(f64, f64)>,
    /// Examples compared (pairs matched by run and idx).
    pub paired_examples: usize,
    /// Only the method correct.
    pub method_only: usize,
    /// Only SFT correct.
    pub reference_only: usize,
    /// Exact two-sided sign test on the discordant pairs.
    pub p_value: f64,
}

/// Everything aggregated.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Aggregated {
    pub aggregates: Vec<Aggregate>,
    pub selections: Vec<Selection>,
    pub comparisons: Vec<PairedComparison>,
    pub problems: Vec<Problem>,
}

/// Mean and population std (ddof 0): the evaluation's own.
pub use ia2_eval::metrics::mean_std;

/// Percentile-bootstrap 95 % interval of the mean of `values` (`resamples` resamples with replacement,
/// seeded); `None` with fewer than 2 values or 0 resamples.
pub fn bootstrap_ci(values: &[f64], resamples: usize, seed: u64) -> Option<(f64, f64)> {
    if values.len() < 2 || resamples == 0 {
        return None;
    }
    let mut rng = ia2_rng::Generator::new(seed);
    let n = values.len();
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| values[rng.random_interval(n as u64 - 1) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let q = |p: f64| {
        // Linear interpolation between order statistics (numpy's default percentile).
        let pos = p * (means.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        means[lo] + (means[hi] - means[lo]) * (pos - lo as f64)
    };
    Some((q(0.025), q(0.975)))
}

/// Exact two-sided sign test: P(X as or more extreme than `b`) for X ~ Binomial(b + c, ½).
pub fn sign_test(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // log C(n, k) - n log 2, summed over the tail k <= min(b, c), doubled.
    let k = b.min(c);
    let ln_fact = |m: usize| (1..=m).map(|i| (i as f64).ln()).sum::<f64>();
    let lf_n = ln_fact(n);
    let tail: f64 = (0..=k)
        .map(|i| (lf_n - ln_fact(i) - ln_fact(n - i) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

/// A seed per (key, N, metric), so every interval is reproducible and independent of the others' order.
fn sub_seed(seed: u64, parts: &str) -> u64 {
    // FNV-1a over the label, mixed with the seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in parts.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Statistics of every metric over `entries` (one per run).
pub fn metric_stats(
    entries: &[&ResultEntry],
    cfg: &AggregateConfig,
    label: &str,
) -> BTreeMap<String, MetricStats> {
    let names: BTreeSet<&String> = entries.iter().flat_map(|e| e.metrics.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (runs, values): (Vec<u32>, Vec<f64>) = entries
                .iter()
                .filter_map(|e| Some((e.run, *e.metrics.get(name)?)))
                .unzip();
            let (mean, std) = mean_std(&values)?;
            let ci95 = bootstrap_ci(
                &values,
                cfg.bootstrap_resamples,
                sub_seed(cfg.seed, &format!("{label}/{name}")),
            );
            Some((
                name.clone(),
                MetricStats {
                    mean,
                    std,
                    values,
                    runs,
                    ci95,
                },
            ))
        })
        .collect()
}

/// The SFT key a method is compared with: the same key with method `{adapter prefix}tok`; its label type is
/// the method's own when it has one, else `icl_outputs` (the paper's setting) or the only one present.
fn reference_key(key: &EvalKey, present: &BTreeSet<&EvalKey>) -> Option<EvalKey> {
    if key.is_base() || key.objective() == "tok" {
        return None;
    }
    let prefix = key
        .method
        .strip_suffix(&key.objective())
        .unwrap_or_default()
        .to_string();
    let mut r = key.clone();
    r.method = format!("{prefix}tok");
    r.method_settings = String::new();
    let labels: Vec<Option<String>> = match &key.label_type {
        Some(l) => vec![Some(l.clone())],
        None => vec![
            Some("icl_outputs".into()),
            Some("ground_truth".into()),
            None,
        ],
    };
    labels.into_iter().find_map(|l| {
        let mut c = r.clone();
        c.label_type = l;
        present.contains(&c).then_some(c)
    })
}

fn compare(
    key: &EvalKey,
    n: usize,
    reference: &EvalKey,
    mine: &[&ResultEntry],
    theirs: &[&ResultEntry],
    cfg: &AggregateConfig,
) -> Option<PairedComparison> {
    let metric = "without_icl_accuracy";
    let by_run: BTreeMap<u32, &ResultEntry> = theirs.iter().map(|e| (e.run, *e)).collect();
    let mut common_runs = Vec::new();
    let mut differences = Vec::new();
    let (mut paired, mut b, mut c) = (0, 0, 0);
    for e in mine {
        let Some(r) = by_run.get(&e.run) else {
            continue;
        };
        let (Some(x), Some(y)) = (e.metrics.get(metric), r.metrics.get(metric)) else {
            continue;
        };
        common_runs.push(e.run);
        differences.push(x - y);
        let theirs_by_idx: BTreeMap<usize, bool> =
            r.without_icl.iter().map(|o| (o.idx, o.correct)).collect();
        for o in &e.without_icl {
            if let Some(&rc) = theirs_by_idx.get(&o.idx) {
                paired += 1;
                match (o.correct, rc) {
                    (true, false) => b += 1,
                    (false, true) => c += 1,
                    _ => {}
                }
            }
        }
    }
    let (mean_difference, _) = mean_std(&differences)?;
    let ci95 = bootstrap_ci(
        &differences,
        cfg.bootstrap_resamples,
        sub_seed(cfg.seed, &format!("{}/N{n}/paired", key.label())),
    );
    Some(PairedComparison {
        key: key.clone(),
        n,
        reference: reference.clone(),
        metric: metric.into(),
        common_runs,
        differences,
        mean_difference,
        ci95,
        paired_examples: paired,
        method_only: b,
        reference_only: c,
        p_value: sign_test(b, c),
    })
}

/// Selection ([`select`]), then aggregation of the selected point of every (key, N), missing-run checks and
/// paired comparisons with SFT. `loaded.problems` are carried over.
pub fn aggregate(loaded: &Loaded, cfg: &AggregateConfig) -> Aggregated {
    let entries = &loaded.entries;
    let (selections, mut problems) = select(entries, cfg.selection);
    problems.splice(0..0, loaded.problems.iter().cloned());
    // Runs expected per (setting, trained dataset, N): the union over all methods and points.
    let mut expected: BTreeMap<(String, usize), BTreeSet<u32>> = BTreeMap::new();
    let setting_id = |k: &EvalKey| format!("{:?}|{:?}|{:?}", k.setting(), k.trained, k.train_t);
    for e in entries {
        expected
            .entry((setting_id(&e.key), e.n))
            .or_default()
            .insert(e.run);
    }
    let mut aggregates = Vec::new();
    let mut chosen: BTreeMap<(EvalKey, usize), Vec<&ResultEntry>> = BTreeMap::new();
    for s in &selections {
        let c = s.chosen();
        let es: Vec<&ResultEntry> = c.entries.iter().map(|&i| &entries[i]).collect();
        let label = format!("{}/N{}", s.key.label(), s.n);
        let runs: Vec<u32> = c.runs.clone();
        let missing: Vec<u32> = expected
            .get(&(setting_id(&s.key), s.n))
            .map(|all| all.iter().filter(|r| !runs.contains(r)).copied().collect())
            .unwrap_or_default();
        if !missing.is_empty() {
            problems.push(Problem::new(
                "missing_runs",
                s.key.label(),
                format!(
                    "N={} {}: runs {:?} have results for other methods or points but not here; aggregated over runs {:?} only",
                    s.n, s.selected, missing, runs
                ),
            ));
        }
        aggregates.push(Aggregate {
            key: s.key.clone(),
            n: s.n,
            selection: s.criterion,
            hp: s.selected,
            mean_dev_loss: c.mean_dev_loss,
            single_run: runs.len() == 1,
            missing_runs: missing,
            metrics: metric_stats(&es, cfg, &label),
            result_files: es.iter().map(|e| e.path.clone()).collect(),
            run_dirs: es.iter().filter_map(|e| e.run_dir.clone()).collect(),
            runs,
            selection_note: s.note.clone(),
        });
        chosen.insert((s.key.clone(), s.n), es);
    }
    let present: BTreeSet<&EvalKey> = chosen.keys().map(|(k, _)| k).collect();
    let mut comparisons = Vec::new();
    for ((key, n), mine) in &chosen {
        let Some(reference) = reference_key(key, &present) else {
            continue;
        };
        if let Some(theirs) = chosen.get(&(reference.clone(), *n))
            && let Some(c) = compare(key, *n, &reference, mine, theirs, cfg)
        {
            comparisons.push(c);
        }
    }
    Aggregated {
        aggregates,
        selections,
        comparisons,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_std_and_single_value() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(m, 2.5);
        assert!((s - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[7.0]), Some((7.0, 0.0)));
        assert_eq!(mean_std(&[]), None);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let v = [1.0, 5.0, 3.0, 8.0, 2.0];
        let a = bootstrap_ci(&v, 500, 3).unwrap();
        assert_eq!(a, bootstrap_ci(&v, 500, 3).unwrap());
        assert!(
            a.0 <= 3.8 && 3.8 <= a.1 && a.0 >= 1.0 && a.1 <= 8.0,
            "{a:?}"
        );
        assert_eq!(bootstrap_ci(&[1.0], 500, 3), None);
        assert_eq!(bootstrap_ci(&[2.0, 2.0], 100, 1), Some((2.0, 2.0)));
    }

    #[test]
    fn sign_test_matches_binomial_tails() {
        // b=0, c=5: 2 * 0.5^5 = 0.0625.
        assert!((sign_test(0, 5) - 0.0625).abs() < 1e-12);
        // b=1, c=9: 2 * (1 + 10) / 1024.
        assert!((sign_test(9, 1) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(sign_test(3, 3), 1.0);
        assert_eq!(sign_test(0, 0), 1.0);
    }
}
