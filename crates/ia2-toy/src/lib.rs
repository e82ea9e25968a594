//! A tiny Qwen3 model that really learns in context, built by the project on a fresh machine with nothing
//! downloaded (random weights cannot show IA2 working: a random model does no in-context learning).
//!
//! * [`task`]: a seeded synthetic task family (words of hidden classes, per-task random labels) in the seed's
//!   `Text:...\nLabel:...` prompt format;
//! * [`tokenizer`]: a word-level `tokenizer.json` that the `tokenizers` crate and transformers both load;
//! * [`pretrain`]: full-parameter training on many tasks, and the held-out in-context evaluation;
//! * [`model`]: the Hugging Face model directory and its cache ([`ensure_toy_model`]);
//! * [`dataset`]: one held-out task as `data/<name>/main.json` ([`write_task_dataset`]).

pub mod dataset;
pub mod model;
pub mod pretrain;
pub mod task;
pub mod tokenizer;

pub use dataset::{write_task_dataset, write_task_dataset_with};
pub use model::{
    ToyModelInfo, ToyModelOptions, default_cache_root, ensure_toy_model, pretrain_to, verify,
};
pub use pretrain::{EvalConfig, IclReport, PretrainConfig, Sampling};
