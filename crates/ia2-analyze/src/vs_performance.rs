//! Similarity versus performance: each (key, N, run, method, variant) similarity joined with the without-ICL
//! accuracy and ECE of that same run's evaluation (never a run average), Pearson r per group, and a
//! Gaussian (MLE mean and covariance + 1e-6 I) per method with at least 3 points.

use crate::performance::EvalIndex;
use crate::select::GroupKey;
use crate::similarity::GroupSim;
use crate::stats::{Gaussian2, pearson};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One joined point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerfRow {
    pub key: GroupKey,
    /// `single-token` (T = 1) or `multi-token` (T > 1).
    pub group: String,
    pub n: usize,
    pub run: u32,
    pub method: String,
    pub variant: String,
    pub eval_dataset: String,
    /// Mean similarity of the run (over its examples).
    pub similarity: f64,
    pub accuracy: Option<f64>,
    pub accuracy_label_set: Option<f64>,
    pub ece: Option<f64>,
    pub ece_label: Option<f64>,
    pub eval_file: Option<PathBuf>,
}

/// Pearson r of one scatter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Correlation {
    /// `single-token`, `multi-token` or `all`.
    pub group: String,
    pub variant: String,
    pub points_accuracy: usize,
    pub r_accuracy: Option<f64>,
    pub points_ece: usize,
    pub r_ece: Option<f64>,
    /// Per method with ≥ 3 points: the Gaussian fit of (similarity, accuracy) and of (similarity, ECE).
    pub fits_accuracy: BTreeMap<String, Gaussian2>,
    pub fits_ece: BTreeMap<String, Gaussian2>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VsPerformance {
    pub rows: Vec<PerfRow>,
    pub correlations: Vec<Correlation>,
    /// Points without a matching evaluation result.
    pub unmatched: usize,
}

/// Contour levels (fractions of the peak density).
pub const CONTOUR_LEVELS: [f64; 3] = [0.5, 0.8, 0.95];

/// Joins every trained method's per-run similarity with its run's evaluation.
pub fn join(groups: &[GroupSim], index: &EvalIndex) -> VsPerformance {
    let mut rows = Vec::new();
    let mut unmatched = 0;
    for g in groups {
        // The group follows the trained T of the key (single-token: T = 1).
        let group = if g.key.num_generated_tokens > 1 {
            "multi-token"
        } else {
            "single-token"
        };
        for (variant, methods) in &g.variants {
            for (method, res) in methods {
                for (run, rs) in &res.runs {
                    let (Some(dir), Some(sim)) = (&rs.dir, rs.overall) else {
                        continue;
                    };
                    let ev = index.of(dir, &g.eval_dataset);
                    if ev.is_none() {
                        unmatched += 1;
                    }
                    rows.push(PerfRow {
                        key: g.key.clone(),
                        group: group.to_string(),
                        n: g.n,
                        run: *run,
                        method: method.clone(),
                        variant: variant.clone(),
                        eval_dataset: g.eval_dataset.clone(),
                        similarity: sim.mean,
                        accuracy: ev.and_then(|e| e.accuracy),
                        accuracy_label_set: ev.and_then(|e| e.accuracy_label_set),
                        ece: ev.and_then(|e| e.ece),
                        ece_label: ev.and_then(|e| e.ece_label),
                        eval_file: ev.map(|e| e.path.clone()),
                    });
                }
            }
        }
    }
    let mut correlations = Vec::new();
    let variants: std::collections::BTreeSet<String> =
        rows.iter().map(|r| r.variant.clone()).collect();
    for group in ["single-token", "multi-token", "all"] {
        for variant in &variants {
            let sel: Vec<&PerfRow> = rows
                .iter()
                .filter(|r| &r.variant == variant && (group == "all" || r.group == group))
                .collect();
            if sel.is_empty() {
                continue;
            }
            let pts = |f: &dyn Fn(&PerfRow) -> Option<f64>| -> Vec<(String, f64, f64)> {
                sel.iter()
                    .filter_map(|r| f(r).map(|y| (r.method.clone(), r.similarity, y)))
                    .collect()
            };
            let acc = pts(&|r| r.accuracy);
            let ece = pts(&|r| r.ece);
            let r_of = |p: &[(String, f64, f64)]| {
                let x: Vec<f64> = p.iter().map(|q| q.1).collect();
                let y: Vec<f64> = p.iter().map(|q| q.2).collect();
                pearson(&x, &y)
            };
            let fits = |p: &[(String, f64, f64)]| {
                let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
                for (m, x, y) in p {
                    by.entry(m.clone()).or_default().push((*x, *y));
                }
                by.into_iter()
                    .filter(|(_, v)| v.len() >= 3)
                    .filter_map(|(m, v)| Gaussian2::fit(&v).map(|g| (m, g)))
                    .collect()
            };
            correlations.push(Correlation {
                group: group.to_string(),
                variant: variant.clone(),
                points_accuracy: acc.len(),
                r_accuracy: r_of(&acc),
                points_ece: ece.len(),
                r_ece: r_of(&ece),
                fits_accuracy: fits(&acc),
                fits_ece: fits(&ece),
            });
        }
    }
    VsPerformance {
        rows,
        correlations,
        unmatched,
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or(String::new(), |v| format!("{v}"))
}

/// `similarity_vs_performance.csv` (atomically).
pub fn write_csv(vs: &VsPerformance, path: &Path) -> Result<()> {
    let mut s = String::from(
        "model,trained_dataset,T,adapter,group,N,run,method,variant,eval_dataset,similarity,accuracy,accuracy_label_set,ece,ece_label,eval_file\n",
    );
    for r in &vs.rows {
        let fields = [
            csv_field(&r.key.model_name),
            csv_field(&r.key.trained_dataset),
            r.key.num_generated_tokens.to_string(),
            csv_field(&r.key.adapter),
            r.group.clone(),
            r.n.to_string(),
            r.run.to_string(),
            csv_field(&r.method),
            r.variant.clone(),
            csv_field(&r.eval_dataset),
            format!("{}", r.similarity),
            opt(r.accuracy),
            opt(r.accuracy_label_set),
            opt(r.ece),
            opt(r.ece_label),
            csv_field(
                &r.eval_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
        ];
        s.push_str(&fields.join(","));
        s.push('\n');
    }
    ia2_data::io::write_atomic(path, s.as_bytes())
}
