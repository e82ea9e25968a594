//! `ia2 analyze`: the paper's two mechanistic analyses of trained adapters.
//!
//! - [`subspace`]: LoRA subspace overlap between methods (`subspace.json`).
//! - [`similarity`]: activation similarity of each adapter without demos to the base model with demos,
//!   free-running and teacher-forced, with a base-without-demos reference row (`similarity.json`).
//! - [`vs_performance`]: per-run similarity joined with that run's accuracy and ECE
//!   (`similarity_vs_performance.csv`), Pearson r and Gaussian fits.
//! - [`select`]: which runs are compared (discovery, keys, hyper-parameter selection).
//! - [`plots`]: every figure as SVG, PNG and PDF.
//!
//! Everything is written under one output directory (default `<outputs>/analysis/`), where `ia2 report`
//! finds the JSON files and embeds every SVG.

pub mod linalg;
pub mod performance;
pub mod plots;
pub mod select;
pub mod similarity;
pub mod stats;
pub mod subspace;
pub mod vs_performance;

pub use linalg::{Basis, RankTolerance, overlap};
pub use select::{GroupKey, HpSelection, SelectionConfig};
pub use similarity::{SimilarityConfig, SimilarityReport, Variant};
pub use subspace::{SubspaceConfig, SubspaceReport};
