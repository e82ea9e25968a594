//! `config.json` of Qwen3 / Qwen2 / Llama causal LMs (transformers 4 and 5 layouts).

use crate::error::{Error, Result, config_err, io_err, read_json};
use crate::json::Fields;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// Supported architectures, from config.json `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `model_type: "qwen3"` (Qwen3ForCausalLM): q/k RMSNorm, optional q/k/v/o bias.
    Qwen3,
    /// `model_type: "qwen2"` (Qwen2ForCausalLM): q/k/v bias always, no o bias.
    Qwen2,
    /// `model_type: "llama"` (LlamaForCausalLM): optional q/k/v/o bias and MLP bias.
    Llama,
}

impl Arch {
    /// The supported `model_type` values.
    pub const SUPPORTED: [&'static str; 3] = ["qwen3", "qwen2", "llama"];

    /// Parses a config.json `model_type`.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "qwen3" => Some(Self::Qwen3),
            "qwen2" => Some(Self::Qwen2),
            "llama" => Some(Self::Llama),
            _ => None,
        }
    }

    /// The config.json `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Qwen3 => "qwen3",
            Self::Qwen2 => "qwen2",
            Self::Llama => "llama",
        }
    }

    /// The transformers class name written to `architectures`.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Qwen3 => "Qwen3ForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Llama => "LlamaForCausalLM",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

/// Rotary embedding frequency scaling. Only `default` and `llama3` are supported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE: `inv_freq[i] = theta^(-2i/head_dim)`.
    Default,
    /// Llama 3.1 frequency-dependent scaling (transformers `_compute_llama3_parameters`).
    Llama3 {
        /// `factor`
        factor: f64,
        /// `low_freq_factor`
        low_freq_factor: f64,
        /// `high_freq_factor`
        high_freq_factor: f64,
        /// `original_max_position_embeddings`
        original_max_position_embeddings: usize,
    },
}

/// A causal LM's hyper-parameters, as read from (or written to) config.json.
///
/// Build it with [`ModelConfig::from_file`] / [`ModelConfig::from_json_str`], or as a struct
/// literal (all fields are public) and check it with [`ModelConfig::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture (`model_type`).
    pub arch: Arch,
    /// `vocab_size`
    pub vocab_size: usize,
    /// `hidden_size`
    pub hidden_size: usize,
    /// `intermediate_size` (MLP width)
    pub intermediate_size: usize,
    /// `num_hidden_layers`
    pub num_hidden_layers: usize,
    /// `num_attention_heads`
    pub num_attention_heads: usize,
    /// `num_key_value_heads` (defaults to `num_attention_heads`)
    pub num_key_value_heads: usize,
    /// `head_dim` (defaults to hidden/heads; 128 for qwen3 as in transformers' Qwen3Config).
    /// `hidden_size == heads * head_dim` is not required (Qwen3 breaks it).
    pub head_dim: usize,
    /// `rms_norm_eps`
    pub rms_norm_eps: f64,
    /// `max_position_embeddings`
    pub max_position_embeddings: usize,
    /// `tie_word_embeddings` (default false): lm_head shares embed_tokens' weight.
    pub tie_word_embeddings: bool,
    /// `rope_theta` (top level, or `rope_parameters.rope_theta`); default 10000.
    pub rope_theta: f64,
    /// `rope_scaling` / `rope_parameters` type and parameters.
    pub rope_scaling: RopeScaling,
    /// `attention_bias` for llama/qwen3 (bias on q, k, v and o). Must be false for qwen2,
    /// whose q/k/v bias is implied by the architecture: use [`ModelConfig::qkv_bias`] /
    /// [`ModelConfig::o_bias`] rather than this field.
    pub attention_bias: bool,
    /// `mlp_bias` (llama only): bias on gate/up/down projections.
    pub mlp_bias: bool,
    /// `bos_token_id` (None when absent or null).
    pub bos_token_id: Option<u32>,
    /// `eos_token_id`, an int or a list in the file (empty when absent or null).
    pub eos_token_ids: Vec<u32>,
    /// `pad_token_id`
    pub pad_token_id: Option<u32>,
    /// `dtype` (transformers 5) or `torch_dtype` (transformers 4), e.g. "bfloat16".
    pub torch_dtype: Option<String>,
}

impl ModelConfig {
    /// Reads and validates `config.json` (or any file in that format).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let value = read_json(path)?;
        Self::from_value(&value, path)
    }

    /// Reads `dir/config.json`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("config.json"))
    }

    /// Parses config.json text; `origin` is only used in error messages.
    pub fn from_json_str(text: &str, origin: impl AsRef<Path>) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|error| Error::Json {
            path: origin.as_ref().to_path_buf(),
            error,
        })?;
        Self::from_value(&value, origin.as_ref())
    }

    /// Parses an already-decoded config.json; `origin` is only used in error messages.
    pub fn from_value(value: &Value, origin: &Path) -> Result<Self> {
        let f = Fields::new(origin, value)?;
        let model_type = f
            .opt_str("model_type")?
            .ok_or_else(|| f.err("model_type", supported_msg("missing")))?;
        let arch = Arch::from_model_type(model_type).ok_or_else(|| {
            f.err(
                "model_type",
                supported_msg(&format!("unsupported value {model_type:?}")),
            )
        })?;

        let hidden_act = f.opt_str("hidden_act")?.unwrap_or("silu");
        if hidden_act != "silu" {
            return Err(f.err(
                "hidden_act",
                format!("unsupported activation {hidden_act:?} (only \"silu\" is supported)"),
            ));
        }

        // Sliding-window attention (Qwen2/Qwen3) is not implemented.
        if f.opt_bool("use_sliding_window")?.unwrap_or(false) {
            return Err(f.err(
                "use_sliding_window",
                "sliding-window attention is not supported (expected false or absent)",
            ));
        }
        if let Some(Value::Array(types)) = f.get("layer_types")
            && let Some(bad) = types.iter().find(|t| t.as_str() != Some("full_attention"))
        {
            return Err(f.err(
                "layer_types",
                format!("unsupported layer type {bad} (only \"full_attention\" is supported)"),
            ));
        }

        let hidden_size = f.req_usize("hidden_size")?;
        let num_attention_heads = f.req_usize("num_attention_heads")?;
        if num_attention_heads == 0 {
            return Err(f.err("num_attention_heads", "must be > 0"));
        }
        let num_key_value_heads = f
            .opt_usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        let head_dim = match f.opt_usize("head_dim")? {
            Some(d) => d,
            None if arch == Arch::Qwen3 => 128,
            None => {
                if !hidden_size.is_multiple_of(num_attention_heads) {
                    return Err(f.err(
                        "head_dim",
                        format!(
                            "absent, and hidden_size {hidden_size} is not divisible by \
                             num_attention_heads {num_attention_heads}"
                        ),
                    ));
                }
                hidden_size / num_attention_heads
            }
        };

        let (rope_theta, rope_scaling) = parse_rope(&f)?;

        let (attention_bias, mlp_bias) = match arch {
            Arch::Qwen2 => (false, false),
            Arch::Qwen3 => (f.opt_bool("attention_bias")?.unwrap_or(false), false),
            Arch::Llama => (
                f.opt_bool("attention_bias")?.unwrap_or(false),
                f.opt_bool("mlp_bias")?.unwrap_or(false),
            ),
        };

        let torch_dtype = match f.opt_str("dtype")? {
            Some(d) => Some(d.to_string()),
            None => f.opt_str("torch_dtype")?.map(str::to_string),
        };

        let cfg = ModelConfig {
            arch,
            vocab_size: f.req_usize("vocab_size")?,
            hidden_size,
            intermediate_size: f.req_usize("intermediate_size")?,
            num_hidden_layers: f.req_usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(
                match arch {
                    Arch::Llama => 2048,
                    Arch::Qwen2 | Arch::Qwen3 => 32768,
                },
            ),
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            rope_theta,
            rope_scaling,
            attention_bias,
            mlp_bias,
            bos_token_id: f.opt_token_id("bos_token_id")?,
            eos_token_ids: f.opt_token_ids("eos_token_id")?.unwrap_or_default(),
            pad_token_id: f.opt_token_id("pad_token_id")?,
            torch_dtype,
        };
        cfg.validate_at(origin)?;
        Ok(cfg)
    }

    /// Checks internal consistency (sizes > 0, heads divisible by kv heads, even head_dim,
    /// positive eps/theta, llama3 parameters, qwen2 bias flags, token ids < vocab).
    pub fn validate(&self) -> Result<()> {
        self.validate_at(Path::new("<ModelConfig>"))
    }

    fn validate_at(&self, path: &Path) -> Result<()> {
        let err = |field: &str, msg: String| config_err(path, field, msg);
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(err(field, "must be > 0".into()));
            }
        }
        // Sanity limits, far above any real model, so that an absurd value is an error here instead of an
        // allocation abort later (the weights are checked against the configuration when a model is opened).
        for (field, v, max) in [
            ("vocab_size", self.vocab_size, 1usize << 24),
            ("hidden_size", self.hidden_size, 1 << 18),
            ("intermediate_size", self.intermediate_size, 1 << 20),
            ("num_hidden_layers", self.num_hidden_layers, 4096),
            ("num_attention_heads", self.num_attention_heads, 4096),
            ("num_key_value_heads", self.num_key_value_heads, 4096),
            ("head_dim", self.head_dim, 1 << 14),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 26,
            ),
        ] {
            if v > max {
                return Err(err(
                    field,
                    format!("{v} is implausibly large (at most {max} accepted)"),
                ));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(err(
                "num_key_value_heads",
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    self.num_attention_heads, self.num_key_value_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(err(
                "head_dim",
                format!(
                    "{} is odd (rotary embeddings need an even head_dim)",
                    self.head_dim
                ),
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(err(
                "rms_norm_eps",
                format!("{} (expected a positive number)", self.rms_norm_eps),
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(err(
                "rope_theta",
                format!("{} (expected a positive number)", self.rope_theta),
            ));
        }
        if let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } = self.rope_scaling
        {
            if !(factor.is_finite() && factor > 0.0) {
                return Err(err(
                    "rope_scaling.factor",
                    format!("{factor} (expected > 0)"),
                ));
            }
            if !(low_freq_factor > 0.0 && high_freq_factor > low_freq_factor) {
                return Err(err(
                    "rope_scaling.high_freq_factor",
                    format!(
                        "high_freq_factor {high_freq_factor} must exceed low_freq_factor \
                         {low_freq_factor} (> 0)"
                    ),
                ));
            }
            if original_max_position_embeddings == 0 {
                return Err(err(
                    "rope_scaling.original_max_position_embeddings",
                    "must be > 0".into(),
                ));
            }
        }
        if self.arch == Arch::Qwen2 && self.attention_bias {
            return Err(err(
                "attention_bias",
                "must be false for qwen2 (its q/k/v bias is implied by the architecture)".into(),
            ));
        }
        if self.arch != Arch::Llama && self.mlp_bias {
            return Err(err(
                "mlp_bias",
                format!("only llama supports mlp_bias, not {}", self.arch),
            ));
        }
        for (field, id) in [
            ("bos_token_id", self.bos_token_id),
            ("pad_token_id", self.pad_token_id),
        ]
        .into_iter()
        .chain(
            self.eos_token_ids
                .iter()
                .map(|&i| ("eos_token_id", Some(i))),
        ) {
            if let Some(id) = id
                && id as usize >= self.vocab_size
            {
                return Err(err(
                    field,
                    format!(
                        "token id {id} is out of range for vocab_size {}",
                        self.vocab_size
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether q/k/v projections have a bias (always for qwen2, else `attention_bias`).
    pub fn qkv_bias(&self) -> bool {
        self.arch == Arch::Qwen2 || self.attention_bias
    }

    /// Whether the o projection has a bias (`attention_bias` for llama/qwen3; never qwen2).
    pub fn o_bias(&self) -> bool {
        self.arch != Arch::Qwen2 && self.attention_bias
    }

    /// Whether attention applies per-head RMSNorm to q and k before RoPE (qwen3).
    pub fn qk_norm(&self) -> bool {
        self.arch == Arch::Qwen3
    }

    /// `num_attention_heads / num_key_value_heads`.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Rotary inverse frequencies (length head_dim/2), as transformers computes them in
    /// float64 before casting (default and llama3 rope types).
    pub fn rope_inv_freq(&self) -> Vec<f64> {
        let half = self.head_dim / 2;
        let base: Vec<f64> = (0..half)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / self.head_dim as f64))
            .collect();
        match self.rope_scaling {
            RopeScaling::Default => base,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = original_max_position_embeddings as f64;
                let low_freq_wavelen = old / low_freq_factor;
                let high_freq_wavelen = old / high_freq_factor;
                base.into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen > low_freq_wavelen {
                            f / factor
                        } else if wavelen < high_freq_wavelen {
                            f
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }

    /// A Hugging Face–compatible config.json (pretty JSON) for this configuration.
    ///
    /// Writes the rope settings both ways: `rope_parameters` (transformers 5) and top-level
    /// `rope_theta` / `rope_scaling` (transformers 4). Validates first.
    pub fn to_json(&self) -> Result<String> {
        self.validate()?;
        let mut m = Map::new();
        m.insert("architectures".into(), json!([self.arch.class_name()]));
        m.insert("model_type".into(), json!(self.arch.model_type()));
        m.insert("vocab_size".into(), json!(self.vocab_size));
        m.insert("hidden_size".into(), json!(self.hidden_size));
        m.insert("intermediate_size".into(), json!(self.intermediate_size));
        m.insert("num_hidden_layers".into(), json!(self.num_hidden_layers));
        m.insert(
            "num_attention_heads".into(),
            json!(self.num_attention_heads),
        );
        m.insert(
            "num_key_value_heads".into(),
            json!(self.num_key_value_heads),
        );
        m.insert("head_dim".into(), json!(self.head_dim));
        m.insert("hidden_act".into(), json!("silu"));
        m.insert(
            "max_position_embeddings".into(),
            json!(self.max_position_embeddings),
        );
        m.insert("rms_norm_eps".into(), json!(self.rms_norm_eps));
        m.insert(
            "tie_word_embeddings".into(),
            json!(self.tie_word_embeddings),
        );
        m.insert("attention_dropout".into(), json!(0.0));
        m.insert("initializer_range".into(), json!(0.02));
        m.insert("use_cache".into(), json!(true));
        match self.arch {
            Arch::Llama => {
                m.insert("attention_bias".into(), json!(self.attention_bias));
                m.insert("mlp_bias".into(), json!(self.mlp_bias));
                m.insert("pretraining_tp".into(), json!(1));
            }
            Arch::Qwen3 => {
                m.insert("attention_bias".into(), json!(self.attention_bias));
                m.insert("use_sliding_window".into(), json!(false));
                m.insert("sliding_window".into(), Value::Null);
            }
            Arch::Qwen2 => {
                m.insert("use_sliding_window".into(), json!(false));
                m.insert("sliding_window".into(), Value::Null);
            }
        }
        let mut rope = Map::new();
        rope.insert("rope_theta".into(), json!(self.rope_theta));
        let scaling = match self.rope_scaling {
            RopeScaling::Default => {
                rope.insert("rope_type".into(), json!("default"));
                Value::Null
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let s = json!({
                    "rope_type": "llama3",
                    "factor": factor,
                    "low_freq_factor": low_freq_factor,
                    "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position_embeddings,
                });
                if let Value::Object(s) = &s {
                    rope.extend(s.clone());
                }
                s
            }
        };
        m.insert("rope_theta".into(), json!(self.rope_theta));
        m.insert("rope_scaling".into(), scaling);
        m.insert("rope_parameters".into(), Value::Object(rope));
        m.insert("bos_token_id".into(), json!(self.bos_token_id));
        m.insert(
            "eos_token_id".into(),
            match self.eos_token_ids.as_slice() {
                [] => Value::Null,
                [one] => json!(one),
                many => json!(many),
            },
        );
        m.insert("pad_token_id".into(), json!(self.pad_token_id));
        if let Some(d) = &self.torch_dtype {
            m.insert("dtype".into(), json!(d));
            m.insert("torch_dtype".into(), json!(d));
        }
        m.insert("transformers_version".into(), json!("5.0.0"));
        Ok(serde_json::to_string_pretty(&Value::Object(m)).expect("JSON values serialize"))
    }

    /// Writes [`ModelConfig::to_json`] to `path` (e.g. `dir/config.json`).
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = self.to_json()?;
        crate::weights::write_atomic(path, text.as_bytes()).map_err(io_err(PathBuf::from(path)))
    }
}

fn supported_msg(what: &str) -> String {
    format!(
        "{what}; supported model types: {}",
        Arch::SUPPORTED
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Reads rope settings from `rope_parameters` (transformers 5) or top-level `rope_theta` +
/// `rope_scaling` (transformers 4).
fn parse_rope(f: &Fields<'_>) -> Result<(f64, RopeScaling)> {
    let (params, field) = match f.nested("rope_parameters")? {
        Some(p) => (Some(p), "rope_parameters"),
        None => (f.nested("rope_scaling")?, "rope_scaling"),
    };
    let top_theta = f.opt_f64("rope_theta")?;
    let Some(p) = params else {
        return Ok((top_theta.unwrap_or(10000.0), RopeScaling::Default));
    };
    let theta = p.opt_f64("rope_theta")?.or(top_theta).unwrap_or(10000.0);
    let rope_type = match p.opt_str("rope_type")? {
        Some(t) => t,
        None => p.opt_str("type")?.unwrap_or("default"),
    };
    let type_field = if p.has("rope_type") {
        "rope_type"
    } else {
        "type"
    };
    let scaling = match rope_type {
        "default" => RopeScaling::Default,
        "llama3" => {
            let num = |name: &str| -> Result<f64> {
                p.opt_f64(name)?
                    .ok_or_else(|| p.err(name, "missing (required for rope_type \"llama3\")"))
            };
            RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: p
                    .opt_usize("original_max_position_embeddings")?
                    .ok_or_else(|| {
                        p.err(
                            "original_max_position_embeddings",
                            "missing (required for rope_type \"llama3\")",
                        )
                    })?,
            }
        }
        other => {
            return Err(p.err(
                type_field,
                format!(
                    "unsupported rope type {other:?} in `{field}` (supported: \"default\", \"llama3\")"
                ),
            ));
        }
    };
    Ok((theta, scaling))
}

impl ModelConfig {
    /// Checks the configuration against the checkpoint's tensors before anything is allocated from it:
    /// `model.embed_tokens.weight` is `[vocab_size, hidden_size]`, the layers `0..num_hidden_layers` exist
    /// and no layer beyond them (the error names config.json's field and the weights file).
    pub fn check_weights(&self, config_path: &Path, weights: &crate::Weights) -> Result<()> {
        let err = |field: &str, msg: String| config_err(config_path, field, msg);
        let embed = "model.embed_tokens.weight";
        let files = || {
            weights
                .files()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Ok(shape) = weights.shape(embed) {
            if shape.len() != 2 || shape[0] != self.vocab_size {
                return Err(err(
                    "vocab_size",
                    format!(
                        "{} does not match the weights: {embed} has shape {shape:?} in {}",
                        self.vocab_size,
                        files()
                    ),
                ));
            }
            if shape[1] != self.hidden_size {
                return Err(err(
                    "hidden_size",
                    format!(
                        "{} does not match the weights: {embed} has shape {shape:?} in {}",
                        self.hidden_size,
                        files()
                    ),
                ));
            }
        }
        let layer_present = |l: usize| {
            let p = format!("model.layers.{l}.input_layernorm.weight");
            weights.contains(&p)
        };
        if !layer_present(self.num_hidden_layers - 1) {
            // Count what is there (bounded by the validated maximum).
            let found = (0..self.num_hidden_layers.min(4096))
                .take_while(|&l| layer_present(l))
                .count();
            return Err(err(
                "num_hidden_layers",
                format!(
                    "{} does not match the weights: {} holds {found} layers",
                    self.num_hidden_layers,
                    files()
                ),
            ));
        }
        if layer_present(self.num_hidden_layers) {
            return Err(err(
                "num_hidden_layers",
                format!(
                    "{} does not match the weights: {} holds more layers",
                    self.num_hidden_layers,
                    files()
                ),
            ));
        }
        Ok(())
    }

    /// The tensor names a Hugging Face checkpoint of this configuration holds
    /// (`model.embed_tokens.weight`, per-layer attention/MLP/norm weights and biases,
    /// `model.norm.weight`, and `lm_head.weight` unless embeddings are tied).
    pub fn expected_tensor_names(&self) -> Vec<String> {
        let mut names = vec!["model.embed_tokens.weight".to_string()];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            names.push(format!("{p}.input_layernorm.weight"));
            names.push(format!("{p}.post_attention_layernorm.weight"));
            for proj in ["q_proj", "k_proj", "v_proj", "o_proj"] {
                names.push(format!("{p}.self_attn.{proj}.weight"));
                let bias = if proj == "o_proj" {
                    self.o_bias()
                } else {
                    self.qkv_bias()
                };
                if bias {
                    names.push(format!("{p}.self_attn.{proj}.bias"));
                }
            }
            if self.qk_norm() {
                names.push(format!("{p}.self_attn.q_norm.weight"));
                names.push(format!("{p}.self_attn.k_norm.weight"));
            }
            for proj in ["gate_proj", "up_proj", "down_proj"] {
                names.push(format!("{p}.mlp.{proj}.weight"));
                if self.mlp_bias {
                    names.push(format!("{p}.mlp.{proj}.bias"));
                }
            }
        }
        names.push("model.norm.weight".to_string());
        if !self.tie_word_embeddings {
            names.push("lm_head.weight".to_string());
        }
        names.sort();
        names
    }
}
