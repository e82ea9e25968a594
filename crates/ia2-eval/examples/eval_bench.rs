//! Evaluation throughput with and without ICL on the bench model (until `ia2 bench` runs it):
//! `cargo run --release -p ia2-eval --example eval_bench -- --eval-size tiny`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: ia2_eval::EvalBenchArgs,
    /// Also print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = ia2_eval::run_bench(&cli.bench)?;
    println!("{report}");
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
