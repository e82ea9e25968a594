//! Planning: which evaluations an invocation asks for (the selected adapters and the base model, their demo
//! sets, result paths and identities), decided before anything heavy is loaded.

use crate::args::EvalConfig;
use crate::fingerprint::base_model_fingerprint;
use crate::prompts::{DataStore, DemoPlan};
use crate::select::{self, AdapterRun, ModelType};
use anyhow::{Context, Result, bail, ensure};
use ia2_load::WeightDtype;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::warn;

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

    pub(crate) fn key(&self) -> String {
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
    pub(crate) fn label(&self) -> String {
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
    args: &EvalConfig,
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
    args: &EvalConfig,
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
    args: &EvalConfig,
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
pub fn plan(args: &EvalConfig) -> Result<Plan> {
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
