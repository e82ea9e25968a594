//! The on-disk contract of ia2, used by train, eval and everything after them (sweep, report, analyze).
//! No tensor engine, no command line: serde types, names, identities, fingerprints, locks and temporaries.
//!
//! API summary (everything is re-exported at the crate root):
//! - **Names** ([`layout`]): `run_dir(outputs, method, dataset, run_name)` = `outputs/{method}/{dataset}/{run_name}`;
//!   `CONFIG_FILE` (training_config.json), `STATS_FILE` (final_loss_statistics.json), `METRICS_FILE`
//!   (metrics.jsonl); `result_path(outputs, &ResultName{..})` for evaluation results; `teacher_entry`;
//!   `lock_path`.
//! - **One serde type per file**, for writing and reading: [`RunConfig`] (+ [`Ia2RunConfig`],
//!   `run_name()`, `identity()`), [`FinalStats`] / [`TrainLoss`] (`final_epoch` 1-based as the seed),
//!   [`MetricsRecord`] (one metrics.jsonl line, `read_metrics`), [`ResultFile`] / [`Record`] /
//!   [`ModeResults`] / [`ProbInfo`]; the lenient reader of any `training_config.json` (seed ones too):
//!   [`TrainingConfig`]; methods and options: [`TrainingMethod`], [`AdapterKind`], [`Objective`], [`Loss`],
//!   [`LabelType`], [`TopK`].
//! - **Discovery** ([`discover`]): `list_runs(outputs) -> (Vec<FoundRun{dir, method, dataset, name,
//!   raw_config, config, run_config, stats}>, passed_over)`, `read_run(dir)`,
//!   `list_results(outputs) -> (Vec<FoundResult{path, file}>, passed_over)` (finished files only).
//! - **Identity** ([`identity`]): sha256 of canonical JSON of everything that determines a result
//!   (`RunConfig::identity_inputs`, an evaluation's `evaluation_config.identity_inputs`); `diff` lists what
//!   differs. Reuse requires equal identities: [`existing_run`] / [`existing_result`].
//! - **Fingerprints** ([`fingerprint`]): `model_fingerprint(dir)` (whole-file sha256 of the weights, cached by
//!   path + size + mtime in `<ia2 cache>/fingerprints/sha256.json`), `file_sha256`, `file_sha256_cached`.
//! - **Concurrency** ([`lock`]): `Lock::acquire(target, Wait::Block | Wait::Fail)`: flock on
//!   `.ia2-lock-{name}` beside the target.
//! - **Temporaries** ([`tmp`]): one scheme `.ia2-tmp-{pid}-{nonce}-{name}`; `write_atomic`,
//!   `write_json_atomic`, `remove_leftovers`; directories: [`RunSlot`] / [`RunDir`] (lock, recover, write,
//!   replace atomically with `renameat2(RENAME_EXCHANGE)`, see [`replace`]).
//! - **Provenance** ([`provenance`]): `.{file}.ia2-source.json` sidecars (training / demo sets record the
//!   sha256 of the `main.json` they were built from).
//!
//! Reuse policy (documented choice): a finished run whose identity differs from the requested one is an
//! error naming the differing fields; `--force` replaces it atomically. A finished evaluation result whose
//! identity differs only in its input data checksums is evaluated again (the data changed); any other
//! difference (another base model or adapter with the same name, other settings) needs `--overwrite`.

pub mod config;
pub mod discover;
pub mod fingerprint;
pub mod identity;
pub mod labels;
pub mod layout;
pub mod lenient;
pub mod lock;
pub mod method;
pub mod provenance;
pub mod replace;
pub mod results;
pub mod rundir;
pub mod stats;
pub mod time;
pub mod tmp;

pub use config::{AdamSettings, Ia2RunConfig, RunConfig, lora_targets, py_float};
pub use discover::{FoundResult, FoundRun, list_results, list_runs, read_run};
pub use fingerprint::{DigestCache, file_sha256, file_sha256_cached, model_fingerprint};
pub use identity::{CODE_VERSION, canonical_json, identity_of};
pub use labels::{LabelType, TopK};
pub use layout::{
    CONFIG_FILE, METRICS_FILE, ResultName, ResultSubject, STATS_FILE, result_path, run_dir,
};
pub use lenient::TrainingConfig;
pub use lock::{Lock, Wait};
pub use method::{AdapterKind, Loss, Objective, TrainingMethod};
pub use results::{
    COMPLETE, DistStats, ExistingResult, ModeResults, NextTokenInfo, ProbInfo, Record, ResultFile,
    StepsInfo, existing_result,
};
pub use rundir::{ExistingRun, RunDir, RunSlot, existing_run, is_complete};
pub use stats::{FinalStats, MetricsRecord, TrainLoss, read_metrics};
pub use tmp::{read_json, write_atomic, write_json_atomic};
