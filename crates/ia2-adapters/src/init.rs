//! Fresh adapters with PEFT's initialisations, from an explicit seed.

use crate::config::{LoraInit, PeftConfig};
use crate::targets;
use anyhow::{Result, bail, ensure};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ia2_model::adapter::{Ia3Vector, LoraPair, slot};
use ia2_model::{Adapter, Decoder, ModelConfig, Proj};
use ia2_rng::Generator;

/// Seeded source of the uniform and normal draws (PCG64, Box–Muller).
struct Draws(Generator);

impl Draws {
    fn uniform(&mut self, n: usize, bound: f64) -> Vec<f32> {
        (0..n)
            .map(|_| ((2.0 * self.0.random() - 1.0) * bound) as f32)
            .collect()
    }

    fn normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        self.0.normal_pairs(n, std)
    }
}

fn t2(data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

/// A new adapter for `model` as PEFT initialises it, every draw from `seed`:
/// - LoRA: A `[r, in]` ~ U(-1/√in, 1/√in) (PEFT's `kaiming_uniform_(a=√5)`), B `[out, r]` = 0, so the
///   adapted model starts equal to the base; `init_lora_weights: "gaussian"` draws A ~ N(0, 1/r);
///   `false` also draws B ~ U(-1/√r, 1/√r) (plain `nn.Linear`).
/// - IA3: vectors of ones (identity), or N(0, 1) with `init_ia3_weights: false`.
/// - Prompt tuning (`RANDOM`) and prefix tuning: N(0, 1), as `nn.Embedding`. `TEXT` initialisation
///   needs token ids: use [`prompt_from_token_ids`].
///
/// The tensors are plain f32 tensors on `device`; call [`Adapter::require_grad`] to train them.
pub fn init_adapter(
    config: &PeftConfig,
    model: &ModelConfig,
    seed: u64,
    device: &Device,
) -> Result<Adapter> {
    config.validate(model)?;
    let mut rng = Draws(Generator::new(seed));
    let slots = model.num_hidden_layers * Proj::ALL.len();
    Ok(match config {
        PeftConfig::Lora(c) => {
            ensure!(
                c.lora_dropout == 0.0,
                "lora_dropout {} is not implemented by the ia2 forward pass (use 0)",
                c.lora_dropout
            );
            let plan = targets::lora_plan(c, model.num_hidden_layers)?;
            let mut pairs: Vec<Option<LoraPair>> = vec![None; slots];
            for (site, r) in plan.sites {
                let (fan_in, fan_out) = site.proj.shape(model);
                let a = match &c.init_lora_weights {
                    LoraInit::Method(m) if m == "gaussian" => {
                        rng.normal(r * fan_in, 1.0 / r as f64)
                    }
                    _ => rng.uniform(r * fan_in, 1.0 / (fan_in as f64).sqrt()),
                };
                let b = match &c.init_lora_weights {
                    LoraInit::Bool(false) => rng.uniform(fan_out * r, 1.0 / (r as f64).sqrt()),
                    _ => vec![0.0; fan_out * r],
                };
                pairs[slot(site.layer, site.proj)] = Some(LoraPair {
                    a: t2(a, r, fan_in, device),
                    b: t2(b, fan_out, r, device),
                });
            }
            Adapter::Lora {
                scaling: plan.scaling,
                pairs,
            }
        }
        PeftConfig::Ia3(c) => {
            let mut vectors: Vec<Option<Ia3Vector>> = vec![None; slots];
            for (site, on_input) in targets::ia3_plan(c, model.num_hidden_layers)? {
                let (fan_in, fan_out) = site.proj.shape(model);
                let n = if on_input { fan_in } else { fan_out };
                let data = if c.init_ia3_weights {
                    vec![1.0; n]
                } else {
                    rng.normal(n, 1.0)
                };
                vectors[slot(site.layer, site.proj)] = Some(Ia3Vector {
                    scale: Tensor::from_data(TensorData::new(data, [n]), device),
                    on_input,
                });
            }
            Adapter::Ia3 { vectors }
        }
        PeftConfig::PromptTuning(c) => {
            if c.prompt_tuning_init != "RANDOM" {
                bail!(
                    "prompt_tuning_init {} needs token embeddings: use prompt_from_token_ids",
                    c.prompt_tuning_init
                );
            }
            let (n, d) = (c.num_virtual_tokens, model.hidden_size);
            Adapter::Prompt {
                embeddings: t2(rng.normal(n * d, 1.0), n, d, device),
            }
        }
        PeftConfig::PrefixTuning(c) => {
            let n = c.num_virtual_tokens;
            let d = model.num_hidden_layers * 2 * model.num_key_value_heads * model.head_dim;
            Adapter::Prefix {
                embeddings: t2(rng.normal(n * d, 1.0), n, d, device),
            }
        }
    })
}

/// Prompt tuning initialised from token embeddings, as PEFT's `TEXT` init: the ids (the tokenizer's
/// output for `prompt_tuning_init_text`, special tokens included) are truncated to, or repeated up to,
/// `num_virtual_tokens`, and their rows of the input embedding table become the virtual tokens.
/// `SAMPLE_VOCAB` is this with ids drawn uniformly from the vocabulary.
pub fn prompt_from_token_ids(
    decoder: &Decoder,
    ids: &[u32],
    num_virtual_tokens: usize,
) -> Result<Adapter> {
    ensure!(
        !ids.is_empty(),
        "no token ids to initialise the prompt from"
    );
    ensure!(
        num_virtual_tokens > 0,
        "num_virtual_tokens must be positive"
    );
    let vocab = decoder.config.vocab_size;
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        bail!("token id {bad} is out of range for a vocabulary of {vocab}");
    }
    let chosen: Vec<i64> = ids
        .iter()
        .cycle()
        .take(num_virtual_tokens)
        .map(|&i| i as i64)
        .collect();
    let idx = Tensor::<1, Int>::from_data(
        TensorData::new(chosen, [num_virtual_tokens]),
        decoder.device(),
    );
    let embeddings = decoder
        .embed_tokens
        .clone()
        .select(0, idx)
        .cast(burn::tensor::DType::F32);
    Ok(Adapter::Prompt { embeddings })
}
