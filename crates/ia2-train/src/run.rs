//! `ia2 train` end to end: load the base model once, then for each run read its training file, get the teacher
//! targets (cache or collect), create or continue the adapter, train, and write the run directory.

use crate::args::{LabelType, TrainConfig};
use crate::config::{Ia2RunConfig, RunConfig, RunConfigExt};
use crate::examples::{DemoOrder, RunData, Sequence, load_run_data};
use crate::loss::Item;
use crate::method::Loss;
use crate::output::{self, ExistingRun, FinalStats, RunSlot, TrainLoss};
use crate::teacher::{self, CacheKey, Target, Targets};
use crate::trainer::{self, LoopConfig};
use anyhow::{Context, Result, bail, ensure};
use ia2_adapters::PeftConfig;
use ia2_load::LoadedModel;
use ia2_model::Adapter;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// What happened to one run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run: usize,
    pub dir: PathBuf,
    /// False when a finished run of the same configuration was found and kept.
    pub trained: bool,
    pub stats: Option<FinalStats>,
    pub teacher_from_cache: Option<bool>,
}

/// The base model and what every run shares.
struct Base {
    model: LoadedModel,
    fingerprint: String,
    eos: Vec<u32>,
    /// EOS appended to ground-truth answers when T > 1 (the tokenizer's EOS, as the seed).
    answer_eos: Option<u32>,
    pad: u32,
}

fn load_base(args: &TrainConfig) -> Result<Base> {
    ensure!(
        args.model.adapter.is_none(),
        "ia2 train creates its own adapter: --adapter is not accepted (a2t / t2a continue their phase-1 \
         adapter automatically)"
    );
    base_from(args.model.load()?, args)
}

/// The shared part of every run, from a model the caller already loaded (see [`run_with_model`]).
fn base_from(mut model: LoadedModel, args: &TrainConfig) -> Result<Base> {
    model.decoder.recompute_mlp = args.recompute_mlp;
    let fingerprint = teacher::model_fingerprint(&model.dir)?;
    let mut eos = model.generation.eos_token_ids.clone();
    let answer_eos = model.tokenizer.special_tokens().eos.as_ref().map(|e| e.1);
    if let Some(e) = answer_eos
        && !eos.contains(&e)
    {
        eos.push(e);
    }
    let pad = model.generation.pad_token_id.or(answer_eos).unwrap_or(0);
    Ok(Base {
        model,
        fingerprint,
        eos,
        answer_eos,
        pad,
    })
}

fn ia2_block(
    args: &TrainConfig,
    base: &Base,
    data_file: &Path,
    data: &RunData,
) -> Result<Ia2RunConfig> {
    Ok(Ia2RunConfig {
        version: env!("CARGO_PKG_VERSION").to_string(),
        model_id: args.model.model_arg(),
        base_model_fingerprint: base.fingerprint.clone(),
        dtype: format!("{:?}", args.model.dtype).to_lowercase(),
        train_file: data_file.display().to_string(),
        train_file_sha256: teacher::file_sha256(data_file)?,
        seed: args.seed,
        num_train_epochs: args.num_train_epochs,
        batch_size: args.batch_size,
        micro_batch: args.micro_batch,
        patience: args.patience,
        dev_eval_steps: args.dev_eval_steps,
        gradient_clip_val: args.gradient_clip_val,
        shuffle_demos: args.shuffle_demos,
        num_shuffles: args.shuffle_demos.then_some(args.num_shuffles),
        fixed_demos: args.fixed_demos,
        adam: ia2_runs::AdamSettings::with_lr(args.lr),
        continued_from: None,
        continued_from_identity: None,
        code_version: String::new(),
        identity: None,
        num_train_sequences: data.train.len(),
        num_dev_sequences: data.dev.len(),
    })
}

fn read_data(args: &TrainConfig, base: &Base, run: usize) -> Result<(PathBuf, RunData)> {
    args.validate_for_model(&base.model.decoder.config)?;
    let file = args.data_file(run);
    ensure!(
        file.is_file(),
        "training file {} does not exist: create it with `ia2 data train-sets --dataset {} \
         --num-train-examples {}` (run index {run})",
        file.display(),
        args.dataset,
        args.num_train_examples
    );
    // A training file built from an older main.json would train on the old task while eval uses the new one.
    let main = args.data_dir.join(&args.dataset).join("main.json");
    if main.is_file()
        && let ia2_runs::provenance::SourceCheck::Changed(_) =
            ia2_runs::provenance::check_sources(&file, &[&main])?
    {
        bail!(
            "training file {} was built from an older {}: rebuild it with `ia2 data train-sets --dataset {}` \
             (it rebuilds files whose main.json changed)",
            file.display(),
            main.display(),
            args.dataset
        );
    }
    let order = DemoOrder {
        shuffles: args.shuffle_demos.then_some(args.num_shuffles),
        run,
    };
    let data = load_run_data(
        &file,
        &base.model.tokenizer,
        args.num_generated_tokens,
        base.answer_eos,
        order,
    )?;
    let max_pos = base.model.decoder.config.max_position_embeddings;
    let longest = data
        .train
        .iter()
        .chain(&data.dev)
        .map(|s| s.icl_ids.len() + args.num_generated_tokens)
        .max()
        .unwrap_or(0);
    ensure!(
        longest <= max_pos,
        "{}: an ICL prompt plus T needs {longest} positions, the model has {max_pos}",
        file.display()
    );
    Ok((file, data))
}

fn needs_teacher(args: &TrainConfig) -> bool {
    let loss = args.training_method.objective.loss();
    loss != Loss::Ce || args.label_type == LabelType::IclOutputs
}

fn teacher_targets(
    args: &TrainConfig,
    base: &Base,
    run: usize,
    file: &Path,
    data: &RunData,
) -> Result<(Targets, bool)> {
    let key = CacheKey {
        // 2: the checksum covers every header field (response tokens included).
        format: 2,
        model_fingerprint: base.fingerprint.clone(),
        dtype: format!("{:?}", args.model.dtype).to_lowercase(),
        data_file_sha256: teacher::file_sha256(file)?,
        demo_shuffles: args.shuffle_demos.then_some((args.num_shuffles, run)),
        num_generated_tokens: args.num_generated_tokens,
        distributions: (args.training_method.objective.loss() == Loss::Kl)
            .then(|| args.tokl_top_k.to_string()),
    };
    teacher::get_or_collect(
        &args.teacher_cache(),
        &key,
        &base.model.decoder,
        &data.train,
        &data.dev,
        &teacher::DecodeOptions {
            eos: base.eos.clone(),
            pad: base.pad,
            batch: args.teacher_batch,
        },
    )
}

/// The items the loss sees: which response each sequence trains on, and its teacher targets.
fn items<'a>(
    args: &TrainConfig,
    seqs: &'a [Sequence],
    targets: Option<&'a [Target]>,
) -> Result<Vec<Item<'a>>> {
    let loss = args.training_method.objective.loss();
    seqs.iter()
        .enumerate()
        .map(|(i, s)| {
            let t = targets.map(|t| &t[i]);
            let teacher_tokens = || {
                t.map(|t| t.tokens.as_slice())
                    .context("teacher targets missing")
            };
            let response = match (loss, args.label_type) {
                (Loss::Kl | Loss::Mse, _) | (_, LabelType::IclOutputs) => teacher_tokens()?,
                (_, LabelType::GroundTruth) => s.ground_truth.as_slice(),
            };
            Ok(Item {
                query: &s.query_ids,
                response,
                activations: if loss.needs_activations() {
                    Some(
                        t.context("teacher activations missing")?
                            .activations
                            .as_slice(),
                    )
                } else {
                    None
                },
                dist: if loss == Loss::Kl {
                    t.and_then(|t| t.dist.as_ref())
                } else {
                    None
                },
            })
        })
        .collect()
}

/// The phase-1 adapter that a2t / t2a continue: same options, the phase-1 method (t2a's tok keeps the label
/// type; the seed looked for `…_None` and never found it).
fn phase_one_adapter(
    args: &TrainConfig,
    base: &Base,
    config: &RunConfig,
) -> Result<Option<(Adapter, PeftConfig, PathBuf, String)>> {
    let Some(phase_one) = args.training_method.phase_one() else {
        return Ok(None);
    };
    let mut p1 = config.clone();
    p1.training_method = phase_one;
    p1.ce_loss_weight = None;
    p1.tokl_top_k = None;
    let dir = args
        .output_dir
        .join(phase_one.to_string())
        .join(&args.dataset)
        .join(p1.run_name());
    // Not while another process replaces it.
    let _lock = ia2_runs::Lock::acquire(&dir, ia2_runs::Wait::Block)?;
    if !output::is_complete(&dir) {
        bail!(
            "{} continues the {phase_one} adapter, but no finished {phase_one} run exists at {}: train it \
             first with `ia2 train --training-method {phase_one}` and the same options",
            args.training_method,
            dir.display()
        );
    }
    let recorded: RunConfig = ia2_runs::read_json(&dir.join(output::CONFIG_FILE))?;
    ensure!(
        recorded.ia2.base_model_fingerprint == base.fingerprint,
        "the {phase_one} adapter at {} was trained on another base model ({}), not {}",
        dir.display(),
        recorded.ia2.model_id,
        args.model.model_arg()
    );
    let (adapter, peft) = ia2_adapters::load_peft(
        &dir,
        &base.model.decoder.config,
        base.model.decoder.device(),
    )?;
    Ok(Some((adapter, peft, dir, recorded.identity())))
}

/// Trains every requested run.
pub fn run(args: &TrainConfig) -> Result<Vec<RunOutcome>> {
    args.validate()?;
    let base = load_base(args)?;
    let mut outcomes = Vec::new();
    for run in args.runs() {
        let outcome = train_one(args, &base, run)
            .with_context(|| format!("{} run {run}", args.training_method))?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// [`run`] with a base model the caller already loaded (e.g. `ia2 sweep`'s workers, which load a model once
/// for many jobs). `model` must be what `args.model` names, without an adapter.
pub fn run_with_model(args: &TrainConfig, model: LoadedModel) -> Result<Vec<RunOutcome>> {
    args.validate()?;
    ensure!(
        model.adapter.is_none(),
        "ia2 train creates its own adapter: the preloaded model must not carry one"
    );
    let base = base_from(model, args)?;
    let mut outcomes = Vec::new();
    for run in args.runs() {
        let outcome = train_one(args, &base, run)
            .with_context(|| format!("{} run {run}", args.training_method))?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// [`precompute_teacher`] with a base model the caller already loaded.
pub fn precompute_teacher_with_model(
    args: &TrainConfig,
    model: LoadedModel,
) -> Result<Vec<PathBuf>> {
    args.validate()?;
    let base = base_from(model, args)?;
    teacher_runs(args, &base)
}

/// `ia2 teacher`: collects (or verifies) the teacher targets of every run without training.
pub fn precompute_teacher(args: &TrainConfig) -> Result<Vec<PathBuf>> {
    args.validate()?;
    let base = load_base(args)?;
    teacher_runs(args, &base)
}

fn teacher_runs(args: &TrainConfig, base: &Base) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for run in args.runs() {
        let (file, data) = read_data(args, base, run)?;
        let (_, cached) = teacher_targets(args, base, run, &file, &data)?;
        info!(run, cached, "teacher targets ready");
        paths.push(args.teacher_cache());
    }
    Ok(paths)
}

fn train_one(args: &TrainConfig, base: &Base, run: usize) -> Result<RunOutcome> {
    let (file, data) = read_data(args, base, run)?;
    let mut config = RunConfig::new(args, run, ia2_block(args, base, &file, &data)?);
    let decoder = &base.model.decoder;
    let (mut adapter, mut peft) = match phase_one_adapter(args, base, &config)? {
        Some((a, p, from, identity)) => {
            config.ia2.continued_from = Some(from.display().to_string());
            config.ia2.continued_from_identity = Some(identity);
            (a, p)
        }
        None => {
            let peft = config.peft_config(&decoder.config)?;
            let seed = args.seed.wrapping_add(run as u64);
            (
                ia2_adapters::init_adapter(&peft, &decoder.config, seed, decoder.device())?,
                peft,
            )
        }
    };
    let config = config.seal();
    let dir = config.dir(&args.output_dir);
    // One writer per run: a second process waits here, then finds the run finished.
    let slot = RunSlot::acquire(&dir, ia2_runs::Wait::Block)?;
    match slot.existing(&config) {
        ExistingRun::Same(stats) if !args.force => {
            info!(dir = %dir.display(), "finished run of the same configuration exists; skipping (--force retrains)");
            return Ok(RunOutcome {
                run,
                stats: Some(*stats),
                dir,
                trained: false,
                teacher_from_cache: None,
            });
        }
        ExistingRun::Different(differences) if !args.force => {
            bail!(ia2_runs::identity::mismatch_message(
                "run",
                &dir,
                &differences,
                "--force"
            ));
        }
        ExistingRun::Incomplete(why) => {
            warn!("{why}: training it again");
        }
        _ => {}
    }
    let (targets, from_cache) = if needs_teacher(args) {
        let (t, c) = teacher_targets(args, base, run, &file, &data)?;
        (Some(t), Some(c))
    } else {
        (None, None)
    };
    peft.set_base_model_name_or_path(Some(args.model.model_arg()));
    let train_items = items(
        args,
        &data.train,
        targets.as_ref().map(|t| t.train.as_slice()),
    )?;
    let dev_items = items(args, &data.dev, targets.as_ref().map(|t| t.dev.as_slice()))?;
    let loop_cfg = LoopConfig {
        loss: args.training_method.objective.loss(),
        ce_weight: args.ce_loss_weight,
        epochs: args.num_train_epochs,
        batch_size: args.batch_size,
        micro_batch: args.micro_batch,
        lr: args.lr,
        gradient_clip: args.gradient_clip_val,
        patience: args.patience,
        dev_eval_steps: args.dev_eval_steps,
        seed: args.seed.wrapping_add(run as u64),
        pad: base.pad,
    };
    let mut out = slot.start()?;
    out.write_json(output::CONFIG_FILE, &config)?;
    let steps_per_epoch = train_items
        .len()
        .div_ceil(args.batch_size.min(train_items.len()).max(1));
    let bar = crate::progress::bar(
        (steps_per_epoch * args.num_train_epochs) as u64,
        &format!("{} run {run}", args.training_method),
    );
    let tmp = out.tmp.clone();
    let outcome = trainer::train(
        decoder,
        &mut adapter,
        &train_items,
        &dev_items,
        &loop_cfg,
        |rec, a| {
            out.log(rec)?;
            bar.inc(1);
            let dev = rec
                .dev
                .map_or(String::new(), |d| format!(" dev {:.4}", d.total));
            bar.set_message(format!("loss {:.4}{dev}", rec.train.total));
            if args.log_checkpoints && rec.step % args.checkpoint_frequency == 0 {
                let mut snapshot = a.clone();
                snapshot.without_autodiff();
                ia2_adapters::save_peft(
                    tmp.join("checkpoints").join(format!("step_{}", rec.step)),
                    &snapshot,
                    &peft,
                )?;
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    let stats = FinalStats {
        best_dev_loss: outcome.best_dev.map(|d| d.total),
        current_train_loss: TrainLoss {
            mse: outcome.last_epoch_train.mse,
            ce: outcome.last_epoch_train.ce,
            total: outcome.last_epoch_train.total,
        },
        training_completed: true,
        // 1-based, as the seed writes it (epoch + 1 after the last epoch; 0 when none ran).
        final_epoch: outcome.final_epoch + usize::from(args.num_train_epochs > 0),
        total_steps: outcome.total_steps,
        early_stopped: outcome.early_stopped,
        best_step: outcome.best_step,
    };
    ia2_adapters::save_peft(&out.tmp, &adapter, &peft)?;
    out.write_json(output::STATS_FILE, &stats)?;
    let dir = out.finish()?;
    info!(
        "{} run {run}: {} steps, epochs {}, train loss {:.5}, best dev {} → {}",
        args.training_method,
        stats.total_steps,
        stats.final_epoch,
        stats.current_train_loss.total,
        stats
            .best_dev_loss
            .map_or("n/a".into(), |d| format!("{d:.5}")),
        dir.display()
    );
    Ok(RunOutcome {
        run,
        dir,
        trained: true,
        stats: Some(stats),
        teacher_from_cache: from_cache,
    })
}
