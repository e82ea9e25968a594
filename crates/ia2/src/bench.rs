//! `ia2 bench`: every benchmark suite, each printed with its targets (never run as a timed test).

use anyhow::{Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// The training step of notes/engine.md, the matmul peak, greedy decoding with and without the KV cache.
    Model,
    /// Teacher collection at T = 1 and T = 64 against the seed's way, one epoch of act and of tok.
    Train,
    /// Evaluation throughput (examples/s) with and without ICL demos.
    Eval,
    /// Real model sizes: synthetic Qwen3-0.6B/1.7B/4B-shaped checkpoints; load time, peak RSS against the
    /// weight bytes, one act training step and one evaluation batch, in f32 and bf16, each in a child
    /// process (slow: not in the default set).
    Scale,
}

/// The library configurations of the suites.
struct Configs {
    suite: Vec<Suite>,
    model: ia2_model::bench::BenchConfig,
    train: ia2_train::bench::TrainBenchConfig,
    eval: ia2_eval::EvalBenchConfig,
    scale: ia2_train::bench_scale::ScaleBenchConfig,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchCommand {
    /// Suites to run (default: all).
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Suite::Model, Suite::Train, Suite::Eval])]
    pub suite: Vec<Suite>,
    #[command(flatten)]
    pub model: crate::cli::bench::ModelBenchCli,
    #[command(flatten)]
    pub train: crate::cli::bench::TrainBenchCli,
    #[command(flatten)]
    pub eval: crate::cli::bench::EvalBenchCli,
    #[command(flatten)]
    pub scale: crate::cli::bench::ScaleBenchCli,
    /// Internal: one measurement of the scale suite (a JSON `ChildSpec`), run by the suite in a child
    /// process; prints its report as JSON.
    #[arg(long, hide = true)]
    pub scale_child: Option<String>,
}

pub fn run(cli: &BenchCommand) -> Result<()> {
    if let Some(spec) = &cli.scale_child {
        let spec: ia2_train::bench_scale::ChildSpec =
            serde_json::from_str(spec).context("--scale-child: reading the measurement")?;
        let report = ia2_train::bench_scale::run_child(&spec)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let mut args = Configs {
        suite: cli.suite.clone(),
        model: cli.model.config()?,
        train: cli.train.config()?,
        eval: cli.eval.config()?,
        scale: cli.scale.config()?,
    };
    // Without the model suite, its --json and --threads are the scale suite's (unless given as
    // --scale-json / --scale-threads), so `ia2 bench --suite scale --json x.json` writes what it says.
    if args.suite.contains(&Suite::Scale) && !args.suite.contains(&Suite::Model) {
        args.scale.json = args.scale.json.or(args.model.json.take());
        args.scale.threads = args.scale.threads.or(args.model.threads.take());
    }
    // Every selected suite's options are checked before the first suite runs.
    if args.suite.contains(&Suite::Model) {
        args.model.validate()?;
    }
    if args.suite.contains(&Suite::Train) {
        args.train.validate()?;
    }
    if args.suite.contains(&Suite::Eval) {
        args.eval.validate()?;
    }
    if args.suite.contains(&Suite::Scale) {
        args.scale.validate()?;
    }
    if args.suite.contains(&Suite::Model) {
        println!("{}\n", ia2_model::bench::run(&args.model)?);
    }
    if args.suite.contains(&Suite::Train) {
        println!("{}\n", ia2_train::bench::run(&args.train)?);
    }
    if args.suite.contains(&Suite::Eval) {
        println!("{}\n", ia2_eval::run_bench(&args.eval)?);
    }
    if args.suite.contains(&Suite::Scale) {
        let exe = std::env::current_exe()
            .context("locating the ia2 executable for the child processes")?;
        let child = |spec: &ia2_train::bench_scale::ChildSpec| -> Result<std::process::Command> {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["bench", "--scale-child", &serde_json::to_string(spec)?]);
            Ok(cmd)
        };
        println!("{}", ia2_train::bench_scale::run(&args.scale, &child)?);
    }
    Ok(())
}
