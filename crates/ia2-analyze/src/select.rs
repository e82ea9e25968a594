//! Which adapters the analyses compare: runs discovered under `outputs/{method}/{dataset}/{run}/`, grouped by
//! key (model, trained dataset, T, adapter settings) and N, and one hyper-parameter point per (key, N, method)
//! chosen as analysis.md's "Aggregation and hyper-parameter selection" defines it.
//!
//! [`select`] is the boundary the analyses code against. Where evaluation results exist, the choice is
//! `ia2_report::select`'s, the one `ia2 report` makes (`dev_loss`: lowest mean `best_dev_loss` over runs,
//! ties to the smaller point; `performance`: highest mean without-ICL accuracy, selected on the evaluation
//! set and labelled so): a (key, N, method) takes the runs of the point the report chose (the result of
//! an in-domain evaluation preferred when there are several). A (key, N, method) without any evaluation
//! result (e.g. subspace overlap before `ia2 eval`) falls back to the same rule applied to the run
//! directories' `final_loss_statistics.json`; [`Selected::source`] says which.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// How the hyper-parameter point of a (key, N, method) is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HpSelection {
    /// argmin over points of the mean `best_dev_loss` over runs (the honest default).
    #[default]
    DevLoss,
    /// argmax of the mean without-ICL accuracy (selects on the evaluation set).
    Performance,
}

impl fmt::Display for HpSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HpSelection::DevLoss => "dev_loss",
            HpSelection::Performance => "performance (selected on the evaluation set)",
        })
    }
}

/// What to select.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectionConfig {
    /// The training outputs root (`outputs/{method}/{dataset}/{run}/`).
    pub outputs: PathBuf,
    /// Methods to select (directory names), e.g. tok, act, tna, a2t.
    pub methods: Vec<String>,
    /// Trained datasets (empty: all found).
    pub trained_datasets: Vec<String>,
    /// Ns (empty: all found).
    pub num_train_examples: Vec<usize>,
    /// Only runs of this base model (`model_name` in training_config.json); `None`: all.
    pub model_name: Option<String>,
    /// Label type of tok / a2t / t2a runs (other methods have none that matters).
    pub label_type: String,
    pub hp_selection: HpSelection,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            outputs: PathBuf::from("outputs"),
            methods: ["tok", "act", "tna", "a2t"].map(String::from).to_vec(),
            trained_datasets: Vec::new(),
            num_train_examples: Vec::new(),
            model_name: None,
            label_type: "icl_outputs".into(),
            hp_selection: HpSelection::DevLoss,
        }
    }
}

/// Everything but N and the method that identifies comparable runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    pub model_name: String,
    pub trained_dataset: String,
    /// T (`num_generated_tokens`).
    pub num_generated_tokens: usize,
    /// Adapter settings, e.g. `lora qko r8 a8`.
    pub adapter: String,
}

impl GroupKey {
    /// A file-name-safe tag.
    pub fn tag(&self) -> String {
        sanitize(&format!(
            "{}_{}_T{}_{}",
            self.model_name, self.trained_dataset, self.num_generated_tokens, self.adapter
        ))
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} / {} / T={} / {}",
            self.model_name, self.trained_dataset, self.num_generated_tokens, self.adapter
        )
    }
}

/// File-name-safe version of `s`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+=".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// One finished run directory.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub dir: PathBuf,
    /// The directory name (unique within method and dataset).
    pub name: String,
    pub method: String,
    pub key: GroupKey,
    pub n: usize,
    pub run: u32,
    /// The hyper-parameter point, e.g. `lr=0.0001` or `lr=0.0001,w=0.5`.
    pub hp: String,
    pub label_type: Option<String>,
    pub best_dev_loss: Option<f64>,
    /// `ia2.base_model_fingerprint`, when recorded.
    pub base_model_fingerprint: Option<String>,
    #[serde(skip)]
    pub config: Value,
}

/// The selected runs of one (key, N, method).
#[derive(Debug, Clone, Serialize)]
pub struct Selected {
    pub key: GroupKey,
    pub n: usize,
    pub method: String,
    pub hp: String,
    /// The criterion value of the chosen point (mean dev loss or mean accuracy).
    pub criterion: Option<f64>,
    /// Points considered, with their criterion.
    pub candidates: BTreeMap<String, Option<f64>>,
    /// Runs of the chosen point by run index.
    pub runs: BTreeMap<u32, RunInfo>,
    /// `ia2_report::select (<key title>)` or `run directories (no evaluation results)`.
    pub source: String,
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn get_str(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn get_f64(v: &Value, k: &str) -> Option<f64> {
    match v.get(k)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn adapter_tag(method: &str, c: &Value) -> String {
    let kind = method.split_once('-').map_or("lora", |(k, _)| k);
    match kind {
        "ia3" => format!("ia3 {}", get_str(c, "ia3_type").unwrap_or_default()),
        "prompt" | "prefix" => format!(
            "{kind} v{}",
            get_str(c, "num_virtual_tokens").unwrap_or_default()
        ),
        _ => format!(
            "lora {} r{} a{}",
            get_str(c, "lora_type").unwrap_or_default(),
            get_str(c, "lora_r").unwrap_or_default(),
            get_str(c, "lora_alpha").unwrap_or_default()
        ),
    }
}

/// Reads one run directory; `Ok(None)` (with a reason) when it is not a finished run.
pub fn read_run(dir: &Path, method: &str) -> Result<std::result::Result<RunInfo, String>> {
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "training_config.json",
    ] {
        if !dir.join(f).is_file() {
            return Ok(Err(format!("{}: no {f}", dir.display())));
        }
    }
    let cpath = dir.join("training_config.json");
    let c = read_json(&cpath)?;
    if !c.is_object() {
        bail!("{}: expected a JSON object", cpath.display());
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let n = get_f64(&c, "num_train_examples")
        .or_else(|| get_f64(&c, "num_labelled_samples"))
        .with_context(|| format!("{}: no num_train_examples", cpath.display()))?
        as usize;
    let run =
        get_f64(&c, "run_idx").with_context(|| format!("{}: no run_idx", cpath.display()))? as u32;
    let lr = get_f64(&c, "lr").unwrap_or(f64::NAN);
    let objective = method.rsplit('-').next().unwrap_or(method);
    let hp = if objective == "tna" {
        format!(
            "lr={lr},w={}",
            get_f64(&c, "ce_loss_weight").unwrap_or(f64::NAN)
        )
    } else {
        format!("lr={lr}")
    };
    let stats = dir.join("final_loss_statistics.json");
    let best_dev_loss = if stats.is_file() {
        let s = read_json(&stats)?;
        if s.get("training_completed").and_then(Value::as_bool) == Some(false) {
            return Ok(Err(format!("{}: training not completed", dir.display())));
        }
        get_f64(&s, "best_dev_loss")
    } else {
        None
    };
    let key = GroupKey {
        model_name: get_str(&c, "model_name").unwrap_or_else(|| "unknown".into()),
        trained_dataset: get_str(&c, "dataset").unwrap_or_default(),
        num_generated_tokens: get_f64(&c, "num_generated_tokens").unwrap_or(1.0) as usize,
        adapter: adapter_tag(method, &c),
    };
    Ok(Ok(RunInfo {
        dir: dir.to_path_buf(),
        name,
        method: method.to_string(),
        key,
        n,
        run,
        hp,
        label_type: get_str(&c, "label_type"),
        best_dev_loss,
        base_model_fingerprint: c
            .get("ia2")
            .and_then(|v| get_str(v, "base_model_fingerprint")),
        config: c,
    }))
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        if e.file_name().to_string_lossy().starts_with('.') || !e.path().is_dir() {
            continue;
        }
        out.push(e.path());
    }
    out.sort();
    Ok(out)
}

/// Every finished run of the configured methods, with the reasons other directories were passed over.
pub fn discover(cfg: &SelectionConfig) -> Result<(Vec<RunInfo>, Vec<String>)> {
    if !cfg.outputs.is_dir() {
        bail!(
            "the outputs directory {} does not exist",
            cfg.outputs.display()
        );
    }
    let (mut runs, mut skipped) = (Vec::new(), Vec::new());
    for method in &cfg.methods {
        let mdir = cfg.outputs.join(method);
        if !mdir.is_dir() {
            continue;
        }
        for ddir in subdirs(&mdir)? {
            let dname = ddir.file_name().unwrap_or_default().to_string_lossy();
            if !cfg.trained_datasets.is_empty() && !cfg.trained_datasets.iter().any(|d| *d == dname)
            {
                continue;
            }
            for rdir in subdirs(&ddir)? {
                let run = match read_run(&rdir, method)? {
                    Ok(r) => r,
                    Err(why) => {
                        skipped.push(why);
                        continue;
                    }
                };
                let objective = method.rsplit('-').next().unwrap_or(method);
                let uses_label = matches!(objective, "tok" | "a2t" | "t2a");
                if uses_label
                    && run
                        .label_type
                        .as_deref()
                        .is_some_and(|l| l != cfg.label_type)
                {
                    skipped.push(format!(
                        "{}: label type {:?} (selected: {})",
                        rdir.display(),
                        run.label_type,
                        cfg.label_type
                    ));
                    continue;
                }
                if cfg
                    .model_name
                    .as_ref()
                    .is_some_and(|m| *m != run.key.model_name)
                {
                    continue;
                }
                if !cfg.num_train_examples.is_empty() && !cfg.num_train_examples.contains(&run.n) {
                    continue;
                }
                runs.push(run);
            }
        }
    }
    Ok((runs, skipped))
}

/// Mean of the finite values, `None` when there are none.
fn mean_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Groups `runs` by (key, N, method) and keeps the runs of the selected point. `accuracy(run)` supplies the
/// without-ICL accuracy of a run for [`HpSelection::Performance`].
pub fn select_from(
    runs: Vec<RunInfo>,
    selection: HpSelection,
    accuracy: &dyn Fn(&RunInfo) -> Option<f64>,
) -> Vec<Selected> {
    type PointRuns = BTreeMap<String, Vec<RunInfo>>;
    let mut groups: BTreeMap<(GroupKey, usize, String), PointRuns> = BTreeMap::new();
    for r in runs {
        groups
            .entry((r.key.clone(), r.n, r.method.clone()))
            .or_default()
            .entry(r.hp.clone())
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((key, n, method), points) in groups {
        let candidates: BTreeMap<String, Option<f64>> = points
            .iter()
            .map(|(hp, rs)| {
                let c = match selection {
                    HpSelection::DevLoss => mean_of(rs.iter().map(|r| r.best_dev_loss)),
                    HpSelection::Performance => mean_of(rs.iter().map(accuracy)),
                };
                (hp.clone(), c)
            })
            .collect();
        // Best criterion; points without one come last; ties by point name (deterministic).
        let better = |a: f64, b: f64| match selection {
            HpSelection::DevLoss => a < b,
            HpSelection::Performance => a > b,
        };
        let mut best: Option<(&String, Option<f64>)> = None;
        for (hp, c) in &candidates {
            let replace = match (best, c) {
                (None, _) | (Some((_, None)), Some(_)) => true,
                (Some((_, Some(bc))), Some(x)) => better(*x, bc),
                _ => false,
            };
            if replace {
                best = Some((hp, *c));
            }
        }
        let Some((hp, criterion)) = best.map(|(h, c)| (h.clone(), c)) else {
            continue;
        };
        let mut by_run = BTreeMap::new();
        for r in points.get(&hp).cloned().unwrap_or_default() {
            by_run.entry(r.run).or_insert(r);
        }
        out.push(Selected {
            key,
            n,
            method,
            hp,
            criterion,
            candidates,
            runs: by_run,
            source: "run directories (no evaluation results)".into(),
        });
    }
    out
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// Replaces the run-directory choice of each (key, N, method) by `ia2_report::select`'s where evaluation
/// results of its runs exist. `all` holds every discovered run (all points).
fn apply_report_selection(
    selected: &mut [Selected],
    all: &[RunInfo],
    outputs: &Path,
    how: HpSelection,
    messages: &mut Vec<String>,
) {
    if !outputs.join("evaluations").is_dir() {
        return;
    }
    let loaded = match ia2_report::select::load_results(outputs) {
        Ok(l) => l,
        Err(e) => {
            messages.push(format!("evaluation results not used for selection: {e:#}"));
            return;
        }
    };
    let how = match how {
        HpSelection::DevLoss => ia2_report::HpSelection::DevLoss,
        HpSelection::Performance => ia2_report::HpSelection::Performance,
    };
    let (selections, _problems) = ia2_report::select::select(&loaded.entries, how);
    let dir_of = |i: usize| loaded.entries[i].run_dir.as_deref().map(canonical);
    for sel in selected.iter_mut() {
        // Every run directory of this (key, N, method), at any point.
        let mine: BTreeMap<PathBuf, &RunInfo> = all
            .iter()
            .filter(|r| r.key == sel.key && r.n == sel.n && r.method == sel.method)
            .map(|r| (canonical(&r.dir), r))
            .collect();
        // The report's selections over these runs; in-domain evaluations first, then uncertainty mode.
        let mut matching: Vec<&ia2_report::select::Selection> = selections
            .iter()
            .filter(|s| {
                s.candidates.iter().any(|c| {
                    c.entries
                        .iter()
                        .any(|&i| dir_of(i).is_some_and(|d| mine.contains_key(&d)))
                })
            })
            .collect();
        matching.sort_by_key(|s| {
            (
                s.key.trained.as_deref() != Some(s.key.eval.as_str()),
                !s.key.uncertainty,
                s.key.clone(),
            )
        });
        let Some(best) = matching.first() else {
            continue;
        };
        let chosen = best.chosen();
        let mut runs = BTreeMap::new();
        for &i in &chosen.entries {
            if let Some(r) = dir_of(i).and_then(|d| mine.get(&d)) {
                runs.entry(r.run).or_insert_with(|| (*r).clone());
            }
        }
        if runs.is_empty() {
            continue;
        }
        let hp = runs
            .values()
            .next()
            .map(|r| r.hp.clone())
            .unwrap_or_default();
        if hp != sel.hp {
            messages.push(format!(
                "{} N={} {}: the evaluated runs select {hp} (run directories alone: {})",
                sel.key, sel.n, sel.method, sel.hp
            ));
        }
        sel.hp = hp;
        sel.criterion = match how {
            ia2_report::HpSelection::DevLoss => chosen.mean_dev_loss,
            ia2_report::HpSelection::Performance => chosen.mean_performance,
        };
        sel.runs = runs;
        sel.source = format!("ia2_report::select ({})", best.key.title());
    }
}

/// Discovery and selection in one call (see the module notes); the messages say where selection came
/// from when it differs.
pub fn select(
    cfg: &SelectionConfig,
    accuracy: &dyn Fn(&RunInfo) -> Option<f64>,
) -> Result<(Vec<Selected>, Vec<String>)> {
    let (runs, passed_over) = discover(cfg)?;
    for p in &passed_over {
        tracing::debug!("passed over: {p}");
    }
    let mut messages = Vec::new();
    let mut selected = select_from(runs.clone(), cfg.hp_selection, accuracy);
    apply_report_selection(
        &mut selected,
        &runs,
        &cfg.outputs,
        cfg.hp_selection,
        &mut messages,
    );
    Ok((selected, messages))
}

/// Selected runs regrouped per (key, N): method → selection.
pub fn by_group(selected: &[Selected]) -> BTreeMap<(GroupKey, usize), BTreeMap<String, &Selected>> {
    let mut out: BTreeMap<(GroupKey, usize), BTreeMap<String, &Selected>> = BTreeMap::new();
    for s in selected {
        out.entry((s.key.clone(), s.n))
            .or_default()
            .insert(s.method.clone(), s);
    }
    out
}
