//! `adapter_config.json`: typed PEFT configurations with every field PEFT 0.21 writes.
//!
//! Parsing is strict about meaning: an option that would change what the adapter computes and that this
//! crate does not implement (DoRA, trainable biases, `modules_to_save`, prefix projection, ...) is refused
//! with an error naming the field, never silently ignored. Unknown fields from other PEFT versions are
//! accepted only when they hold a neutral value (`null`, `false`, `{}`, `[]`, `""`).

use crate::targets;
use anyhow::{Context, Result, bail, ensure};
use ia2_model::ModelConfig;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The PEFT version whose file format this crate writes (`peft_version` of new configs).
pub const PEFT_VERSION: &str = "0.21.2";
/// File name of the configuration inside an adapter directory.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// File name of the weights inside an adapter directory.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// `target_modules`, `feedforward_modules`, `exclude_modules`: module-name suffixes, or one regular
/// expression matched against the whole module name (`model.layers.0.self_attn.q_proj`), or PEFT's
/// `"all-linear"` shorthand (every projection of every layer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModuleSelector {
    Names(Vec<String>),
    Regex(String),
}

impl ModuleSelector {
    /// A list of checkpoint module names, e.g. `["q_proj", "v_proj"]`.
    pub fn names<S: AsRef<str>>(names: &[S]) -> Self {
        ModuleSelector::Names(names.iter().map(|s| s.as_ref().to_string()).collect())
    }
}

/// `layers_to_transform`: one layer index or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerSelector {
    One(usize),
    Many(Vec<usize>),
}

/// `init_lora_weights`: `true` (A Kaiming-uniform, B zero), `false` (both Kaiming-uniform, as
/// `nn.Linear`), or a method name (`"gaussian"` is supported; PiSSA, OLoRA, LoftQ, EVA, ... are not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LoraInit {
    Bool(bool),
    Method(String),
}

/// Serializes an integral float as an integer (PEFT writes `"lora_alpha": 8`, not `8.0`).
fn ser_num<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

fn ser_num_map<S: Serializer>(
    m: &BTreeMap<String, f64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        let v: Value = if v.fract() == 0.0 && v.abs() < 1e15 {
            Value::from(*v as i64)
        } else {
            Value::from(*v)
        };
        map.serialize_entry(k, &v)?;
    }
    map.end()
}

/// `LoraConfig` (PEFT 0.21). `scaling = lora_alpha / r` (`lora_alpha / sqrt(r)` with `use_rslora`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    pub r: usize,
    #[serde(serialize_with = "ser_num")]
    pub lora_alpha: f64,
    pub target_modules: Option<ModuleSelector>,
    pub exclude_modules: Option<ModuleSelector>,
    /// Stored and written; dropout is not applied by the ia2 forward pass (must be 0 for [`crate::init_adapter`]).
    pub lora_dropout: f64,
    /// Ignored for `nn.Linear` targets, exactly as PEFT does (it warns and treats it as false).
    pub fan_in_fan_out: bool,
    /// Only `"none"` is supported.
    pub bias: String,
    pub use_rslora: bool,
    pub init_lora_weights: LoraInit,
    pub layers_to_transform: Option<LayerSelector>,
    pub layers_pattern: Option<Value>,
    /// Per-module rank (pattern → r), matched as PEFT's `get_pattern_key`.
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alpha (pattern → alpha). All modules must end up with one common scaling.
    #[serde(serialize_with = "ser_num_map")]
    pub alpha_pattern: BTreeMap<String, f64>,
    pub modules_to_save: Option<Vec<String>>,
    pub use_dora: bool,
    pub lora_bias: bool,
    pub use_qalora: bool,
    pub qalora_group_size: usize,
    pub layer_replication: Option<Value>,
    pub target_parameters: Option<Value>,
    pub trainable_token_indices: Option<Value>,
    pub loftq_config: Value,
    pub ensure_weight_tying: bool,
    pub megatron_config: Option<Value>,
    pub megatron_core: Option<String>,
    pub alora_invocation_tokens: Option<Value>,
    pub arrow_config: Option<Value>,
    pub corda_config: Option<Value>,
    pub eva_config: Option<Value>,
    pub kasa_config: Option<Value>,
    pub lora_ga_config: Option<Value>,
    pub monteclora_config: Option<Value>,
    pub use_bdlora: Option<Value>,
    pub velora_config: Option<Value>,
    pub auto_mapping: Option<Value>,
    pub base_model_name_or_path: Option<String>,
    pub revision: Option<String>,
    pub inference_mode: bool,
    pub task_type: Option<String>,
    pub peft_version: Option<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 8,
            lora_alpha: 8.0,
            target_modules: None,
            exclude_modules: None,
            lora_dropout: 0.0,
            fan_in_fan_out: false,
            bias: "none".into(),
            use_rslora: false,
            init_lora_weights: LoraInit::Bool(true),
            layers_to_transform: None,
            layers_pattern: None,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            modules_to_save: None,
            use_dora: false,
            lora_bias: false,
            use_qalora: false,
            qalora_group_size: 16,
            layer_replication: None,
            target_parameters: None,
            trainable_token_indices: None,
            loftq_config: Value::Object(Default::default()),
            ensure_weight_tying: false,
            megatron_config: None,
            megatron_core: Some("megatron.core".into()),
            alora_invocation_tokens: None,
            arrow_config: None,
            corda_config: None,
            eva_config: None,
            kasa_config: None,
            lora_ga_config: None,
            monteclora_config: None,
            use_bdlora: None,
            velora_config: None,
            auto_mapping: None,
            base_model_name_or_path: None,
            revision: None,
            inference_mode: true,
            task_type: Some("CAUSAL_LM".into()),
            peft_version: Some(PEFT_VERSION.into()),
        }
    }
}

impl LoraConfig {
    /// LoRA of rank `r` and scale `alpha` on the named projections (`q_proj`, ...).
    pub fn new<S: AsRef<str>>(r: usize, alpha: f64, target_modules: &[S]) -> Self {
        LoraConfig {
            r,
            lora_alpha: alpha,
            target_modules: Some(ModuleSelector::names(target_modules)),
            ..Default::default()
        }
    }

    /// `alpha / r`, or `alpha / sqrt(r)` with `use_rslora` (for given `r` and `alpha`).
    pub fn scaling_for(&self, r: usize, alpha: f64) -> f64 {
        if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        }
    }
}

/// `IA3Config` (PEFT 0.21). Feed-forward modules scale their input (`ia3_l: [1, in]`), the others
/// their output (`ia3_l: [out, 1]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ia3Config {
    pub target_modules: Option<ModuleSelector>,
    pub feedforward_modules: Option<ModuleSelector>,
    pub exclude_modules: Option<ModuleSelector>,
    /// Ignored for `nn.Linear` targets, as PEFT does.
    pub fan_in_fan_out: bool,
    /// `true`: vectors start at 1 (the adapter is the identity); `false`: N(0, 1) as PEFT's `torch.randn`.
    pub init_ia3_weights: bool,
    pub modules_to_save: Option<Vec<String>>,
    pub auto_mapping: Option<Value>,
    pub base_model_name_or_path: Option<String>,
    pub revision: Option<String>,
    pub inference_mode: bool,
    pub task_type: Option<String>,
    pub peft_version: Option<String>,
}

impl Default for Ia3Config {
    fn default() -> Self {
        Ia3Config {
            target_modules: None,
            feedforward_modules: None,
            exclude_modules: None,
            fan_in_fan_out: false,
            init_ia3_weights: true,
            modules_to_save: None,
            auto_mapping: None,
            base_model_name_or_path: None,
            revision: None,
            inference_mode: true,
            task_type: Some("CAUSAL_LM".into()),
            peft_version: Some(PEFT_VERSION.into()),
        }
    }
}

impl Ia3Config {
    /// IA3 on the named projections; those also in `feedforward` scale their input.
    pub fn new<S: AsRef<str>, T: AsRef<str>>(target_modules: &[S], feedforward: &[T]) -> Self {
        Ia3Config {
            target_modules: Some(ModuleSelector::names(target_modules)),
            feedforward_modules: Some(ModuleSelector::names(feedforward)),
            ..Default::default()
        }
    }
}

/// `PromptTuningConfig` (PEFT 0.21): `num_virtual_tokens` embeddings `[N, hidden]` prepended to the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptTuningConfig {
    pub num_virtual_tokens: usize,
    pub token_dim: Option<usize>,
    pub num_transformer_submodules: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_layers: Option<usize>,
    /// `RANDOM` (N(0, 1)), `TEXT` (see [`crate::prompt_from_token_ids`]) or `SAMPLE_VOCAB`.
    pub prompt_tuning_init: String,
    pub prompt_tuning_init_text: Option<String>,
    pub tokenizer_name_or_path: Option<String>,
    pub tokenizer_kwargs: Option<Value>,
    pub modules_to_save: Option<Vec<String>>,
    pub auto_mapping: Option<Value>,
    pub base_model_name_or_path: Option<String>,
    pub revision: Option<String>,
    pub inference_mode: bool,
    pub task_type: Option<String>,
    pub peft_version: Option<String>,
}

impl Default for PromptTuningConfig {
    fn default() -> Self {
        PromptTuningConfig {
            num_virtual_tokens: 20,
            token_dim: None,
            num_transformer_submodules: Some(1),
            num_attention_heads: None,
            num_layers: None,
            prompt_tuning_init: "RANDOM".into(),
            prompt_tuning_init_text: None,
            tokenizer_name_or_path: None,
            tokenizer_kwargs: None,
            modules_to_save: None,
            auto_mapping: None,
            base_model_name_or_path: None,
            revision: None,
            inference_mode: true,
            task_type: Some("CAUSAL_LM".into()),
            peft_version: Some(PEFT_VERSION.into()),
        }
    }
}

impl PromptTuningConfig {
    /// `n` randomly initialised virtual tokens, with the model-derived fields filled in as PEFT does.
    pub fn new(n: usize, model: &ModelConfig) -> Self {
        PromptTuningConfig {
            num_virtual_tokens: n,
            token_dim: Some(model.hidden_size),
            num_attention_heads: Some(model.num_attention_heads),
            num_layers: Some(model.num_hidden_layers),
            ..Default::default()
        }
    }
}

/// `PrefixTuningConfig` (PEFT 0.21, no projection): `prompt_embeddings` `[N, layers * 2 * token_dim]`
/// with `token_dim = kv_heads * head_dim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrefixTuningConfig {
    pub num_virtual_tokens: usize,
    pub token_dim: Option<usize>,
    pub num_transformer_submodules: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_layers: Option<usize>,
    pub encoder_hidden_size: Option<usize>,
    /// Only `false` is supported.
    pub prefix_projection: bool,
    pub init_weights: Option<Value>,
    pub modules_to_save: Option<Vec<String>>,
    pub auto_mapping: Option<Value>,
    pub base_model_name_or_path: Option<String>,
    pub revision: Option<String>,
    pub inference_mode: bool,
    pub task_type: Option<String>,
    pub peft_version: Option<String>,
}

impl Default for PrefixTuningConfig {
    fn default() -> Self {
        PrefixTuningConfig {
            num_virtual_tokens: 20,
            token_dim: None,
            num_transformer_submodules: Some(1),
            num_attention_heads: None,
            num_layers: None,
            encoder_hidden_size: None,
            prefix_projection: false,
            init_weights: None,
            modules_to_save: None,
            auto_mapping: None,
            base_model_name_or_path: None,
            revision: None,
            inference_mode: true,
            task_type: Some("CAUSAL_LM".into()),
            peft_version: Some(PEFT_VERSION.into()),
        }
    }
}

impl PrefixTuningConfig {
    /// `n` virtual key/value positions per layer, with the fields PEFT derives for grouped-query models.
    pub fn new(n: usize, model: &ModelConfig) -> Self {
        let token_dim = model.num_key_value_heads * model.head_dim;
        PrefixTuningConfig {
            num_virtual_tokens: n,
            token_dim: Some(token_dim),
            num_attention_heads: Some(model.num_key_value_heads),
            num_layers: Some(model.num_hidden_layers),
            encoder_hidden_size: Some(token_dim),
            ..Default::default()
        }
    }
}

/// A PEFT adapter configuration; `peft_type` is the serde tag.
// Unboxed on purpose: a handful of configs exist per run and plain variants are easier to match on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "peft_type")]
pub enum PeftConfig {
    #[serde(rename = "LORA")]
    Lora(LoraConfig),
    #[serde(rename = "IA3")]
    Ia3(Ia3Config),
    #[serde(rename = "PROMPT_TUNING")]
    PromptTuning(PromptTuningConfig),
    #[serde(rename = "PREFIX_TUNING")]
    PrefixTuning(PrefixTuningConfig),
}

const PEFT_TYPES: [&str; 4] = ["LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING"];

fn is_neutral(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

impl PeftConfig {
    /// PEFT's `peft_type` string.
    pub fn peft_type(&self) -> &'static str {
        match self {
            PeftConfig::Lora(_) => "LORA",
            PeftConfig::Ia3(_) => "IA3",
            PeftConfig::PromptTuning(_) => "PROMPT_TUNING",
            PeftConfig::PrefixTuning(_) => "PREFIX_TUNING",
        }
    }

    /// `base_model_name_or_path` (written into the config; PEFT uses it when no base model is given).
    pub fn set_base_model_name_or_path(&mut self, name: Option<String>) {
        match self {
            PeftConfig::Lora(c) => c.base_model_name_or_path = name,
            PeftConfig::Ia3(c) => c.base_model_name_or_path = name,
            PeftConfig::PromptTuning(c) => c.base_model_name_or_path = name,
            PeftConfig::PrefixTuning(c) => c.base_model_name_or_path = name,
        }
    }

    /// Reads and checks an `adapter_config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading adapter config {}", path.display()))?;
        Self::from_json_str(&text, path)
    }

    /// Parses an `adapter_config.json` text (`origin` names it in errors) and refuses unsupported options.
    pub fn from_json_str(text: &str, origin: &Path) -> Result<Self> {
        let o = origin.display();
        let value: Value =
            serde_json::from_str(text).with_context(|| format!("{o}: invalid JSON"))?;
        let obj = value
            .as_object()
            .with_context(|| format!("{o}: expected a JSON object"))?;
        let peft_type = match obj.get("peft_type") {
            Some(Value::String(s)) => s.as_str(),
            Some(other) => bail!("{o}: `peft_type` must be a string, found {other}"),
            None => bail!("{o}: missing `peft_type`"),
        };
        ensure!(
            PEFT_TYPES.contains(&peft_type),
            "{o}: unsupported peft_type `{peft_type}` (supported: {})",
            PEFT_TYPES.join(", ")
        );
        let config: PeftConfig = serde_json::from_value(value.clone())
            .with_context(|| format!("{o}: invalid {peft_type} configuration"))?;
        let known = config.default_of_kind().to_value()?;
        let known = known.as_object().expect("config serializes to an object");
        for (key, v) in obj {
            if !known.contains_key(key) && !is_neutral(v) {
                bail!("{o}: unknown {peft_type} option `{key}` = {v} (not supported by ia2)");
            }
        }
        config
            .check_supported()
            .with_context(|| format!("{o}: unsupported {peft_type} configuration"))?;
        Ok(config)
    }

    fn default_of_kind(&self) -> PeftConfig {
        match self {
            PeftConfig::Lora(_) => PeftConfig::Lora(Default::default()),
            PeftConfig::Ia3(_) => PeftConfig::Ia3(Default::default()),
            PeftConfig::PromptTuning(_) => PeftConfig::PromptTuning(Default::default()),
            PeftConfig::PrefixTuning(_) => PeftConfig::PrefixTuning(Default::default()),
        }
    }

    /// The configuration as a JSON value (with `peft_type`).
    pub fn to_value(&self) -> Result<Value> {
        Ok(serde_json::to_value(self)?)
    }

    /// The text PEFT's `save_pretrained` writes: `json.dumps(config, indent=2, sort_keys=True)`.
    pub fn to_json_string(&self) -> Result<String> {
        let mut out = String::new();
        write_python_json(&self.to_value()?, 0, &mut out);
        Ok(out)
    }

    /// Refuses options that would change the computation and that ia2 does not implement
    /// (independent of the base model; see [`PeftConfig::validate`] for the model checks).
    pub fn check_supported(&self) -> Result<()> {
        let neutral = |name: &str, v: &Option<Value>| -> Result<()> {
            match v {
                Some(v) if !is_neutral(v) => bail!("`{name}` = {v} is not supported"),
                _ => Ok(()),
            }
        };
        let common = |task_type: &Option<String>, modules_to_save: &Option<Vec<String>>| {
            if let Some(t) = task_type {
                ensure!(
                    t == "CAUSAL_LM",
                    "task_type `{t}` is not supported (only CAUSAL_LM or null)"
                );
            }
            if let Some(m) = modules_to_save {
                ensure!(
                    m.is_empty(),
                    "modules_to_save {m:?} is not supported (fully trained copies of base modules)"
                );
            }
            Ok(())
        };
        match self {
            PeftConfig::Lora(c) => {
                common(&c.task_type, &c.modules_to_save)?;
                ensure!(c.r > 0, "`r` must be positive");
                ensure!(
                    c.bias == "none",
                    "bias = \"{}\" (trainable base-layer biases) is not supported; only \"none\"",
                    c.bias
                );
                ensure!(!c.use_dora, "use_dora = true (DoRA) is not supported");
                ensure!(!c.lora_bias, "lora_bias = true is not supported");
                ensure!(!c.use_qalora, "use_qalora = true is not supported");
                ensure!(
                    (0.0..1.0).contains(&c.lora_dropout),
                    "lora_dropout {} is outside [0, 1)",
                    c.lora_dropout
                );
                match &c.init_lora_weights {
                    LoraInit::Bool(_) => {}
                    LoraInit::Method(m) if m == "gaussian" => {}
                    LoraInit::Method(m) => bail!(
                        "init_lora_weights = \"{m}\" is not supported (true, false or \"gaussian\"); \
                         methods such as PiSSA/OLoRA/LoftQ also rewrite the base weights"
                    ),
                }
                ensure!(
                    is_neutral(&c.loftq_config),
                    "loftq_config = {} is not supported",
                    c.loftq_config
                );
                neutral("layer_replication", &c.layer_replication)?;
                neutral("target_parameters", &c.target_parameters)?;
                neutral("trainable_token_indices", &c.trainable_token_indices)?;
                neutral("megatron_config", &c.megatron_config)?;
                neutral("alora_invocation_tokens", &c.alora_invocation_tokens)?;
                neutral("arrow_config", &c.arrow_config)?;
                neutral("corda_config", &c.corda_config)?;
                neutral("eva_config", &c.eva_config)?;
                neutral("kasa_config", &c.kasa_config)?;
                neutral("lora_ga_config", &c.lora_ga_config)?;
                neutral("monteclora_config", &c.monteclora_config)?;
                neutral("use_bdlora", &c.use_bdlora)?;
                neutral("velora_config", &c.velora_config)?;
                match &c.layers_pattern {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) if s == "layers" => {}
                    Some(Value::Array(a)) if a.iter().all(|v| v == "layers") => {}
                    Some(v) => bail!(
                        "layers_pattern = {v} is not supported (the decoder's layers are `layers`)"
                    ),
                }
                ensure!(
                    c.target_modules.is_some(),
                    "target_modules is null (PEFT resolves a default list when creating an \
                     adapter; give the modules explicitly)"
                );
                if matches!(c.target_modules, Some(ModuleSelector::Regex(_))) {
                    ensure!(
                        c.layers_to_transform.is_none(),
                        "layers_to_transform cannot be used when target_modules is a string \
                         (PEFT refuses this too)"
                    );
                }
                for (k, &r) in &c.rank_pattern {
                    ensure!(r > 0, "rank_pattern `{k}`: rank must be positive");
                }
            }
            PeftConfig::Ia3(c) => {
                common(&c.task_type, &c.modules_to_save)?;
                ensure!(c.target_modules.is_some(), "target_modules is null");
                if let (Some(ModuleSelector::Names(t)), Some(ModuleSelector::Names(f))) =
                    (&c.target_modules, &c.feedforward_modules)
                {
                    for m in f {
                        ensure!(
                            t.contains(m),
                            "feedforward_modules must be a subset of target_modules: `{m}` is not \
                             in {t:?}"
                        );
                    }
                }
            }
            PeftConfig::PromptTuning(c) => {
                common(&c.task_type, &c.modules_to_save)?;
                ensure!(
                    c.num_virtual_tokens > 0,
                    "num_virtual_tokens must be positive"
                );
                ensure!(
                    ["RANDOM", "TEXT", "SAMPLE_VOCAB"].contains(&c.prompt_tuning_init.as_str()),
                    "prompt_tuning_init `{}` is not one of RANDOM, TEXT, SAMPLE_VOCAB",
                    c.prompt_tuning_init
                );
                ensure!(
                    c.num_transformer_submodules.unwrap_or(1) == 1,
                    "num_transformer_submodules must be 1 for a decoder-only model"
                );
            }
            PeftConfig::PrefixTuning(c) => {
                common(&c.task_type, &c.modules_to_save)?;
                ensure!(
                    c.num_virtual_tokens > 0,
                    "num_virtual_tokens must be positive"
                );
                ensure!(
                    !c.prefix_projection,
                    "prefix_projection = true (an MLP reparameterisation of the prefix) is not supported"
                );
                ensure!(
                    c.num_transformer_submodules.unwrap_or(1) == 1,
                    "num_transformer_submodules must be 1 for a decoder-only model"
                );
            }
        }
        Ok(())
    }

    /// Checks the configuration against the base model (layer count, widths, target modules).
    pub fn validate(&self, model: &ModelConfig) -> Result<()> {
        self.check_supported()?;
        let layers = model.num_hidden_layers;
        let check_opt = |name: &str, got: Option<usize>, want: usize| -> Result<()> {
            if let Some(got) = got {
                ensure!(
                    got == want,
                    "{name} = {got} does not match the model (expected {want})"
                );
            }
            Ok(())
        };
        match self {
            PeftConfig::Lora(c) => {
                targets::lora_plan(c, layers)?;
            }
            PeftConfig::Ia3(c) => {
                targets::ia3_plan(c, layers)?;
            }
            PeftConfig::PromptTuning(c) => {
                check_opt("token_dim", c.token_dim, model.hidden_size)?;
                check_opt("num_layers", c.num_layers, layers)?;
            }
            PeftConfig::PrefixTuning(c) => {
                let kv = model.num_key_value_heads;
                check_opt("num_layers", c.num_layers, layers)?;
                check_opt("token_dim", c.token_dim, kv * model.head_dim)?;
                check_opt(
                    "num_attention_heads (key/value heads)",
                    c.num_attention_heads,
                    kv,
                )?;
            }
        }
        Ok(())
    }
}

/// Writes `v` as Python's `json.dumps(v, indent=2, sort_keys=True)` (ASCII only, `": "` and `,`).
fn write_python_json(v: &Value, indent: usize, out: &mut String) {
    let pad = |n: usize| "  ".repeat(n);
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push_str("{\n");
            for (i, k) in keys.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                write_python_str(k, out);
                out.push_str(": ");
                write_python_json(&m[k.as_str()], indent + 1, out);
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
        Value::Array(a) if !a.is_empty() => {
            out.push_str("[\n");
            for (i, x) in a.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                write_python_json(x, indent + 1, out);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        Value::String(s) => write_python_str(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_python_str(s: &str, out: &mut String) {
    let json = Value::String(s.to_string()).to_string();
    for ch in json.chars() {
        if ch.is_ascii() {
            out.push(ch);
        } else {
            let mut buf = [0u16; 2];
            for unit in ch.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
}
