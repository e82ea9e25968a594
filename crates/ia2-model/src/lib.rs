//! The causal LM decoder (Qwen3, Qwen2, Llama) in burn: loading, one forward pass with adapters,
//! KV cache, and capture of logits and attention outputs at chosen positions.

pub mod adapter;
pub mod batch;
pub mod bench;
pub mod builtin;
pub mod config;
pub mod decoder;
pub mod fused;
pub mod generate;
pub mod hf;
pub mod optim;
pub mod rope;
mod rows;
pub mod synthetic;

pub use adapter::Adapter;
pub use batch::{Batch, Capture, KvCache, Output, Positions};
pub use config::{Arch, ModelConfig, Proj, RopeScaling};
pub use decoder::{Decoder, Linear, RmsNorm, WeightSource};
pub use generate::{
    GenerateOptions, Generated, Observation, StepOutputs, StopReason, argmax, greedy,
    greedy_observed,
};
pub use hf::load_decoder;
