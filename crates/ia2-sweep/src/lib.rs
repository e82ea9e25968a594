//! `ia2 sweep`: the paper's grids as one resumable plan.
//!
//! - [`config`]: the experiment ([`SweepConfig`], a TOML file and/or the seed's batch options, `--set key=value`),
//!   validated before anything runs.
//! - [`plan`]: the grid expanded into a DAG of jobs (data, training sets, teacher targets, phase-1 and phase-2
//!   training, evaluations, report), written to `DIR/plan.json`.
//! - [`ledger`]: the sweep's truth: an append-only journal `DIR/ledger.jsonl` written under `flock`, plus one lock
//!   file per running job (held by the process running it, so a killed runner is detected).
//! - [`jobs`]: the only place that turns a job into `TrainConfig` / `EvalConfig` / `TrainSetsConfig`, and runs it.
//! - [`worker`]: the worker loop (claims ready jobs, keeps loaded models between jobs).
//! - [`local`]: `--max-parallel K` worker processes with a progress display.
//! - [`slurm`]: job arrays per stage with `afterok` dependencies.
//! - [`status`]: progress per stage, failures with their error text, retry.

pub mod config;
pub mod jobs;
pub mod ledger;
pub mod local;
pub mod plan;
pub mod slurm;
pub mod slurm_setup;
pub mod status;
pub mod worker;

pub use config::SweepConfig;
pub use plan::{Job, JobKind, Plan, Stage};
/// The TOML crate the configuration is written in (for callers that build override values).
pub use toml;
