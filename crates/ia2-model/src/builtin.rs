//! Built-in models: tiny seeded random models in Hugging Face layout, written by the project itself, so
//! every command can run end to end on a fresh machine with no download (`--model builtin:tiny-qwen3`).
//! Their outputs are meaningless text; they exist for smoke tests, demos and benchmarks.

use anyhow::{Context, Result, bail};
use ia2_hf::{Arch, ModelConfig, RopeScaling, save_safetensors_f32};
use ia2_rng::Generator;
use std::path::{Path, PathBuf};

/// Names accepted after `builtin:`.
pub const BUILTIN_MODELS: [&str; 2] = ["tiny-qwen3", "tiny-llama"];

/// Bumped whenever the generated files change, so stale cached copies are never reused.
const VERSION: u32 = 2;
const EOS: &str = "<|endoftext|>";
const EOS_ID: u32 = 256;

/// The configuration of a built-in model.
pub fn builtin_config(name: &str) -> Result<ModelConfig> {
    let arch = match name {
        "tiny-qwen3" => Arch::Qwen3,
        "tiny-llama" => Arch::Llama,
        other => bail!(
            "unknown built-in model {other:?}; known: {}",
            BUILTIN_MODELS.join(", ")
        ),
    };
    let config = ModelConfig {
        arch,
        vocab_size: 257,
        hidden_size: 64,
        intermediate_size: 160,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 16,
        rms_norm_eps: 1e-6,
        max_position_embeddings: 4096,
        tie_word_embeddings: true,
        rope_theta: 1_000_000.0,
        rope_scaling: RopeScaling::Default,
        attention_bias: false,
        mlp_bias: false,
        bos_token_id: None,
        eos_token_ids: vec![EOS_ID],
        pad_token_id: Some(EOS_ID),
        torch_dtype: Some("float32".into()),
    };
    config.validate()?;
    Ok(config)
}

/// Writes (once) and returns the directory of built-in model `name` under `cache_root`.
pub fn materialize(name: &str, cache_root: &Path) -> Result<PathBuf> {
    let config = builtin_config(name)?;
    let dir = cache_root.join(format!("{name}-v{VERSION}"));
    if dir.join("model.safetensors").is_file() {
        return Ok(dir);
    }
    let tmp = cache_root.join(format!(".{name}-v{VERSION}.{}.tmp", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    write_model(&config, &tmp)?;
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another process won the race: its copy is identical.
        Err(_) if dir.join("model.safetensors").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => {
            Err(e).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))
        }
    }
}

/// ia2's cache folder `sub` (built-in models, the toy model): `$IA2_CACHE/<sub>`, else `~/.cache/ia2/<sub>`.
pub fn ia2_cache_dir(sub: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("IA2_CACHE") {
        return PathBuf::from(dir).join(sub);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache/ia2").join(sub)
}

/// Default cache root for built-in models: `$IA2_CACHE/builtin`, else `~/.cache/ia2/builtin`.
pub fn default_cache_root() -> PathBuf {
    ia2_cache_dir("builtin")
}

fn write_model(config: &ModelConfig, dir: &Path) -> Result<()> {
    config.write_file(dir.join("config.json"))?;
    let mut rng = Generator::new(0x1a2);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut normal = |shape: Vec<usize>, name: String| {
        let n: usize = shape.iter().product();
        let values = (0..n)
            .map(|_| 0.05 * (rng.standard_normal() as f32))
            .collect();
        tensors.push((name, shape, values));
    };
    let (h, v) = (config.hidden_size, config.vocab_size);
    normal(vec![v, h], "model.embed_tokens.weight".into());
    for l in 0..config.num_hidden_layers {
        for p in crate::Proj::ALL {
            let (fan_in, fan_out) = p.shape(config);
            normal(vec![fan_out, fan_in], format!("{}.weight", p.path(l)));
        }
    }
    let mut ones = |name: String, len: usize| tensors.push((name, vec![len], vec![1.0; len]));
    for l in 0..config.num_hidden_layers {
        ones(format!("model.layers.{l}.input_layernorm.weight"), h);
        ones(
            format!("model.layers.{l}.post_attention_layernorm.weight"),
            h,
        );
        if config.qk_norm() {
            ones(
                format!("model.layers.{l}.self_attn.q_norm.weight"),
                config.head_dim,
            );
            ones(
                format!("model.layers.{l}.self_attn.k_norm.weight"),
                config.head_dim,
            );
        }
    }
    ones("model.norm.weight".into(), h);
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    save_safetensors_f32(dir.join("model.safetensors"), &refs, None)?;
    let write = |file: &str, text: String| {
        std::fs::write(dir.join(file), text)
            .with_context(|| format!("writing {file} in {}", dir.display()))
    };
    write("tokenizer.json", byte_level_tokenizer_json())?;
    write(
        "tokenizer_config.json",
        serde_json::json!({"eos_token": EOS, "pad_token": EOS, "model_max_length": config.max_position_embeddings,
            "tokenizer_class": "PreTrainedTokenizerFast"})
        .to_string(),
    )?;
    write(
        "generation_config.json",
        serde_json::json!({"eos_token_id": EOS_ID, "pad_token_id": EOS_ID}).to_string(),
    )
}

/// A byte-level BPE tokenizer with one token per byte (id = byte value, GPT-2's byte-to-unicode map)
/// and no merges, plus `<|endoftext|>`: any text round-trips exactly.
pub(crate) fn byte_level_tokenizer_json() -> String {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut extra = 0;
    let mut vocab = serde_json::Map::new();
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        vocab.insert(char::from_u32(c).expect("valid char").to_string(), b.into());
    }
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": EOS_ID, "content": EOS, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_models_load_and_tokenize_round_trip() {
        let root = std::env::temp_dir().join(format!("ia2-builtin-test-{}", std::process::id()));
        for name in BUILTIN_MODELS {
            let dir = materialize(name, &root).unwrap();
            let model = ia2_hf::HfModelDir::open(&dir).unwrap();
            assert_eq!(model.config, builtin_config(name).unwrap());
            let text = "Text:héllo wörld\nLabel:";
            let ids = model.tokenizer.encode(text, true).unwrap();
            assert_eq!(ids.len(), text.len(), "one token per byte");
            assert_eq!(model.tokenizer.decode(&ids, true).unwrap(), text);
            assert_eq!(model.generation.eos_token_ids, vec![EOS_ID]);
            // A second call reuses the directory.
            assert_eq!(materialize(name, &root).unwrap(), dir);
        }
        let _ = std::fs::remove_dir_all(&root);
        assert!(builtin_config("huge").is_err());
    }
}
