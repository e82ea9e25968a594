//! What one run is: [`RunConfig`], written as `training_config.json` (the seed's keys, so its tools read ours,
//! plus an `ia2` block with everything else that changes the result), the PEFT configuration of its adapter,
//! and the seed's directory name, derived from the config by one function and never parsed back.

use crate::args::{LabelType, TopK, TrainArgs};
use crate::method::{AdapterKind, Objective, TrainingMethod};
use anyhow::{Result, bail};
use ia2_adapters::{Ia3Config, LoraConfig, PeftConfig, PrefixTuningConfig, PromptTuningConfig};
use ia2_model::ModelConfig;
use serde::{Deserialize, Serialize};

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
    /// Fingerprint of the base model's files (see `teacher::model_fingerprint`).
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
    pub adam: ia2_model::optim::AdamConfig,
    /// Directory of the phase-1 adapter a2t / t2a continued.
    pub continued_from: Option<String>,
    pub num_train_sequences: usize,
    pub num_dev_sequences: usize,
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
    /// The configuration of run `run` of `args` (the `ia2` block's data fields are filled in by the caller).
    pub fn new(args: &TrainArgs, run: usize, ia2: Ia2RunConfig) -> RunConfig {
        let m = args.training_method;
        let ldr = args.ldr_mode;
        RunConfig {
            dataset: args.dataset.clone(),
            training_method: m,
            model_name: args.model.model_name(),
            lora_type: args.lora_type.clone(),
            lora_r: args.lora_r,
            lora_alpha: args.lora_alpha,
            ia3_type: args.ia3_type.clone(),
            num_virtual_tokens: args.num_virtual_tokens,
            num_train_examples: args.num_train_examples,
            num_generated_tokens: args.num_generated_tokens,
            lr: args.lr,
            ce_loss_weight: (m.objective == Objective::Tna).then_some(args.ce_loss_weight),
            label_type: args.label_type,
            run_idx: run,
            output_dir: args
                .output_dir
                .join(m.to_string())
                .join(&args.dataset)
                .display()
                .to_string(),
            ldr_mode: ldr,
            num_labelled_samples: ldr.then_some(args.num_labelled_samples),
            num_unlabelled_samples: ldr.then_some(args.num_unlabelled_samples),
            max_permutations: ldr.then_some(args.max_permutations),
            tokl_top_k: (m.objective == Objective::Tokl).then(|| args.tokl_top_k.to_string()),
            ia2,
        }
    }

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

    /// The PEFT configuration of this run's adapter.
    pub fn peft_config(&self, model: &ModelConfig) -> Result<PeftConfig> {
        Ok(match self.training_method.adapter {
            AdapterKind::Lora => PeftConfig::Lora(LoraConfig::new(
                self.lora_r,
                self.lora_alpha as f64,
                &lora_targets(&self.lora_type)?,
            )),
            AdapterKind::Ia3 => {
                // The seed passes the same list as feed-forward modules: every vector scales its input.
                let t = lora_targets(&self.ia3_type)?;
                PeftConfig::Ia3(Ia3Config::new(&t, &t))
            }
            AdapterKind::Prompt => {
                PeftConfig::PromptTuning(PromptTuningConfig::new(self.num_virtual_tokens, model))
            }
            AdapterKind::Prefix => {
                PeftConfig::PrefixTuning(PrefixTuningConfig::new(self.num_virtual_tokens, model))
            }
        })
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
