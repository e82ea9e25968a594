//! Hyper-parameter exploration (how the default recipe was chosen):
//! `cargo run --release -p ia2-toy --example sweep -- steps=800 batch_size=32 scope.classes=4 ...` overrides
//! fields of the default `PretrainConfig` (JSON values, `a.b` for nested fields), trains in memory (nothing is
//! written) and prints the training curve and the held-out in-context accuracy.

use anyhow::{Context, Result};
use ia2_toy::pretrain::{self, PretrainConfig};
use ia2_toy::tokenizer::encode_pairs;

fn main() -> Result<()> {
    tracing_subscriber_init();
    let mut v = serde_json::to_value(PretrainConfig::default())?;
    for arg in std::env::args().skip(1) {
        let (k, val) = arg.split_once('=').context("arguments are key=value")?;
        let parsed: serde_json::Value =
            serde_json::from_str(val).unwrap_or(serde_json::Value::String(val.into()));
        match k.split_once('.') {
            Some((a, b)) => v[a][b] = parsed,
            None => v[k] = parsed,
        }
    }
    let config: PretrainConfig = serde_json::from_value(v)?;
    eprintln!("{}", serde_json::to_string(&config)?);
    let device = burn::tensor::Device::flex();
    let (decoder, summary) = pretrain::train(&config, &device, &|_, _| {})?;
    let t = std::time::Instant::now();
    let report = pretrain::evaluate(&decoder, &config.eval, config.scope, &|p| {
        Ok(encode_pairs(p, false))
    })?;
    println!(
        "train {:.1}s ({:.0} ms/step, {} params, seq {}), eval {:.1}s",
        summary.seconds,
        summary.seconds * 1e3 / summary.steps as f64,
        summary.parameters,
        summary.sequence_tokens,
        t.elapsed().as_secs_f64()
    );
    for r in &report.results {
        println!(
            "{:?} k={} acc {:.3} in-set {:.3} label-rate {:.3}",
            r.sampling, r.demos, r.accuracy, r.accuracy_in_label_set, r.label_set_rate
        );
    }
    Ok(())
}

fn tracing_subscriber_init() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
