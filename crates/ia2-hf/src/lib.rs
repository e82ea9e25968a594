//! Hugging Face model directories: resolution (local or cache), config.json, safetensors,
//! tokenizer — without any tensor framework.
//!
//! ```no_run
//! use ia2_hf::{ModelSource, ModelConfig, Weights, Tokenizer, GenerationConfig};
//! let dir = ModelSource::parse("Qwen/Qwen3-4B-Base").resolve()?;
//! let config = ModelConfig::from_dir(&dir)?;
//! let weights = Weights::open(&dir)?;
//! let embed = weights.get("model.embed_tokens.weight")?.to_f32_vec();
//! let tokenizer = Tokenizer::from_dir(&dir)?;
//! let generation = GenerationConfig::load(&dir, &config, Some(&tokenizer))?;
//! let ids = tokenizer.encode("Hello", true)?;
//! # Ok::<(), ia2_hf::Error>(())
//! ```

mod config;
mod error;
mod json;
mod resolve;
mod stop;
mod tokenizer;
mod weights;

pub use config::{Arch, ModelConfig, RopeScaling};
pub use error::{Error, Result};
pub use resolve::{HubOptions, ModelSource, default_cache_dir, repo_cache_dir, resolve_with};
pub use stop::StopStrings;
pub use tokenizer::{GenerationConfig, SpecialTokens, TokenIds, Tokenizer, load_tokenizer_json};
pub use weights::{
    Dtype, SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, TensorToWrite, TensorView, Weights,
    save_safetensors, save_safetensors_f32,
};

use std::path::{Path, PathBuf};

/// Everything in a model directory, loaded (weights memory-mapped).
#[derive(Debug)]
pub struct HfModelDir {
    /// The directory.
    pub path: PathBuf,
    /// config.json
    pub config: ModelConfig,
    /// model.safetensors or the sharded index
    pub weights: Weights,
    /// tokenizer.json + tokenizer_config.json
    pub tokenizer: Tokenizer,
    /// merged special-token ids
    pub generation: GenerationConfig,
}

impl HfModelDir {
    /// Loads a resolved directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().to_path_buf();
        let config = ModelConfig::from_dir(&path)?;
        let weights = Weights::open(&path)?;
        config.check_weights(&path.join("config.json"), &weights)?;
        let tokenizer = Tokenizer::from_dir(&path)?;
        let generation = GenerationConfig::load(&path, &config, Some(&tokenizer))?;
        Ok(Self {
            path,
            config,
            weights,
            tokenizer,
            generation,
        })
    }

    /// Resolves `source` (environment settings) and loads it.
    pub fn load(source: &ModelSource) -> Result<Self> {
        Self::open(source.resolve()?)
    }
}
