//! Result loading, the aggregation key, grouping and hyper-parameter selection (analysis.md, "Aggregation and
//! hyper-parameter selection"). This is the one implementation shared by `ia2 report` and `ia2 analyze`.
//!
//! - [`load_results`] walks `<outputs>/evaluations/**.json`, reads every result file (see
//!   `ia2_eval::results`), and turns it into a [`ResultEntry`]: the full [`EvalKey`], N, the run index, the
//!   hyper-parameter point [`HpPoint`], the run's `best_dev_loss`, every numeric metric, and the per-example
//!   correctness of both modes. Everything is read from the configs recorded in the file (and the run
//!   directory's `final_loss_statistics.json`); no directory or file name is ever parsed. Files that cannot be
//!   used (unreadable, not `"status": "complete"`, modes of different lengths, duplicates) become
//!   [`Problem`]s: listed, never averaged in.
//! - [`select`] groups the entries by (key, N) and, within a group, by hyper-parameter point, and picks one
//!   point per group: by the lowest MEAN over runs of `best_dev_loss` ([`HpSelection::DevLoss`], the
//!   default), or by the highest mean `without_icl_accuracy_top1` (else `without_icl_accuracy`)
//!   ([`HpSelection::Performance`], which selects on the evaluation set and is labelled so everywhere).
//!   Ties go to the smaller learning rate, then the smaller CE weight. The base model has no
//!   hyper-parameters: its group is its single point.

use anyhow::{Context, Result};
use ia2_eval::results::{ModeResults, ResultFile};
use ia2_eval::select::TrainingConfig;
use ia2_train::TrainingMethod;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The method name of base-model results.
pub const BASE: &str = "base";

/// Everything that must be equal for results to be pooled (analysis.md's key, without N), plus the
/// evaluation settings that change a result (uncertainty mode, k, example limit, weight dtype).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EvalKey {
    /// Base model name (`model_name` of the training config, else the evaluated model's).
    pub model: String,
    /// Trained dataset X (`None` for the base model).
    pub trained: Option<String>,
    /// Evaluation dataset Y.
    pub eval: String,
    /// ICL demo source Z.
    pub icl_source: String,
    /// Demo count D actually used.
    pub demos: usize,
    /// Training T (`num_generated_tokens`; `None` for the base model).
    pub train_t: Option<usize>,
    /// Evaluation T (`num_generated_tokens_eval`).
    pub eval_t: usize,
    /// `lora`, `ia3`, `prompt`, `prefix` or `base`.
    pub adapter_kind: String,
    /// Adapter settings, e.g. `lora qvo r=4 alpha=8`, `ia3 qko`, `prompt vt=3`, `none`.
    pub adapter: String,
    /// Training method as recorded (`tok`, `ia3-act`, ...) or `base`.
    pub method: String,
    /// `icl_outputs` / `ground_truth` for methods that use it.
    pub label_type: Option<String>,
    /// Other settings of the method that change the run (tokl top-k, LDR), empty when none.
    pub method_settings: String,
    /// Uncertainty mode.
    pub uncertainty: bool,
    /// Evaluation variant: `k=10`, `first100`, dtype when not f32; empty for the plain case.
    pub variant: String,
}

impl EvalKey {
    /// The part shared by every method evaluated in the same setting (for base reference lines and
    /// method comparisons): model, Y, Z, D, evaluation T, uncertainty mode and variant.
    pub fn setting(&self) -> (String, String, String, usize, usize, bool, String) {
        (
            self.model.clone(),
            self.eval.clone(),
            self.icl_source.clone(),
            self.demos,
            self.eval_t,
            self.uncertainty,
            self.variant.clone(),
        )
    }

    pub fn is_base(&self) -> bool {
        self.method == BASE
    }

    /// The method's objective name without the adapter prefix (`act` for `ia3-act`), `base` for the base.
    pub fn objective(&self) -> String {
        self.method
            .parse::<TrainingMethod>()
            .map_or_else(|_| self.method.clone(), |m| m.objective.name().to_string())
    }

    /// The method (with its label type and settings) followed by [`EvalKey::title`].
    pub fn label(&self) -> String {
        let mut s = self.method.clone();
        if let Some(l) = &self.label_type {
            s.push_str(&format!(" ({l})"));
        }
        if !self.method_settings.is_empty() {
            s.push_str(&format!(" [{}]", self.method_settings));
        }
        format!("{s} | {}", self.title())
    }

    /// A short one-line label of the setting (without the method), e.g. `tiny-qwen3 sst2→finsen (demos finsen, D=3) T=1/1 lora qvo r=4 alpha=8`.
    pub fn title(&self) -> String {
        let trained = self.trained.as_deref().unwrap_or("-");
        let train_t = self.train_t.map_or("-".to_string(), |t| t.to_string());
        let mut s = format!(
            "{} {}→{} (demos {}, D={}) T={}/{} {}",
            self.model,
            trained,
            self.eval,
            self.icl_source,
            self.demos,
            train_t,
            self.eval_t,
            self.adapter
        );
        if self.uncertainty {
            s.push_str(" uncertainty");
        }
        if !self.variant.is_empty() {
            s.push_str(&format!(" [{}]", self.variant));
        }
        s
    }
}

/// A hyper-parameter point: the learning rate and, for tna, the CE weight.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct HpPoint {
    pub lr: Option<f64>,
    pub ce_loss_weight: Option<f64>,
}

fn cmp_opt(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.total_cmp(&y),
    }
}

impl PartialEq for HpPoint {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for HpPoint {}
impl PartialOrd for HpPoint {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for HpPoint {
    fn cmp(&self, o: &Self) -> Ordering {
        cmp_opt(self.lr, o.lr).then(cmp_opt(self.ce_loss_weight, o.ce_loss_weight))
    }
}

impl fmt::Display for HpPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.lr, self.ce_loss_weight) {
            (None, None) => f.write_str("-"),
            (Some(lr), None) => write!(f, "lr={}", ia2_train::config::py_float(lr)),
            (lr, Some(w)) => write!(
                f,
                "lr={} w={}",
                lr.map_or("-".into(), ia2_train::config::py_float),
                ia2_train::config::py_float(w)
            ),
        }
    }
}

/// One example's correctness in one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExampleOutcome {
    /// `idx` of the example in its dataset.
    pub idx: usize,
    pub correct: bool,
}

/// One usable result file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultEntry {
    pub path: PathBuf,
    pub key: EvalKey,
    /// N (training examples; for the base model the N of its demo set).
    pub n: usize,
    pub run: u32,
    pub hp: HpPoint,
    /// The trained run's directory (as recorded in the result), `None` for the base model.
    pub run_dir: Option<PathBuf>,
    /// `best_dev_loss` of the run: from the run directory's `final_loss_statistics.json`, else the copy
    /// recorded in the result.
    pub best_dev_loss: Option<f64>,
    /// Every numeric metric of the result (`metrics` object).
    pub metrics: BTreeMap<String, f64>,
    pub with_icl: Vec<ExampleOutcome>,
    pub without_icl: Vec<ExampleOutcome>,
}

/// Why a result (or a group of results) is not in the aggregates, or is there with fewer runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// `unreadable`, `incomplete`, `duplicate`, `missing_dev_loss`, `missing_runs`, `not_evaluated`
    /// (a finished training run without any result), `unfinished_run`, `no_selection`.
    pub kind: String,
    /// The file or directory concerned (or a key's title).
    pub path: String,
    pub detail: String,
}

impl Problem {
    pub fn new(kind: &str, path: impl fmt::Display, detail: impl Into<String>) -> Problem {
        Problem {
            kind: kind.into(),
            path: path.to_string(),
            detail: detail.into(),
        }
    }
}

/// What [`load_results`] found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Loaded {
    pub entries: Vec<ResultEntry>,
    pub problems: Vec<Problem>,
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut items: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    items.sort();
    for p in items {
        if p.is_dir() {
            json_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "json" || e == "tmp") {
            out.push(p);
        }
    }
    Ok(())
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn uint_at(v: &Value, ptr: &str) -> Option<usize> {
    let x = v.pointer(ptr)?;
    x.as_u64()
        .map(|u| u as usize)
        .or_else(|| x.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Reads `best_dev_loss` from a run directory's `final_loss_statistics.json` (leniently: a seed-written file
/// with only some keys is fine).
pub fn read_best_dev_loss(run_dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(run_dir.join(ia2_train::output::STATS_FILE)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("best_dev_loss").and_then(Value::as_f64)
}

fn outcomes(records: &[ia2_eval::results::Record]) -> Vec<ExampleOutcome> {
    records
        .iter()
        .map(|r| ExampleOutcome {
            idx: r.idx,
            correct: r.correct,
        })
        .collect()
}

fn adapter_settings(method: Option<TrainingMethod>, c: &TrainingConfig) -> (String, String) {
    use ia2_train::AdapterKind;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    let num = |v: Option<usize>| v.map_or("?".into(), |x| x.to_string());
    match method.map(|m| m.adapter) {
        Some(AdapterKind::Lora) => (
            "lora".into(),
            format!(
                "lora {} r={} alpha={}",
                opt(&c.lora_type),
                num(c.lora_r),
                c.lora_alpha.map_or("?".into(), |a| format!("{a}"))
            ),
        ),
        Some(AdapterKind::Ia3) => ("ia3".into(), format!("ia3 {}", opt(&c.ia3_type))),
        Some(AdapterKind::Prompt) => (
            "prompt".into(),
            format!("prompt vt={}", num(c.num_virtual_tokens)),
        ),
        Some(AdapterKind::Prefix) => (
            "prefix".into(),
            format!("prefix vt={}", num(c.num_virtual_tokens)),
        ),
        None => ("unknown".into(), "unknown".into()),
    }
}

/// Turns one parsed result file into an entry (or the reason it cannot be used).
pub fn entry_from_result(
    path: &Path,
    file: &ResultFile,
) -> std::result::Result<ResultEntry, String> {
    let ec = &file.evaluation_config;
    if file.status != ia2_eval::results::COMPLETE {
        return Err(format!("status is {:?}, not \"complete\"", file.status));
    }
    let ModeResults {
        with_icl,
        without_icl,
    } = &file.results;
    if with_icl.is_empty() || with_icl.len() != without_icl.len() {
        return Err(format!(
            "partial: {} with-ICL and {} without-ICL records",
            with_icl.len(),
            without_icl.len()
        ));
    }
    let need = |ptr: &str| -> std::result::Result<String, String> {
        str_at(ec, ptr)
            .map(String::from)
            .ok_or_else(|| format!("evaluation_config{} is missing", ptr.replace('/', ".")))
    };
    let need_uint = |ptr: &str| -> std::result::Result<usize, String> {
        uint_at(ec, ptr)
            .ok_or_else(|| format!("evaluation_config{} is missing", ptr.replace('/', ".")))
    };
    let model_type = need("/model_type")?;
    let eval = need("/eval_dataset_name")?;
    let icl_source = need("/icl_source_dataset")?;
    let demos = need_uint("/icl_max_demos")?;
    let n = need_uint("/num_train_examples")?;
    let run = need_uint("/run_idx")? as u32;
    let eval_t = need_uint("/num_generated_tokens_eval")?;
    let uncertainty = ec
        .get("uncertainty_analysis")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut variant = Vec::new();
    if uncertainty && let Some(k) = uint_at(ec, "/top_k") {
        variant.push(format!("k={k}"));
    }
    if let Some(k) = uint_at(ec, "/max_eval_examples") {
        variant.push(format!("first{k}"));
    }
    if let Some(d) = str_at(ec, "/model/dtype").filter(|d| *d != "f32") {
        variant.push(d.to_string());
    }
    let eval_model = str_at(ec, "/model/model_name").map(String::from);
    let metrics: BTreeMap<String, f64> = file
        .metrics
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
        .collect();
    let mut entry = ResultEntry {
        path: path.to_path_buf(),
        key: EvalKey {
            model: String::new(),
            trained: None,
            eval,
            icl_source,
            demos,
            train_t: None,
            eval_t,
            adapter_kind: BASE.into(),
            adapter: "none".into(),
            method: BASE.into(),
            label_type: None,
            method_settings: String::new(),
            uncertainty,
            variant: variant.join(" "),
        },
        n,
        run,
        hp: HpPoint::default(),
        run_dir: None,
        best_dev_loss: None,
        metrics,
        with_icl: outcomes(with_icl),
        without_icl: outcomes(without_icl),
    };
    if model_type == BASE {
        entry.key.model = eval_model
            .or_else(|| str_at(&file.trained_model_params, "/model_name").map(String::from))
            .unwrap_or_else(|| "?".into());
        return Ok(entry);
    }
    let cfg = TrainingConfig::from_value(&file.trained_model_params, path)
        .map_err(|e| format!("trained_model_params: {e:#}"))?;
    let method_name = cfg.training_method.clone().unwrap_or(model_type.clone());
    let method = method_name.parse::<TrainingMethod>().ok();
    let (kind, adapter) = adapter_settings(method, &cfg);
    let mut settings = Vec::new();
    if let Some(k) = &cfg.tokl_top_k {
        settings.push(format!("topk={k}"));
    }
    if cfg.ldr_mode {
        settings.push(format!(
            "ldr {}/{}/{}",
            cfg.num_labelled_samples
                .map_or("?".into(), |x| x.to_string()),
            cfg.num_unlabelled_samples
                .map_or("?".into(), |x| x.to_string()),
            cfg.max_permutations.map_or("?".into(), |x| x.to_string())
        ));
    }
    let uses_label = method.is_none_or(|m| m.objective.uses_label_type());
    entry.key.model = cfg
        .model_name
        .clone()
        .or(eval_model)
        .unwrap_or_else(|| "?".into());
    entry.key.trained = cfg
        .dataset
        .clone()
        .or_else(|| str_at(ec, "/trained_dataset").map(String::from));
    entry.key.train_t = cfg.num_generated_tokens;
    entry.key.adapter_kind = kind;
    entry.key.adapter = adapter;
    entry.key.method = method_name;
    entry.key.label_type = if uses_label {
        cfg.label_type.clone()
    } else {
        None
    };
    entry.key.method_settings = settings.join(" ");
    let is_tna = method.is_some_and(|m| m.objective == ia2_train::Objective::Tna);
    entry.hp = HpPoint {
        lr: cfg.lr,
        ce_loss_weight: if is_tna { cfg.ce_loss_weight } else { None },
    };
    entry.run_dir = str_at(ec, "/adapter/dir").map(PathBuf::from);
    entry.best_dev_loss = entry
        .run_dir
        .as_deref()
        .and_then(read_best_dev_loss)
        .or_else(|| {
            ec.pointer("/adapter/final_loss_statistics/best_dev_loss")
                .and_then(Value::as_f64)
        });
    Ok(entry)
}

/// Reads every result file under `<outputs>/evaluations/` (see the module notes). A missing `evaluations`
/// directory is an error naming it.
pub fn load_results(outputs: &Path) -> Result<Loaded> {
    let dir = outputs.join("evaluations");
    anyhow::ensure!(
        dir.is_dir(),
        "no evaluation results: {} does not exist (run `ia2 eval --outputs-dir {}` first)",
        dir.display(),
        outputs.display()
    );
    let mut files = Vec::new();
    json_files(&dir, &mut files)?;
    let mut loaded = Loaded::default();
    let mut seen: BTreeMap<(EvalKey, usize, HpPoint, u32), PathBuf> = BTreeMap::new();
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().to_string());
        if let Some(n) = name.as_deref().filter(|n| n.starts_with('.')) {
            // Temporaries of atomic writes (`.ia2-tmp-*`, the older `.{name}.{pid}.tmp`) are unfinished or
            // interrupted evaluations: listed. Lock files and other hidden files are not results.
            if n.starts_with(".ia2-tmp-") || n.ends_with(".tmp") {
                loaded.problems.push(Problem::new(
                    "incomplete",
                    path.display(),
                    "temporary file of an unfinished or interrupted write",
                ));
            }
            continue;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                loaded
                    .problems
                    .push(Problem::new("unreadable", path.display(), e.to_string()));
                continue;
            }
        };
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                loaded.problems.push(Problem::new(
                    "incomplete",
                    path.display(),
                    format!("not valid JSON (truncated?): {e}"),
                ));
                continue;
            }
        };
        if value.get("status").and_then(Value::as_str) != Some(ia2_eval::results::COMPLETE) {
            loaded.problems.push(Problem::new(
                "incomplete",
                path.display(),
                "no \"status\": \"complete\" (unfinished or not a result file)",
            ));
            continue;
        }
        let file: ResultFile = match serde_json::from_value(value) {
            Ok(f) => f,
            Err(e) => {
                loaded.problems.push(Problem::new(
                    "unreadable",
                    path.display(),
                    format!("not a result file: {e}"),
                ));
                continue;
            }
        };
        match entry_from_result(&path, &file) {
            Ok(entry) => {
                let id = (entry.key.clone(), entry.n, entry.hp, entry.run);
                if let Some(first) = seen.get(&id) {
                    loaded.problems.push(Problem::new(
                        "duplicate",
                        path.display(),
                        format!(
                            "same key, N, hyper-parameters and run as {}; not counted twice",
                            first.display()
                        ),
                    ));
                    continue;
                }
                seen.insert(id, path.clone());
                loaded.entries.push(entry);
            }
            Err(reason) => loaded
                .problems
                .push(Problem::new("incomplete", path.display(), reason)),
        }
    }
    resolve_run_dirs(outputs, &mut loaded.entries);
    list_unevaluated_runs(outputs, &mut loaded);
    Ok(loaded)
}

/// A result records its run directory as `ia2 eval` saw it (possibly relative to another working
/// directory). When that path does not exist here, the run is looked up where the contract puts it:
/// `<outputs>/{method}/{trained dataset}/{run name}`, and its `best_dev_loss` read from there.
fn resolve_run_dirs(outputs: &Path, entries: &mut [ResultEntry]) {
    for e in entries.iter_mut() {
        let Some(recorded) = e.run_dir.clone() else {
            continue;
        };
        if recorded.is_dir() {
            continue;
        }
        let (Some(trained), Some(name)) = (e.key.trained.as_deref(), recorded.file_name()) else {
            continue;
        };
        let here = outputs.join(&e.key.method).join(trained).join(name);
        if here.is_dir() {
            if let Some(loss) = read_best_dev_loss(&here) {
                e.best_dev_loss = Some(loss);
            }
            e.run_dir = Some(here);
        }
    }
}

/// Finished runs (`ia2_runs::list_runs`) that no result refers to, and unfinished run directories: listed as
/// problems (`not_evaluated`, `unfinished_run`).
fn list_unevaluated_runs(outputs: &Path, loaded: &mut Loaded) {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let evaluated: std::collections::BTreeSet<PathBuf> = loaded
        .entries
        .iter()
        .filter_map(|e| e.run_dir.as_deref().map(canon))
        .collect();
    match ia2_runs::list_runs(outputs) {
        Ok((runs, passed_over)) => {
            for r in runs {
                if !evaluated.contains(&canon(&r.dir)) {
                    loaded.problems.push(Problem::new(
                        "not_evaluated",
                        r.dir.display(),
                        "a finished training run with no evaluation result",
                    ));
                }
            }
            for p in passed_over {
                loaded.problems.push(Problem::new("unfinished_run", "", p));
            }
        }
        Err(e) => loaded.problems.push(Problem::new(
            "unreadable",
            outputs.display(),
            format!("listing the training runs: {e:#}"),
        )),
    }
}

/// How the hyper-parameter point of each (key, N) is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HpSelection {
    /// Lowest mean `best_dev_loss` over runs (honest default).
    #[default]
    DevLoss,
    /// Highest mean without-ICL accuracy: selects on the evaluation set.
    Performance,
}

impl HpSelection {
    pub fn as_str(self) -> &'static str {
        match self {
            HpSelection::DevLoss => "dev_loss",
            HpSelection::Performance => "performance",
        }
    }

    /// How tables and plots label the selection.
    pub fn label(self) -> &'static str {
        match self {
            HpSelection::DevLoss => "hp selected by mean dev loss",
            HpSelection::Performance => {
                "hp selected on the EVALUATION SET (performance): optimistic"
            }
        }
    }
}

impl std::str::FromStr for HpSelection {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dev_loss" | "dev-loss" => Ok(HpSelection::DevLoss),
            "performance" => Ok(HpSelection::Performance),
            _ => anyhow::bail!("unknown hp selection {s:?}: expected dev_loss or performance"),
        }
    }
}

/// The metric [`HpSelection::Performance`] maximises for an entry.
pub fn performance_metric(e: &ResultEntry) -> Option<f64> {
    e.metrics
        .get("without_icl_accuracy_top1")
        .or_else(|| e.metrics.get("without_icl_accuracy"))
        .copied()
}

/// One hyper-parameter point of a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub hp: HpPoint,
    /// Indices into [`Loaded::entries`], sorted by run.
    pub entries: Vec<usize>,
    pub runs: Vec<u32>,
    /// Mean `best_dev_loss` over the runs that have one.
    pub mean_dev_loss: Option<f64>,
    /// How many runs had a `best_dev_loss`.
    pub dev_loss_runs: usize,
    pub mean_performance: Option<f64>,
}

/// The selected point of one (key, N).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Selection {
    pub key: EvalKey,
    pub n: usize,
    pub criterion: HpSelection,
    pub selected: HpPoint,
    /// Every point, in hp order.
    pub candidates: Vec<Candidate>,
    /// How the choice was made when not by the criterion (single point, no dev loss, ...).
    pub note: Option<String>,
}

impl Selection {
    pub fn chosen(&self) -> &Candidate {
        self.candidates
            .iter()
            .find(|c| c.hp == self.selected)
            .expect("the selected point is a candidate")
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Groups `entries` by (key, N) and hyper-parameter point and selects one point per group (see the module
/// notes). Groups where the criterion cannot decide (no run of any point has a dev loss) fall back to the
/// smallest point and say so in `note`; points whose runs lack some dev losses are compared on the runs
/// that have one, and a [`Problem`] lists them.
pub fn select(entries: &[ResultEntry], how: HpSelection) -> (Vec<Selection>, Vec<Problem>) {
    let mut groups: BTreeMap<(EvalKey, usize), BTreeMap<HpPoint, Vec<usize>>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        groups
            .entry((e.key.clone(), e.n))
            .or_default()
            .entry(e.hp)
            .or_default()
            .push(i);
    }
    let mut selections = Vec::new();
    let mut problems = Vec::new();
    for ((key, n), points) in groups {
        let candidates: Vec<Candidate> = points
            .into_iter()
            .map(|(hp, mut idx)| {
                idx.sort_by_key(|&i| entries[i].run);
                let losses: Vec<f64> = idx
                    .iter()
                    .filter_map(|&i| entries[i].best_dev_loss)
                    .collect();
                let perf: Vec<f64> = idx
                    .iter()
                    .filter_map(|&i| performance_metric(&entries[i]))
                    .collect();
                Candidate {
                    hp,
                    runs: idx.iter().map(|&i| entries[i].run).collect(),
                    entries: idx,
                    mean_dev_loss: mean(&losses),
                    dev_loss_runs: losses.len(),
                    mean_performance: mean(&perf),
                }
            })
            .collect();
        let mut note = None;
        let selected = if key.is_base() || candidates.len() == 1 {
            if candidates.len() == 1 && !key.is_base() {
                note = Some("single hyper-parameter point".to_string());
            }
            candidates[0].hp
        } else {
            let score = |c: &Candidate| match how {
                HpSelection::DevLoss => c.mean_dev_loss,
                // Maximise: negate so that "lowest score wins" holds for both.
                HpSelection::Performance => c.mean_performance.map(|p| -p),
            };
            let best = candidates
                .iter()
                .filter_map(|c| score(c).filter(|s| s.is_finite()).map(|s| (s, c.hp)))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            match best {
                Some((_, hp)) => hp,
                None => {
                    note = Some(format!(
                        "no candidate has a {}: took the smallest point",
                        match how {
                            HpSelection::DevLoss => "best_dev_loss",
                            HpSelection::Performance => "without-ICL accuracy",
                        }
                    ));
                    problems.push(Problem::new(
                        "no_selection",
                        key.label(),
                        format!("N={n}: {}", note.clone().unwrap_or_default()),
                    ));
                    candidates[0].hp
                }
            }
        };
        if how == HpSelection::DevLoss && !key.is_base() {
            for c in &candidates {
                if c.dev_loss_runs < c.runs.len() {
                    problems.push(Problem::new(
                        "missing_dev_loss",
                        key.label(),
                        format!(
                            "N={n} {}: {} of {} runs have no best_dev_loss (mean over the others)",
                            c.hp,
                            c.runs.len() - c.dev_loss_runs,
                            c.runs.len()
                        ),
                    ));
                }
            }
        }
        selections.push(Selection {
            key,
            n,
            criterion: how,
            selected,
            candidates,
            note,
        });
    }
    (selections, problems)
}
