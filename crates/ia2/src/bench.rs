//! `ia2 bench`: every benchmark suite, each printed with its targets (never run as a timed test).

use anyhow::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// The training step of notes/engine.md, the matmul peak, greedy decoding with and without the KV cache.
    Model,
    /// Teacher collection at T = 1 and T = 64 against the seed's way, one epoch of act and of tok.
    Train,
    /// Evaluation throughput (examples/s) with and without ICL demos.
    Eval,
}

/// The library configurations of the three suites.
struct Configs {
    suite: Vec<Suite>,
    model: ia2_model::bench::BenchConfig,
    train: ia2_train::bench::TrainBenchConfig,
    eval: ia2_eval::EvalBenchConfig,
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
}

pub fn run(cli: &BenchCommand) -> Result<()> {
    let args = Configs {
        suite: cli.suite.clone(),
        model: cli.model.config()?,
        train: cli.train.config()?,
        eval: cli.eval.config()?,
    };
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
    if args.suite.contains(&Suite::Model) {
        println!("{}\n", ia2_model::bench::run(&args.model)?);
    }
    if args.suite.contains(&Suite::Train) {
        println!("{}\n", ia2_train::bench::run(&args.train)?);
    }
    if args.suite.contains(&Suite::Eval) {
        println!("{}\n", ia2_eval::run_bench(&args.eval)?);
    }
    Ok(())
}
