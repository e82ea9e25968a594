//! On-disk schemas of the split files.
//!
//! Every file written here is readable by the seed's Python code (which ignores keys it does not know) and
//! every seed file is readable here. Our extra key is `config`, recording the seed and counts that produced
//! the file.

use crate::schema::Example;
use serde::{Deserialize, Serialize};

/// ICL demos of one split, each demo being the rendered text `question + answer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IclDemos {
    /// `demo_type: "unique"`: one demo list per example (the dev split reuses the lists of the first
    /// training examples).
    PerExample(Vec<Vec<String>>),
    /// `demo_type: "fixed"`: one demo list shared by every example.
    Fixed(Vec<String>),
}

/// The `train` / `dev` part of a training file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub examples: Vec<Example>,
    pub icl_demos: IclDemos,
}

/// `data/<name>/train/{N}_{run}.json` (also `train/shuffled_{K}_{N}_{run}.json`, `train_fixed/...` and the LDR
/// files `data/<name>-ldr/train/{N}_{M}_{K}_{run}.json`).
///
/// ```json
/// {"train": {"examples": [{idx, question, answer}], "icl_demos": [["Text:..\nLabel:1", ...], ...]},
///  "dev": {"examples": [...], "icl_demos": [...]},
///  "remaining_indices": [pool positions used by neither train nor dev],
///  "demo_type": "unique" | "fixed",
///  "config": {...}}
/// ```
///
/// For a dataset with an empty training pool (evaluation-only datasets) the seed writes only
/// `{"remaining_indices": [0, .., |val_examples|)}`; the other keys are then absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<Split>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<Split>,
    pub remaining_indices: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo_type: Option<String>,
    /// Our addition (absent in seed files): how the file was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

/// Evaluation demo set, `data/<eval>/val/<icl_source>/{N}_{run}_d{D}.json` (see [`crate::eval_demos`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalDemosFile {
    /// The evaluation dataset's `val_examples`, in order.
    pub examples: Vec<Example>,
    /// One demo list per evaluation example, each `D` rendered demos in sampled order.
    pub icl_demos: Vec<Vec<String>>,
    pub config: EvalDemosConfig,
}

/// The seed's `config` block of an evaluation demo set (its four keys first, ours after).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalDemosConfig {
    pub eval_dataset: String,
    pub icl_source: String,
    /// The demo count actually used (`D`).
    pub icl_max_demos: usize,
    /// The run index, also the `RandomState` seed.
    pub seed: u32,
    /// Our additions: the training-set size the demo pool was held out from, and the pool size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_train_examples: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,
}

/// Renders one demo exactly as the seed does: `f"{question}{str(answer)}"` (the question already ends in its
/// answer cue, e.g. `\nLabel:`).
pub fn render_demo(ex: &Example) -> String {
    format!("{}{}", ex.question, ex.answer)
}
