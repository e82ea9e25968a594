//! `--model` / `--model-id` / `--revision` / `--dtype` / `--adapter` / `--merge-adapter` / `--device`, shared by
//! every command that runs a model. Parsed into [`ModelOptions`].

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use ia2_load::{ModelOptions, WeightDtype};
use serde::Serialize;
use std::path::PathBuf;

/// Model selection flags shared by every command that runs a model; each field is named like its
/// [`ModelOptions`] field.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ModelCli {
    /// Local model directory in Hugging Face layout (config.json, *.safetensors, tokenizer.json), or
    /// `builtin:tiny-qwen3` / `builtin:tiny-llama`: tiny seeded random models for smoke tests.
    #[arg(
        long,
        default_value = "builtin:tiny-qwen3",
        conflicts_with = "model_id"
    )]
    pub model: String,
    /// Hugging Face model id (e.g. Qwen/Qwen3-4B-Base), resolved from $HF_HOME / ~/.cache/huggingface/hub;
    /// missing files are downloaded when a network is available and HF_HUB_OFFLINE is not set.
    #[arg(long)]
    pub model_id: Option<String>,
    /// Revision (branch, tag or commit) for --model-id.
    #[arg(long, requires = "model_id")]
    pub revision: Option<String>,
    /// Precision the weights are held in; computation is always f32. The seed's `--torch_dtype float|bfloat16`
    /// is accepted as well.
    #[arg(
        long,
        alias = "torch_dtype",
        alias = "torch-dtype",
        value_parser = dtype_parser(),
        default_value = "f32"
    )]
    pub dtype: WeightDtype,
    /// PEFT adapter directory (adapter_config.json + adapter_model.safetensors): LoRA, IA3, prompt or prefix tuning.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Merge a LoRA / IA3 adapter into the weights before running (faster; same outputs up to rounding).
    #[arg(long, requires = "adapter")]
    pub merge_adapter: bool,
    /// Compute device: `cpu`, or `cuda` / `cuda:N` when built with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// `f32` / `bf16` / `f16` (listed in the help), with the seed's spellings as hidden aliases.
fn dtype_parser() -> impl TypedValueParser<Value = WeightDtype> {
    PossibleValuesParser::new(
        WeightDtype::SPELLINGS.map(|(_, names)| PossibleValue::new(names[0]).aliases(&names[1..])),
    )
    .map(|s| s.parse::<WeightDtype>().expect("a possible value parses"))
}

impl ModelCli {
    /// The library options these flags stand for.
    pub fn options(&self) -> anyhow::Result<ModelOptions> {
        super::to_config(self)
    }

    /// Loads the model (see [`ModelOptions::load`]).
    pub fn load(&self) -> anyhow::Result<ia2_load::LoadedModel> {
        self.options()?.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_library_defaults() {
        super::super::assert_defaults_match::<ModelCli, ModelOptions>();
    }

    #[test]
    fn dtype_spellings_and_adapter() {
        for (d, names) in WeightDtype::SPELLINGS {
            for n in names {
                let cli: ModelCli = super::super::parse(&["--dtype", n]).unwrap();
                assert_eq!(cli.options().unwrap().dtype, d, "{n}");
            }
        }
        assert!(super::super::parse::<ModelCli>(&["--dtype", "f64"]).is_err());
        let cli: ModelCli =
            super::super::parse(&["--model", "m", "--adapter", "a", "--merge-adapter"]).unwrap();
        let expected = ModelOptions {
            model: "m".into(),
            adapter: Some("a".into()),
            merge_adapter: true,
            ..ModelOptions::default()
        };
        assert_eq!(cli.options().unwrap(), expected);
    }
}
