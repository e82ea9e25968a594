//! Tokenizer (`tokenizer.json` via the `tokenizers` crate) and special-token ids.

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::json::{Fields, read_json_opt};
use std::path::{Path, PathBuf};

/// Special tokens named in tokenizer_config.json, resolved to ids with tokenizer.json.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `bos_token` (content, id)
    pub bos: Option<(String, u32)>,
    /// `eos_token` (content, id)
    pub eos: Option<(String, u32)>,
    /// `pad_token` (content, id)
    pub pad: Option<(String, u32)>,
}

/// A Hugging Face fast tokenizer plus the special tokens of tokenizer_config.json.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .finish()
    }
}

/// Loads a `tokenizer.json` with the `tokenizers` crate, never panicking: the file must parse as JSON first
/// (a truncated or garbled file is reported with its line and column), and a panic inside the crate (it
/// panics on some well-formed but invalid files) is caught and reported as an error naming the file.
pub fn load_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let err = |message: String| Error::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return Err(err(format!("not valid JSON (truncated or corrupt?): {e}")));
    }
    match std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(&bytes)) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(err(format!("cannot load: {e}"))),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(err(format!(
                "invalid tokenizer file (the tokenizers crate panicked: {what})"
            )))
        }
    }
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json` and, if present, `dir/tokenizer_config.json`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::Tokenizer {
                path,
                message: "file not found (a fast tokenizer's tokenizer.json is required)".into(),
            });
        }
        let mut tok = Self::from_file(&path)?;
        let cfg_path = dir.join("tokenizer_config.json");
        if let Some(value) = read_json_opt(&cfg_path)? {
            tok.special = tok.read_special(&cfg_path, &value)?;
        }
        Ok(tok)
    }

    /// Loads a `tokenizer.json` alone (no special-token names).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let inner = load_tokenizer_json(path)?;
        Ok(Self {
            inner,
            special: SpecialTokens::default(),
            path: path.to_path_buf(),
        })
    }

    fn read_special(&self, cfg_path: &Path, value: &serde_json::Value) -> Result<SpecialTokens> {
        let f = Fields::new(cfg_path, value)?;
        let lookup = |field: &str| -> Result<Option<(String, u32)>> {
            match f.opt_token_content(field)? {
                None => Ok(None),
                Some(content) => match self.inner.token_to_id(&content) {
                    Some(id) => Ok(Some((content, id))),
                    None => Err(f.err(
                        field,
                        format!(
                            "token {content:?} is not in the vocabulary of {}",
                            self.path.display()
                        ),
                    )),
                },
            }
        };
        Ok(SpecialTokens {
            bos: lookup("bos_token")?,
            eos: lookup("eos_token")?,
            pad: lookup("pad_token")?,
        })
    }

    /// Token ids of `text`. With `add_special_tokens`, the tokenizer's post-processor runs,
    /// adding BOS where the tokenizer defines it (Llama 3 yes, Qwen no) — as transformers'
    /// `tokenizer(text)` does.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                message: format!("encoding failed: {e}"),
            })
    }

    /// Text of `ids`; `skip_special_tokens` drops special/added tokens like BOS/EOS.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                message: format!("decoding failed: {e}"),
            })
    }

    /// Id of a token string (including added/special tokens).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens (may be smaller than the model's vocab_size).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether `encode(_, true)` prepends the BOS token (Llama 3: yes; Qwen: no). Decided by
    /// tokenizer.json's post-processor; `add_bos_token` in tokenizer_config.json is not
    /// consulted.
    pub fn adds_bos_token(&self) -> bool {
        let Some((_, bos)) = &self.special.bos else {
            return false;
        };
        match (self.encode("a", true), self.encode("a", false)) {
            (Ok(with), Ok(without)) => with.len() == without.len() + 1 && with.first() == Some(bos),
            _ => false,
        }
    }

    /// Special tokens from tokenizer_config.json (empty if that file was absent).
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The underlying `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Path of the tokenizer.json.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Special token ids used for generation and padding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationConfig {
    /// Tokens that end generation (empty: generate until the length limit).
    pub eos_token_ids: Vec<u32>,
    /// Padding id. When no source gives one it falls back to the first EOS id (as
    /// transformers' `generate` does); None only when there is no EOS either.
    pub pad_token_id: Option<u32>,
    /// BOS id, informational: [`Tokenizer::encode`] decides whether a BOS is prepended.
    pub bos_token_id: Option<u32>,
}

/// Token ids from one source (generation_config.json, config.json or tokenizer_config.json).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenIds {
    /// bos id
    pub bos: Option<u32>,
    /// eos ids (None: the source does not say)
    pub eos: Option<Vec<u32>>,
    /// pad id
    pub pad: Option<u32>,
}

impl GenerationConfig {
    /// The padding id to use: `pad_token_id`, else the first EOS id, else 0 (one fallback for every
    /// command; padding never reaches a real position).
    pub fn pad_id(&self) -> u32 {
        self.pad_token_id
            .or(self.eos_token_ids.first().copied())
            .unwrap_or(0)
    }

    /// Merges sources field by field with priority generation_config.json > config.json >
    /// tokenizer_config.json; then `pad` falls back to the first EOS id.
    pub fn merge(generation: &TokenIds, config: &TokenIds, tokenizer: &TokenIds) -> Self {
        let srcs = [generation, config, tokenizer];
        let eos_token_ids = srcs
            .iter()
            .find_map(|s| s.eos.clone().filter(|e| !e.is_empty()))
            .unwrap_or_default();
        let bos_token_id = srcs.iter().find_map(|s| s.bos);
        let pad_token_id = srcs
            .iter()
            .find_map(|s| s.pad)
            .or_else(|| eos_token_ids.first().copied());
        Self {
            eos_token_ids,
            pad_token_id,
            bos_token_id,
        }
    }

    /// Reads `dir/generation_config.json` (optional) and merges it with `config` and the
    /// tokenizer's special tokens (see [`GenerationConfig::merge`]).
    pub fn load(
        dir: impl AsRef<Path>,
        config: &ModelConfig,
        tokenizer: Option<&Tokenizer>,
    ) -> Result<Self> {
        let path = dir.as_ref().join("generation_config.json");
        let generation = match read_json_opt(&path)? {
            Some(v) => {
                let f = Fields::new(&path, &v)?;
                TokenIds {
                    bos: f.opt_token_id("bos_token_id")?,
                    eos: f.opt_token_ids("eos_token_id")?,
                    pad: f.opt_token_id("pad_token_id")?,
                }
            }
            None => TokenIds::default(),
        };
        let cfg = TokenIds {
            bos: config.bos_token_id,
            eos: Some(config.eos_token_ids.clone()),
            pad: config.pad_token_id,
        };
        let tok = tokenizer
            .map(|t| {
                let s = t.special_tokens();
                TokenIds {
                    bos: s.bos.as_ref().map(|x| x.1),
                    eos: s.eos.as_ref().map(|x| vec![x.1]),
                    pad: s.pad.as_ref().map(|x| x.1),
                }
            })
            .unwrap_or_default();
        Ok(Self::merge(&generation, &cfg, &tok))
    }
}
