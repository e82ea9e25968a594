//! `ia2 sweep`: grids of trainings and evaluations as one resumable plan (see the `ia2-sweep` crate).
//!
//! - `ia2 sweep [run] [PLAN.toml] [--dir DIR] [batch options] [--set key=value] [--dry-run]`
//! - `ia2 sweep status DIR`, `ia2 sweep retry DIR`
//! - `ia2 sweep work DIR --worker NAME | --job K | --batch FILE [--index I]` (what the executors start)
//! - `ia2 sweep bench`: coordinator overhead, model loads, sweep vs one command per job.

use anyhow::{Context, Result, bail};
use ia2_sweep::config::SweepConfig;
use ia2_sweep::ledger::Ledger;
use ia2_sweep::plan::{Plan, Stage};
use ia2_sweep::toml;
use ia2_sweep::worker;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    command: Option<SweepCommand>,
    #[command(flatten)]
    run: Box<RunArgs>,
}

#[derive(Debug, clap::Subcommand)]
enum SweepCommand {
    /// Plan the grid and run it (the default): locally with `--max-parallel` workers or on Slurm.
    Run(Box<RunArgs>),
    /// Progress per stage, failures with their error text, model loads.
    Status(StatusArgs),
    /// Give failed jobs their attempts back and run the sweep again.
    Retry(RetryArgs),
    /// Run jobs of a sweep directory (started by the executors).
    Work(WorkArgs),
    /// Coordinator overhead per job, model loads, a small grid against the same jobs run one by one.
    Bench(BenchArgs),
}

fn lists<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Experiment file (TOML); command-line options override its keys, `--set` overrides both.
    pub plan: Option<PathBuf>,
    /// Sweep directory: plan.json, the ledger, worker logs, summary.json.
    #[arg(long, default_value = "sweep")]
    pub dir: PathBuf,
    /// Override any key: `--set lrs=[0.01,0.1]`, `--set train.num_train_epochs=1`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print the DAG (jobs per stage, what is already done) and stop.
    #[arg(long, alias = "dry_run")]
    pub dry_run: bool,
    /// With --dry-run: list every job.
    #[arg(long)]
    pub verbose: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,

    // --- model and directories ---
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, alias = "model_id")]
    pub model_id: Option<String>,
    #[arg(long)]
    pub revision: Option<String>,
    #[arg(long, alias = "torch_dtype")]
    pub dtype: Option<String>,
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long, alias = "data_dir")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, alias = "output_dir")]
    pub output_dir: Option<PathBuf>,

    // --- the grid (the seed's batch options) ---
    #[arg(long, alias = "training_methods", num_args = 1..)]
    pub training_methods: Option<Vec<String>>,
    #[arg(long, num_args = 1..)]
    pub datasets: Option<Vec<String>>,
    #[arg(long, alias = "num_generated_tokens", num_args = 1..)]
    pub num_generated_tokens: Option<Vec<usize>>,
    #[arg(long, alias = "num_train_examples", num_args = 1..)]
    pub num_train_examples: Option<Vec<usize>>,
    #[arg(long, num_args = 1..)]
    pub lrs: Option<Vec<f64>>,
    #[arg(long, alias = "lora_types", num_args = 1..)]
    pub lora_types: Option<Vec<String>>,
    #[arg(long, alias = "lora_rs", num_args = 1..)]
    pub lora_rs: Option<Vec<usize>>,
    #[arg(long, alias = "lora_alphas", num_args = 1..)]
    pub lora_alphas: Option<Vec<usize>>,
    #[arg(long, alias = "ia3_types", num_args = 1..)]
    pub ia3_types: Option<Vec<String>>,
    #[arg(long, alias = "num_virtual_tokens_list", num_args = 1..)]
    pub num_virtual_tokens_list: Option<Vec<usize>>,
    #[arg(long, alias = "label_types", num_args = 1..)]
    pub label_types: Option<Vec<String>>,
    #[arg(long, alias = "ce_loss_weights", num_args = 1..)]
    pub ce_loss_weights: Option<Vec<f64>>,
    #[arg(long, alias = "tokl_top_k", num_args = 1..)]
    pub tokl_top_k: Option<Vec<String>>,
    #[arg(long, alias = "num_runs")]
    pub num_runs: Option<usize>,
    /// Low-data regime (`--ldr-mode false` turns it off again).
    #[arg(long, alias = "ldr_mode", num_args = 0..=1, default_missing_value = "true")]
    pub ldr_mode: Option<bool>,
    #[arg(long, alias = "num_labelled_samples", num_args = 1..)]
    pub num_labelled_samples: Option<Vec<usize>>,
    #[arg(long, alias = "num_unlabelled_samples", num_args = 1..)]
    pub num_unlabelled_samples: Option<Vec<usize>>,
    #[arg(long, alias = "max_permutations", num_args = 1..)]
    pub max_permutations: Option<Vec<usize>>,

    // --- pass-through training options ---
    #[arg(long, alias = "num_train_epochs")]
    pub num_train_epochs: Option<usize>,
    #[arg(long, alias = "batch_size")]
    pub batch_size: Option<usize>,
    #[arg(long, alias = "micro_batch")]
    pub micro_batch: Option<usize>,
    #[arg(long)]
    pub patience: Option<usize>,
    #[arg(long, alias = "dev_eval_steps")]
    pub dev_eval_steps: Option<usize>,
    #[arg(long, alias = "gradient_clip_val")]
    pub gradient_clip_val: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, alias = "teacher_batch")]
    pub teacher_batch: Option<usize>,
    #[arg(long, alias = "shuffle_demos", num_args = 0..=1, default_missing_value = "true")]
    pub shuffle_demos: Option<bool>,
    #[arg(long, alias = "num_shuffles")]
    pub num_shuffles: Option<usize>,
    #[arg(long, alias = "fixed_demos", num_args = 0..=1, default_missing_value = "true")]
    pub fixed_demos: Option<bool>,
    #[arg(long, alias = "log_checkpoints", num_args = 0..=1, default_missing_value = "true")]
    pub log_checkpoints: Option<bool>,
    #[arg(long, alias = "checkpoint_frequency")]
    pub checkpoint_frequency: Option<usize>,

    // --- evaluation ---
    #[arg(long, alias = "eval_datasets", num_args = 1..)]
    pub eval_datasets: Option<Vec<String>>,
    #[arg(long, alias = "icl_source_datasets", num_args = 1..)]
    pub icl_source_datasets: Option<Vec<String>>,
    #[arg(long, alias = "icl_max_demos", num_args = 1..)]
    pub icl_max_demos: Option<Vec<usize>>,
    #[arg(long, alias = "num_gen_tokens_eval")]
    pub num_gen_tokens_eval: Option<usize>,
    #[arg(long, alias = "uncertainty_analysis", num_args = 0..=1, default_missing_value = "true")]
    pub uncertainty_analysis: Option<bool>,
    #[arg(long, alias = "max_eval_examples")]
    pub max_eval_examples: Option<usize>,
    /// Evaluations (`--eval false`: train only).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub eval: Option<bool>,

    // --- execution ---
    /// `local` or `slurm`.
    #[arg(long)]
    pub executor: Option<String>,
    #[arg(long, alias = "max_parallel")]
    pub max_parallel: Option<usize>,
    #[arg(long, alias = "max_attempts")]
    pub max_attempts: Option<u32>,
    /// Seconds a job may run before it is killed (local executor).
    #[arg(long, alias = "job_timeout")]
    pub job_timeout: Option<f64>,
    #[arg(long)]
    pub partition: Option<String>,
    #[arg(long)]
    pub time: Option<String>,
    #[arg(long)]
    pub mem: Option<String>,
    #[arg(long, alias = "cpus_per_task")]
    pub cpus_per_task: Option<u32>,
    #[arg(long)]
    pub gres: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
    /// Slurm: wait until the submitted arrays have left the queue, then print the status.
    #[arg(long)]
    pub wait: bool,
}

fn int(v: usize) -> toml::Value {
    toml::Value::Integer(v as i64)
}

impl RunArgs {
    /// The options given on the command line, as configuration keys.
    fn overrides(&self) -> Vec<(String, toml::Value)> {
        use toml::Value as V;
        let mut o: Vec<(String, V)> = Vec::new();
        let mut s = |k: &str, v: Option<V>| {
            if let Some(v) = v {
                o.push((k.to_string(), v));
            }
        };
        let strs = |v: &Option<Vec<String>>| {
            v.as_ref()
                .map(|v| V::Array(v.iter().cloned().map(V::String).collect()))
        };
        let ints = |v: &Option<Vec<usize>>| {
            v.as_ref()
                .map(|v| V::Array(v.iter().map(|&x| int(x)).collect()))
        };
        let floats = |v: &Option<Vec<f64>>| {
            v.as_ref()
                .map(|v| V::Array(v.iter().map(|&x| V::Float(x)).collect()))
        };
        s("model", self.model.clone().map(V::String));
        s("model_id", self.model_id.clone().map(V::String));
        s("revision", self.revision.clone().map(V::String));
        s("dtype", self.dtype.clone().map(V::String));
        s("device", self.device.clone().map(V::String));
        s(
            "data_dir",
            self.data_dir
                .as_ref()
                .map(|p| V::String(p.display().to_string())),
        );
        s(
            "output_dir",
            self.output_dir
                .as_ref()
                .map(|p| V::String(p.display().to_string())),
        );
        s("training_methods", strs(&self.training_methods));
        s("datasets", strs(&self.datasets));
        s("num_generated_tokens", ints(&self.num_generated_tokens));
        s("num_train_examples", ints(&self.num_train_examples));
        s("lrs", floats(&self.lrs));
        s("lora_types", strs(&self.lora_types));
        s("lora_rs", ints(&self.lora_rs));
        s("lora_alphas", ints(&self.lora_alphas));
        s("ia3_types", strs(&self.ia3_types));
        s(
            "num_virtual_tokens_list",
            ints(&self.num_virtual_tokens_list),
        );
        s("label_types", strs(&self.label_types));
        s("ce_loss_weights", floats(&self.ce_loss_weights));
        s("tokl_top_k", strs(&self.tokl_top_k));
        s("num_runs", self.num_runs.map(int));
        s("ldr_mode", self.ldr_mode.map(V::Boolean));
        s("num_labelled_samples", ints(&self.num_labelled_samples));
        s("num_unlabelled_samples", ints(&self.num_unlabelled_samples));
        s("max_permutations", ints(&self.max_permutations));
        s("train.num_train_epochs", self.num_train_epochs.map(int));
        s("train.batch_size", self.batch_size.map(int));
        s("train.micro_batch", self.micro_batch.map(int));
        s("train.patience", self.patience.map(int));
        s("train.dev_eval_steps", self.dev_eval_steps.map(int));
        s(
            "train.gradient_clip_val",
            self.gradient_clip_val.map(V::Float),
        );
        s("train.seed", self.seed.map(|x| V::Integer(x as i64)));
        s("train.teacher_batch", self.teacher_batch.map(int));
        s("train.shuffle_demos", self.shuffle_demos.map(V::Boolean));
        s("train.num_shuffles", self.num_shuffles.map(int));
        s("train.fixed_demos", self.fixed_demos.map(V::Boolean));
        s(
            "train.log_checkpoints",
            self.log_checkpoints.map(V::Boolean),
        );
        s(
            "train.checkpoint_frequency",
            self.checkpoint_frequency.map(int),
        );
        s("eval.eval_datasets", strs(&self.eval_datasets));
        s("eval.icl_source_datasets", strs(&self.icl_source_datasets));
        s("eval.icl_max_demos", ints(&self.icl_max_demos));
        s(
            "eval.num_gen_tokens_eval",
            self.num_gen_tokens_eval.map(int),
        );
        s(
            "eval.uncertainty_analysis",
            self.uncertainty_analysis.map(V::Boolean),
        );
        s("eval.max_eval_examples", self.max_eval_examples.map(int));
        s("eval.enabled", self.eval.map(V::Boolean));
        s("execution.executor", self.executor.clone().map(V::String));
        s("execution.max_parallel", self.max_parallel.map(int));
        s(
            "execution.max_attempts",
            self.max_attempts.map(|x| V::Integer(x.into())),
        );
        s("execution.job_timeout_s", self.job_timeout.map(V::Float));
        s("slurm.partition", self.partition.clone().map(V::String));
        s("slurm.time", self.time.clone().map(V::String));
        s("slurm.mem", self.mem.clone().map(V::String));
        s(
            "slurm.cpus_per_task",
            self.cpus_per_task.map(|x| V::Integer(x.into())),
        );
        s("slurm.gres", self.gres.clone().map(V::String));
        s("slurm.account", self.account.clone().map(V::String));
        o
    }

    /// The validated, absolute configuration.
    pub fn config(&self) -> Result<SweepConfig> {
        let mut c = SweepConfig::load(self.plan.as_deref(), &self.overrides(), &self.sets)?;
        c.absolutize(&std::env::current_dir()?);
        c.validate()?;
        Ok(c)
    }
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Sweep directory.
    pub dir: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// Sweep directory.
    pub dir: PathBuf,
    /// Only reset the failed jobs; do not run.
    #[arg(long)]
    pub no_run: bool,
    #[arg(long, alias = "max_parallel")]
    pub max_parallel: Option<usize>,
    #[arg(long)]
    pub no_progress: bool,
    /// Slurm: wait for the resubmitted arrays.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct WorkArgs {
    /// Sweep directory.
    pub dir: PathBuf,
    /// Claim and run ready jobs until none is left (local executor).
    #[arg(long, conflicts_with_all = ["job", "batch"])]
    pub worker: Option<String>,
    /// Run this one job (plan index or id), with retries.
    #[arg(long, conflicts_with = "batch")]
    pub job: Option<String>,
    /// Run the job on line `--index` (default `$SLURM_ARRAY_TASK_ID`) of this file.
    #[arg(long)]
    pub batch: Option<PathBuf>,
    #[arg(long, requires = "batch")]
    pub index: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Scratch directory (a temporary one by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Workers of the sweep (1: the same parallelism as the one-by-one loop).
    #[arg(long, default_value_t = 1)]
    pub max_parallel: usize,
    /// Also run the jobs one by one with `ia2 train` / `ia2 eval` (slower).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub one_by_one: bool,
}

pub fn run(args: SweepArgs) -> Result<()> {
    match args.command {
        None => run_sweep(&args.run),
        Some(SweepCommand::Run(r)) => run_sweep(&r),
        Some(SweepCommand::Status(s)) => {
            let st = ia2_sweep::status::status(&s.dir)?;
            if s.json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!("{st}");
            }
            Ok(())
        }
        Some(SweepCommand::Retry(r)) => {
            let n = ia2_sweep::status::retry(&r.dir)?;
            println!("{n} failed job(s) get their attempts back");
            if r.no_run {
                return Ok(());
            }
            let mut plan = Plan::read(&r.dir)?;
            if let Some(k) = r.max_parallel {
                plan.config.execution.max_parallel = k.max(1);
                plan.write(&r.dir)?;
            }
            execute(&r.dir, &plan.config, !r.no_progress, r.wait)
        }
        Some(SweepCommand::Work(w)) => {
            let name = format!("{}-{}", ia2_sweep::ledger::hostname(), std::process::id());
            if let Some(worker) = &w.worker {
                worker::run_loop(&w.dir, worker)?;
                Ok(())
            } else if let Some(job) = &w.job {
                worker::run_single(&w.dir, job, &name)
            } else if let Some(batch) = &w.batch {
                worker::run_batch(&w.dir, batch, w.index, &name)
            } else {
                bail!("ia2 sweep work needs --worker NAME, --job K or --batch FILE")
            }
        }
        Some(SweepCommand::Bench(b)) => bench(&b),
    }
}

fn run_sweep(r: &RunArgs) -> Result<()> {
    let config = r.config()?;
    let plan = Plan::build(&config)?;
    if r.dry_run {
        print!("{}", dry_run(&plan, &r.dir, r.verbose)?);
        return Ok(());
    }
    plan.write(&r.dir)?;
    execute(&r.dir, &config, !r.no_progress, r.wait)
}

fn execute(dir: &Path, config: &SweepConfig, progress: bool, wait: bool) -> Result<()> {
    let started = Instant::now();
    match config.execution.executor.as_str() {
        "slurm" => {
            let bin = match &config.slurm.ia2_bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()?,
            };
            let subs = ia2_sweep::slurm::submit(
                dir,
                &ia2_sweep::slurm::SlurmRun {
                    ia2_bin: bin,
                    wait,
                    poll: Duration::from_secs(2),
                    wait_timeout: None,
                },
            )?;
            if subs.is_empty() {
                println!(
                    "nothing to submit: every job is finished (or failed: see `ia2 sweep status`)"
                );
            }
            for s in &subs {
                println!(
                    "submitted {:<10} {:>5} job(s) as Slurm array {} ({})",
                    s.stage.name(),
                    s.jobs,
                    s.slurm_job,
                    s.batch.display()
                );
            }
            if !wait {
                println!("follow with `ia2 sweep status {}`", dir.display());
                return Ok(());
            }
        }
        _ => {
            let report = ia2_sweep::local::run_local(
                dir,
                &ia2_sweep::local::LocalOptions {
                    progress,
                    ..Default::default()
                },
            )?;
            println!(
                "{} of {} jobs done in {:.1} s with {} worker(s), {} model load(s)",
                report.counts.done,
                report.counts.total,
                report.secs,
                report.workers_started,
                report.model_loads
            );
        }
    }
    let summary = ia2_sweep::status::write_summary(dir, started.elapsed().as_secs_f64())?;
    let st = ia2_sweep::status::status(dir)?;
    println!("{st}\nsummary: {}", summary.display());
    if st.total.failed + st.total.blocked > 0 {
        bail!(
            "{} job(s) failed and {} are blocked (see above; `ia2 sweep retry {}` runs them again)",
            st.total.failed,
            st.total.blocked,
            dir.display()
        );
    }
    Ok(())
}

/// The DAG: jobs per stage and how many are already done (from the ledger, outputs checked).
pub fn dry_run(plan: &Plan, dir: &Path, verbose: bool) -> Result<String> {
    use std::fmt::Write;
    let mut s = String::new();
    let done: Vec<bool> = if dir.join(ia2_sweep::ledger::JOURNAL).is_file() {
        let ledger = Ledger::open(dir)?;
        let snap = ledger.snapshot()?;
        plan.jobs
            .iter()
            .map(|j| {
                let st = snap.state(&j.id);
                st.status == ia2_sweep::ledger::Status::Done
                    && ia2_sweep::jobs::verify(j, &st.outputs, st.identity.as_deref()).is_ok()
            })
            .collect()
    } else {
        vec![false; plan.jobs.len()]
    };
    writeln!(s, "sweep {} — {} jobs", dir.display(), plan.jobs.len())?;
    writeln!(
        s,
        "{:<11} {:>6} {:>6} {:>7}",
        "stage", "jobs", "done", "to run"
    )?;
    for stage in Stage::ALL {
        let idx: Vec<usize> = (0..plan.jobs.len())
            .filter(|&i| plan.jobs[i].stage == stage)
            .collect();
        if idx.is_empty() {
            continue;
        }
        let d = idx.iter().filter(|&&i| done[i]).count();
        writeln!(
            s,
            "{:<11} {:>6} {:>6} {:>7}",
            stage.name(),
            idx.len(),
            d,
            idx.len() - d
        )?;
    }
    writeln!(s)?;
    for stage in Stage::ALL {
        let idx: Vec<usize> = (0..plan.jobs.len())
            .filter(|&i| plan.jobs[i].stage == stage)
            .collect();
        if idx.is_empty() {
            continue;
        }
        writeln!(s, "[{stage}]")?;
        let show = if verbose { idx.len() } else { 6 };
        for &i in idx.iter().take(show) {
            let j = &plan.jobs[i];
            writeln!(
                s,
                "  {:>4} {} {}{}{}",
                i,
                if done[i] { "done" } else { "    " },
                j.id,
                if j.implicit {
                    "  (needed by phase 2)"
                } else {
                    ""
                },
                if j.deps.is_empty() {
                    String::new()
                } else {
                    format!("  <- {}", j.deps.join(", "))
                }
            )?;
        }
        if idx.len() > show {
            writeln!(s, "  ... {} more (--verbose lists all)", idx.len() - show)?;
        }
    }
    for n in &plan.notes {
        writeln!(s, "note: {n}")?;
    }
    Ok(s)
}

/// `ia2 sweep bench`: a 60-job grid (tok, act, a2t × 2 N × 2 lr × 5 runs, evaluated) on the built-in model.
fn bench(b: &BenchArgs) -> Result<()> {
    let tmp;
    let root = match &b.dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("ia2-sweep-bench-{}", std::process::id()));
            tmp.clone()
        }
    };
    std::fs::create_dir_all(&root)?;
    let sets = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "model=\"builtin:tiny-qwen3\"",
            "training_methods=[\"tok\",\"act\",\"a2t\"]",
            "datasets=[\"toy_task\"]",
            "num_train_examples=[4,6]",
            "lrs=[0.01,0.03]",
            "num_runs=5",
            "train.num_train_epochs=1",
            "eval.icl_max_demos=[3]",
            "eval.max_eval_examples=8",
            "eval.base=false",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(format!("data_dir=\"{}\"", root.join("data").display()));
        v.push(format!("output_dir=\"{}\"", root.join("outputs").display()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let toml_text = "[[data.toy]]\nname = \"toy_task\"\nnum_train = 64\nnum_val = 16\n";
    let plan_file = root.join("bench.toml");
    std::fs::write(&plan_file, toml_text)?;
    let args = RunArgs {
        plan: Some(plan_file.clone()),
        dir: root.join("sweep"),
        sets: sets(&[&format!("execution.max_parallel={}", b.max_parallel)]),
        no_progress: true,
        ..Default::default()
    };
    let config = args.config()?;
    let plan = Plan::build(&config)?;
    plan.write(&args.dir)?;
    let train_eval = plan
        .jobs
        .iter()
        .filter(|j| matches!(j.stage, Stage::Train1 | Stage::Train2 | Stage::Eval))
        .count();
    let t0 = Instant::now();
    let report = ia2_sweep::local::run_local(
        &args.dir,
        &ia2_sweep::local::LocalOptions {
            progress: false,
            ..Default::default()
        },
    )?;
    let wall = t0.elapsed().as_secs_f64();
    let st = ia2_sweep::status::status(&args.dir)?;
    if !report.counts.complete() {
        bail!("the bench sweep did not finish:\n{st}");
    }
    let k = report.workers_started.max(1) as f64;
    let overhead = (wall - st.job_seconds / k) / plan.jobs.len() as f64;
    println!(
        "sweep: {} jobs ({} train/eval) in {wall:.1} s with {} worker(s); job time {:.1} s; \
         coordinator overhead ≈ {:.3} s/job; model loads {} (one per worker, vs {} one command per job)",
        plan.jobs.len(),
        train_eval,
        report.workers_started,
        st.job_seconds,
        overhead.max(0.0),
        report.model_loads,
        plan.jobs.iter().filter(|j| j.uses_model).count()
    );
    if b.one_by_one {
        // The same trainings and evaluations, one `ia2 train` / `ia2 eval` process each, in a fresh output dir
        // (data and teacher cache reused, as a user looping by hand would have them).
        let out2 = root.join("outputs-one-by-one");
        let exe = std::env::current_exe()?;
        let c = &plan.config;
        let t1 = Instant::now();
        let mut commands = 0;
        for job in &plan.jobs {
            let words: Vec<String> = match &job.kind {
                ia2_sweep::JobKind::Train { point, run } => {
                    let mut w = vec!["train".to_string()];
                    w.extend(one_by_one_train_words(c, point, *run, &out2));
                    w
                }
                _ => continue,
            };
            let status = std::process::Command::new(&exe)
                .args(&words)
                .stderr(std::process::Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "ia2 {} failed", words.join(" "));
            commands += 1;
        }
        for job in &plan.jobs {
            if let ia2_sweep::JobKind::EvalRun { point, run } = &job.kind {
                let dir = find_run_dir(&out2, point, *run)?;
                let mut w = vec!["eval".to_string()];
                w.extend(one_by_one_eval_words(c, &dir, &out2));
                let status = std::process::Command::new(&exe)
                    .args(&w)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()?;
                anyhow::ensure!(status.success(), "ia2 {} failed", w.join(" "));
                commands += 1;
            }
        }
        let one = t1.elapsed().as_secs_f64();
        println!(
            "one by one: {commands} `ia2 train` / `ia2 eval` commands in {one:.1} s (sweep {wall:.1} s: {:.2}×)",
            one / wall
        );
    }
    if b.dir.is_none() {
        std::fs::remove_dir_all(&root).ok();
    }
    Ok(())
}

fn one_by_one_train_words(
    c: &SweepConfig,
    p: &ia2_sweep::plan::Point,
    run: usize,
    out: &Path,
) -> Vec<String> {
    vec![
        "--model".into(),
        c.model.clone(),
        "--training-method".into(),
        p.method.to_string(),
        "--dataset".into(),
        p.dataset.clone(),
        "--data-dir".into(),
        c.data_dir.display().to_string(),
        "--output-dir".into(),
        out.display().to_string(),
        "--teacher-cache-dir".into(),
        c.output_dir.join("teacher_cache").display().to_string(),
        "--num-train-examples".into(),
        p.num_train_examples.to_string(),
        "--lr".into(),
        p.lr.to_string(),
        "--num-train-epochs".into(),
        c.train.num_train_epochs.to_string(),
        "--num-runs".into(),
        (run + 1).to_string(),
        "--run-index".into(),
        run.to_string(),
    ]
}

fn one_by_one_eval_words(c: &SweepConfig, run_dir: &Path, out: &Path) -> Vec<String> {
    let mut w = vec![
        "--model".to_string(),
        c.model.clone(),
        "--outputs-dir".into(),
        out.display().to_string(),
        "--data-dir".into(),
        c.data_dir.display().to_string(),
        "--adapter".into(),
        run_dir.display().to_string(),
        "--icl-max-demos".into(),
    ];
    w.extend(lists(&c.eval.icl_max_demos));
    if let Some(k) = c.eval.max_eval_examples {
        w.extend(["--max-eval-examples".to_string(), k.to_string()]);
    }
    w
}

fn find_run_dir(out: &Path, p: &ia2_sweep::plan::Point, run: usize) -> Result<PathBuf> {
    let base = out.join(p.method.to_string()).join(&p.dataset);
    let lr = ia2_train::config::py_float(p.lr);
    for e in std::fs::read_dir(&base).with_context(|| format!("listing {}", base.display()))? {
        let path = e?.path();
        let cfg: serde_json::Value =
            match ia2_data::io::read_json(&path.join(ia2_train::output::CONFIG_FILE)) {
                Ok(v) => v,
                Err(_) => continue,
            };
        if cfg["run_idx"] == run
            && cfg["num_train_examples"] == p.num_train_examples
            && cfg["lr"].as_f64().map(ia2_train::config::py_float) == Some(lr.clone())
        {
            return Ok(path);
        }
    }
    bail!("no run {run} of {} under {}", p.key(), base.display())
}
