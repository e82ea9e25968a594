//! Model selection shared by every command that runs a model: `--model` / `--model-id` / `--revision` /
//! `--dtype` / `--adapter` / `--merge-adapter` / `--device`, and loading the decoder, tokenizer and adapter.

use anyhow::{Context, Result};
use burn::tensor::{DType, Device};
use ia2_hf::{GenerationConfig, HfModelDir, ModelSource, Tokenizer};
use ia2_model::{Adapter, Decoder, builtin};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tracing::info;

/// Which model to run and how: the library side of `--model` / `--model-id` / `--revision` / `--dtype` /
/// `--adapter` / `--merge-adapter` / `--device` (the flags, their help and defaults live in the binary,
/// `crates/ia2/src/cli/model.rs`). `Default` is the command line's default: the built-in tiny Qwen3 in f32 on
/// the CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelOptions {
    /// Local model directory in Hugging Face layout, or `builtin:tiny-qwen3` / `builtin:tiny-llama`.
    pub model: String,
    /// Hugging Face model id (takes precedence over `model`).
    pub model_id: Option<String>,
    /// Revision (branch, tag or commit) for `model_id`.
    pub revision: Option<String>,
    /// Precision the weights are held in; computation is always f32.
    pub dtype: WeightDtype,
    /// PEFT adapter directory.
    pub adapter: Option<PathBuf>,
    /// Merge a LoRA / IA3 adapter into the weights before running.
    pub merge_adapter: bool,
    /// Compute device: `cpu`, or `cuda` / `cuda:N` when built with the `cuda` feature.
    pub device: String,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            model: "builtin:tiny-qwen3".into(),
            model_id: None,
            revision: None,
            dtype: WeightDtype::F32,
            adapter: None,
            merge_adapter: false,
            device: "cpu".into(),
        }
    }
}

/// Precision the weights are held in. Spelled `f32` / `bf16` / `f16`; the seed's `float`, `float32`,
/// `bfloat16`, `float16` and `half` are accepted by [`FromStr`](std::str::FromStr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    #[default]
    F32,
    Bf16,
    F16,
}

impl WeightDtype {
    /// Every value with its accepted spellings (canonical name first).
    pub const SPELLINGS: [(WeightDtype, &'static [&'static str]); 3] = [
        (WeightDtype::F32, &["f32", "float", "float32"]),
        (WeightDtype::Bf16, &["bf16", "bfloat16"]),
        (WeightDtype::F16, &["f16", "float16", "half"]),
    ];

    /// The canonical spelling (`f32`, `bf16`, `f16`).
    pub fn as_str(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::Bf16 => "bf16",
            WeightDtype::F16 => "f16",
        }
    }
}

impl std::fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WeightDtype {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        WeightDtype::SPELLINGS
            .iter()
            .find(|(_, names)| names.contains(&lower.as_str()))
            .map(|(d, _)| *d)
            .with_context(|| format!("unknown dtype {s:?}: expected f32, bf16 or f16"))
    }
}

impl WeightDtype {
    pub fn dtype(self) -> DType {
        match self {
            WeightDtype::F32 => DType::F32,
            WeightDtype::Bf16 => DType::BF16,
            WeightDtype::F16 => DType::F16,
        }
    }
}

/// A loaded model with its tokenizer, special tokens and optional adapter.
pub struct LoadedModel {
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
    pub generation: GenerationConfig,
    /// The adapter to pass to `forward` (None when absent or merged).
    pub adapter: Option<Adapter>,
    /// What was loaded, for metadata of outputs.
    pub description: serde_json::Value,
    /// The resolved model directory.
    pub dir: PathBuf,
}

pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        s if s == "cuda" || s.starts_with("cuda:") => {
            let index: usize = s
                .strip_prefix("cuda:")
                .map_or(Ok(0), str::parse)
                .context("cuda device index")?;
            Ok(Device::cuda(index))
        }
        other => anyhow::bail!(
            "unknown --device {other:?}: expected `cpu`{}",
            if cfg!(feature = "cuda") {
                " or `cuda[:N]`"
            } else {
                " (build with `--features cuda` for GPUs)"
            }
        ),
    }
}

impl ModelOptions {
    /// What the user asked for: the hub id, or the `--model` value (directory or `builtin:NAME`).
    pub fn model_arg(&self) -> String {
        self.model_id.clone().unwrap_or_else(|| self.model.clone())
    }

    /// Short model name as the seed records it: the last path component of the id (`Qwen3-4B-Base`). For a
    /// local directory it is the last component of its canonical path, so `--model .`, `--model ./` and
    /// `--model ../x/` name the directory itself (never `.`, `..` or an empty name, which would make hidden
    /// or misplaced run directories).
    pub fn model_name(&self) -> String {
        let arg = self.model_arg();
        if self.model_id.is_none() && !arg.starts_with("builtin:") {
            return local_model_name(Path::new(&arg));
        }
        let arg = arg.strip_prefix("builtin:").unwrap_or(&arg);
        arg.trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(arg)
            .to_string()
    }

    /// Resolves the model directory (built-in, local, or Hugging Face cache).
    pub fn resolve_dir(&self) -> Result<PathBuf> {
        if let Some(id) = &self.model_id {
            let source = ModelSource::Hub {
                id: id.clone(),
                revision: self.revision.clone(),
            };
            return Ok(source.resolve()?);
        }
        match self.model.strip_prefix("builtin:") {
            Some(name) => builtin::materialize(name, &builtin::default_cache_root()),
            None => {
                let dir = PathBuf::from(&self.model);
                anyhow::ensure!(
                    dir.is_dir(),
                    "model directory {} does not exist",
                    dir.display()
                );
                Ok(dir)
            }
        }
    }

    pub fn load(&self) -> Result<LoadedModel> {
        let device = parse_device(&self.device)?;
        let dir = self.resolve_dir()?;
        info!(model = %dir.display(), dtype = ?self.dtype, "loading model");
        let hf = HfModelDir::open(&dir)?;
        let mut decoder =
            Decoder::load(hf.config.clone(), &hf.weights, self.dtype.dtype(), &device)
                .with_context(|| format!("loading weights from {}", dir.display()))?;
        let mut adapter = None;
        if let Some(path) = &self.adapter {
            let (loaded, config) = ia2_adapters::load_peft(path, &decoder.config, &device)
                .with_context(|| format!("loading adapter {}", path.display()))?;
            info!(adapter = %path.display(), kind = ?config.peft_type(), "adapter loaded");
            if self.merge_adapter {
                ia2_adapters::merge(&mut decoder, &loaded)?;
            } else {
                adapter = Some(loaded);
            }
        }
        let description = serde_json::json!({
            "model": dir.display().to_string(),
            "model_arg": self.model_arg(),
            "revision": self.revision,
            "dtype": format!("{:?}", self.dtype).to_lowercase(),
            "adapter": self.adapter.as_ref().map(|p| p.display().to_string()),
            "merged_adapter": self.merge_adapter,
        });
        Ok(LoadedModel {
            decoder,
            tokenizer: hf.tokenizer,
            generation: hf.generation,
            adapter,
            description,
            dir,
        })
    }
}

/// What holding a model's weights costs, before loading it ([`ModelOptions::weight_memory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WeightMemory {
    /// Bytes computed straight from the mapped files (tensors already in the held dtype): resident once in
    /// the page cache, however many processes map them.
    pub shared: u64,
    /// Bytes each process converts into memory of its own (tensors in another dtype).
    pub private: u64,
}

impl WeightMemory {
    /// Bytes one process holds: shared plus private.
    pub fn total(&self) -> u64 {
        self.shared + self.private
    }

    /// How many processes holding this model fit in `available` bytes, each also needing `per_process`
    /// bytes of activations and working memory (at least 1).
    pub fn processes_fitting(&self, available: u64, per_process: u64) -> usize {
        let each = self.private + per_process;
        let room = available.saturating_sub(self.shared);
        usize::try_from(room / each.max(1))
            .unwrap_or(usize::MAX)
            .max(1)
    }
}

/// `MemAvailable` of /proc/meminfo in bytes (Linux); None elsewhere.
pub fn memory_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl ModelOptions {
    /// The memory the weights will take in [`ModelOptions::dtype`], from the safetensors headers alone
    /// (nothing is read): which bytes are shared through the page cache and which each process copies.
    pub fn weight_memory(&self) -> Result<WeightMemory> {
        let dir = self.resolve_dir()?;
        let weights = ia2_hf::Weights::open(&dir)
            .with_context(|| format!("reading the weights of {}", dir.display()))?;
        let held = match self.dtype {
            WeightDtype::F32 => ia2_hf::Dtype::F32,
            WeightDtype::Bf16 => ia2_hf::Dtype::BF16,
            WeightDtype::F16 => ia2_hf::Dtype::F16,
        };
        let mut m = WeightMemory::default();
        for name in weights.names() {
            let Ok(view) = weights.get(name) else {
                continue; // not a float tensor: not loaded as a weight
            };
            // The rule the decoder loads by (a bf16 file asked for in f32 stays mapped, 16-bit).
            if view.used_as_stored(held) {
                m.shared += view.bytes().len() as u64;
            } else {
                m.private += (view.numel() * held.size()) as u64;
            }
        }
        Ok(m)
    }
}

/// The name of a local model directory: the last component of its canonical path (or, when it cannot be
/// resolved, of its lexically normalised absolute path); `model` when there is none (the root directory).
pub fn local_model_name(dir: &Path) -> String {
    let resolved = std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf());
    let mut parts: Vec<String> = Vec::new();
    for c in resolved.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.pop().unwrap_or_else(|| "model".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(model: &str) -> ModelOptions {
        ModelOptions {
            model: model.into(),
            ..ModelOptions::default()
        }
    }

    #[test]
    fn weight_memory_counts_mapped_bytes_once_and_copies_per_process() {
        let opts = |dtype| ModelOptions {
            dtype,
            ..ModelOptions::default()
        };
        let f32 = opts(WeightDtype::F32).weight_memory().unwrap();
        let bf16 = opts(WeightDtype::Bf16).weight_memory().unwrap();
        // The built-in model is stored in f32: held in f32 it is all mapped, in bf16 all converted (half).
        assert!(f32.shared > 0 && f32.private == 0, "{f32:?}");
        assert_eq!(
            bf16,
            WeightMemory {
                shared: 0,
                private: f32.shared / 2
            }
        );
        // A bf16 file asked for in f32 stays mapped, at its 16-bit size.
        let tmp = tempfile::tempdir().unwrap();
        let synthetic_opts = ia2_model::synthetic::SyntheticOptions::default(); // bf16 files
        let config = ia2_model::synthetic::SyntheticModel::Tiny.config();
        let written = ia2_model::synthetic::write_checkpoint(
            &config,
            tmp.path(),
            &synthetic_opts,
            &mut |_| {},
        )
        .unwrap();
        let mut in_f32 = opts(WeightDtype::F32);
        in_f32.model = tmp.path().display().to_string();
        assert_eq!(
            in_f32.weight_memory().unwrap(),
            WeightMemory {
                shared: written.bytes,
                private: 0
            }
        );
        let m = WeightMemory {
            shared: 8,
            private: 2,
        };
        assert_eq!(m.processes_fitting(20, 1), 4); // (20 - 8) / (2 + 1)
        assert_eq!(m.processes_fitting(5, 1), 1); // never fewer than one
    }

    #[test]
    fn dtype_spellings_parse_and_round_trip() {
        for (d, names) in WeightDtype::SPELLINGS {
            for n in names {
                assert_eq!(n.parse::<WeightDtype>().unwrap(), d);
            }
            assert_eq!(d.to_string().parse::<WeightDtype>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
        }
        assert!("f64".parse::<WeightDtype>().is_err());
    }

    /// `--model .`, `./`, `../x/` and `x/.` name the directory itself, never `.`, `..` or "" (a hidden or
    /// misplaced run directory that eval could not find).
    #[test]
    fn a_local_model_is_named_by_its_canonical_last_component() {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("my-model");
        let sub = model.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        let p = |rel: &str| format!("{}/{rel}", sub.display());
        assert_eq!(args(&p("..")).model_name(), "my-model");
        assert_eq!(args(&p("../")).model_name(), "my-model");
        assert_eq!(args(&p("../../my-model/")).model_name(), "my-model");
        assert_eq!(
            args(&format!("{}/.", model.display())).model_name(),
            "my-model"
        );
        assert_eq!(
            args(&format!("{}/./", model.display())).model_name(),
            "my-model"
        );
        assert_eq!(
            args(&format!("{}/", model.display())).model_name(),
            "my-model"
        );
        // `.` itself: the current directory's name.
        let cwd = std::env::current_dir().unwrap();
        let want = cwd.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(args(".").model_name(), want);
        assert_eq!(args("./").model_name(), want);
        // Not existing: lexical normalisation.
        assert_eq!(args(&p("../gone/x/..")).model_name(), "gone");
        assert_eq!(args("builtin:tiny-qwen3").model_name(), "tiny-qwen3");
        let mut hub = args("x");
        hub.model_id = Some("Qwen/Qwen3-4B-Base".into());
        assert_eq!(hub.model_name(), "Qwen3-4B-Base");
    }
}
