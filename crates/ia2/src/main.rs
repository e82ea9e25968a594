//! `ia2`: ICL Activation Alignment research toolkit.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ia2",
    version,
    about = "ICL Activation Alignment (IA2): data, training, evaluation, analysis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks: prepare datasets, build training sets with ICL demos and evaluation demo sets.
    #[command(subcommand)]
    Data(ia2_data::cli::DataCommand),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(cmd) => ia2_data::cli::run(cmd),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
