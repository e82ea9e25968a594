//! IA2 training: `[ia3-|prompt-|prefix-]{tok,tokl,act,tna,a2t,t2a}` on a frozen decoder.
//!
//! Data flows one way: a training file (`data/<name>/train/{N}_{run}.json`) → token sequences
//! ([`examples`]) → teacher targets from the base model with ICL, cached ([`teacher`]) → the loss of each
//! objective ([`loss`]) inside the loop ([`trainer`]) → a run directory in the seed's layout ([`output`]), with
//! [`config::RunConfig`] as its `training_config.json`. [`run::run`] ties them together for `ia2 train`.

pub mod args;
pub mod bench;
pub mod bench_scale;
pub mod config;
pub mod examples;
pub mod loss;
pub mod method;
pub mod output;
pub mod progress;
pub mod run;
pub mod teacher;
pub mod trainer;

pub use args::{LabelType, TopK, TrainConfig};
pub use config::RunConfig;
pub use method::{AdapterKind, Objective, TrainingMethod};
pub use run::{RunOutcome, precompute_teacher, precompute_teacher_with_model, run, run_with_model};
