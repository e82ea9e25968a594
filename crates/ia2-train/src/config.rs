//! What one run is: [`RunConfig`] (`training_config.json`), defined with the on-disk contract in
//! [`ia2_runs::config`] and re-exported here, plus what needs the training crate: building it from
//! [`TrainConfig`] and the PEFT configuration of its adapter ([`RunConfigExt`]).

use crate::args::TrainConfig;
use crate::method::{AdapterKind, Objective};
use anyhow::Result;
use ia2_adapters::{Ia3Config, LoraConfig, PeftConfig, PrefixTuningConfig, PromptTuningConfig};
use ia2_model::ModelConfig;

pub use ia2_runs::config::{AdamSettings, Ia2RunConfig, RunConfig, lora_targets, py_float};

/// [`RunConfig`] from the training options, and its adapter's PEFT configuration.
pub trait RunConfigExt {
    /// The configuration of run `run` of `args` (the `ia2` block's data fields are filled in by the caller).
    fn new(args: &TrainConfig, run: usize, ia2: Ia2RunConfig) -> Self;
    /// The PEFT configuration of this run's adapter.
    fn peft_config(&self, model: &ModelConfig) -> Result<PeftConfig>;
}

impl RunConfigExt for RunConfig {
    /// The configuration of run `run` of `args` (the `ia2` block's data fields are filled in by the caller).
    fn new(args: &TrainConfig, run: usize, ia2: Ia2RunConfig) -> Self {
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

    /// The PEFT configuration of this run's adapter.
    fn peft_config(&self, model: &ModelConfig) -> Result<PeftConfig> {
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
}
