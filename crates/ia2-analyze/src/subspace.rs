//! LoRA subspace overlap (analysis.md, "LoRA subspace overlap").
//!
//! For every (key, N, run) and the selected hyper-parameters of tok, act, tna and a2t: per layer and projection,
//! the orthonormal basis U of col(lora_B) (the first r left singular vectors of B `[d_out, r]`, computed in f64)
//! and the overlap `‖U1ᵀU2‖²_F / r` for the six method pairs. A B that is (near) zero or rank-deficient has no
//! meaningful basis: its effective rank is reported, and every overlap it takes part in is excluded from the
//! means (and counted).

use crate::linalg::{Basis, RankTolerance, overlap};
use crate::select::{self, GroupKey, Selected, SelectionConfig};
use crate::stats::MeanStd;
use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// The six pairs, in the paper's order.
pub const PAIRS: [(&str, &str); 6] = [
    ("tok", "act"),
    ("tok", "tna"),
    ("tok", "a2t"),
    ("act", "tna"),
    ("act", "a2t"),
    ("tna", "a2t"),
];

/// Display name of a method, as the paper writes it.
pub fn method_label(method: &str) -> &str {
    match method {
        "tok" => "SFT only",
        "act" => "IA2 only",
        "a2t" => "IA2 → SFT",
        "tna" => "IA2 + SFT",
        "tokl" => "SFT (distribution)",
        "t2a" => "SFT → IA2",
        other => other,
    }
}

/// `"SFT only vs IA2 only"` etc.
pub fn pair_label(a: &str, b: &str) -> String {
    format!("{} vs {}", method_label(a), method_label(b))
}

/// `tok-act` etc.
pub fn pair_id(a: &str, b: &str) -> String {
    format!("{a}-{b}")
}

/// Configuration of `ia2 analyze subspace`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubspaceConfig {
    pub selection: SelectionConfig,
    pub tolerance: RankTolerance,
    /// Where `subspace.json` and the plots go.
    pub out_dir: PathBuf,
    /// Draw the plots.
    pub plots: bool,
}

impl Default for SubspaceConfig {
    fn default() -> Self {
        SubspaceConfig {
            selection: SelectionConfig::default(),
            tolerance: RankTolerance::default(),
            out_dir: PathBuf::from("outputs/analysis"),
            plots: true,
        }
    }
}

/// The LoRA B bases of one adapter, by (layer, projection).
#[derive(Debug, Clone)]
pub struct AdapterBases {
    pub dir: PathBuf,
    pub sites: BTreeMap<(usize, String), Basis>,
}

/// `base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight` → (3, "q_proj").
fn site_of(key: &str) -> Option<(usize, String)> {
    let stem = key.strip_suffix(".lora_B.weight")?;
    let after = &stem[stem.find("layers.")? + "layers.".len()..];
    let (idx, rest) = after.split_once('.')?;
    let layer = idx.parse().ok()?;
    let proj = rest.rsplit('.').next()?.to_string();
    Some((layer, proj))
}

fn to_f32(view: &safetensors::tensor::TensorView<'_>, key: &str, file: &Path) -> Result<Vec<f32>> {
    use safetensors::Dtype;
    let d = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => bail!(
            "{}: {key} has dtype {other:?}, expected a float type",
            file.display()
        ),
    })
}

/// Reads every `lora_B` of the PEFT adapter in `dir` and computes its basis. A non-LoRA adapter (or a
/// directory without one) is an error naming it.
pub fn load_bases(dir: &Path, tol: RankTolerance) -> Result<AdapterBases> {
    let cfg_path = dir.join(ia2_adapters::CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("adapter {}: reading {}", dir.display(), cfg_path.display()))?;
    let cfg: Value = serde_json::from_str(&text)
        .with_context(|| format!("adapter {}: parsing {}", dir.display(), cfg_path.display()))?;
    let peft_type = cfg.get("peft_type").and_then(Value::as_str).unwrap_or("");
    if peft_type != "LORA" {
        bail!(
            "adapter {} is a {} adapter, not LoRA: subspace overlap needs LoRA adapters (lora_B matrices)",
            dir.display(),
            if peft_type.is_empty() {
                "(no peft_type)"
            } else {
                peft_type
            }
        );
    }
    let wpath = dir.join(ia2_adapters::WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath)
        .with_context(|| format!("adapter {}: reading {}", dir.display(), wpath.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file: {e}", wpath.display()))?;
    let mut sites = BTreeMap::new();
    for (key, view) in st.tensors() {
        let Some(site) = site_of(&key) else {
            continue;
        };
        let shape = view.shape();
        ensure!(
            shape.len() == 2,
            "{}: {key} has shape {shape:?}, expected [d_out, r]",
            wpath.display()
        );
        let data = to_f32(&view, &key, &wpath)?;
        sites.insert(site, Basis::of(&data, shape[0], shape[1], tol));
    }
    ensure!(
        !sites.is_empty(),
        "adapter {}: {} holds no lora_B tensors",
        dir.display(),
        wpath.display()
    );
    Ok(AdapterBases {
        dir: dir.to_path_buf(),
        sites,
    })
}

/// The overlap at one (layer, projection).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteOverlap {
    pub layer: usize,
    pub proj: String,
    /// `None` when excluded.
    pub overlap: Option<f64>,
    pub effective_rank: [usize; 2],
    pub rank: [usize; 2],
    pub excluded: Option<String>,
}

/// Two adapters compared site by site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub sites: Vec<SiteOverlap>,
    /// Mean over the sites that were not excluded.
    pub mean: Option<f64>,
    pub used: usize,
    pub excluded: usize,
    /// Per projection: mean over its layers.
    pub per_projection: BTreeMap<String, f64>,
}

/// Compares the bases of two adapters at every site they share (sites only one of them adapts are
/// excluded and counted).
pub fn compare(a: &AdapterBases, b: &AdapterBases) -> Comparison {
    let mut sites = Vec::new();
    let all: std::collections::BTreeSet<&(usize, String)> =
        a.sites.keys().chain(b.sites.keys()).collect();
    for site in all {
        let (x, y) = (a.sites.get(site), b.sites.get(site));
        let (overlap_v, excluded) = match (x, y) {
            (Some(x), Some(y)) if x.u.nrows() != y.u.nrows() => (
                None,
                Some(format!(
                    "d_out differs ({} vs {})",
                    x.u.nrows(),
                    y.u.nrows()
                )),
            ),
            (Some(x), Some(y)) if x.near_zero() || y.near_zero() => {
                (None, Some("near-zero B".to_string()))
            }
            (Some(x), Some(y)) if x.flagged() || y.flagged() => {
                (None, Some("rank-deficient B".to_string()))
            }
            (Some(x), Some(y)) => (Some(overlap(x, y)), None),
            _ => (None, Some("adapted by only one of the two".to_string())),
        };
        sites.push(SiteOverlap {
            layer: site.0,
            proj: site.1.clone(),
            overlap: overlap_v,
            effective_rank: [
                x.map_or(0, |b| b.effective_rank),
                y.map_or(0, |b| b.effective_rank),
            ],
            rank: [x.map_or(0, |b| b.rank), y.map_or(0, |b| b.rank)],
            excluded,
        });
    }
    let used: Vec<f64> = sites.iter().filter_map(|s| s.overlap).collect();
    let mut by_proj: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in &sites {
        if let Some(o) = s.overlap {
            by_proj.entry(s.proj.clone()).or_default().push(o);
        }
    }
    Comparison {
        mean: MeanStd::of(&used).map(|m| m.mean),
        used: used.len(),
        excluded: sites.len() - used.len(),
        per_projection: by_proj
            .into_iter()
            .map(|(p, v)| (p, v.iter().sum::<f64>() / v.len() as f64))
            .collect(),
        sites,
    }
}

/// One pair in one (key, N, run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPair {
    pub run: u32,
    pub dirs: [PathBuf; 2],
    pub mean: Option<f64>,
    pub used_sites: usize,
    pub excluded_sites: usize,
    pub per_projection: BTreeMap<String, f64>,
    /// Per (layer, projection) values.
    pub sites: Vec<SiteOverlap>,
}

/// One pair in one (key, N).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairResult {
    pub pair: String,
    pub label: String,
    pub runs: Vec<RunPair>,
    /// Mean ± population std over runs of the per-run means.
    pub overall: Option<MeanStd>,
    /// Per projection: mean ± std over (layer, run).
    pub per_projection: BTreeMap<String, MeanStd>,
    pub excluded_sites: usize,
    /// Runs without a usable site (all excluded).
    pub runs_without_value: usize,
}

/// Effective rank of one adapter site that was flagged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flagged {
    pub method: String,
    pub run: u32,
    pub dir: PathBuf,
    pub layer: usize,
    pub proj: String,
    pub effective_rank: usize,
    pub rank: usize,
    pub sigma_max: f64,
}

/// One (key, N).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupResult {
    pub key: GroupKey,
    pub n: usize,
    /// Method → selected hyper-parameter point.
    pub selected_hp: BTreeMap<String, String>,
    /// Method → where the selection came from (`ia2_report::select (...)` or run directories).
    pub selection_source: BTreeMap<String, String>,
    pub pairs: Vec<PairResult>,
    pub skipped_pairs: Vec<String>,
    /// Effective rank summary per method: min and max over its sites and runs.
    pub effective_rank: BTreeMap<String, [usize; 2]>,
    pub flagged: Vec<Flagged>,
}

/// `subspace.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubspaceReport {
    pub config: SubspaceConfig,
    pub hp_selection: String,
    pub groups: Vec<GroupResult>,
    /// Pooled over keys: pair → N → mean ± std over (key, run) per-run means.
    pub aggregate: BTreeMap<String, BTreeMap<usize, MeanStd>>,
    /// Pair → every per-run mean (all keys and N), for box and violin plots.
    pub per_run_values: BTreeMap<String, Vec<f64>>,
    pub flagged_sites: usize,
    pub messages: Vec<String>,
}

/// Computes the overlaps of one (key, N) from its selected methods.
pub fn analyze_group(
    key: &GroupKey,
    n: usize,
    methods: &BTreeMap<String, &Selected>,
    tol: RankTolerance,
    messages: &mut Vec<String>,
) -> Result<GroupResult> {
    // Bases per method and run (loaded once).
    let mut bases: BTreeMap<(String, u32), AdapterBases> = BTreeMap::new();
    let mut flagged = Vec::new();
    let mut eff: BTreeMap<String, [usize; 2]> = BTreeMap::new();
    // Pairs are of objectives: `tok` is `tok` (LoRA) or `ia3-tok` etc. (a key holds one adapter kind).
    let objective = |m: &str| m.rsplit('-').next().unwrap_or(m).to_string();
    let by_objective: BTreeMap<String, (&String, &Selected)> = methods
        .iter()
        .map(|(m, s)| (objective(m), (m, *s)))
        .collect();
    for (m, sel) in methods {
        let o = objective(m);
        if !PAIRS.iter().any(|(a, b)| *a == o || *b == o) {
            continue;
        }
        for (run, info) in &sel.runs {
            let b = load_bases(&info.dir, tol)?;
            for ((layer, proj), basis) in &b.sites {
                let e = eff.entry(m.clone()).or_insert([usize::MAX, 0]);
                e[0] = e[0].min(basis.effective_rank);
                e[1] = e[1].max(basis.effective_rank);
                if basis.flagged() {
                    flagged.push(Flagged {
                        method: m.clone(),
                        run: *run,
                        dir: info.dir.clone(),
                        layer: *layer,
                        proj: proj.clone(),
                        effective_rank: basis.effective_rank,
                        rank: basis.rank,
                        sigma_max: basis.sigma_max(),
                    });
                }
            }
            bases.insert((m.clone(), *run), b);
        }
    }
    if !flagged.is_empty() {
        warn!(
            key = %key,
            n,
            count = flagged.len(),
            "near-zero or rank-deficient lora_B matrices: excluded from the means"
        );
    }
    let mut pairs = Vec::new();
    let mut skipped = Vec::new();
    for (a, b) in PAIRS {
        let missing: Vec<&str> = [a, b]
            .into_iter()
            .filter(|m| !by_objective.contains_key(*m))
            .collect();
        if !missing.is_empty() {
            let msg = format!(
                "{key} N={n}: pair {a}-{b} skipped: no selected {} runs",
                missing.join(", ")
            );
            info!("{msg}");
            messages.push(msg.clone());
            skipped.push(msg);
            continue;
        }
        let ((ma, sa), (mb, sb)) = (by_objective[a], by_objective[b]);
        let mut runs = Vec::new();
        for (run, ia) in &sa.runs {
            let Some(ib) = sb.runs.get(run) else {
                messages.push(format!(
                    "{key} N={n}: {a}-{b}: run {run} has no {b} adapter"
                ));
                continue;
            };
            let c = compare(&bases[&(ma.clone(), *run)], &bases[&(mb.clone(), *run)]);
            runs.push(RunPair {
                run: *run,
                dirs: [ia.dir.clone(), ib.dir.clone()],
                mean: c.mean,
                used_sites: c.used,
                excluded_sites: c.excluded,
                per_projection: c.per_projection,
                sites: c.sites,
            });
        }
        if runs.is_empty() {
            let msg = format!("{key} N={n}: pair {a}-{b} skipped: no run has both adapters");
            messages.push(msg.clone());
            skipped.push(msg);
            continue;
        }
        let means: Vec<f64> = runs.iter().filter_map(|r| r.mean).collect();
        let mut by_proj: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &runs {
            for s in &r.sites {
                if let Some(o) = s.overlap {
                    by_proj.entry(s.proj.clone()).or_default().push(o);
                }
            }
        }
        pairs.push(PairResult {
            pair: pair_id(a, b),
            label: pair_label(a, b),
            overall: MeanStd::of(&means),
            per_projection: by_proj
                .iter()
                .filter_map(|(p, v)| MeanStd::of(v).map(|m| (p.clone(), m)))
                .collect(),
            excluded_sites: runs.iter().map(|r| r.excluded_sites).sum(),
            runs_without_value: runs.iter().filter(|r| r.mean.is_none()).count(),
            runs,
        });
    }
    Ok(GroupResult {
        key: key.clone(),
        n,
        selected_hp: methods
            .iter()
            .map(|(m, s)| (m.clone(), s.hp.clone()))
            .collect(),
        selection_source: methods
            .iter()
            .map(|(m, s)| (m.clone(), s.source.clone()))
            .collect(),
        pairs,
        skipped_pairs: skipped,
        effective_rank: eff,
        flagged,
    })
}

/// Pair → N → mean ± std.
type PerPairN = BTreeMap<String, BTreeMap<usize, MeanStd>>;

/// Pools the groups' per-run means per pair and N.
fn aggregate(groups: &[GroupResult]) -> (PerPairN, BTreeMap<String, Vec<f64>>) {
    let mut per_n: BTreeMap<String, BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for g in groups {
        for p in &g.pairs {
            for r in &p.runs {
                if let Some(m) = r.mean {
                    per_n
                        .entry(p.pair.clone())
                        .or_default()
                        .entry(g.n)
                        .or_default()
                        .push(m);
                    all.entry(p.pair.clone()).or_default().push(m);
                }
            }
        }
    }
    let agg = per_n
        .into_iter()
        .map(|(p, ns)| {
            (
                p,
                ns.into_iter()
                    .filter_map(|(n, v)| MeanStd::of(&v).map(|m| (n, m)))
                    .collect(),
            )
        })
        .collect();
    (agg, all)
}

/// `ia2 analyze subspace`: selection, overlaps, `subspace.json` and the plots under `cfg.out_dir`.
pub fn run(cfg: &SubspaceConfig) -> Result<SubspaceReport> {
    let sel_cfg = cfg.selection.clone();
    let accuracy = crate::performance::accuracy_lookup(&sel_cfg.outputs);
    let (selected, selection_messages) = select::select(&sel_cfg, &|r| accuracy(r))?;
    if selected.is_empty() {
        bail!(
            "no finished runs of {} under {}",
            sel_cfg.methods.join(", "),
            sel_cfg.outputs.display()
        );
    }
    let mut messages = selection_messages;
    let mut groups = Vec::new();
    for ((key, n), methods) in select::by_group(&selected) {
        groups.push(analyze_group(
            &key,
            n,
            &methods,
            cfg.tolerance,
            &mut messages,
        )?);
    }
    let (aggregate, per_run_values) = aggregate(&groups);
    let report = SubspaceReport {
        config: cfg.clone(),
        hp_selection: cfg.selection.hp_selection.to_string(),
        flagged_sites: groups.iter().map(|g| g.flagged.len()).sum(),
        groups,
        aggregate,
        per_run_values,
        messages,
    };
    std::fs::create_dir_all(&cfg.out_dir)
        .with_context(|| format!("creating {}", cfg.out_dir.display()))?;
    ia2_data::io::write_json_atomic(&cfg.out_dir.join("subspace.json"), &report)?;
    if cfg.plots {
        crate::plots::subspace_plots(&report, &cfg.out_dir)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_b_keys_name_their_site() {
        assert_eq!(
            site_of("base_model.model.model.layers.12.self_attn.q_proj.lora_B.weight"),
            Some((12, "q_proj".into()))
        );
        assert_eq!(
            site_of("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"),
            Some((0, "down_proj".into()))
        );
        assert_eq!(
            site_of("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"),
            None
        );
    }
}
