//! The evaluation runner: plan every evaluation (selection, demo sets, result paths) before loading
//! anything heavy, skip finished ones, load the base model once, then per model (base first, then each
//! adapter, merged into a copy of the weights when it is LoRA/IA3) run both modes of every evaluation and
//! write each result atomically, and a summary of the invocation.

use crate::args::EvalArgs;
use crate::engine::{self, Continuation, NextToken};
use crate::fingerprint::base_model_fingerprint;
use crate::metrics;
use crate::prompts::{DataStore, DemoPlan, EvalSet};
use crate::results::{
    self, COMPLETE, MetricsKind, ModeResults, NextTokenInfo, ProbInfo, Record, ResultFile,
    StepsInfo,
};
use crate::select::{self, AdapterRun, ModelType};
use anyhow::{Context, Result, bail, ensure};
use ia2_hf::Tokenizer;
use ia2_load::{LoadedModel, WeightDtype};
use ia2_model::{Adapter, Decoder, GenerateOptions, StopReason};
use ia2_runs::AdapterKind;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

/// The stop string of generation (kept in the generated text).
pub const STOP_STRING: &str = "\n\n";

/// The model an evaluation runs.
#[derive(Debug, Clone)]
pub enum Subject {
    Base,
    Adapter(Arc<AdapterRun>),
}

impl Subject {
    /// `base` or the training method.
    pub fn model_type(&self) -> String {
        match self {
            Subject::Base => "base".to_string(),
            Subject::Adapter(a) => a.method.to_string(),
        }
    }

    fn key(&self) -> String {
        match self {
            Subject::Base => "base".to_string(),
            Subject::Adapter(a) => a.dir.display().to_string(),
        }
    }
}

/// One planned evaluation.
#[derive(Debug, Clone)]
pub struct Task {
    pub subject: Subject,
    pub demo: DemoPlan,
    /// Generated tokens T.
    pub gen_tokens: usize,
    pub path: PathBuf,
    /// Everything that determines the result (see [`identity_inputs`]); its sha256 is the evaluation's
    /// identity, recorded in the result and required to match for the result to be reused.
    pub identity_inputs: Value,
}

impl Task {
    fn label(&self) -> String {
        let who = match &self.subject {
            Subject::Base => "base".to_string(),
            Subject::Adapter(a) => format!("{}/{}/{}", a.method, a.trained_dataset, a.name),
        };
        format!(
            "{who} on {} (demos from {}, D={}, N={}, run {}, T={})",
            self.demo.eval_dataset,
            self.demo.icl_source,
            self.demo.demos,
            self.demo.n,
            self.demo.run,
            self.gen_tokens
        )
    }
}

/// What happened to one planned evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryEntry {
    /// `evaluated`, `skipped` (a finished result exists), `planned` (dry run) or `failed`.
    pub status: String,
    pub result_path: PathBuf,
    pub model_type: String,
    pub adapter: Option<PathBuf>,
    pub trained_dataset: Option<String>,
    pub eval_dataset: String,
    pub icl_source: String,
    pub icl_max_demos: usize,
    pub num_train_examples: usize,
    pub run_idx: u32,
    pub num_generated_tokens_eval: usize,
    /// Headline metrics (evaluated or skipped results).
    pub metrics: Option<Value>,
    pub error: Option<String>,
}

/// The outcome of one invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The summary file (`None` for a dry run).
    pub path: Option<PathBuf>,
    pub evaluated: usize,
    pub skipped: usize,
    pub failed: usize,
    pub elapsed_s: f64,
    pub entries: Vec<SummaryEntry>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |m: &Option<Value>, k: &str| {
            m.as_ref()
                .and_then(|m| m.get(k))
                .and_then(Value::as_f64)
                .map_or("-".to_string(), |v| format!("{v:.1}"))
        };
        writeln!(
            f,
            "{:<9} {:<10} {:<14} {:<12} {:<12} {:>4} {:>4} {:>3} {:>4} {:>7} {:>7} {:>7}  result",
            "status",
            "model",
            "trained",
            "eval",
            "demos from",
            "D",
            "N",
            "run",
            "T",
            "icl%",
            "no-icl%",
            "delta"
        )?;
        for e in &self.entries {
            writeln!(
                f,
                "{:<9} {:<10} {:<14} {:<12} {:<12} {:>4} {:>4} {:>3} {:>4} {:>7} {:>7} {:>7}  {}",
                e.status,
                e.model_type,
                e.trained_dataset.as_deref().unwrap_or("-"),
                e.eval_dataset,
                e.icl_source,
                e.icl_max_demos,
                e.num_train_examples,
                e.run_idx,
                e.num_generated_tokens_eval,
                pct(&e.metrics, "with_icl_accuracy"),
                pct(&e.metrics, "without_icl_accuracy"),
                pct(&e.metrics, "accuracy_delta"),
                e.result_path.display()
            )?;
            if let Some(err) = &e.error {
                writeln!(f, "          error: {err}")?;
            }
        }
        write!(
            f,
            "{} evaluated, {} skipped (already finished), {} failed in {:.1} s",
            self.evaluated, self.skipped, self.failed, self.elapsed_s
        )?;
        if let Some(p) = &self.path {
            write!(f, "; summary: {}", p.display())?;
        }
        Ok(())
    }
}

/// Everything decided before the model is loaded.
pub struct Plan {
    pub tasks: Vec<Task>,
    pub model_name: String,
    pub model_dir: PathBuf,
    pub fingerprint: String,
    /// Runs passed over, with the reason (logged; listed when nothing matched).
    pub passed_over: Vec<String>,
}

/// The result file of one evaluation ([`ia2_runs::layout::result_path`]).
pub fn result_path(
    args: &EvalArgs,
    model_name: &str,
    subject: &Subject,
    demo: &DemoPlan,
    gen_tokens: usize,
) -> PathBuf {
    let dtype = format!("{:?}", args.model.dtype).to_lowercase();
    let subject = match subject {
        Subject::Base => ia2_runs::ResultSubject::Base { model_name },
        Subject::Adapter(a) => ia2_runs::ResultSubject::Adapter {
            method: a.method,
            trained_dataset: &a.trained_dataset,
            run_name: &a.name,
        },
    };
    ia2_runs::result_path(
        &args.outputs_dir,
        &ia2_runs::ResultName {
            subject,
            eval_dataset: &demo.eval_dataset,
            icl_source: &demo.icl_source,
            demos: demo.demos,
            n: demo.n,
            run: demo.run as usize,
            gen_tokens,
            uncertainty_top_k: args.uncertainty_analysis.then_some(args.top_k),
            max_eval_examples: args.max_eval_examples,
            dtype_suffix: (args.model.dtype != WeightDtype::F32).then_some(dtype.as_str()),
        },
    )
}

/// Everything that determines an evaluation's result: the code version, the base model's fingerprint and
/// dtype, the adapter's identity and weights checksum, the evaluation's settings and the checksums of its
/// input data files.
pub fn identity_inputs(
    args: &EvalArgs,
    fingerprint: &str,
    subject: &Subject,
    demo: &DemoPlan,
    gen_tokens: usize,
) -> Result<Value> {
    let adapter = match subject {
        Subject::Base => Value::Null,
        Subject::Adapter(a) => json!({
            "identity": a.config.identity,
            "weights_sha256": ia2_runs::file_sha256_cached(&a.dir.join(ia2_runs::layout::ADAPTER_WEIGHTS_FILE))?,
        }),
    };
    let mut files: Vec<(String, String)> = demo
        .inputs
        .iter()
        .map(|d| (d.role.clone(), d.sha256.clone()))
        .collect();
    files.sort();
    Ok(json!({
        "code_version": ia2_runs::CODE_VERSION,
        "base_model_fingerprint": fingerprint,
        "dtype": format!("{:?}", args.model.dtype).to_lowercase(),
        "adapter": adapter,
        "model_type": subject.model_type(),
        "eval_dataset": demo.eval_dataset,
        "icl_source": demo.icl_source,
        "icl_max_demos": demo.demos,
        "num_train_examples": demo.n,
        "run_idx": demo.run,
        "num_generated_tokens_eval": gen_tokens,
        "uncertainty_analysis": args.uncertainty_analysis,
        "top_k": args.uncertainty_analysis.then_some(args.top_k),
        "max_eval_examples": args.max_eval_examples,
        "data_files": files.into_iter().map(|(role, sha)| json!({"role": role, "sha256": sha})).collect::<Vec<_>>(),
    }))
}

/// Selects the adapters of this invocation (see [`select`]).
fn select_adapters(
    args: &EvalArgs,
    types: &[ModelType],
    model_name: &str,
    fingerprint: &str,
    passed_over: &mut Vec<String>,
) -> Result<Vec<Arc<AdapterRun>>> {
    let mut warnings = BTreeSet::new();
    let mut check_fp = |run: &AdapterRun| -> Result<()> {
        if let Some(w) = select::check_fingerprint(run, fingerprint)? {
            warnings.insert(w);
        }
        Ok(())
    };
    let selected = if let Some(dir) = &args.model.adapter {
        let run = match AdapterRun::read(dir, None, None)
            .with_context(|| format!("--adapter {}", dir.display()))?
        {
            Ok(run) => run,
            Err(reason) => bail!("--adapter {}: not a trained run ({reason})", dir.display()),
        };
        if let Some(m) = run.config.model_name.as_deref()
            && m != model_name
        {
            bail!(
                "--adapter {} was trained on base model {m:?}, not the evaluated {model_name:?}",
                dir.display()
            );
        }
        ensure!(
            run.num_train_examples().is_some() && run.config.run_idx.is_some(),
            "--adapter {}: training_config.json lacks num_train_examples or run_idx (needed to pick its demo set)",
            dir.display()
        );
        check_fp(&run)?;
        vec![Arc::new(run)]
    } else {
        let methods: Vec<_> = types
            .iter()
            .filter_map(|t| match t {
                ModelType::Trained(m) => Some(*m),
                ModelType::Base => None,
            })
            .collect();
        if methods.is_empty() {
            return Ok(Vec::new());
        }
        let (runs, skipped) =
            select::discover(&args.outputs_dir, &methods, &args.trained_datasets)?;
        passed_over.extend(skipped);
        let filters = args.filters(model_name);
        let mut selected = Vec::new();
        for run in runs {
            match filters.check(&run) {
                Ok(()) => {
                    check_fp(&run)?;
                    selected.push(Arc::new(run));
                }
                Err(reason) => {
                    if reason.starts_with("trained on base model") {
                        warn!("skipping {}: {reason}", run.dir.display());
                    }
                    passed_over.push(format!("{}: {reason}", run.dir.display()));
                }
            }
        }
        if selected.is_empty() {
            let mut msg = format!(
                "no matching adapters under {} for model types {} and base model {model_name:?}",
                args.outputs_dir.display(),
                methods
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            if passed_over.is_empty() {
                msg.push_str(" (no run directories found; expected {outputs-dir}/{method}/{dataset}/{run}/ with adapter_config.json, adapter_model.safetensors and training_config.json)");
            } else {
                msg.push_str(&format!("; {} run(s) passed over:", passed_over.len()));
                for p in passed_over.iter().take(10) {
                    msg.push_str(&format!("\n  {p}"));
                }
                if passed_over.len() > 10 {
                    msg.push_str(&format!("\n  ... and {} more", passed_over.len() - 10));
                }
            }
            bail!(msg);
        }
        selected
    };
    for w in warnings {
        warn!("{w}");
    }
    Ok(selected)
}

/// Selection, demo sets and result paths of every evaluation; nothing is loaded or written.
pub fn plan(args: &EvalArgs) -> Result<Plan> {
    args.validate()?;
    let types = args.model_types()?;
    let model_name = args.model.model_name();
    let model_dir = args.model.resolve_dir()?;
    let fingerprint = base_model_fingerprint(&model_dir)?;
    let mut passed_over = Vec::new();
    let adapters = select_adapters(args, &types, &model_name, &fingerprint, &mut passed_over)?;
    let want_base = types.contains(&ModelType::Base);
    let mut store = DataStore::new(&args.data_dir);
    let mut tasks = Vec::new();
    let mut paths = HashSet::new();
    let mut push = |store: &mut DataStore,
                    tasks: &mut Vec<Task>,
                    subject: &Subject,
                    eval: &str,
                    n: usize,
                    run: u32|
     -> Result<()> {
        let info = store.dataset(eval)?.info.clone();
        let gen_tokens = args
            .num_gen_tokens_eval
            .unwrap_or_else(|| info.default_gen_tokens());
        let sources: Vec<String> = if args.icl_source_datasets.is_empty() {
            vec![eval.to_string()]
        } else {
            args.icl_source_datasets.clone()
        };
        for source in &sources {
            for &requested in &args.icl_max_demos {
                let demo = store.plan_demos(eval, source, n, run, requested)?;
                let path = result_path(args, &model_name, subject, &demo, gen_tokens);
                // Two requested counts capped to the same D are one evaluation.
                if paths.insert(path.clone()) {
                    let identity_inputs =
                        identity_inputs(args, &fingerprint, subject, &demo, gen_tokens)?;
                    tasks.push(Task {
                        subject: subject.clone(),
                        demo,
                        gen_tokens,
                        path,
                        identity_inputs,
                    });
                }
            }
        }
        Ok(())
    };
    if want_base {
        let eval_sets: Vec<String> = if !args.eval_datasets.is_empty() {
            args.eval_datasets.clone()
        } else {
            let set: BTreeSet<String> =
                adapters.iter().map(|a| a.trained_dataset.clone()).collect();
            set.into_iter().collect()
        };
        ensure!(
            !eval_sets.is_empty(),
            "evaluating the base model needs --eval-datasets"
        );
        let pairs: Vec<(usize, u32)> =
            if !args.num_examples.is_empty() && !args.run_indices.is_empty() {
                args.num_examples
                    .iter()
                    .flat_map(|&n| args.run_indices.iter().map(move |&r| (n, r)))
                    .collect()
            } else {
                let set: BTreeSet<(usize, u32)> = adapters
                    .iter()
                    .filter_map(|a| Some((a.num_train_examples()?, a.config.run_idx?)))
                    .collect();
                set.into_iter().collect()
            };
        ensure!(
            !pairs.is_empty(),
            "evaluating the base model needs the N and run of its demo sets (data/<source>/train/{{N}}_{{run}}.json): pass --num-examples and --run-indices"
        );
        for eval in &eval_sets {
            for &(n, r) in &pairs {
                push(&mut store, &mut tasks, &Subject::Base, eval, n, r)?;
            }
        }
    }
    for a in &adapters {
        let subject = Subject::Adapter(a.clone());
        let evals: Vec<String> = if args.eval_datasets.is_empty() {
            vec![a.trained_dataset.clone()]
        } else {
            args.eval_datasets.clone()
        };
        let (n, r) = (
            a.num_train_examples().context("checked by the filters")?,
            a.config.run_idx.context("checked by the filters")?,
        );
        for eval in &evals {
            push(&mut store, &mut tasks, &subject, eval, n, r)
                .with_context(|| format!("planning the evaluation of {}", a.dir.display()))?;
        }
    }
    for p in &passed_over {
        tracing::debug!("passed over {p}");
    }
    Ok(Plan {
        tasks,
        model_name,
        model_dir,
        fingerprint,
        passed_over,
    })
}

/// Civil UTC date-time of a Unix time, `YYYYmmdd_HHMMSS` and ISO 8601.
fn utc(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
    (
        format!("{y:04}{m:02}{d:02}_{hh:02}{mm:02}{ss:02}"),
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    )
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn entry(task: &Task, status: &str, metrics: Option<Value>, error: Option<String>) -> SummaryEntry {
    let (adapter, trained) = match &task.subject {
        Subject::Base => (None, None),
        Subject::Adapter(a) => (Some(a.dir.clone()), Some(a.trained_dataset.clone())),
    };
    SummaryEntry {
        status: status.to_string(),
        result_path: task.path.clone(),
        model_type: task.subject.model_type(),
        adapter,
        trained_dataset: trained,
        eval_dataset: task.demo.eval_dataset.clone(),
        icl_source: task.demo.icl_source.clone(),
        icl_max_demos: task.demo.demos,
        num_train_examples: task.demo.n,
        run_idx: task.demo.run,
        num_generated_tokens_eval: task.gen_tokens,
        metrics,
        error,
    }
}

fn headline_of(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(results::headline(v.get("metrics")?.as_object()?))
}

/// Runs `ia2 eval`: every planned evaluation not finished yet, then the summary file
/// `{outputs}/evaluation_summaries/eval_{UTC time}_{pid}.json`.
pub fn run(args: &EvalArgs) -> Result<Summary> {
    run_impl(args, None)
}

/// [`run`] with the base model already loaded by the caller (e.g. `ia2 sweep`'s workers, which load a model
/// once for many evaluations). `loaded` must be the model `args.model` names, without an adapter.
pub fn run_with_model(args: &EvalArgs, loaded: &LoadedModel) -> Result<Summary> {
    ensure!(
        loaded.adapter.is_none(),
        "the preloaded base model must not carry an adapter"
    );
    run_impl(args, Some(loaded))
}

fn run_impl(args: &EvalArgs, preloaded: Option<&LoadedModel>) -> Result<Summary> {
    let started = Instant::now();
    let started_at = now_secs();
    if args.eval_with_icl {
        info!("--eval-with-icl is implied: both modes are always evaluated");
    }
    let plan = plan(args)?;
    ensure!(!plan.tasks.is_empty(), "nothing to evaluate");
    let mut entries = Vec::new();
    let mut todo = Vec::new();
    let mut failures = Vec::new();
    for task in &plan.tasks {
        if args.overwrite {
            todo.push(task.clone());
            continue;
        }
        match results::existing_result(&task.path, &task.identity_inputs) {
            results::ExistingResult::Same => {
                entries.push(entry(task, "skipped", headline_of(&task.path), None))
            }
            results::ExistingResult::Missing => todo.push(task.clone()),
            results::ExistingResult::Incomplete(why) => {
                warn!(
                    "{} is not a finished evaluation ({why}): evaluating again",
                    task.path.display()
                );
                todo.push(task.clone());
            }
            results::ExistingResult::Different(differences) => {
                // Changed input data (or a result written before identities existed): the old result is
                // outdated and replaced. Anything else (another base model or adapter of the same name,
                // other settings) is a result worth keeping: replacing it needs --overwrite.
                let outdated = differences
                    .iter()
                    .all(|d| d.starts_with("data_files") || d.starts_with("code_version"))
                    || differences.iter().any(|d| d.starts_with("code_version: (absent)"));
                if outdated {
                    warn!(
                        "{} was computed from other data or code ({}): evaluating again",
                        task.path.display(),
                        differences.join("; ")
                    );
                    todo.push(task.clone());
                } else {
                    let msg = ia2_runs::identity::mismatch_message(
                        "evaluation",
                        &task.path,
                        &differences,
                        "--overwrite",
                    );
                    failures.push(format!("{}: {msg}", task.label()));
                    entries.push(entry(task, "failed", None, Some(msg)));
                }
            }
        }
    }
    info!(
        planned = plan.tasks.len(),
        finished = entries.len(),
        to_run = todo.len(),
        "evaluations"
    );
    if args.dry_run {
        entries.extend(todo.iter().map(|t| entry(t, "planned", None, None)));
        return Ok(Summary {
            path: None,
            evaluated: 0,
            skipped: entries.iter().filter(|e| e.status == "skipped").count(),
            failed: failures.len(),
            elapsed_s: started.elapsed().as_secs_f64(),
            entries,
        });
    }
    if !todo.is_empty() {
        let mut base_args = args.model.clone();
        base_args.adapter = None;
        base_args.merge_adapter = false;
        let owned;
        let loaded = match preloaded {
            Some(m) => {
                ensure!(
                    m.dir == plan.model_dir,
                    "the preloaded model {} is not the evaluated {}",
                    m.dir.display(),
                    plan.model_dir.display()
                );
                m
            }
            None => {
                owned = base_args.load()?;
                &owned
            }
        };
        let mut runner = Runner::new(args, &plan, loaded);
        let mut store = DataStore::new(&args.data_dir);
        // Base first, then one adapter at a time (each loaded and merged once for all its evaluations).
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<&Task>> = HashMap::new();
        for t in &todo {
            let k = t.subject.key();
            if !groups.contains_key(&k) {
                order.push(k.clone());
            }
            groups.entry(k).or_default().push(t);
        }
        order.sort_by_key(|k| k != "base");
        'groups: for key in order {
            let group = &groups[&key];
            let view = match runner.model_view(&group[0].subject) {
                Ok(v) => v,
                Err(e) => {
                    let msg = format!("{e:#}");
                    for t in group {
                        entries.push(entry(t, "failed", None, Some(msg.clone())));
                        failures.push(format!("{}: {msg}", t.label()));
                    }
                    if args.keep_going {
                        continue;
                    }
                    break;
                }
            };
            runner.memo.clear();
            for task in group {
                match runner.evaluate(&view, task, &mut store) {
                    Ok(metrics) => entries.push(entry(
                        task,
                        "evaluated",
                        Some(results::headline(&metrics)),
                        None,
                    )),
                    Err(e) => {
                        let msg = format!("{e:#}");
                        warn!("{} failed: {msg}", task.label());
                        entries.push(entry(task, "failed", None, Some(msg.clone())));
                        failures.push(format!("{}: {msg}", task.label()));
                        if !args.keep_going {
                            break 'groups;
                        }
                    }
                }
            }
        }
    }
    let evaluated = entries.iter().filter(|e| e.status == "evaluated").count();
    let skipped = entries.iter().filter(|e| e.status == "skipped").count();
    let failed = entries.iter().filter(|e| e.status == "failed").count();
    let (stamp, iso) = utc(started_at);
    let summary_path = args
        .outputs_dir
        .join("evaluation_summaries")
        .join(format!("eval_{stamp}_{}.json", std::process::id()));
    let mut summary = Summary {
        path: Some(summary_path.clone()),
        evaluated,
        skipped,
        failed,
        elapsed_s: started.elapsed().as_secs_f64(),
        entries,
    };
    let file = json!({
        "timestamp": iso,
        "config": args.to_json(),
        "model": {"name": plan.model_name, "dir": plan.model_dir.display().to_string(),
                  "fingerprint": plan.fingerprint},
        "total_tasks": plan.tasks.len(),
        "evaluated": summary.evaluated,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "total_time_seconds": summary.elapsed_s,
        "passed_over": plan.passed_over,
        "results": summary.entries,
        "ia2_version": env!("CARGO_PKG_VERSION"),
    });
    let written = results::write_atomic(
        &summary_path,
        format!("{}\n", serde_json::to_string_pretty(&file)?).as_bytes(),
    );
    if let Err(e) = written {
        warn!("could not write the summary: {e:#}");
        summary.path = None;
    }
    if !failures.is_empty() {
        let mut msg = format!("{} evaluation(s) failed:", failures.len());
        for f in &failures {
            msg.push_str(&format!("\n  {f}"));
        }
        if let Some(p) = &summary.path {
            msg.push_str(&format!("\n(summary: {})", p.display()));
        }
        bail!(msg);
    }
    Ok(summary)
}

/// A model ready to evaluate: the base decoder or a merged copy, and the adapter to pass to the forward
/// pass (prompt/prefix tuning, or LoRA/IA3 with `--no-merge`).
struct ModelView {
    decoder: Option<Decoder>,
    adapter: Option<Adapter>,
    description: Value,
}

struct Runner<'a> {
    args: &'a EvalArgs,
    loaded: &'a LoadedModel,
    model_json: Value,
    pad: u32,
    /// Label first-sub-token ids per evaluation dataset.
    label_ids: HashMap<String, Vec<u32>>,
    /// Without-ICL records of the current model per (evaluation dataset, T): they do not depend on the
    /// demo source, D, N or run.
    memo: HashMap<(String, usize), (Vec<Record>, f64)>,
}

impl<'a> Runner<'a> {
    fn new(args: &'a EvalArgs, plan: &Plan, loaded: &'a LoadedModel) -> Runner<'a> {
        let mut model_json = loaded.description.clone();
        if let Some(m) = model_json.as_object_mut() {
            m.insert("model_name".into(), json!(plan.model_name));
            m.insert("fingerprint".into(), json!(plan.fingerprint));
            m.insert("device".into(), json!(args.model.device));
            m.remove("adapter");
            m.remove("merged_adapter");
        }
        Runner {
            args,
            loaded,
            model_json,
            pad: loaded
                .generation
                .pad_token_id
                .or(loaded.generation.eos_token_ids.first().copied())
                .unwrap_or(0),
            label_ids: HashMap::new(),
            memo: HashMap::new(),
        }
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.loaded.tokenizer
    }

    fn model_view(&self, subject: &Subject) -> Result<ModelView> {
        let run = match subject {
            Subject::Base => {
                return Ok(ModelView {
                    decoder: None,
                    adapter: None,
                    description: Value::Null,
                });
            }
            Subject::Adapter(run) => run,
        };
        let base = &self.loaded.decoder;
        let (adapter, config) = ia2_adapters::load_peft(&run.dir, &base.config, base.device())
            .with_context(|| format!("loading adapter {}", run.dir.display()))?;
        let kind = match &adapter {
            Adapter::Lora { .. } => AdapterKind::Lora,
            Adapter::Ia3 { .. } => AdapterKind::Ia3,
            Adapter::Prompt { .. } => AdapterKind::Prompt,
            Adapter::Prefix { .. } => AdapterKind::Prefix,
        };
        ensure!(
            kind == run.method.adapter,
            "{}: adapter_config.json holds a {} adapter, but the run's method is {}",
            run.dir.display(),
            config.peft_type(),
            run.method
        );
        let mergeable = matches!(kind, AdapterKind::Lora | AdapterKind::Ia3);
        let merge = mergeable && !self.args.no_merge;
        let description = json!({
            "dir": run.dir.display().to_string(),
            "name": run.name,
            "peft_type": config.peft_type(),
            "merged": merge,
            "final_loss_statistics": run.final_stats,
        });
        info!(adapter = %run.dir.display(), kind = config.peft_type(), merged = merge, "adapter loaded");
        if merge {
            // A copy of the base weights (tensors are shared until the merge replaces the targeted ones):
            // the base model itself is never modified, so no unmerge rounding accumulates over adapters.
            let mut merged = base.clone();
            ia2_adapters::merge(&mut merged, &adapter)
                .with_context(|| format!("merging adapter {}", run.dir.display()))?;
            Ok(ModelView {
                decoder: Some(merged),
                adapter: None,
                description,
            })
        } else {
            Ok(ModelView {
                decoder: None,
                adapter: Some(adapter),
                description,
            })
        }
    }

    /// First sub-token of every label of `set`'s dataset (cached).
    fn labels(&mut self, set: &EvalSet) -> Result<Option<Vec<u32>>> {
        let Some(labels) = &set.dataset.info.labels else {
            return Ok(None);
        };
        if let Some(ids) = self.label_ids.get(&set.dataset.name) {
            return Ok(Some(ids.clone()));
        }
        let mut ids = Vec::with_capacity(labels.len());
        for l in labels {
            let toks = self
                .tokenizer()
                .encode(l, false)
                .with_context(|| format!("tokenizing label {l:?}"))?;
            let first = *toks.first().with_context(|| {
                format!("label {l:?} of {} tokenizes to nothing", set.dataset.name)
            })?;
            ids.push(first);
        }
        let distinct: HashSet<u32> = ids.iter().copied().collect();
        if distinct.len() < ids.len() {
            warn!(
                "labels of {} share first sub-tokens ({:?} -> {:?}): their label-set probabilities tie",
                set.dataset.name, labels, ids
            );
        }
        self.label_ids.insert(set.dataset.name.clone(), ids.clone());
        Ok(Some(ids))
    }

    fn evaluate(
        &mut self,
        view: &ModelView,
        task: &Task,
        store: &mut DataStore,
    ) -> Result<Map<String, Value>> {
        // One writer per result: a concurrent evaluation of the same task waits, then reuses the result.
        let _lock = ia2_runs::Lock::acquire(&task.path, ia2_runs::Wait::Block)?;
        if !self.args.overwrite
            && results::existing_result(&task.path, &task.identity_inputs)
                == results::ExistingResult::Same
        {
            info!("{} was finished by another process meanwhile", task.path.display());
            return Ok(results::read_result(&task.path)?.metrics);
        }
        let started = Instant::now();
        let started_at = now_secs();
        let set = store
            .eval_set(&task.demo, self.args.max_eval_examples)
            .with_context(|| format!("loading the examples of {}", task.label()))?;
        ensure!(
            !set.examples.is_empty(),
            "{} has no val_examples",
            set.dataset.name
        );
        if task.demo.demos == 0 {
            warn!(
                "{}: 0 demos (N = {}), the ICL prompt equals the plain one",
                task.label(),
                task.demo.n
            );
        }
        let labels = if self.args.uncertainty_analysis && task.gen_tokens == 1 {
            self.labels(&set)?
        } else {
            None
        };
        let kind = match (self.args.uncertainty_analysis, task.gen_tokens) {
            (false, _) => MetricsKind::Standard,
            (true, 1) => MetricsKind::NextToken {
                has_labels: labels.is_some(),
            },
            (true, _) => MetricsKind::Steps {
                top_k: self.args.top_k,
            },
        };
        let bar = ProgressBar::new((2 * set.examples.len()) as u64).with_style(
            ProgressStyle::with_template(
                "{msg} {bar:30} {pos}/{len} prompts {elapsed_precise} eta {eta}",
            )
            .expect("valid template"),
        );
        bar.set_message(task.label());
        let memo_key = (set.dataset.name.clone(), task.gen_tokens);
        let (without_icl, without_s, memoized) = match self.memo.get(&memo_key) {
            Some((records, secs)) => {
                bar.inc(set.examples.len() as u64);
                (records.clone(), *secs, true)
            }
            None => {
                let t = Instant::now();
                let prompts: Vec<String> =
                    set.examples.iter().map(|e| e.question.clone()).collect();
                let records = self.run_mode(
                    view,
                    &set,
                    &prompts,
                    task.gen_tokens,
                    labels.as_deref(),
                    &bar,
                )?;
                let secs = t.elapsed().as_secs_f64();
                self.memo.insert(memo_key, (records.clone(), secs));
                (records, secs, false)
            }
        };
        let t = Instant::now();
        let with_icl = self.run_mode(
            view,
            &set,
            &set.icl_prompts,
            task.gen_tokens,
            labels.as_deref(),
            &bar,
        )?;
        let with_s = t.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let results = ModeResults {
            with_icl,
            without_icl,
        };
        let metrics = results::compute_metrics(&results, kind);
        let file = ResultFile {
            trained_model_params: self.trained_params(task),
            evaluation_config: self.evaluation_config(
                view,
                task,
                &set,
                labels.as_deref(),
                started_at,
                started,
                (with_s, without_s, memoized),
            ),
            metrics: metrics.clone(),
            results,
            status: COMPLETE.to_string(),
        };
        results::write_result(&task.path, &file)?;
        info!(
            with_icl = ?metrics.get("with_icl_accuracy"),
            without_icl = ?metrics.get("without_icl_accuracy"),
            path = %task.path.display(),
            "evaluated {}",
            task.label()
        );
        Ok(metrics)
    }

    fn trained_params(&self, task: &Task) -> Value {
        match &task.subject {
            Subject::Adapter(a) => a.raw_config.clone(),
            Subject::Base => json!({
                "model_type": "base",
                "model_name": self.model_json.get("model_name"),
                "num_train_examples": task.demo.n,
                "run_idx": task.demo.run,
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluation_config(
        &self,
        view: &ModelView,
        task: &Task,
        set: &EvalSet,
        label_ids: Option<&[u32]>,
        started_at: u64,
        started: Instant,
        (with_s, without_s, memoized): (f64, f64, bool),
    ) -> Value {
        let info = &set.dataset.info;
        let n = set.examples.len() as f64;
        json!({
            "model_type": task.subject.model_type(),
            "trained_dataset": match &task.subject {
                Subject::Adapter(a) => Some(a.trained_dataset.clone()),
                Subject::Base => None,
            },
            "eval_dataset_name": task.demo.eval_dataset,
            "icl_source_dataset": task.demo.icl_source,
            "icl_max_demos": task.demo.demos,
            "icl_max_demos_requested": task.demo.requested,
            "num_train_examples": task.demo.n,
            "run_idx": task.demo.run,
            "num_generated_tokens_eval": task.gen_tokens,
            "uncertainty_analysis": self.args.uncertainty_analysis,
            "top_k": self.args.top_k,
            "num_eval_examples": set.examples.len(),
            "max_eval_examples": self.args.max_eval_examples,
            "modes": ["with_icl", "without_icl"],
            "prompt_format": "with_icl: \"\\n\\n\".join(demos) + \"\\n\\n\" + question; without_icl: question",
            "stop_strings": [STOP_STRING],
            "eos_token_ids": self.loaded.generation.eos_token_ids,
            "pad_token_id": self.pad,
            "batch_size": self.args.batch_size,
            "parser": info.parser.name(),
            "dataset_in_registry": info.registered,
            "gold": "raw answer parsed with the dataset's parser",
            "label_tokens": info.labels,
            "label_token_ids": label_ids,
            "model": self.model_json,
            "adapter": view.description,
            "demo_file": task.demo.path.display().to_string(),
            "demo_file_built": set.demo_file_built,
            "data_files": set.files,
            "invocation": self.args.to_json(),
            "started_at": utc(started_at).1,
            "finished_at": utc(now_secs()).1,
            "elapsed_s": started.elapsed().as_secs_f64(),
            "timing": {
                "with_icl_s": with_s,
                "with_icl_examples_per_s": n / with_s.max(1e-9),
                "without_icl_s": without_s,
                "without_icl_examples_per_s": n / without_s.max(1e-9),
                "without_icl_reused": memoized,
            },
            "ia2_version": env!("CARGO_PKG_VERSION"),
            "identity": ia2_runs::identity_of(&task.identity_inputs),
            "identity_inputs": task.identity_inputs,
        })
    }

    /// Runs one mode over `prompts` (one per example): batches of similar length, records in example
    /// order.
    fn run_mode(
        &self,
        view: &ModelView,
        set: &EvalSet,
        prompts: &[String],
        gen_tokens: usize,
        label_ids: Option<&[u32]>,
        bar: &ProgressBar,
    ) -> Result<Vec<Record>> {
        let tok = self.tokenizer();
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| tok.encode(p, true))
            .collect::<std::result::Result<_, _>>()?;
        if let Some(i) = ids.iter().position(Vec::is_empty) {
            bail!("example {i} of {} tokenizes to no tokens", set.dataset.name);
        }
        let max_pos = self.loaded.decoder.config.max_position_embeddings;
        if let Some(long) = ids
            .iter()
            .map(Vec::len)
            .max()
            .filter(|&l| l + gen_tokens > max_pos)
        {
            warn!(
                "prompts of up to {long} tokens (+{gen_tokens} generated) exceed the model's max_position_embeddings {max_pos}"
            );
        }
        let decoder = view.decoder.as_ref().unwrap_or(&self.loaded.decoder);
        let adapter = view.adapter.as_ref();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out: Vec<Option<Record>> = vec![None; ids.len()];
        let uncertainty = self.args.uncertainty_analysis;
        let k = self.args.top_k;
        for chunk in order.chunks(self.args.batch_size) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            if uncertainty && gen_tokens == 1 {
                let probes = label_ids.unwrap_or(&[]);
                let dists = engine::next_token(decoder, adapter, &batch, self.pad, k, probes)?;
                for (&i, d) in chunk.iter().zip(dists) {
                    out[i] = Some(self.next_token_record(
                        set,
                        i,
                        ids[i].len(),
                        d,
                        label_ids.is_some(),
                    )?);
                }
            } else {
                let options = GenerateOptions {
                    max_new_tokens: gen_tokens,
                    eos_token_ids: self.loaded.generation.eos_token_ids.clone(),
                    pad_token_id: self.pad,
                    use_cache: true,
                };
                let stop = |_: usize, tokens: &[u32]| stop_string_reached(tok, tokens);
                let gens = engine::generate(
                    decoder,
                    adapter,
                    &batch,
                    &options,
                    stop,
                    uncertainty.then_some(k),
                )?;
                for (&i, g) in chunk.iter().zip(gens) {
                    out[i] = Some(self.generated_record(set, i, ids[i].len(), g, uncertainty)?);
                }
            }
            bar.inc(chunk.len() as u64);
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every example ran"))
            .collect())
    }

    fn base_record(set: &EvalSet, i: usize, prompt_tokens: usize) -> Record {
        let ex = &set.examples[i];
        Record {
            idx: ex.idx,
            query: ex.question.clone(),
            full_answer_text: ex.answer.clone(),
            parsed_answer: set.dataset.info.gold(&ex.answer),
            full_generated_text: String::new(),
            generated_answer: None,
            correct: false,
            prompt_tokens,
            stop_reason: None,
            prob_info: None,
        }
    }

    fn decode_each(&self, ids: &[u32]) -> Result<Vec<String>> {
        ids.iter()
            .map(|&id| Ok(self.tokenizer().decode(&[id], false)?))
            .collect()
    }

    fn generated_record(
        &self,
        set: &EvalSet,
        i: usize,
        prompt_tokens: usize,
        g: Continuation,
        uncertainty: bool,
    ) -> Result<Record> {
        let mut r = Self::base_record(set, i, prompt_tokens);
        let text = self.tokenizer().decode(&g.tokens, true)?;
        r.generated_answer = set.dataset.info.parse(&text);
        r.correct = r.generated_answer.as_deref() == Some(r.parsed_answer.as_str());
        r.stop_reason = Some(
            match g.stop {
                StopReason::Eos => "eos",
                StopReason::StopString => "stop_string",
                StopReason::MaxNewTokens => "max_new_tokens",
            }
            .to_string(),
        );
        if uncertainty {
            let mut token_matrix = Vec::with_capacity(g.steps.len());
            let mut prob_matrix = Vec::with_capacity(g.steps.len());
            let mut step_entropies = Vec::with_capacity(g.steps.len());
            for step in &g.steps {
                let ids: Vec<u32> = step.iter().map(|s| s.0).collect();
                let probs: Vec<f64> = step.iter().map(|s| s.1).collect();
                token_matrix.push(self.decode_each(&ids)?);
                step_entropies.push(metrics::entropy(&metrics::renormalize(&probs)));
                prob_matrix.push(probs);
            }
            r.prob_info = Some(ProbInfo::Steps(StepsInfo {
                generated_text: text.clone(),
                token_matrix,
                prob_matrix,
                step_entropies,
            }));
        }
        r.full_generated_text = text;
        Ok(r)
    }

    fn next_token_record(
        &self,
        set: &EvalSet,
        i: usize,
        prompt_tokens: usize,
        d: NextToken,
        with_labels: bool,
    ) -> Result<Record> {
        let info = &set.dataset.info;
        let mut r = Self::base_record(set, i, prompt_tokens);
        let ids: Vec<u32> = d.top.iter().map(|t| t.0).collect();
        let probs: Vec<f64> = d.top.iter().map(|t| t.1).collect();
        let tokens = self.decode_each(&ids)?;
        let top1 = tokens.first().cloned().unwrap_or_default();
        r.generated_answer = info.parse(&top1);
        r.correct = r.generated_answer.as_deref() == Some(r.parsed_answer.as_str());
        r.full_generated_text = top1;
        let (label_probs, label, correct_label_set) = match (&info.labels, with_labels) {
            (Some(labels), true) => (
                labels
                    .iter()
                    .cloned()
                    .zip(d.probes.iter().copied())
                    .collect(),
                Some(metrics::dist_stats(&d.probes)),
                Some(metrics::label_set_correct(
                    &d.probes,
                    info.label_index(&r.parsed_answer),
                )),
            ),
            _ => (Default::default(), None, None),
        };
        r.prob_info = Some(ProbInfo::NextToken(NextTokenInfo {
            top1: metrics::dist_stats(&probs),
            top_k_tokens: tokens,
            top_k_ids: ids,
            top_k_probs: probs,
            label_probs,
            label,
            correct_top1: r.correct,
            correct_label_set,
        }));
        Ok(r)
    }
}

/// Whether the generated `tokens` contain the stop string. A new occurrence must involve the last token,
/// and `"\n\n"` spans at most two tokens, so only a short tail is decoded (and only when the last token
/// holds a newline).
fn stop_string_reached(tok: &Tokenizer, tokens: &[u32]) -> bool {
    let Some(&last) = tokens.last() else {
        return false;
    };
    if !tok.decode(&[last], true).is_ok_and(|t| t.contains('\n')) {
        return false;
    }
    let tail = &tokens[tokens.len().saturating_sub(4)..];
    tok.decode(tail, true)
        .is_ok_and(|t| t.contains(STOP_STRING))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0).1, "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400).1, "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000).0, "20231114_221320");
    }
}
