//! Evaluation throughput with and without ICL on the bench model, without the CLI (`ia2 bench --suite
//! eval` is the usual way). The optional argument is a JSON [`ia2_eval::EvalBenchConfig`] whose missing keys
//! take the defaults; the report is printed as text, then as JSON:
//! `cargo run --release -p ia2-eval --example eval_bench -- '{"size": "tiny"}'`.

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let config: ia2_eval::EvalBenchConfig = match std::env::args().nth(1) {
        Some(json) => {
            serde_json::from_str(&json).context("the argument is not a JSON EvalBenchConfig")?
        }
        None => ia2_eval::EvalBenchConfig::default(),
    };
    config.validate()?;
    let report = ia2_eval::run_bench(&config)?;
    println!("{report}");
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
