//! `ia2 demo`: IA2 end to end on a fresh machine, on the project's own tiny in-context learner.
//!
//! 1. the toy model (cached after the first time: `ia2 toy pretrain`);
//! 2. a held-out task of its synthetic family as the dataset `toy_task`, training sets with N examples;
//! 3. LoRA adapters trained with tok (SFT on the ICL outputs), act (IA2) and a2t (IA2, then SFT);
//! 4. the base model with and without ICL demos and every adapter without demos, evaluated in one call;
//! 5. a table of accuracy and calibration (ECE), mean ± std over runs, and where everything was written.

use anyhow::{Context, Result, ensure};
use clap::Parser;
use ia2_data::train_sets::TrainSetsArgs;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tracing::info;

const DATASET: &str = "toy_task";
const METHODS: [&str; 3] = ["tok", "act", "a2t"];

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Working directory: `<dir>/data`, `<dir>/outputs` (runs, teacher cache, evaluations).
    #[arg(long, default_value = "ia2-demo")]
    pub dir: PathBuf,
    /// Seed of the held-out task (its classes and label words).
    #[arg(long, default_value_t = 1)]
    pub task_seed: u64,
    /// N: labelled examples per run (each sees the other N−1 as demos).
    #[arg(long, default_value_t = 4)]
    pub num_train_examples: usize,
    /// Runs (different training examples), for mean ± std.
    #[arg(long, default_value_t = 5)]
    pub num_runs: usize,
    /// Validation examples of the held-out task.
    #[arg(long, default_value_t = 64)]
    pub num_val_examples: usize,
    /// Adam learning rate of the adapters (the same for all three: a2t continues the act run of equal options).
    #[arg(long, default_value_t = 0.03)]
    pub lr: f64,
    /// Maximum epochs per adapter (early stopping on the dev loss usually ends sooner).
    #[arg(long, default_value_t = 200)]
    pub num_train_epochs: usize,
    /// Pretraining steps of the toy model (a different value is a different cached model).
    #[arg(long)]
    pub toy_steps: Option<usize>,
    /// Retrain the toy model even when a cached copy exists.
    #[arg(long)]
    pub retrain_model: bool,
    /// Redo training and evaluation in `--dir` (otherwise finished runs and evaluations are reused).
    #[arg(long)]
    pub force: bool,
}

#[derive(Parser)]
struct TrainWords {
    #[command(flatten)]
    args: ia2_train::TrainArgs,
}

/// One row of the table: per run, accuracy (%) and ECE without / with demos.
#[derive(Debug, Default)]
struct Row {
    acc: Vec<f64>,
    ece: Vec<f64>,
}

fn mean_std(v: &[f64]) -> String {
    match ia2_eval::metrics::mean_std(v) {
        Some((mean, std)) => format!("{mean:6.1} ± {std:4.1}"),
        None => "-".into(),
    }
}

pub fn run(args: &DemoArgs) -> Result<()> {
    ensure!(
        args.num_train_examples >= 2,
        "--num-train-examples must be at least 2"
    );
    ensure!(args.num_runs >= 1, "--num-runs must be at least 1");
    let data_dir = args.dir.join("data");
    let outputs = args.dir.join("outputs");

    // 1. The toy model.
    let mut toy = ia2_toy::ToyModelOptions {
        force: args.retrain_model,
        ..Default::default()
    };
    if let Some(steps) = args.toy_steps {
        toy.config.steps = steps;
    }
    let model_dir = ia2_toy::ensure_toy_model(&toy)?;
    let info = ia2_toy::verify(&model_dir, None)?;
    info!(model = %model_dir.display(), "toy model ready");

    // 2. The held-out task and its training sets.
    let pool = 8 * args.num_train_examples.max(8);
    ia2_toy::write_task_dataset(
        args.task_seed,
        &data_dir,
        DATASET,
        pool,
        args.num_val_examples,
    )?;
    ia2_data::train_sets::run(TrainSetsArgs {
        num_runs: args.num_runs as u32,
        force: true,
        ..TrainSetsArgs::new(DATASET, data_dir.clone(), vec![args.num_train_examples])
    })
    .context("building the training sets")?;

    // 3. tok, act, a2t (a2t continues act).
    let model = model_dir.to_str().context("model path is not UTF-8")?;
    let (data, out) = (
        data_dir.to_str().context("path is not UTF-8")?,
        outputs.to_str().context("path is not UTF-8")?,
    );
    let (n, runs, lr, epochs) = (
        args.num_train_examples.to_string(),
        args.num_runs.to_string(),
        args.lr.to_string(),
        args.num_train_epochs.to_string(),
    );
    for method in METHODS {
        let mut words = vec![
            "ia2-train",
            "--training-method",
            method,
            "--model",
            model,
            "--dataset",
            DATASET,
            "--data-dir",
            data,
            "--output-dir",
            out,
            "--num-train-examples",
            &n,
            "--num-runs",
            &runs,
            "--lr",
            &lr,
            "--num-train-epochs",
            &epochs,
        ];
        if args.force {
            words.push("--force");
        }
        let train = TrainWords::try_parse_from(words)?.args;
        ia2_train::run(&train).with_context(|| format!("training {method}"))?;
    }

    // 4. Base and adapters, both modes, one call (T = 1: uncertainty mode gives calibration).
    let mut eval_words = vec![
        "--model",
        model,
        "--outputs-dir",
        out,
        "--data-dir",
        data,
        "--trained-datasets",
        DATASET,
        "--eval-datasets",
        DATASET,
        "--num-examples",
        &n,
        "--uncertainty-analysis",
        "--model-types",
        "base",
    ];
    eval_words.extend(METHODS);
    if args.force {
        eval_words.push("--overwrite");
    }
    let summary = ia2_eval::run(&ia2_eval::EvalArgs::from_cli(eval_words)?)?;

    // 5. The table.
    let mut rows: Vec<(String, Row)> = Vec::new();
    let mut push = |name: String, acc: f64, ece: f64| {
        match rows.iter_mut().find(|r| r.0 == name) {
            Some(r) => {
                r.1.acc.push(acc);
                r.1.ece.push(ece);
            }
            None => rows.push((
                name,
                Row {
                    acc: vec![acc],
                    ece: vec![ece],
                },
            )),
        };
    };
    for e in &summary.entries {
        let metrics = read_metrics(&e.result_path)?;
        let get = |k: &str| metrics.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        if e.model_type == "base" {
            push(
                "base, with ICL demos".into(),
                get("with_icl_accuracy_label_set"),
                get("with_icl_ece_label"),
            );
        }
        let name = if e.model_type == "base" {
            "base, no demos".to_string()
        } else {
            format!("{} (LoRA), no demos", e.model_type)
        };
        push(
            name,
            get("without_icl_accuracy_label_set"),
            get("without_icl_ece_label"),
        );
    }
    let chance = 100.0 / info_classes(&info).max(1) as f64;
    println!(
        "\nIA2 on the toy in-context learner: held-out task (seed {}), N = {}, {} runs, {} validation examples \
         (chance {chance:.0} %)\n",
        args.task_seed, args.num_train_examples, args.num_runs, args.num_val_examples
    );
    println!(
        "{:<26} {:>15} {:>15}",
        "model", "accuracy %", "ECE (label) %"
    );
    for (name, row) in &rows {
        let ece: Vec<f64> = row.ece.iter().map(|e| e * 100.0).collect();
        println!(
            "{name:<26} {:>15} {:>15}",
            mean_std(&row.acc),
            mean_std(&ece)
        );
    }
    println!(
        "\nmodel:       {}\ndata:        {}\nadapters:    {}/{{tok,act,a2t}}/{DATASET}/\nevaluations: {}/evaluations/\nsummary:     {}",
        model_dir.display(),
        data_dir.join(DATASET).display(),
        outputs.display(),
        outputs.display(),
        summary
            .path
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string())
    );
    Ok(())
}

fn read_metrics(path: &Path) -> Result<serde_json::Map<String, Value>> {
    let v: Value = ia2_data::io::read_json(path)?;
    v.get("metrics")
        .and_then(Value::as_object)
        .cloned()
        .with_context(|| format!("{}: no `metrics`", path.display()))
}

fn info_classes(info: &ia2_toy::ToyModelInfo) -> usize {
    info.family
        .get("classes_per_task")
        .and_then(Value::as_u64)
        .unwrap_or(2) as usize
}
