//! PEFT adapter directories (`adapter_config.json` + `adapter_model.safetensors`) in both directions.

use crate::config::{CONFIG_FILE, PeftConfig, WEIGHTS_FILE};
use crate::targets::{self, Site};
use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{Device, Tensor, TensorData};
use ia2_hf::{Dtype, Weights, save_safetensors};
use ia2_model::adapter::{AdapterTensor, Ia3Vector, LoraPair, slot};
use ia2_model::{Adapter, ModelConfig, Proj};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Prefix of every module key in a PEFT causal-LM state dict.
const KEY_PREFIX: &str = "base_model.model.";
/// Key of the prompt/prefix embedding table.
pub const PROMPT_KEY: &str = "prompt_embeddings";

/// One tensor of a PEFT state dict, as saved (no `.default.` adapter name), in f32.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// What a configuration expects in the weights file: key → (shape, site, role).
#[derive(Debug, Clone, Copy)]
enum Role {
    LoraA,
    LoraB,
    Ia3 { on_input: bool },
    Prompt,
}

fn lora_keys(site: Site) -> (String, String) {
    let base = format!("{KEY_PREFIX}{}", site.key());
    (
        format!("{base}.lora_A.weight"),
        format!("{base}.lora_B.weight"),
    )
}

fn ia3_key(site: Site) -> String {
    format!("{KEY_PREFIX}{}.ia3_l", site.key())
}

type Expected = BTreeMap<String, (Vec<usize>, Option<Site>, Role)>;

fn expected_tensors(config: &PeftConfig, model: &ModelConfig) -> Result<Expected> {
    config.validate(model)?;
    let layers = model.num_hidden_layers;
    let mut out = BTreeMap::new();
    match config {
        PeftConfig::Lora(c) => {
            for (site, r) in targets::lora_plan(c, layers)?.sites {
                let (fan_in, fan_out) = site.proj.shape(model);
                let (a, b) = lora_keys(site);
                out.insert(a, (vec![r, fan_in], Some(site), Role::LoraA));
                out.insert(b, (vec![fan_out, r], Some(site), Role::LoraB));
            }
        }
        PeftConfig::Ia3(c) => {
            for (site, on_input) in targets::ia3_plan(c, layers)? {
                let (fan_in, fan_out) = site.proj.shape(model);
                let shape = if on_input {
                    vec![1, fan_in]
                } else {
                    vec![fan_out, 1]
                };
                out.insert(ia3_key(site), (shape, Some(site), Role::Ia3 { on_input }));
            }
        }
        PeftConfig::PromptTuning(c) => {
            out.insert(
                PROMPT_KEY.into(),
                (
                    vec![c.num_virtual_tokens, model.hidden_size],
                    None,
                    Role::Prompt,
                ),
            );
        }
        PeftConfig::PrefixTuning(c) => {
            let width = layers * 2 * model.num_key_value_heads * model.head_dim;
            out.insert(
                PROMPT_KEY.into(),
                (vec![c.num_virtual_tokens, width], None, Role::Prompt),
            );
        }
    }
    Ok(out)
}

/// Loads a PEFT adapter directory into a forward-time [`Adapter`] (f32 tensors on `device`, not yet
/// trainable: call [`Adapter::require_grad`] to train it), checked against the base model's configuration.
///
/// Errors name the file and, for tensors, the key and the expected shape: missing or unexpected keys,
/// shape mismatches, non-float dtypes, an unsupported `peft_type` or option, or a pickled
/// `adapter_model.bin` (only safetensors is read).
pub fn load_peft(
    dir: impl AsRef<Path>,
    model: &ModelConfig,
    device: &Device,
) -> Result<(Adapter, PeftConfig)> {
    let dir = dir.as_ref();
    ensure!(
        dir.is_dir(),
        "adapter directory {} does not exist",
        dir.display()
    );
    let config_path = dir.join(CONFIG_FILE);
    ensure!(
        config_path.is_file(),
        "{}: no {CONFIG_FILE} (not a PEFT adapter directory)",
        dir.display()
    );
    let config = PeftConfig::from_file(&config_path)?;
    config
        .validate(model)
        .with_context(|| format!("{}: adapter does not fit the model", config_path.display()))?;
    let weights_path = dir.join(WEIGHTS_FILE);
    if !weights_path.is_file() {
        let bin = dir.join("adapter_model.bin");
        if bin.is_file() {
            bail!(
                "{}: pickled PyTorch adapters are not supported; re-save it as safetensors \
                 (PeftModel.save_pretrained(dir, safe_serialization=True)) to get {WEIGHTS_FILE}",
                bin.display()
            );
        }
        bail!("{}: missing {WEIGHTS_FILE}", dir.display());
    }
    let weights = Weights::open_file(&weights_path)?;
    let file = weights_path.display();
    let expected = expected_tensors(&config, model)?;
    let present: BTreeSet<&str> = weights.names().into_iter().collect();
    let unexpected: Vec<&str> = present
        .iter()
        .copied()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    if !unexpected.is_empty() {
        let more = if unexpected.len() > 5 {
            format!(" and {} more", unexpected.len() - 5)
        } else {
            String::new()
        };
        bail!(
            "{file}: unexpected tensor(s) for this {} configuration: {}{more}",
            config.peft_type(),
            unexpected[..unexpected.len().min(5)].join(", ")
        );
    }
    let read = |key: &str, shape: &[usize]| -> Result<Vec<f32>> {
        ensure!(
            present.contains(key),
            "{file}: missing tensor `{key}` (expected shape {shape:?})"
        );
        let view = weights
            .get(key)
            .with_context(|| format!("{file}: tensor `{key}`"))?;
        ensure!(
            view.shape() == shape,
            "{file}: tensor `{key}` has shape {:?}, expected {shape:?}",
            view.shape()
        );
        let data = view.to_f32_vec();
        if let Some(bad) = data.iter().find(|x| !x.is_finite()) {
            bail!("{file}: tensor `{key}` holds a non-finite value ({bad})");
        }
        Ok(data)
    };
    let t2 = |data: Vec<f32>, shape: &[usize]| {
        Tensor::<2>::from_data(TensorData::new(data, [shape[0], shape[1]]), device)
    };
    let slots = model.num_hidden_layers * Proj::ALL.len();
    let adapter = match &config {
        PeftConfig::Lora(c) => {
            let plan = targets::lora_plan(c, model.num_hidden_layers)?;
            let mut pairs: Vec<Option<LoraPair>> = vec![None; slots];
            for (site, _) in plan.sites {
                let (ka, kb) = lora_keys(site);
                let sa = expected[&ka].0.clone();
                let sb = expected[&kb].0.clone();
                let a = t2(read(&ka, &sa)?, &sa);
                let b = t2(read(&kb, &sb)?, &sb);
                pairs[slot(site.layer, site.proj)] = Some(LoraPair { a, b });
            }
            Adapter::Lora {
                scaling: plan.scaling,
                pairs,
            }
        }
        PeftConfig::Ia3(_) => {
            let mut vectors: Vec<Option<Ia3Vector>> = vec![None; slots];
            for (key, (shape, site, role)) in &expected {
                let (Some(site), Role::Ia3 { on_input }) = (site, role) else {
                    unreachable!("IA3 entries carry a site")
                };
                let data = read(key, shape)?;
                let n = data.len();
                vectors[slot(site.layer, site.proj)] = Some(Ia3Vector {
                    scale: Tensor::<1>::from_data(TensorData::new(data, [n]), device),
                    on_input: *on_input,
                });
            }
            Adapter::Ia3 { vectors }
        }
        PeftConfig::PromptTuning(_) | PeftConfig::PrefixTuning(_) => {
            let shape = expected[PROMPT_KEY].0.clone();
            let embeddings = t2(read(PROMPT_KEY, &shape)?, &shape);
            if matches!(config, PeftConfig::PromptTuning(_)) {
                Adapter::Prompt { embeddings }
            } else {
                Adapter::Prefix { embeddings }
            }
        }
    };
    Ok((adapter, config))
}

fn values<const D: usize>(t: &Tensor<D>) -> Result<Vec<f32>> {
    t.clone()
        .without_autodiff()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading adapter tensor: {e:?}"))
}

/// The adapter's tensors under their PEFT names and shapes (what [`save_peft`] writes), after checking
/// that the adapter is what `config` describes (kind, modules, ranks, scaling, widths).
pub fn peft_state_dict(adapter: &Adapter, config: &PeftConfig) -> Result<Vec<PeftTensor>> {
    entries(adapter, config)?
        .into_iter()
        .map(|(name, shape, t)| {
            Ok(PeftTensor {
                name,
                shape,
                data: match t {
                    AdapterTensor::D1(t) => values(t)?,
                    AdapterTensor::D2(t) => values(t)?,
                },
            })
        })
        .collect()
}

/// The PEFT key of every adapter tensor, in the order of [`Adapter::tensors`] (e.g. to name gradients
/// or log per-tensor norms), after the same checks as [`peft_state_dict`].
pub fn peft_tensor_names(adapter: &Adapter, config: &PeftConfig) -> Result<Vec<String>> {
    Ok(entries(adapter, config)?
        .into_iter()
        .map(|(name, _, _)| name)
        .collect())
}

type Entry<'a> = (String, Vec<usize>, AdapterTensor<'a>);

/// (PEFT key, PEFT shape, tensor) in slot order, which is the order of [`Adapter::tensors`].
fn entries<'a>(adapter: &'a Adapter, config: &PeftConfig) -> Result<Vec<Entry<'a>>> {
    config.check_supported()?;
    let layers_of = |n: usize| -> Result<usize> {
        ensure!(
            n.is_multiple_of(Proj::ALL.len()),
            "adapter has {n} module slots, not a multiple of {}",
            Proj::ALL.len()
        );
        Ok(n / Proj::ALL.len())
    };
    let mut out = Vec::new();
    match (adapter, config) {
        (Adapter::Lora { scaling, pairs }, PeftConfig::Lora(c)) => {
            let plan = targets::lora_plan(c, layers_of(pairs.len())?)?;
            ensure!(
                (scaling - plan.scaling).abs() <= 1e-9 * plan.scaling.abs().max(1.0),
                "adapter scaling {scaling} differs from the configuration's {}",
                plan.scaling
            );
            let planned: BTreeSet<usize> = plan
                .sites
                .iter()
                .map(|(s, _)| slot(s.layer, s.proj))
                .collect();
            if let Some(i) = (0..pairs.len()).find(|i| pairs[*i].is_some() != planned.contains(i)) {
                bail!(
                    "adapter and configuration disagree on module {} (target_modules {:?})",
                    Proj::ALL[i % 7].path(i / 7),
                    c.target_modules
                );
            }
            for (site, r) in plan.sites {
                let p = pairs[slot(site.layer, site.proj)]
                    .as_ref()
                    .expect("checked");
                let (da, db) = (p.a.dims(), p.b.dims());
                ensure!(
                    da[0] == r && db[1] == r,
                    "{}: LoRA A {da:?} / B {db:?} do not have rank {r}",
                    site.key()
                );
                let (ka, kb) = lora_keys(site);
                out.push((ka, da.to_vec(), AdapterTensor::D2(&p.a)));
                out.push((kb, db.to_vec(), AdapterTensor::D2(&p.b)));
            }
        }
        (Adapter::Ia3 { vectors }, PeftConfig::Ia3(c)) => {
            let plan = targets::ia3_plan(c, layers_of(vectors.len())?)?;
            let planned: BTreeSet<usize> =
                plan.iter().map(|(s, _)| slot(s.layer, s.proj)).collect();
            if let Some(i) =
                (0..vectors.len()).find(|i| vectors[*i].is_some() != planned.contains(i))
            {
                bail!(
                    "adapter and configuration disagree on module {} (target_modules {:?})",
                    Proj::ALL[i % 7].path(i / 7),
                    c.target_modules
                );
            }
            for (site, on_input) in plan {
                let v = vectors[slot(site.layer, site.proj)]
                    .as_ref()
                    .expect("checked");
                ensure!(
                    v.on_input == on_input,
                    "{}: the adapter scales the {} but feedforward_modules says the {}",
                    site.key(),
                    if v.on_input { "input" } else { "output" },
                    if on_input { "input" } else { "output" }
                );
                let n = v.scale.dims()[0];
                let shape = if on_input { vec![1, n] } else { vec![n, 1] };
                out.push((ia3_key(site), shape, AdapterTensor::D1(&v.scale)));
            }
        }
        (Adapter::Prompt { embeddings }, PeftConfig::PromptTuning(c)) => {
            let [n, d] = embeddings.dims();
            ensure!(
                n == c.num_virtual_tokens,
                "prompt adapter has {n} virtual tokens, the configuration {}",
                c.num_virtual_tokens
            );
            if let Some(t) = c.token_dim {
                ensure!(t == d, "prompt embeddings are {d} wide, token_dim is {t}");
            }
            out.push((PROMPT_KEY.into(), vec![n, d], AdapterTensor::D2(embeddings)));
        }
        (Adapter::Prefix { embeddings }, PeftConfig::PrefixTuning(c)) => {
            let [n, d] = embeddings.dims();
            ensure!(
                n == c.num_virtual_tokens,
                "prefix adapter has {n} virtual tokens, the configuration {}",
                c.num_virtual_tokens
            );
            if let (Some(l), Some(t)) = (c.num_layers, c.token_dim) {
                ensure!(
                    l * 2 * t == d,
                    "prefix embeddings are {d} wide, num_layers * 2 * token_dim is {}",
                    l * 2 * t
                );
            }
            out.push((PROMPT_KEY.into(), vec![n, d], AdapterTensor::D2(embeddings)));
        }
        (a, c) => bail!(
            "adapter kind {} does not match peft_type {}",
            adapter_kind(a),
            c.peft_type()
        ),
    }
    Ok(out)
}

/// `LORA`, `IA3`, `PROMPT_TUNING` or `PREFIX_TUNING`.
pub fn adapter_kind(a: &Adapter) -> &'static str {
    match a {
        Adapter::Lora { .. } => "LORA",
        Adapter::Ia3 { .. } => "IA3",
        Adapter::Prompt { .. } => "PROMPT_TUNING",
        Adapter::Prefix { .. } => "PREFIX_TUNING",
    }
}

/// A fresh temporary sibling of `dir`, in the project's one temporary-name scheme
/// ([`ia2_runs::tmp`]), so an interrupted save is recognised and removed by the next start.
fn unique_sibling(dir: &Path) -> PathBuf {
    ia2_runs::tmp::tmp_path(dir)
}

fn sync_dir(path: &Path) {
    // Best effort: directory fsync is not available everywhere.
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.sync_all();
    }
}

/// Writes `adapter` as a PEFT directory that `PeftModel.from_pretrained` loads: `adapter_config.json`
/// (all fields PEFT 0.21 writes, sorted, 2-space indent) and `adapter_model.safetensors` (f32, PEFT keys
/// and shapes, `{"format": "pt"}` metadata).
///
/// The directory is built under a temporary sibling name and renamed into place, so `dir` never holds a
/// half-written adapter. When `dir` already exists, it is swapped out for the new one and its other files
/// (e.g. training logs) are moved over; a crash in between leaves the old directory as a hidden
/// `.ia2-tmp-{pid}-{nonce}-{name}` sibling.
pub fn save_peft(dir: impl AsRef<Path>, adapter: &Adapter, config: &PeftConfig) -> Result<()> {
    let dir = dir.as_ref();
    let tensors = peft_state_dict(adapter, config)?;
    let json = config.to_json_string()?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = unique_sibling(dir);
    let result = (|| -> Result<()> {
        std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let list: Vec<ia2_hf::TensorToWrite<'_>> = tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| {
                (
                    t.name.as_str(),
                    Dtype::F32,
                    t.shape.as_slice(),
                    b.as_slice(),
                )
            })
            .collect();
        save_safetensors(tmp.join(WEIGHTS_FILE), &list, None)?;
        let config_path = tmp.join(CONFIG_FILE);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&config_path)
                .with_context(|| format!("writing {}", config_path.display()))?;
            f.write_all(json.as_bytes())?;
            f.sync_all()?;
        }
        sync_dir(&tmp);
        if dir.exists() {
            ensure!(
                dir.is_dir(),
                "{} exists and is not a directory",
                dir.display()
            );
            let old = unique_sibling(dir);
            std::fs::rename(dir, &old)
                .with_context(|| format!("moving the old adapter {} aside", dir.display()))?;
            std::fs::rename(&tmp, dir)
                .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
            // Keep everything else the old directory held (logs, training configs).
            for entry in std::fs::read_dir(&old)? {
                let entry = entry?;
                let name = entry.file_name();
                if [CONFIG_FILE, WEIGHTS_FILE, "adapter_model.bin"]
                    .iter()
                    .any(|n| name == *n)
                {
                    continue;
                }
                std::fs::rename(entry.path(), dir.join(&name)).with_context(|| {
                    format!("moving {} into the new adapter", entry.path().display())
                })?;
            }
            std::fs::remove_dir_all(&old)
                .with_context(|| format!("removing the old adapter {}", old.display()))?;
        } else {
            std::fs::rename(&tmp, dir)
                .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
        }
        if let Some(parent) = dir.parent() {
            sync_dir(parent);
        }
        Ok(())
    })();
    if result.is_err() && tmp.exists() {
        // Only our own two files can be in it: nothing is moved in before it is renamed into place.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.with_context(|| format!("saving adapter to {}", dir.display()))
}
