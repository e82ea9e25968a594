//! PEFT adapters for the ia2 decoder: LoRA, IA3, prompt tuning and prefix tuning.
//!
//! - [`PeftConfig`]: `adapter_config.json` as PEFT 0.21 writes it (typed, serde), with unsupported
//!   options refused by name.
//! - [`init_adapter`]: a fresh [`Adapter`] with PEFT's initialisation, from an explicit seed.
//! - [`load_peft`] / [`save_peft`]: PEFT adapter directories in both directions (`PeftModel.from_pretrained`
//!   loads what [`save_peft`] writes), checked against the base model's [`ModelConfig`].
//! - [`merge`] / [`unmerge`]: fold LoRA or IA3 into a [`Decoder`]'s weights and back.
//!
//! Training: [`Adapter::require_grad`] makes exactly the adapter tensors trainable; the decoder's weights
//! are plain tensors, so backward computes no gradient for them.
//!
//! ```no_run
//! use burn::tensor::{DType, Device};
//! use ia2_adapters::{LoraConfig, PeftConfig, init_adapter, save_peft, load_peft};
//! let device = Device::flex();
//! let decoder = ia2_model::load_decoder("model".as_ref(), DType::F32, &device)?;
//! let config = PeftConfig::Lora(LoraConfig::new(8, 8.0, &["q_proj", "k_proj", "o_proj"]));
//! let mut adapter = init_adapter(&config, &decoder.config, 42, &device)?;
//! adapter.require_grad();
//! // ... train ...
//! save_peft("out/adapter", &adapter, &config)?;
//! let (adapter, config) = load_peft("out/adapter", &decoder.config, &device)?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! [`Adapter`]: ia2_model::Adapter
//! [`Adapter::require_grad`]: ia2_model::Adapter::require_grad
//! [`ModelConfig`]: ia2_model::ModelConfig
//! [`Decoder`]: ia2_model::Decoder

mod config;
mod init;
mod io;
mod merge;
mod targets;

pub use config::{
    CONFIG_FILE, Ia3Config, LayerSelector, LoraConfig, LoraInit, ModuleSelector, PEFT_VERSION,
    PeftConfig, PrefixTuningConfig, PromptTuningConfig, WEIGHTS_FILE,
};
pub use init::{init_adapter, prompt_from_token_ids};
pub use io::{
    PROMPT_KEY, PeftTensor, adapter_kind, load_peft, peft_state_dict, peft_tensor_names, save_peft,
};
pub use merge::{merge, unmerge};
