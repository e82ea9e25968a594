//! What one run is: [`RunConfig`], written as `training_config.json` (the seed's keys, so its tools read ours,
//! plus an `ia2` block with everything else that changes the result, and the run's identity), and the seed's
//! directory name, derived from the config by one function and never parsed back.

use crate::identity;
use crate::labels::{LabelType, TopK};
use crate::method::{AdapterKind, Objective, TrainingMethod};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `training_config.json`: the seed's `run_info` keys, then ours under `ia2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub dataset: String,
    pub training_method: TrainingMethod,
    /// Last path component of the model id (`Qwen3-4B-Base`), as the seed records it.
    pub model_name: String,
    pub lora_type: String,
    pub lora_r: usize,
    pub lora_alpha: usize,
    pub ia3_type: String,
    pub num_virtual_tokens: usize,
    pub num_train_examples: usize,
    pub num_generated_tokens: usize,
    pub lr: f64,
    pub ce_loss_weight: Option<f64>,
    pub label_type: LabelType,
    pub run_idx: usize,
    pub output_dir: String,
    pub ldr_mode: bool,
    pub num_labelled_samples: Option<usize>,
    pub num_unlabelled_samples: Option<usize>,
    pub max_permutations: Option<usize>,
    pub tokl_top_k: Option<String>,
    pub ia2: Ia2RunConfig,
}

/// Our additions: the model actually used, the data file's checksum, and every other option.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ia2RunConfig {
    pub version: String,
    /// What the user passed: hub id, directory or `builtin:NAME`.
    pub model_id: String,
    /// Fingerprint of the base model's files ([`crate::fingerprint::model_fingerprint`]).
    pub base_model_fingerprint: String,
    pub dtype: String,
    pub train_file: String,
    pub train_file_sha256: String,
    pub seed: u64,
    pub num_train_epochs: usize,
    pub batch_size: usize,
    pub micro_batch: usize,
    pub patience: usize,
    pub dev_eval_steps: usize,
    pub gradient_clip_val: Option<f64>,
    pub shuffle_demos: bool,
    pub num_shuffles: Option<usize>,
    pub fixed_demos: bool,
    pub adam: AdamSettings,
    /// Directory of the phase-1 adapter a2t / t2a continued.
    pub continued_from: Option<String>,
    pub num_train_sequences: usize,
    pub num_dev_sequences: usize,
    /// Identity of the phase-1 run a2t / t2a continued (part of this run's identity).
    #[serde(default)]
    pub continued_from_identity: Option<String>,
    /// [`identity::CODE_VERSION`] of the code that trained the run.
    #[serde(default)]
    pub code_version: String,
    /// sha256 of the canonical JSON of everything that determines the run's result
    /// ([`RunConfig::identity_inputs`]); `None` in configs written before identities existed.
    #[serde(default)]
    pub identity: Option<String>,
}

/// Adam's settings as recorded (`ia2.adam`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamSettings {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamSettings {
    /// The defaults every run uses, at learning rate `lr`.
    pub fn with_lr(lr: f64) -> AdamSettings {
        AdamSettings {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Projection names from the seed's letters (`qko` → q_proj, k_proj, o_proj); g/u/d (gate/up/down) are an
/// ia2 extension. Unknown letters are an error rather than silently ignored.
pub fn lora_targets(letters: &str) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for (letter, name) in [
        ('q', "q_proj"),
        ('k', "k_proj"),
        ('v', "v_proj"),
        ('o', "o_proj"),
        ('g', "gate_proj"),
        ('u', "up_proj"),
        ('d', "down_proj"),
    ] {
        if letters.contains(letter) {
            out.push(name);
        }
    }
    if let Some(bad) = letters.chars().find(|c| !"qkvogud".contains(*c)) {
        bail!(
            "unknown module letter {bad:?} in {letters:?}: expected letters of q, k, v, o, g, u, d"
        );
    }
    if out.is_empty() {
        bail!("no target modules in {letters:?}");
    }
    Ok(out)
}

impl RunConfig {
    /// The seed's run directory name (`utils.get_model_name`), e.g.
    /// `Qwen3-4B-Base_qko_8_8_1_4_0.0001_0_icl_outputs` for tok. Floats print as Python prints them.
    pub fn run_name(&self) -> String {
        let m = self.training_method;
        let ldr = match (
            self.ldr_mode,
            self.num_labelled_samples,
            self.num_unlabelled_samples,
            self.max_permutations,
        ) {
            (true, Some(n), Some(u), Some(k)) => format!("_ldr{n}_{u}_{k}"),
            _ => String::new(),
        };
        let common = format!(
            "{}_{}_{}_{}{ldr}",
            self.num_generated_tokens,
            self.num_train_examples,
            py_float(self.lr),
            self.run_idx
        );
        let base = match m.adapter {
            AdapterKind::Lora => format!(
                "{}_{}_{}_{}_{common}",
                self.model_name, self.lora_type, self.lora_r, self.lora_alpha
            ),
            AdapterKind::Ia3 => format!("{}_ia3_{}_{common}", self.model_name, self.ia3_type),
            AdapterKind::Prompt => format!(
                "{}_prompt_{}_{common}",
                self.model_name, self.num_virtual_tokens
            ),
            AdapterKind::Prefix => format!(
                "{}_prefix_{}_{common}",
                self.model_name, self.num_virtual_tokens
            ),
        };
        let label = self.label_type.as_str();
        match m.objective {
            Objective::Act => base,
            // The seed's tna name has no label type; ours adds it when it is not the default, so runs that
            // differ only in it do not overwrite each other.
            Objective::Tna => match self.label_type {
                LabelType::IclOutputs => {
                    format!("{base}_{}", py_float(self.ce_loss_weight.unwrap_or(0.0)))
                }
                LabelType::GroundTruth => format!(
                    "{base}_{}_{label}",
                    py_float(self.ce_loss_weight.unwrap_or(0.0))
                ),
            },
            Objective::Tokl => match &self.tokl_top_k {
                Some(k) => format!("{base}_{label}_topk{k}"),
                None => format!("{base}_{label}"),
            },
            Objective::Tok | Objective::A2t | Objective::T2a => format!("{base}_{label}"),
        }
    }

    /// Everything that determines the run's result: the whole config except where things are (output and
    /// training-file paths, the model argument as typed, the phase-1 directory) and the identity itself.
    pub fn identity_inputs(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.remove("output_dir");
            if let Some(ia2) = m.get_mut("ia2").and_then(Value::as_object_mut) {
                for k in ["identity", "model_id", "train_file", "continued_from"] {
                    ia2.remove(k);
                }
            }
        }
        v
    }

    /// sha256 of the canonical JSON of [`Self::identity_inputs`].
    pub fn compute_identity(&self) -> String {
        identity::identity_of(&self.identity_inputs())
    }

    /// Sets `ia2.code_version` and `ia2.identity`.
    pub fn seal(mut self) -> RunConfig {
        self.ia2.code_version = identity::CODE_VERSION.to_string();
        self.ia2.identity = Some(self.compute_identity());
        self
    }

    /// The recorded identity, or the one computed from the recorded fields for configs written before
    /// identities existed.
    pub fn identity(&self) -> String {
        self.ia2
            .identity
            .clone()
            .unwrap_or_else(|| self.compute_identity())
    }

    /// The directory of this run under `outputs`: `outputs/{method}/{dataset}/{run_name}`.
    pub fn dir(&self, outputs: &std::path::Path) -> std::path::PathBuf {
        crate::layout::run_dir(
            outputs,
            self.training_method,
            &self.dataset,
            &self.run_name(),
        )
    }

    /// The tokl target specification.
    pub fn top_k(&self) -> Option<TopK> {
        self.tokl_top_k.as_deref().and_then(|s| s.parse().ok())
    }
}

/// A float as Python's `str()` prints it (`0.0001`, `1e-05`, `0.02`, `1.0`), so run names match the seed's.
pub fn py_float(v: f64) -> String {
    if v == 0.0 {
        return "0.0".into();
    }
    let abs = v.abs();
    if (1e-4..1e16).contains(&abs) {
        let s = format!("{v}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        // Python switches to exponent notation below 1e-4 with at least two exponent digits: 1e-05.
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("+", exp),
        };
        format!("{mant}e{sign}{digits:0>2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_formatting() {
        for (v, s) in [
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (5e-5, "5e-05"),
            (0.02, "0.02"),
            (1.0, "1.0"),
            (0.001, "0.001"),
            (3e-3, "0.003"),
            (1.5e-6, "1.5e-06"),
        ] {
            assert_eq!(py_float(v), s, "{v}");
        }
    }

    #[test]
    fn letters_map_to_modules_and_unknown_letters_fail() {
        assert_eq!(lora_targets("qko").unwrap(), ["q_proj", "k_proj", "o_proj"]);
        assert!(lora_targets("qx").is_err());
        assert!(lora_targets("").is_err());
    }
}
