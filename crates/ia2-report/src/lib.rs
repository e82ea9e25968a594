//! `ia2 report`: aggregated results, the paper's plots and tables, one self-contained HTML report, and
//! re-parsing of stored generations.
//!
//! # The selection / aggregation API (shared with `ia2 analyze`; kept stable)
//!
//! ```no_run
//! use ia2_report::select::{load_results, select, HpSelection};
//! use ia2_report::aggregate::{aggregate, AggregateConfig};
//! let loaded = load_results(std::path::Path::new("outputs"))?;   // every result file → ResultEntry
//! // Hyper-parameter point per (key, N): lowest MEAN best_dev_loss over runs (default).
//! let (selections, problems) = select(&loaded.entries, HpSelection::DevLoss);
//! for s in &selections {
//!     let chosen = s.chosen();                 // Candidate: hp, entries (indices), runs, mean_dev_loss
//!     for &i in &chosen.entries {
//!         let e = &loaded.entries[i];          // e.key (EvalKey), e.n, e.run, e.run_dir, e.metrics
//!         let _ = (e, &s.key, s.n);
//!     }
//! }
//! // Mean / population std / per-run values / bootstrap CI per metric, paired comparisons with SFT:
//! let agg = aggregate(&loaded, &AggregateConfig::default());
//! # let _ = (problems, agg);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! - [`select::EvalKey`]: the full aggregation key (model, trained X, eval Y, ICL source Z, demo count D,
//!   training T, evaluation T, adapter kind and settings, method, label type, method settings, uncertainty
//!   mode, evaluation variant). N and the run are not in the key; the hyper-parameter point
//!   [`select::HpPoint`] (lr; lr and CE weight for tna) is what selection chooses.
//! - [`select::load_results`]: `<outputs>/evaluations/**.json` → [`select::Loaded`] (entries + problems).
//! - [`select::select`]: per (key, N) the chosen [`select::HpPoint`] ([`select::HpSelection::DevLoss`]
//!   default; [`select::HpSelection::Performance`] selects on the evaluation set and is labelled so).
//! - [`aggregate::aggregate`]: [`aggregate::Aggregated`] = aggregates (mean, population std, per-run values,
//!   bootstrap 95 % CI per metric), the selections, paired comparisons with SFT, and every problem.

pub mod aggregate;
pub mod html;
pub mod plots;
pub mod reparse;
pub mod report;
pub mod select;
pub mod tables;

pub use aggregate::{AggregateConfig, Aggregated, aggregate};
pub use reparse::{ReparseConfig, reparse};
pub use report::{ReportConfig, ReportOutcome, run};
pub use select::{HpSelection, load_results, select};
