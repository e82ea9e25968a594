//! `ia2 eval`: evaluation of the base model and trained adapters.
//!
//! - [`select`]: runs discovered under `outputs/{training_method}/{dataset}/{run}/` and filtered on their
//!   `training_config.json` by the seed's options; base-model checks (name, fingerprint).
//! - [`prompts`]: evaluation examples with their ICL demos (demo sets built on the fly when missing).
//! - [`engine`]: the model computations on token ids: next-token distributions, batched greedy decoding
//!   with the KV cache (optionally recording per-step top-k).
//! - [`parse`]: answer parsing per dataset (registry parsers; classification for unknown datasets).
//! - [`metrics`]: accuracy, label set, entropy, ECE, agreement (pure functions).
//! - [`results`]: records, metrics of an evaluation, result files (atomic, resumable).
//! - [`run()`]: the runner: every example is evaluated with and without ICL demos, the base model is
//!   loaded once, LoRA/IA3 adapters are merged into a copy of its weights.
//! - [`bench`]: evaluation throughput with and without ICL on the bench model.
//!
//! ```no_run
//! let args = ia2_eval::EvalConfig {
//!     model_types: vec!["base".into(), "act".into()],
//!     trained_datasets: vec!["sst2".into()],
//!     eval_datasets: vec!["sst2".into(), "finsen".into()],
//!     ..Default::default()
//! };
//! let summary = ia2_eval::run(&args)?;
//! println!("{summary}");
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod args;
pub mod bench;
pub mod engine;
pub mod fingerprint;
pub mod metrics;
pub mod parse;
mod plan;
pub mod prompts;
pub mod results;
pub mod run;
pub mod select;
mod summary;

pub use args::EvalConfig;
pub use bench::{EvalBenchConfig, EvalBenchReport, run_bench};
pub use fingerprint::base_model_fingerprint;
pub use run::{Status, Summary, SummaryEntry, plan, run, run_with_model};
