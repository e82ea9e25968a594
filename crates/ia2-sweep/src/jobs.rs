//! The one place that turns jobs into the commands' configurations (`TrainConfig`, `EvalConfig`, `TrainSetsConfig`, ...)
//! and runs them in-process, with base models loaded once per worker ([`Models`]); and the checks that a
//! finished job's outputs are still what it produced ([`verify`]).

use crate::config::SweepConfig;
use crate::ledger::{Ev, Ledger, Snapshot};
use crate::plan::{Job, JobKind, Plan, Point};
use anyhow::{Context, Result, bail, ensure};
use ia2_eval::EvalConfig;
use ia2_load::{LoadedModel, ModelOptions};
use ia2_train::{AdapterKind, LabelType, Objective, TrainConfig, TrainingMethod};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Whether the `report` stage can run (`ia2-report`'s entry point is wired in [`run_report`]).
pub const REPORT_AVAILABLE: bool = true;

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

/// The model options every model command shares.
fn model_words(c: &SweepConfig) -> Vec<String> {
    let mut w = Vec::new();
    match &c.model_id {
        Some(id) => {
            w.extend(["--model-id".to_string(), id.clone()]);
            if let Some(r) = &c.revision {
                w.extend(["--revision".to_string(), r.clone()]);
            }
        }
        None => w.extend(["--model".to_string(), c.model.clone()]),
    }
    w.extend([
        "--dtype".to_string(),
        c.dtype.clone(),
        "--device".to_string(),
        c.device.clone(),
    ]);
    w
}

/// The key under which workers keep a loaded base model.
pub fn model_key(c: &SweepConfig) -> String {
    model_words(c).join(" ")
}

/// The base model options of `c`.
pub(crate) fn model_options(c: &SweepConfig) -> Result<ModelOptions> {
    let (model, model_id, revision) = match &c.model_id {
        Some(id) => (
            ModelOptions::default().model,
            Some(id.clone()),
            c.revision.clone(),
        ),
        None => (c.model.clone(), None, None),
    };
    Ok(ModelOptions {
        model,
        model_id,
        revision,
        dtype: c.dtype.parse().context("dtype")?,
        device: c.device.clone(),
        ..ModelOptions::default()
    })
}

/// The training options every training and teacher job of `c` shares.
fn common_train_config(c: &SweepConfig) -> Result<TrainConfig> {
    let t = &c.train;
    Ok(TrainConfig {
        model: model_options(c)?,
        data_dir: c.data_dir.clone(),
        output_dir: c.output_dir.clone(),
        num_train_epochs: t.num_train_epochs,
        batch_size: t.batch_size,
        micro_batch: t.micro_batch,
        recompute_mlp: t.recompute_mlp,
        patience: t.patience,
        dev_eval_steps: t.dev_eval_steps,
        seed: t.seed,
        teacher_batch: t.teacher_batch,
        num_shuffles: t.num_shuffles,
        checkpoint_frequency: t.checkpoint_frequency,
        gradient_clip_val: t.gradient_clip_val,
        shuffle_demos: t.shuffle_demos,
        fixed_demos: t.fixed_demos,
        log_weight_norms: t.log_weight_norms,
        log_checkpoints: t.log_checkpoints,
        ..TrainConfig::default()
    })
}

fn set_ldr(a: &mut TrainConfig, ldr: Option<crate::plan::Ldr>) {
    if let Some(l) = ldr {
        a.ldr_mode = true;
        a.num_labelled_samples = l.n;
        a.num_unlabelled_samples = l.m;
        a.max_permutations = l.k;
    }
}

/// The training options of one run of a point (each option by name: the seed passed LoRA LDR options
/// positionally, in the wrong order).
pub fn train_args(c: &SweepConfig, p: &Point, run: usize) -> Result<TrainConfig> {
    let mut a = TrainConfig {
        training_method: p.method,
        dataset: p.dataset.clone(),
        num_generated_tokens: p.num_generated_tokens,
        num_train_examples: p.num_train_examples,
        lr: p.lr,
        lora_type: p.lora_type.clone(),
        lora_r: p.lora_r,
        lora_alpha: p.lora_alpha,
        ia3_type: p.ia3_type.clone(),
        num_virtual_tokens: p.num_virtual_tokens,
        label_type: p.label_type,
        ce_loss_weight: p.ce_loss_weight,
        tokl_top_k: p.tokl_top_k,
        num_runs: run + 1,
        run_index: Some(run),
        ..common_train_config(c)?
    };
    set_ldr(&mut a, p.ldr);
    Ok(a)
}

/// The options that collect one training file's teacher targets (`ia2 teacher`).
pub fn teacher_args(c: &SweepConfig, kind: &JobKind) -> Result<TrainConfig> {
    let JobKind::Teacher {
        dataset,
        num_generated_tokens,
        num_train_examples,
        ldr,
        distributions,
        run,
    } = kind
    else {
        bail!("not a teacher job");
    };
    let objective = if distributions.is_some() {
        Objective::Tokl
    } else {
        Objective::Act
    };
    let mut a = TrainConfig {
        training_method: TrainingMethod {
            adapter: AdapterKind::Lora,
            objective,
        },
        dataset: dataset.clone(),
        num_generated_tokens: *num_generated_tokens,
        num_train_examples: *num_train_examples,
        label_type: LabelType::IclOutputs,
        num_runs: run + 1,
        run_index: Some(*run),
        ..common_train_config(c)?
    };
    if let Some(k) = distributions {
        a.tokl_top_k = *k;
    }
    set_ldr(&mut a, *ldr);
    Ok(a)
}

/// The evaluation options every evaluation of `c` shares.
fn eval_config(c: &SweepConfig) -> Result<EvalConfig> {
    let e = &c.eval;
    Ok(EvalConfig {
        model: model_options(c)?,
        outputs_dir: c.output_dir.clone(),
        data_dir: c.data_dir.clone(),
        top_k: e.top_k,
        batch_size: e.batch_size,
        icl_max_demos: e.icl_max_demos.clone(),
        eval_datasets: e.eval_datasets.clone(),
        icl_source_datasets: e.icl_source_datasets.clone(),
        num_gen_tokens_eval: e.num_gen_tokens_eval,
        max_eval_examples: e.max_eval_examples,
        uncertainty_analysis: e.uncertainty_analysis,
        no_merge: e.no_merge,
        ..EvalConfig::default()
    })
}

/// `ia2 eval` of exactly one trained run.
pub fn eval_run_args(c: &SweepConfig, run_dir: &Path) -> Result<EvalConfig> {
    let mut a = eval_config(c)?;
    a.model.adapter = Some(run_dir.to_path_buf());
    Ok(a)
}

/// `ia2 eval` of the base model for one N and every run.
pub fn eval_base_args(c: &SweepConfig, n: usize) -> Result<EvalConfig> {
    let mut a = eval_config(c)?;
    if a.eval_datasets.is_empty() {
        a.eval_datasets = c.datasets.clone();
    }
    a.model_types = vec!["base".into()];
    a.num_examples = vec![n];
    a.run_indices = (0..c.num_runs as u32).collect();
    Ok(a)
}

/// `ia2 data train-sets` of one dataset.
pub fn train_sets_args(
    c: &SweepConfig,
    dataset: &str,
    ns: &[usize],
) -> ia2_data::train_sets::TrainSetsConfig {
    ia2_data::train_sets::TrainSetsConfig {
        num_runs: c.num_runs as u32,
        max_icl_demos: c.data.max_icl_demos,
        num_dev_examples: c.data.num_dev_examples,
        shuffle_demos: c.train.shuffle_demos,
        num_shuffles: c.train.num_shuffles,
        fixed_demos: c.train.fixed_demos,
        ..ia2_data::train_sets::TrainSetsConfig::new(dataset, c.data_dir.clone(), ns.to_vec())
    }
}

fn ldr_args(c: &SweepConfig, dataset: &str) -> ia2_data::ldr::LdrConfig {
    ia2_data::ldr::LdrConfig {
        dataset: dataset.to_string(),
        num_labelled: c.num_labelled_samples.clone(),
        num_unlabelled: c.num_unlabelled_samples.clone(),
        max_permutations: c.max_permutations.clone(),
        num_runs: c.num_runs as u32,
        num_dev_examples: c.data.num_dev_examples,
        data_dir: c.data_dir.clone(),
        force: false,
    }
}

/// Base models a worker keeps loaded between jobs.
#[derive(Default)]
pub struct Models {
    loaded: HashMap<String, LoadedModel>,
    /// Weight loads so far (also recorded in the ledger).
    pub loads: usize,
}

impl Models {
    /// The loaded model of `c` (loaded now, and recorded, when it is not yet).
    pub fn get(&mut self, c: &SweepConfig, ledger: &Ledger, worker: &str) -> Result<&LoadedModel> {
        let key = model_key(c);
        if !self.loaded.contains_key(&key) {
            let started = Instant::now();
            let m = model_options(c)?.load().context("loading the base model")?;
            let secs = started.elapsed().as_secs_f64();
            self.loads += 1;
            ledger.record(
                None,
                Ev::ModelLoad {
                    model: key.clone(),
                    secs,
                    worker: worker.to_string(),
                    host: crate::ledger::hostname(),
                    pid: std::process::id(),
                },
            )?;
            tracing::info!(model = %key, secs, "base model loaded");
            self.loaded.insert(key.clone(), m);
        }
        Ok(&self.loaded[&key])
    }

    /// An owned handle on the loaded model (the decoder's tensors are shared, the tokenizer is re-read).
    pub fn share(&mut self, c: &SweepConfig, ledger: &Ledger, worker: &str) -> Result<LoadedModel> {
        let m = self.get(c, ledger, worker)?;
        Ok(LoadedModel {
            decoder: m.decoder.clone(),
            tokenizer: ia2_hf::Tokenizer::from_dir(&m.dir)
                .with_context(|| format!("reading the tokenizer of {}", m.dir.display()))?,
            generation: m.generation.clone(),
            adapter: None,
            description: m.description.clone(),
            dir: m.dir.clone(),
        })
    }

    /// Drops every model (after a panic the state of a model is not trusted).
    pub fn clear(&mut self) {
        self.loaded.clear();
    }
}

/// What a finished job produced.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    pub outputs: Vec<String>,
    pub identity: Option<String>,
    pub note: String,
}

/// The identity of a run directory: `ia2.identity` of its training_config.json when recorded, else the
/// sha256 of the file.
pub fn run_identity(dir: &Path) -> Option<String> {
    let path = dir.join(ia2_train::output::CONFIG_FILE);
    let bytes = std::fs::read(&path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    if let Some(id) = v.pointer("/ia2/identity").and_then(|x| x.as_str()) {
        return Some(id.to_string());
    }
    Some(hex::encode(Sha256::digest(&bytes)))
}

/// Checks that a finished job's recorded outputs are still there (and, for runs, unchanged). `Err` says why
/// the job must run again.
pub fn verify(
    job: &Job,
    outputs: &[String],
    identity: Option<&str>,
) -> std::result::Result<(), String> {
    match &job.kind {
        JobKind::Train { .. } => {
            let dir = outputs.first().ok_or("no run directory recorded")?;
            let dir = Path::new(dir);
            if !ia2_train::output::is_complete(dir) {
                return Err(format!("{} is not a finished run any more", dir.display()));
            }
            if let Some(want) = identity
                && run_identity(dir).as_deref() != Some(want)
            {
                return Err(format!(
                    "{} was replaced by another run (identity changed)",
                    dir.display()
                ));
            }
            Ok(())
        }
        JobKind::EvalRun { .. } | JobKind::EvalBase { .. } => {
            if outputs.is_empty() {
                return Err("no result files recorded".into());
            }
            for p in outputs {
                if !ia2_eval::results::is_finished(Path::new(p)) {
                    return Err(format!("{p} is not a finished evaluation any more"));
                }
            }
            Ok(())
        }
        _ => {
            for p in outputs {
                if !Path::new(p).exists() {
                    return Err(format!("{p} is gone"));
                }
            }
            Ok(())
        }
    }
}

/// Runs one job in this process.
pub fn execute(
    job: &Job,
    plan: &Plan,
    snap: &Snapshot,
    models: &mut Models,
    ledger: &Ledger,
    worker: &str,
) -> Result<Produced> {
    let c = &plan.config;
    if let Ok(fail) = std::env::var("IA2_SWEEP_FAIL_JOB")
        && !fail.is_empty()
        && job.id.contains(&fail)
    {
        // Fault injection for tests and drills: fails every job whose id contains the value.
        bail!("injected failure (IA2_SWEEP_FAIL_JOB={fail}) in {}", job.id);
    }
    if let Ok(slow) = std::env::var("IA2_SWEEP_SLOW_JOB")
        && let Some((pat, secs)) = slow.rsplit_once(':')
        && job.id.contains(pat)
    {
        // Fault injection: a job that hangs (for the timeout tests).
        std::thread::sleep(std::time::Duration::from_secs_f64(
            secs.parse().unwrap_or(60.0),
        ));
    }
    match &job.kind {
        JobKind::ToyData { name } => {
            let t = c
                .data
                .toy
                .iter()
                .find(|t| &t.name == name)
                .with_context(|| format!("no [[data.toy]] entry {name:?}"))?;
            let main = c.data_dir.join(name).join("main.json");
            if main.is_file() {
                return Ok(Produced {
                    outputs: vec![path_str(&main)?],
                    note: "exists".into(),
                    ..Default::default()
                });
            }
            let p = ia2_toy::write_task_dataset(
                t.task_seed,
                &c.data_dir,
                name,
                t.num_train,
                t.num_val,
            )?;
            Ok(Produced {
                outputs: vec![path_str(&p)?],
                note: "written".into(),
                ..Default::default()
            })
        }
        JobKind::Prepare { dataset } => {
            let p = c
                .data
                .prepare
                .iter()
                .find(|p| &p.dataset == dataset)
                .with_context(|| format!("no [[data.prepare]] entry {dataset:?}"))?;
            let args = ia2_data::prepare::PrepareConfig {
                dataset: p.dataset.clone(),
                source: p.source.clone(),
                data_dir: c.data_dir.clone(),
                tokenizer: p.tokenizer.clone(),
                num_train_samples: p.num_train_samples,
                num_val_samples: p.num_val_samples,
                seed: 42,
                force: false,
            };
            let path = match ia2_data::prepare::prepare(&args)? {
                ia2_data::prepare::Outcome::Written(p) | ia2_data::prepare::Outcome::Skipped(p) => {
                    p
                }
            };
            Ok(Produced {
                outputs: vec![path_str(&path)?],
                ..Default::default()
            })
        }
        JobKind::TrainSets { dataset, ns } => {
            let args = train_sets_args(c, dataset, ns);
            let mut outputs = Vec::new();
            for &n in ns {
                for r in 0..args.num_runs {
                    outputs.push(path_str(&args.output_path(n, r))?);
                }
            }
            ia2_data::train_sets::run(args)?;
            Ok(Produced {
                outputs,
                ..Default::default()
            })
        }
        JobKind::LdrSets { dataset } => {
            ia2_data::ldr::run(ldr_args(c, dataset))?;
            Ok(Produced {
                outputs: vec![path_str(&c.data_dir.join(format!("{dataset}-ldr")))?],
                ..Default::default()
            })
        }
        JobKind::Teacher { .. } => {
            let args = teacher_args(c, &job.kind)?;
            let model = models.share(c, ledger, worker)?;
            let paths = ia2_train::precompute_teacher_with_model(&args, model)?;
            Ok(Produced {
                outputs: paths.iter().map(|p| path_str(p)).collect::<Result<_>>()?,
                ..Default::default()
            })
        }
        JobKind::Train { point, run } => {
            let args = train_args(c, point, *run)?;
            let model = models.share(c, ledger, worker)?;
            let outcomes = ia2_train::run_with_model(&args, model)?;
            let o = outcomes.first().context("training produced no run")?;
            Ok(Produced {
                outputs: vec![path_str(&o.dir)?],
                identity: run_identity(&o.dir),
                note: if o.trained {
                    "trained".into()
                } else {
                    "finished run found".into()
                },
            })
        }
        JobKind::EvalRun { point, run } => {
            let train = format!("train/{}/run{run}", point.key());
            let state = snap.state(&train);
            let dir = state
                .outputs
                .first()
                .with_context(|| format!("the run directory of {train} is not in the ledger"))?;
            let mut args = eval_run_args(c, &PathBuf::from(dir))?;
            // Results of a run that was trained again are stale: evaluate anew.
            args.overwrite = snap.state(&job.id).invalidated;
            eval(&args, models, c, ledger, worker)
        }
        JobKind::EvalBase { num_train_examples } => {
            let args = eval_base_args(c, *num_train_examples)?;
            eval(&args, models, c, ledger, worker)
        }
        JobKind::Report => run_report(plan, ledger.dir()),
    }
}

fn eval(
    args: &EvalConfig,
    models: &mut Models,
    c: &SweepConfig,
    ledger: &Ledger,
    worker: &str,
) -> Result<Produced> {
    let model = models.get(c, ledger, worker)?;
    let summary = ia2_eval::run_with_model(args, model)?;
    ensure!(
        summary.failed == 0,
        "{} evaluation(s) failed",
        summary.failed
    );
    let outputs = summary
        .entries
        .iter()
        .map(|e| path_str(&e.result_path))
        .collect::<Result<Vec<_>>>()?;
    Ok(Produced {
        outputs,
        identity: None,
        note: format!(
            "{} evaluated, {} already there",
            summary.evaluated, summary.skipped
        ),
    })
}

/// The report stage: `ia2 report` over the sweep's outputs (into `<output_dir>/report`), with the sweep
/// directory (plan and summary) passed along.
fn run_report(plan: &Plan, sweep_dir: &Path) -> Result<Produced> {
    let cfg = ia2_report::ReportConfig {
        outputs: plan.config.output_dir.clone(),
        sweep: Some(sweep_dir.to_path_buf()),
        ..Default::default()
    };
    let out = ia2_report::run(&cfg).context("writing the report")?;
    Ok(Produced {
        outputs: vec![path_str(&out.html)?],
        identity: None,
        note: format!("{} aggregates", out.aggregates),
    })
}

#[cfg(test)]
mod tests {
    /// `[train] recompute_mlp` reaches every training; unset, it is not written (plans read back unchanged).
    #[test]
    fn recompute_mlp_passes_through_and_is_written_only_when_set() {
        let mut c = SweepConfig::default();
        assert!(!common_train_config(&c).unwrap().recompute_mlp);
        let plain = serde_json::to_value(&c.train).unwrap();
        assert!(plain.get("recompute_mlp").is_none(), "{plain}");
        c.train.recompute_mlp = true;
        assert!(common_train_config(&c).unwrap().recompute_mlp);
        let set = serde_json::to_value(&c.train).unwrap();
        assert_eq!(set["recompute_mlp"], serde_json::json!(true));
        let back: crate::config::TrainOptions = serde_json::from_value(set).unwrap();
        assert!(back.recompute_mlp);
    }

    use super::*;
    use ia2_train::TopK;

    #[test]
    fn jobs_build_the_configurations_directly() {
        let c = SweepConfig {
            model_id: Some("org/m".into()),
            revision: Some("v1".into()),
            dtype: "bfloat16".into(),
            datasets: vec!["a".into(), "b".into()],
            num_runs: 3,
            ..SweepConfig::default()
        };
        let teacher = teacher_args(
            &c,
            &JobKind::Teacher {
                dataset: "a".into(),
                num_generated_tokens: 2,
                num_train_examples: 8,
                ldr: None,
                distributions: Some(TopK::K(5)),
                run: 1,
            },
        )
        .unwrap();
        let expected_model = ModelOptions {
            model_id: Some("org/m".into()),
            revision: Some("v1".into()),
            dtype: ia2_load::WeightDtype::Bf16,
            ..ModelOptions::default()
        };
        assert_eq!(teacher.model, expected_model);
        assert_eq!(teacher.training_method.to_string(), "tokl");
        assert_eq!(teacher.tokl_top_k, TopK::K(5));
        assert_eq!(
            (
                teacher.run_index,
                teacher.num_runs,
                teacher.num_train_examples
            ),
            (Some(1), 2, 8)
        );
        assert_eq!(teacher.seed, c.train.seed);

        let base = eval_base_args(&c, 4).unwrap();
        assert_eq!(base.model, expected_model);
        assert_eq!(base.model_types, vec!["base".to_string()]);
        assert_eq!(base.eval_datasets, c.datasets);
        assert_eq!(
            (base.num_examples.clone(), base.run_indices.clone()),
            (vec![4], vec![0, 1, 2])
        );
        let run = eval_run_args(&c, Path::new("out/tok/a/r")).unwrap();
        assert_eq!(run.model.adapter.as_deref(), Some(Path::new("out/tok/a/r")));
        assert!(run.model_types.is_empty());
        assert!(
            teacher_args(
                &c,
                &JobKind::LdrSets {
                    dataset: "a".into()
                }
            )
            .is_err(),
            "not a teacher job"
        );
        let bad = SweepConfig {
            dtype: "f64".into(),
            ..SweepConfig::default()
        };
        assert!(format!("{:#}", eval_base_args(&bad, 4).unwrap_err()).contains("dtype"));
    }
}
