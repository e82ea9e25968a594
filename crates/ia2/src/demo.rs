//! `ia2 demo`: the paper in miniature on the project's own tiny in-context learner, through the same code a
//! user runs, ending in the HTML report.
//!
//! 1. the toy model (pretrained once, then cached: `ia2 toy pretrain`);
//! 2. a declarative sweep plan written to `<dir>/plan.toml` (held-out toy tasks created by `[[data.toy]]`,
//!    N values, base with / without demos plus tok, act, a2t and tna LoRA adapters, several runs and learning
//!    rates, evaluation in uncertainty mode), run by the `ia2-sweep` library with its local executor and
//!    ledger (a second demo finds every job done and reruns nothing): exactly
//!    `ia2 sweep run <dir>/plan.toml --dir <dir>/sweep`;
//! 3. both analyses of `ia2 analyze` (LoRA subspace overlap; activation similarity, also against accuracy and
//!    ECE), with their cache;
//! 4. `ia2 report` over everything (hyper-parameters chosen by mean dev loss, bootstrap intervals), after the
//!    analyses so that their figures are in the HTML;
//! 5. the main table, read from the report's `summary.json`, and where `report.html` is.

use anyhow::{Context, Result, bail, ensure};
use ia2_report::aggregate::Aggregate;
use ia2_report::tables::{accuracy_metric, ece_metric};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The adapters trained (every LoRA method of the paper's main tables).
const METHODS: [&str; 4] = ["tok", "act", "a2t", "tna"];

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Working directory: `plan.toml`, `sweep/` (plan, ledger, logs), `data/`, `outputs/` (runs, evaluations,
    /// `analysis/`, `report/`).
    #[arg(long, default_value = "ia2-demo")]
    pub dir: PathBuf,
    /// Seeds of the held-out toy tasks (one dataset `toy_s{seed}` each).
    #[arg(long, num_args = 1.., default_values_t = [1u64, 2, 3])]
    pub task_seeds: Vec<u64>,
    /// N values: labelled examples per run (each sees the other N−1 as demos).
    #[arg(long, num_args = 1.., default_values_t = [4usize, 8, 16])]
    pub num_train_examples: Vec<usize>,
    /// Runs per grid point (different training examples), for mean ± std and bootstrap intervals.
    #[arg(long, default_value_t = 5)]
    pub num_runs: usize,
    /// Learning rates; the report keeps, per method and N, the one with the lowest mean dev loss.
    #[arg(long, num_args = 1.., default_values_t = [0.0005f64, 0.001])]
    pub lrs: Vec<f64>,
    /// Demos D of the evaluation with ICL (capped at N−1; equal for every N so that N is a plot axis).
    #[arg(long, default_value_t = 3)]
    pub icl_demos: usize,
    /// Evaluation examples per held-out task.
    #[arg(long, default_value_t = 48)]
    pub num_val_examples: usize,
    /// Dev examples per training set (early stopping and hyper-parameter selection).
    #[arg(long, default_value_t = 16)]
    pub num_dev_examples: usize,
    /// Maximum epochs per adapter (early stopping on the dev loss usually ends sooner).
    #[arg(long, default_value_t = 60)]
    pub num_train_epochs: usize,
    /// Examples per optimizer step (gradient accumulation). 16: the whole training set at every N ≤ 16. With
    /// small noisy batches, the first Adam steps of a2t (SFT continuing a converged act adapter) can blow its
    /// loss up, which the trainer fails as divergence.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Dev evaluations without improvement before training stops.
    #[arg(long, default_value_t = 6)]
    pub patience: usize,
    /// M of the similarity analysis: the first M evaluation examples.
    #[arg(long, default_value_t = 24)]
    pub similarity_examples: usize,
    /// Worker processes of the sweep (default: the available cores).
    #[arg(long)]
    pub max_parallel: Option<usize>,
    /// Pretraining steps of the toy model (a different value is a different cached model).
    #[arg(long)]
    pub toy_steps: Option<usize>,
    /// Retrain the toy model even when a cached copy exists.
    #[arg(long)]
    pub retrain_model: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// The dataset name of a held-out toy task.
fn task_name(seed: u64) -> String {
    format!("toy_s{seed}")
}

fn toml_str(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("path {} is not UTF-8", p.display()))?;
    Ok(ia2_sweep::toml::Value::String(s.to_string()).to_string())
}

fn list<T: ToString>(v: &[T]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn float_list(v: &[f64]) -> String {
    list(
        &v.iter()
            .map(|x| ia2_sweep::toml::Value::Float(*x).to_string())
            .collect::<Vec<_>>(),
    )
}

/// The sweep plan of the demo, as the TOML file a user edits and reruns.
pub fn plan_toml(args: &DemoArgs, model: &Path, dir: &Path, workers: usize) -> Result<String> {
    let datasets: Vec<String> = args
        .task_seeds
        .iter()
        .map(|&s| format!("\"{}\"", task_name(s)))
        .collect();
    let pool = (2 * args.num_train_examples.iter().copied().max().unwrap_or(8))
        .max(args.num_dev_examples + 16)
        .max(32);
    let mut toy = String::new();
    for &s in &args.task_seeds {
        toy.push_str(&format!(
            "\n[[data.toy]]                          # a held-out task of the toy family, created when missing\n\
             name = \"{}\"\ntask_seed = {s}\nnum_train = {pool}                       # pool of training / dev / demo examples\n\
             num_val = {}                         # evaluation examples\n",
            task_name(s),
            args.num_val_examples
        ));
    }
    let sweep_dir = dir.join("sweep");
    Ok(format!(
        "# The sweep of `ia2 demo` (written by it; edit and rerun with\n\
         #   ia2 sweep run {plan} --dir {sweep}\n\
         # then `ia2 analyze subspace|similarity` and `ia2 report`, as the demo does: see README).\n\
         model = {model}   # the cached toy model\n\
         data_dir = {data}\n\
         output_dir = {outputs}\n\
         training_methods = [\"tok\", \"act\", \"a2t\", \"tna\"]   # SFT only, IA2 only, IA2 -> SFT, IA2 + SFT\n\
         datasets = {datasets}\n\
         num_train_examples = {ns}\n\
         lrs = {lrs}                  # the report keeps the lowest mean dev loss per method and N\n\
         num_runs = {runs}\n\
         lora_types = [\"qko\"]\n\
         lora_rs = [8]\n\
         lora_alphas = [8]\n\
         ce_loss_weights = [0.02]              # tna's w\n\
         \n\
         [train]\n\
         num_train_epochs = {epochs}\n\
         patience = {patience}\n\
         batch_size = {batch}                      # whole training sets: a2t's first steps stay stable\n\
         \n\
         [data]\n\
         num_dev_examples = {dev}\n\
         \n\
         [eval]                                # base model with and without demos, every run without\n\
         uncertainty_analysis = true           # accuracy, entropy, ECE\n\
         icl_max_demos = [{d}]\n\
         batch_size = 32\n\
         \n\
         [report]\n\
         enabled = false                       # the demo writes the report after the analyses\n\
         \n\
         [execution]\n\
         max_parallel = {workers}\n\
         max_attempts = 2\n\
         {toy}",
        plan = dir.join("plan.toml").display(),
        sweep = sweep_dir.display(),
        model = toml_str(model)?,
        data = toml_str(&dir.join("data"))?,
        outputs = toml_str(&dir.join("outputs"))?,
        datasets = list(&datasets),
        ns = list(&args.num_train_examples),
        lrs = float_list(&args.lrs),
        runs = args.num_runs,
        epochs = args.num_train_epochs,
        patience = args.patience,
        batch = args.batch_size,
        dev = args.num_dev_examples,
        d = args.icl_demos,
    ))
}

fn stage(i: usize, text: &str) {
    eprintln!("\n[{i}/5] {text}");
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    ensure!(!args.task_seeds.is_empty(), "--task-seeds: at least one");
    ensure!(
        !args.num_train_examples.is_empty() && args.num_train_examples.iter().all(|&n| n >= 2),
        "--num-train-examples: each N must be at least 2"
    );
    ensure!(args.num_runs >= 1, "--num-runs must be at least 1");
    ensure!(!args.lrs.is_empty(), "--lrs: at least one learning rate");
    ensure!(args.icl_demos >= 1, "--icl-demos must be at least 1");
    ensure!(
        args.similarity_examples >= 1,
        "--similarity-examples must be at least 1"
    );
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let outputs = dir.join("outputs");
    let data_dir = dir.join("data");
    let sweep_dir = dir.join("sweep");
    let workers = args.max_parallel.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    ensure!(workers >= 1, "--max-parallel must be at least 1");

    // 1. The toy model.
    stage(1, "toy model (pretrained once, then cached)");
    let mut toy = ia2_toy::ToyModelOptions {
        force: args.retrain_model,
        ..Default::default()
    };
    if let Some(steps) = args.toy_steps {
        toy.config.steps = steps;
    }
    let model_dir = ia2_toy::ensure_toy_model(&toy)?;
    let info = ia2_toy::verify(&model_dir, None)?;
    eprintln!("      {}", model_dir.display());

    // 2. The sweep: its plan file, then exactly what `ia2 sweep run PLAN --dir DIR` does.
    let plan_file = dir.join("plan.toml");
    let text = plan_toml(args, &model_dir, &dir, workers)?;
    if std::fs::read_to_string(&plan_file).ok().as_deref() != Some(text.as_str()) {
        ia2_data::io::write_atomic(&plan_file, text.as_bytes())?;
    }
    let mut config = ia2_sweep::SweepConfig::load(Some(&plan_file), &[], &[])?;
    config.absolutize(&std::env::current_dir()?);
    config.validate()?;
    let plan = ia2_sweep::Plan::build(&config)?;
    plan.write(&sweep_dir)?;
    let before = ia2_sweep::status::status(&sweep_dir)?;
    stage(
        2,
        &format!(
            "sweep {} → {}: {} jobs, {} already done ({} worker(s))",
            plan_file.display(),
            sweep_dir.display(),
            before.total.total,
            before.total.done,
            workers
        ),
    );
    let t = Instant::now();
    let local = ia2_sweep::local::run_local(
        &sweep_dir,
        &ia2_sweep::local::LocalOptions {
            progress: !args.no_progress,
            ..Default::default()
        },
    )?;
    let secs = t.elapsed().as_secs_f64();
    ia2_sweep::status::write_summary(&sweep_dir, secs)?;
    let after = ia2_sweep::status::status(&sweep_dir)?;
    // A failed job leaves a gap the report lists (its dependents are blocked); the demo still shows what
    // finished and fails at the end.
    let incomplete = (after.total.failed + after.total.blocked > 0 || !local.counts.complete())
        .then(|| {
            format!(
                "the demo's sweep did not finish:\n{after}\n(`ia2 sweep retry {}` runs the failed jobs again)",
                sweep_dir.display()
            )
        });
    if let Some(msg) = &incomplete {
        eprintln!("{msg}");
    }
    eprintln!(
        "      jobs run now: {}, reused: {} of {} ({secs:.1} s, {} model load(s))",
        after.total.done.saturating_sub(before.total.done),
        before.total.done,
        after.total.total,
        local.model_loads
    );

    // 3. The analyses, over the runs at the hyper-parameters the report selects (mean dev loss).
    let analysis_dir = outputs.join("analysis");
    let selection = ia2_analyze::SelectionConfig {
        outputs: outputs.clone(),
        methods: METHODS.map(String::from).to_vec(),
        ..Default::default()
    };
    stage(3, "analysis: LoRA subspace overlap");
    let t = Instant::now();
    let sub = ia2_analyze::subspace::run(&ia2_analyze::SubspaceConfig {
        selection: selection.clone(),
        tolerance: ia2_analyze::RankTolerance::default(),
        out_dir: analysis_dir.clone(),
        plots: true,
    })
    .context("the subspace analysis")?;
    eprintln!(
        "      {} group(s), {} flagged site(s) ({:.1} s)",
        sub.groups.len(),
        sub.flagged_sites,
        t.elapsed().as_secs_f64()
    );
    stage(
        4,
        &format!(
            "analysis: activation similarity (M = {}, cached) and similarity vs performance",
            args.similarity_examples
        ),
    );
    let t = Instant::now();
    let model = model_dir.to_str().context("model path is not UTF-8")?;
    let sim = ia2_analyze::similarity::run(&ia2_analyze::SimilarityConfig {
        selection,
        model: ia2_analyze::similarity::ModelSpec {
            model: model.to_string(),
            ..Default::default()
        },
        data_dir: data_dir.clone(),
        icl_max_demos: args.icl_demos,
        num_examples: args.similarity_examples,
        // Outside the analysis directory: the report embeds every JSON file found under it.
        cache_dir: Some(dir.join("cache").join("similarity")),
        out_dir: analysis_dir.clone(),
        plots: true,
        ..Default::default()
    })
    .context("the similarity analysis")?;
    eprintln!(
        "      {} group(s) ({:.1} s)",
        sim.groups.len(),
        t.elapsed().as_secs_f64()
    );

    // 4. The report (after the analyses, so that their figures are in it).
    stage(5, "report");
    let t = Instant::now();
    let report = ia2_report::run(&ia2_report::ReportConfig {
        outputs: outputs.clone(),
        analysis_dir: Some(analysis_dir),
        sweep: Some(sweep_dir.clone()),
        title: "ia2 demo: IA2 on the toy in-context learner".into(),
        ..Default::default()
    })
    .context("writing the report")?;
    eprintln!(
        "      {} aggregates, {} problem(s) ({:.1} s)",
        report.aggregates,
        report.problems,
        t.elapsed().as_secs_f64()
    );

    // 5. The main table, from the report's summary.
    let table = main_table(&report.summary, args, &info)?;
    println!("{table}");
    println!("report:  {}", report.html.display());
    println!(
        "tables:  {}  (and {}, LaTeX in {})",
        report.markdown.display(),
        report.csv.display(),
        report.report_dir.join("tables.tex").display()
    );
    println!(
        "plan:    {}  (ia2 sweep run {} --dir {})",
        plan_file.display(),
        plan_file.display(),
        sweep_dir.display()
    );
    println!("model:   {}", model_dir.display());
    println!(
        "\nWhat the toy shows: the whole pipeline at work on a model that really learns in context (base with \
         demos vs without), with adapters trained on its in-context behaviour (SFT on its ICL outputs, IA2, \
         and both combined) compared without demos on accuracy and calibration, hyper-parameters chosen on \
         dev loss and intervals over runs.\nWhat it does not show: how IA2 does on real language models — a \
         100k-parameter model, synthetic two-class tasks and {} runs say nothing about the paper's numbers, \
         and with intervals this wide the differences between methods here are anecdotes, not findings.\n",
        args.num_runs
    );
    eprintln!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
    match incomplete {
        Some(msg) => bail!(msg),
        None => Ok(()),
    }
}

/// The parts of the report's `summary.json` the table shows.
struct Summary {
    hp_selection: String,
    aggregates: Vec<Aggregate>,
}

fn stat(a: &Aggregate, metric: &str, scale: f64) -> String {
    match a.metric(metric) {
        Some(m) => {
            let ci = m.ci95.map_or("-".to_string(), |(lo, hi)| {
                format!("[{:.1}, {:.1}]", lo * scale, hi * scale)
            });
            format!(
                "{:>5.1} ± {:>4.1} {:<14}",
                m.mean * scale,
                m.std * scale,
                ci
            )
        }
        None => format!("{:<27}", "-"),
    }
}

/// A row of the main table: (order, label, N, aggregate, with demos).
type Row<'a> = (usize, String, usize, &'a Aggregate, bool);

/// The main table: per held-out task, method and N, accuracy and ECE (mean ± std over runs, bootstrap 95 %
/// interval), exactly as aggregated in the report's `summary.json`.
fn main_table(summary: &Path, args: &DemoArgs, info: &ia2_toy::ToyModelInfo) -> Result<String> {
    use std::fmt::Write;
    let v: serde_json::Value = ia2_data::io::read_json(summary)
        .with_context(|| format!("reading the report summary {}", summary.display()))?;
    let s = Summary {
        hp_selection: v["hp_selection"].as_str().unwrap_or("dev_loss").to_string(),
        aggregates: serde_json::from_value(v["aggregates"].clone())
            .with_context(|| format!("{}: `aggregates`", summary.display()))?,
    };
    let classes = info
        .family
        .get("classes_per_task")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(2);
    // (eval dataset) → rows (label, N) → aggregate, for the uncertainty-mode LoRA / base aggregates with Z = Y.
    let mut by_task: BTreeMap<String, Vec<Row<'_>>> = BTreeMap::new();
    for a in &s.aggregates {
        let k = &a.key;
        if !k.uncertainty || k.icl_source != k.eval {
            continue;
        }
        let rows = by_task.entry(k.eval.clone()).or_default();
        if k.is_base() {
            rows.push((0, "base, with demos".into(), a.n, a, true));
            rows.push((1, "base, no demos".into(), a.n, a, false));
        } else {
            let obj = k.objective();
            let Some(pos) = METHODS.iter().position(|m| *m == obj) else {
                continue;
            };
            if k.adapter_kind != "lora" || k.trained.as_deref() != Some(k.eval.as_str()) {
                continue;
            }
            let lr = a.hp.lr.map_or(String::new(), |lr| {
                format!(" (lr {})", ia2_train::config::py_float(lr))
            });
            rows.push((2 + pos, format!("{obj} LoRA{lr}"), a.n, a, false));
        }
    }
    let mut out = String::new();
    writeln!(
        out,
        "\nIA2 on the toy in-context learner: {} held-out task(s), N ∈ {:?}, {} runs, {} evaluation examples, \
         {} classes per task; accuracy = top-1 over the whole vocabulary (without demos the base model never \
         answers with a label word).\n{} (learning rate per method and N in brackets); mean ± std over runs \
         [bootstrap 95 % interval], from the report's summary.json.",
        by_task.len(),
        args.num_train_examples,
        args.num_runs,
        args.num_val_examples,
        classes,
        if s.hp_selection.is_empty() {
            "dev_loss".into()
        } else {
            s.hp_selection.clone()
        }
    )?;
    ensure!(
        !by_task.is_empty(),
        "the report ({}) has no uncertainty-mode results",
        summary.display()
    );
    for (task, mut rows) in by_task {
        rows.sort_by_key(|r| (r.0, r.2));
        writeln!(out, "\n{task}")?;
        let header = format!(
            "{:<24} {:>3}  {:<27} {}",
            "model", "N", "accuracy %", "ECE ×100"
        );
        writeln!(out, "{header}")?;
        for (_, label, n, a, icl) in rows {
            let line = format!(
                "{label:<24} {n:>3}  {} {}",
                stat(a, &accuracy_metric(true, icl), 1.0),
                stat(a, &ece_metric(icl), 100.0)
            );
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    Ok(out)
}
