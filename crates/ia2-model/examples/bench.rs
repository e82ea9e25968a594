//! Runs the `ia2 bench` benchmark without the CLI: `cargo run --release -p ia2-model --example bench -- --help`.

use clap::Parser;
use ia2_model::bench::{self, BenchArgs};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Training-step and decoding benchmark of the ia2 decoder"
)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = bench::run(&cli.args)?;
    println!("{report}");
    Ok(())
}
