//! Runs the model benchmark without the CLI (`ia2 bench --suite model` is the usual way). The optional
//! argument is a JSON [`BenchConfig`] whose missing keys take the defaults:
//! `cargo run --release -p ia2-model --example bench -- '{"size": "tiny", "steps": 3}'`.

use anyhow::Context;
use ia2_model::bench::{self, BenchConfig};

fn main() -> anyhow::Result<()> {
    let config: BenchConfig = match std::env::args().nth(1) {
        Some(json) => {
            serde_json::from_str(&json).context("the argument is not a JSON BenchConfig")?
        }
        None => BenchConfig::default(),
    };
    config.validate()?;
    let report = bench::run(&config)?;
    println!("{report}");
    Ok(())
}
