//! The evaluation runner: plan every evaluation (selection, demo sets, result paths) before loading
//! anything heavy, skip finished ones, load the base model once, then per model (base first, then each
//! adapter, merged into a copy of the weights when it is LoRA/IA3) run both modes of every evaluation and
//! write each result atomically, and a summary of the invocation.

//!
//! Split in three: [`crate::plan`] (what to evaluate), this module (running it) and [`crate::summary`]
//! (what happened); everything public is re-exported here, so `ia2_eval::run::*` paths stay valid.

pub use crate::plan::{Plan, Subject, Task, identity_inputs, plan, result_path};
pub use crate::summary::{Status, Summary, SummaryEntry};

use crate::args::EvalConfig;
use crate::engine::{self, Continuation, NextToken};
use crate::metrics;
use crate::prompts::{DataStore, EvalSet};
use crate::results::{
    self, COMPLETE, MetricsKind, ModeResults, NextTokenInfo, ProbInfo, Record, ResultFile,
    StepsInfo,
};
use crate::summary::{entry, headline_of, now_secs, utc};
use anyhow::{Context, Result, bail, ensure};
use ia2_hf::Tokenizer;
use ia2_load::LoadedModel;
use ia2_model::{Adapter, Decoder, GenerateOptions, StopReason};
use ia2_runs::AdapterKind;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Instant;
use tracing::{info, warn};

/// The stop string of generation (kept in the generated text).
pub const STOP_STRING: &str = "\n\n";

/// Runs `ia2 eval`: every planned evaluation not finished yet, then the summary file
/// `{outputs}/evaluation_summaries/eval_{UTC time}_{pid}.json`.
pub fn run(args: &EvalConfig) -> Result<Summary> {
    run_impl(args, None)
}

/// [`run`] with the base model already loaded by the caller (e.g. `ia2 sweep`'s workers, which load a model
/// once for many evaluations). `loaded` must be the model `args.model` names, without an adapter.
pub fn run_with_model(args: &EvalConfig, loaded: &LoadedModel) -> Result<Summary> {
    ensure!(
        loaded.adapter.is_none(),
        "the preloaded base model must not carry an adapter"
    );
    run_impl(args, Some(loaded))
}

fn run_impl(args: &EvalConfig, preloaded: Option<&LoadedModel>) -> Result<Summary> {
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
                entries.push(entry(task, Status::Skipped, headline_of(&task.path), None))
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
                // Changed input data, a retrained adapter (same directory, other weights) or a result
                // written before identities existed: the old result is outdated and replaced. Anything
                // else (another base model of the same name, other settings) is a result worth keeping:
                // replacing it needs --overwrite.
                let outdated = differences.iter().all(|d| {
                    ["data_files", "code_version", "adapter."]
                        .iter()
                        .any(|p| d.starts_with(p))
                }) || differences
                    .iter()
                    .any(|d| d.starts_with("code_version: (absent)"));
                if outdated {
                    warn!(
                        "{} was computed from other data, adapter weights or code ({}): evaluating again",
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
                    entries.push(entry(task, Status::Failed, None, Some(msg)));
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
        entries.extend(todo.iter().map(|t| entry(t, Status::Planned, None, None)));
        return Ok(Summary {
            path: None,
            evaluated: 0,
            skipped: entries
                .iter()
                .filter(|e| e.status == Status::Skipped)
                .count(),
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
                        entries.push(entry(t, Status::Failed, None, Some(msg.clone())));
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
                        Status::Evaluated,
                        Some(results::headline(&metrics)),
                        None,
                    )),
                    Err(e) => {
                        let msg = format!("{e:#}");
                        warn!("{} failed: {msg}", task.label());
                        entries.push(entry(task, Status::Failed, None, Some(msg.clone())));
                        failures.push(format!("{}: {msg}", task.label()));
                        if !args.keep_going {
                            break 'groups;
                        }
                    }
                }
            }
        }
    }
    let evaluated = entries
        .iter()
        .filter(|e| e.status == Status::Evaluated)
        .count();
    let skipped = entries
        .iter()
        .filter(|e| e.status == Status::Skipped)
        .count();
    let failed = entries
        .iter()
        .filter(|e| e.status == Status::Failed)
        .count();
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
    args: &'a EvalConfig,
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
    fn new(args: &'a EvalConfig, plan: &Plan, loaded: &'a LoadedModel) -> Runner<'a> {
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
            info!(
                "{} was finished by another process meanwhile",
                task.path.display()
            );
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
