//! The decoder: one forward pass for training, teacher collection, generation and inspection.
//!
//! Parameter names mirror Hugging Face checkpoints (`model.layers.{i}.self_attn.q_proj.weight`, ...).
//! Linear weights stay in the checkpoint layout `[out, in]` and are multiplied through a transposed view,
//! so loading, merging and PEFT export never shuffle memory. Weights may be held in bf16/f16; every
//! operation computes in f32. On flex the projections and the language-model head read a bf16/f16
//! weight as it is held ([`fused::frozen_linear()`], widened to f32 a tile at a time, exactly, with f32
//! accumulation), and the embedding lookup gathers the held rows and widens only those; no full-size
//! f32 copy of a weight is made. Adapter tensors (LoRA, IA3, prompts, prefixes) are f32.

use crate::adapter::{Adapter, slot};
use crate::batch::{Batch, Capture, KvCache, Output};
use crate::config::{ModelConfig, Proj};
use crate::rows::Rows;
use crate::{fused, rope};
use anyhow::{Context, Result, bail, ensure};
use burn::tensor::activation::silu;
use burn::tensor::module::{attention, embedding, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Device, Int, Tensor, TensorData};

/// Where the decoder's weights come from (a safetensors checkpoint, a test, a merged adapter).
pub trait WeightSource {
    /// The tensor called `name` in `dtype`; an error names the tensor when it is missing. When `dtype` is
    /// f32 a source may return the tensor in bf16 / f16 instead if that is how it is stored: its values are
    /// then exactly f32 values, and the decoder holds them as stored (half the memory, same numbers).
    fn tensor(&self, name: &str, dtype: DType) -> Result<TensorData>;
}

/// The dtype a loaded tensor is held in: `asked`, or the narrower dtype the source returned for an f32
/// request (see [`WeightSource::tensor`]); anything else is the source's error.
fn stored_dtype(name: &str, data: &TensorData, asked: DType) -> Result<DType> {
    let got = data.dtype();
    let exact = got == asked || (asked == DType::F32 && matches!(got, DType::BF16 | DType::F16));
    ensure!(
        exact,
        "tensor {name}: the weight source returned {got:?} for {asked:?}"
    );
    Ok(got)
}

/// A frozen linear projection, weight `[out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor<2>,
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    /// `x Wᵀ + b`; `fuse` allows the fused kernels ([`fused::frozen_linear()`], and
    /// [`fused::linear_rows`] for a few rows; see [`Decoder::fused`]).
    pub fn forward<const D: usize>(&self, x: Tensor<D>, fuse: bool) -> Tensor<D> {
        frozen_linear(x, &self.weight, self.bias.as_ref(), fuse)
    }
}

/// `x Wᵀ + b` with a frozen weight in its stored layout `[out, in]`.
///
/// On flex the weight is read in the precision it is held in (f32, bf16, f16) by
/// [`fused::frozen_linear()`], or [`fused::linear_rows`] for a few rows outside autodiff; a half-precision
/// weight is never converted whole. Other backends (and `fuse` off) compose it from burn's ops on an
/// f32 view of the weight.
fn frozen_linear<const D: usize>(
    x: Tensor<D>,
    weight: &Tensor<2>,
    bias: Option<&Tensor<1>>,
    fuse: bool,
) -> Tensor<D> {
    let mut dims = x.dims();
    let inp = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let few = rows <= FEW_ROWS && !x.is_autodiff();
    // A weight being trained (the toy pretraining) is not frozen: it takes the composed path below,
    // which gives it its gradient.
    if fuse
        && fused::available(&x)
        && fused::weight_supported(weight)
        && (few || !weight.is_require_grad())
    {
        dims[D - 1] = weight.dims()[0];
        let x = x.reshape([rows, inp]);
        let y = if few {
            // Decoding: bound by reading the weight, which the few-row kernel reads once, in place.
            fused::linear_rows(x, weight.clone())
        } else {
            fused::frozen_linear(x, weight.clone())
        };
        let y = y.reshape(dims);
        return match bias {
            Some(b) => y + f32_view(b).unsqueeze(),
            None => y,
        };
    }
    linear_2d(x, f32_view(weight).transpose(), bias.map(f32_view))
}

/// Up to this many rows (sequences decoding one token each), a frozen projection uses
/// [`fused::linear_rows`] instead of gemm.
const FEW_ROWS: usize = 16;

/// `linear` on the rows of `x` flattened to 2-D. burn's `linear` on a rank-3 input with batch 1 reshapes
/// the weight to rank 3 first, and reshaping a transposed (non-contiguous) `[out, in]` weight copies it
/// on every call; a 2-D matmul takes the transposed view as it is (strided gemm, no copy).
fn linear_2d<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let mut dims = x.dims();
    let inp = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    dims[D - 1] = weight.dims()[1];
    if rows == 1 {
        // One row (incremental decoding): `W x` reads the stored `[out, in]` weight row by row, a faster
        // matrix-vector product than `x Wᵀ` through the transposed view.
        let y = weight.transpose().matmul(x.reshape([inp, 1])).reshape(dims);
        return match bias {
            Some(b) => y + b.unsqueeze(),
            None => y,
        };
    }
    linear(x.reshape([rows, inp]), weight, bias).reshape(dims)
}

/// RMSNorm as in transformers (`weight * x / sqrt(mean(x²) + eps)`, in f32).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor<1>,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward<const D: usize>(&self, x: Tensor<D>, fuse: bool) -> Tensor<D> {
        if fuse && fused::available(&x) {
            return fused::rms_norm(x, f32_view(&self.weight), self.eps);
        }
        let inv = x
            .clone()
            .square()
            .mean_dim(D - 1)
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        x * inv * f32_view(&self.weight).unsqueeze()
    }
}

/// One decoder layer.
#[derive(Debug, Clone)]
pub struct Layer {
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
    /// Indexed by [`Proj::index`].
    pub proj: Vec<Linear>,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
}

/// A causal decoder-only language model (Qwen3, Qwen2, Llama).
#[derive(Debug, Clone)]
pub struct Decoder {
    pub config: ModelConfig,
    pub embed_tokens: Tensor<2>,
    pub layers: Vec<Layer>,
    pub norm: RmsNorm,
    /// `[vocab, hidden]`; `None` when tied to the input embeddings.
    pub lm_head: Option<Tensor<2>>,
    inv_freq: Vec<f32>,
    device: Device,
    /// The precision of the weights' values: what loading asked for (`--dtype`). A tensor may be stored
    /// narrower when its values are exactly those (a bf16 checkpoint loaded "in f32" keeps its bf16 values,
    /// mapped from the file: every one of them is an f32, widened exactly where it is used). Anything that
    /// writes new weight values (merging an adapter) writes them in this precision.
    pub dtype: DType,
    /// Use the fused kernels where the backend has them (see [`fused`]); off, every op is composed
    /// from burn's tensor ops (the tests compare the two).
    pub fused: bool,
    /// Training: recompute each MLP's gate and up projections in the backward pass instead of keeping them
    /// ([`fused::gated_mlp_recomputed`]; where gate and up carry no adapter and no bias, on the fused
    /// path). Same values and gradients; the largest activations of a layer are not held, for two more
    /// matrix products per layer in the backward pass. Off by default.
    pub recompute_mlp: bool,
}

fn f32_view<const D: usize>(t: &Tensor<D>) -> Tensor<D> {
    if t.dtype() == DType::F32 {
        t.clone()
    } else {
        t.clone().cast(DType::F32)
    }
}

impl Decoder {
    /// Builds the decoder from a weight source, holding weights in `dtype` on `device` (or in the narrower
    /// dtype the source returns when that represents them exactly; see [`WeightSource::tensor`]).
    /// Every tensor's shape is checked against the configuration.
    pub fn load(
        config: ModelConfig,
        source: &dyn WeightSource,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let c = &config;
        let load2 = |name: &str, shape: [usize; 2]| -> Result<Tensor<2>> {
            let data = source.tensor(name, dtype)?;
            ensure!(
                data.shape().as_slice() == shape,
                "tensor {name}: expected shape {shape:?}, found {:?}",
                data.shape().as_slice()
            );
            let held = stored_dtype(name, &data, dtype)?;
            Ok(Tensor::from_data(data, (device, held)))
        };
        let load1 = |name: &str, len: usize| -> Result<Tensor<1>> {
            let data = source.tensor(name, dtype)?;
            ensure!(
                data.shape().as_slice() == [len],
                "tensor {name}: expected shape [{len}], found {:?}",
                data.shape().as_slice()
            );
            let held = stored_dtype(name, &data, dtype)?;
            Ok(Tensor::from_data(data, (device, held)))
        };
        let norm = |name: &str, len: usize| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: load1(name, len)?,
                eps: c.rms_norm_eps,
            })
        };
        ensure!(
            c.num_hidden_layers > 0,
            "config.json: num_hidden_layers must be at least 1"
        );
        let embed_tokens = load2("model.embed_tokens.weight", [c.vocab_size, c.hidden_size])?;
        // Not `with_capacity(num_hidden_layers)`: the configuration is checked against the weights layer by
        // layer below, and an absurd layer count must fail there, not abort on allocation.
        let mut layers = Vec::new();
        for l in 0..c.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut proj = Vec::with_capacity(Proj::ALL.len());
            for pr in Proj::ALL {
                let (fan_in, fan_out) = pr.shape(c);
                let base = pr.path(l);
                let weight = load2(&format!("{base}.weight"), [fan_out, fan_in])?;
                let bias = if pr.has_bias(c) {
                    Some(load1(&format!("{base}.bias"), fan_out)?)
                } else {
                    None
                };
                proj.push(Linear { weight, bias });
            }
            let (q_norm, k_norm) = if c.qk_norm() {
                (
                    Some(norm(&format!("{p}.self_attn.q_norm.weight"), c.head_dim)?),
                    Some(norm(&format!("{p}.self_attn.k_norm.weight"), c.head_dim)?),
                )
            } else {
                (None, None)
            };
            layers.push(Layer {
                input_layernorm: norm(&format!("{p}.input_layernorm.weight"), c.hidden_size)?,
                post_attention_layernorm: norm(
                    &format!("{p}.post_attention_layernorm.weight"),
                    c.hidden_size,
                )?,
                proj,
                q_norm,
                k_norm,
            });
        }
        let norm_f = norm("model.norm.weight", c.hidden_size)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(load2("lm_head.weight", [c.vocab_size, c.hidden_size])?)
        };
        let inv_freq = c.rope_inv_freq().into_iter().map(|f| f as f32).collect();
        Ok(Decoder {
            config,
            embed_tokens,
            layers,
            norm: norm_f,
            lm_head,
            inv_freq,
            device: device.clone(),
            dtype,
            fused: true,
            recompute_mlp: false,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A fresh cache for `batch` rows, seeded with prefix-tuning keys/values when `adapter` is a prefix.
    pub fn new_cache(&self, batch: usize, adapter: Option<&Adapter>) -> KvCache {
        let c = &self.config;
        let mut cache = KvCache::empty(c.num_hidden_layers, batch);
        if let Some(Adapter::Prefix { embeddings }) = adapter {
            let n = embeddings.dims()[0];
            // [N, layers*2*kvh*hd] -> [N, layers*2, kvh, hd] -> [layers*2, kvh, N, hd]
            let kv = f32_view(embeddings)
                .reshape([
                    n,
                    c.num_hidden_layers * 2,
                    c.num_key_value_heads,
                    c.head_dim,
                ])
                .permute([1, 2, 0, 3]);
            for l in 0..c.num_hidden_layers {
                let take = |i: usize| {
                    kv.clone()
                        .narrow(0, i, 1)
                        .expand([batch, c.num_key_value_heads, n, c.head_dim])
                };
                cache.layers[l] = Some((take(2 * l), take(2 * l + 1)));
            }
            cache.valid = vec![vec![true; n]; batch];
            cache.next_pos = vec![n; batch];
        }
        cache
    }

    /// Runs the decoder over `batch`, appending to `cache`, and returns what `capture` asks for.
    ///
    /// With a prompt-tuning adapter the virtual tokens are prepended on the first call of a cache.
    /// Gradients flow to every adapter tensor that requires them; base weights are constants.
    pub fn forward(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        adapter: Option<&Adapter>,
        capture: &Capture,
    ) -> Result<Output> {
        let c = &self.config;
        ensure!(batch.batch > 0 && batch.seq > 0, "empty batch");
        ensure!(
            !cache.spent,
            "this cache was made for one forward pass (KvCache::one_pass) and has had it: its keys and \
             values were not stored; make a new cache"
        );
        ensure!(
            cache.batch() == batch.batch,
            "cache holds {} rows, the batch has {}",
            cache.batch(),
            batch.batch
        );
        if let Some(&bad) = batch.ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            bail!(
                "token id {bad} is out of range for a vocabulary of {}",
                c.vocab_size
            );
        }
        let (b, s) = (batch.batch, batch.seq);
        let virt = match adapter {
            Some(Adapter::Prompt { embeddings }) if !cache.prompt_done => embeddings.dims()[0],
            _ => 0,
        };
        let total = virt + s;
        // Positions beyond the model's limit are refused before anything is allocated for them (an eval
        // prompt far past the limit would otherwise ask for a score matrix of its length squared).
        let longest = (0..b)
            .map(|row| {
                cache.next_pos[row] + virt + batch.mask_row(row).iter().filter(|&&v| v).count()
            })
            .max()
            .unwrap_or(0);
        ensure!(
            longest <= c.max_position_embeddings,
            "a sequence needs {longest} positions, more than the model's max_position_embeddings {} \
             (config.json): shorten the prompt (fewer or shorter demos) or generate fewer tokens",
            c.max_position_embeddings
        );
        let logit_pos = capture
            .logits
            .resolve(b, virt, s)
            .context("logits positions")?;
        let attn_pos = capture
            .attn
            .resolve(b, virt, s)
            .context("attention positions")?;

        // Token embeddings, with prompt-tuning virtual tokens in front.
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(
                batch.ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [b, s],
            ),
            &self.device,
        );
        let mut x = f32_view(&embedding(self.embed_tokens.clone(), ids));
        if let Some(Adapter::Prompt { embeddings }) = adapter.filter(|_| virt > 0) {
            let prompt =
                f32_view(embeddings)
                    .unsqueeze_dim::<3>(0)
                    .expand([b, virt, c.hidden_size]);
            x = Tensor::cat(vec![prompt, x], 1);
        }

        // Position ids and the attention mask, from the cache bookkeeping and the padding mask.
        let past = cache.len();
        let mut positions = Vec::with_capacity(b * total);
        let mut masked = Vec::with_capacity(b * total * (past + total));
        let mut real = Vec::with_capacity(b * total);
        for row in 0..b {
            let new_valid: Vec<bool> = std::iter::repeat_n(true, virt)
                .chain(batch.mask_row(row).iter().copied())
                .collect();
            real.extend_from_slice(&new_valid);
            let mut next = cache.next_pos[row];
            for &v in &new_valid {
                positions.push(if v { next } else { 0 });
                next += usize::from(v);
            }
            cache.next_pos[row] = next;
            cache.valid[row].extend(new_valid);
            let valid = &cache.valid[row];
            for t in 0..total {
                let q = past + t;
                masked.extend((0..past + total).map(|j| !((valid[j] && j <= q) || j == q)));
            }
        }
        cache.prompt_done |= virt > 0;
        cache.spent = cache.one_pass;
        let (cos, sin) = rope::cos_sin(&self.inv_freq, &positions);
        let rope_shape = [b, total, c.head_dim];
        let cos = Tensor::<3>::from_data(TensorData::new(cos, rope_shape), &self.device);
        let sin = Tensor::<3>::from_data(TensorData::new(sin, rope_shape), &self.device);
        let mask = Tensor::<3, Bool>::from_data(
            TensorData::new(masked, [b, total, past + total]),
            &self.device,
        );

        // The per-token work runs on the real positions only (see `rows`).
        let rows = Rows::new(b, total, &real, &self.device);
        let mut x = rows.pack(x);
        let mut attn_out = Vec::new();
        let want_logits = !logit_pos.iter().all(Vec::is_empty);
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let a = self.attention(
                l,
                layer,
                layer.input_layernorm.forward(x.clone(), self.fused),
                &cos,
                &sin,
                &mask,
                cache,
                adapter,
                &rows,
            );
            if capture.attn != crate::batch::Positions::None {
                attn_out.push(rows.gather(a.clone(), &attn_pos, &self.device));
            }
            let mut h = x + a;
            if l == last {
                // Only the logits read the last layer's MLP output (the cache and the captured attention
                // outputs do not): run it at the logit positions only, or not at all.
                if !want_logits {
                    x = h;
                    break;
                }
                h = rows.gather(h, &logit_pos, &self.device);
            }
            let m = self.mlp(
                l,
                layer
                    .post_attention_layernorm
                    .forward(h.clone(), self.fused),
                adapter,
            );
            x = h + m;
        }

        let logits = want_logits.then(|| {
            let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
            frozen_linear(self.norm.forward(x, self.fused), head, None, self.fused)
        });
        Ok(Output {
            logits,
            attn: attn_out,
            virtual_tokens: virt,
        })
    }

    /// One projection, with the adapter's LoRA delta or IA3 scaling when it targets it.
    fn project(&self, l: usize, proj: Proj, x: Tensor<3>, adapter: Option<&Adapter>) -> Tensor<3> {
        let fuse = self.fused;
        let base = &self.layers[l].proj[proj.index()];
        match adapter {
            Some(Adapter::Lora { scaling, pairs }) => match &pairs[slot(l, proj)] {
                Some(p) => {
                    let delta = linear_2d(
                        linear_2d(x.clone(), p.a.clone().transpose(), None),
                        p.b.clone().transpose(),
                        None,
                    );
                    base.forward(x, fuse) + delta.mul_scalar(*scaling)
                }
                None => base.forward(x, fuse),
            },
            Some(Adapter::Ia3 { vectors }) => match &vectors[slot(l, proj)] {
                Some(v) if v.on_input => base.forward(x * v.scale.clone().unsqueeze(), fuse),
                Some(v) => base.forward(x, fuse) * v.scale.clone().unsqueeze(),
                None => base.forward(x, fuse),
            },
            _ => base.forward(x, fuse),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        l: usize,
        layer: &Layer,
        x: Tensor<3>,
        cos: &Tensor<3>,
        sin: &Tensor<3>,
        mask: &Tensor<3, Bool>,
        cache: &mut KvCache,
        adapter: Option<&Adapter>,
        rows: &Rows,
    ) -> Tensor<3> {
        let c = &self.config;
        let (b, s) = (rows.b, rows.t);
        let fuse = self.fused && fused::available(&x);
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        // working layout -> [b, s, n*d] -> [b, s, n, d]
        let spread = |t: Tensor<3>, n: usize| rows.spread(t).reshape([b, s, n, c.head_dim]);
        let (heads, kv_heads) = (c.num_attention_heads, c.num_key_value_heads);
        let q = spread(self.project(l, Proj::Q, x.clone(), adapter), heads);
        let k = spread(self.project(l, Proj::K, x.clone(), adapter), kv_heads);
        let v = spread(self.project(l, Proj::V, x, adapter), kv_heads).swap_dims(1, 2);
        let out = match (fuse, &layer.q_norm, &layer.k_norm, &cache.layers[l]) {
            // A one-pass cache without earlier keys (training): the op that keeps q and k before their
            // norm and rotation only (Qwen3's per-head norms; without them there is nothing to save).
            (true, Some(qn), Some(kn), None) if cache.one_pass && qn.eps == kn.eps => {
                fused::rotary_attention(
                    q,
                    k,
                    v,
                    (f32_view(&qn.weight), f32_view(&kn.weight)),
                    qn.eps,
                    cos.clone(),
                    sin.clone(),
                    mask.clone(),
                    scale,
                )
            }
            _ => {
                // per-head norm (Qwen3) -> RoPE -> [b, n, s, d]
                let rotate = |t: Tensor<4>, norm: &Option<RmsNorm>| {
                    let t = match norm {
                        Some(norm) => norm.forward(t, fuse),
                        None => t,
                    };
                    let t = match fuse {
                        true => fused::rope(t, cos.clone(), sin.clone()),
                        false => apply_rope(t, cos, sin),
                    };
                    t.swap_dims(1, 2)
                };
                let (q, k) = (rotate(q, &layer.q_norm), rotate(k, &layer.k_norm));
                let (k, v) = match cache.layers[l].take() {
                    Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
                    None => (k, v),
                };
                if !cache.one_pass {
                    cache.layers[l] = Some((k.clone(), v.clone()));
                }
                if fuse {
                    fused::attention(q, k, v, mask.clone(), scale)
                } else {
                    composed_attention(q, k, v, mask, c.kv_groups())
                }
            }
        };
        let out = out.swap_dims(1, 2).reshape([b, s, heads * c.head_dim]);
        self.project(l, Proj::O, rows.pack(out), adapter)
    }

    fn mlp(&self, l: usize, x: Tensor<3>, adapter: Option<&Adapter>) -> Tensor<3> {
        if self.recompute_mlp && x.is_autodiff() && self.fused && fused::available(&x) {
            let proj = &self.layers[l].proj;
            let (gate, up) = (&proj[Proj::Gate.index()], &proj[Proj::Up.index()]);
            let adapted = |p: Proj| match adapter {
                Some(Adapter::Lora { pairs, .. }) => pairs[slot(l, p)].is_some(),
                Some(Adapter::Ia3 { vectors }) => vectors[slot(l, p)].is_some(),
                _ => false,
            };
            let plain = |lin: &Linear| {
                lin.bias.is_none()
                    && fused::weight_supported(&lin.weight)
                    && !lin.weight.is_require_grad()
            };
            if !adapted(Proj::Gate) && !adapted(Proj::Up) && plain(gate) && plain(up) {
                let [b, s, h] = x.dims();
                let act = fused::gated_mlp_recomputed(
                    x.reshape([b * s, h]),
                    gate.weight.clone(),
                    up.weight.clone(),
                );
                let inter = act.dims()[1];
                return self.project(l, Proj::Down, act.reshape([b, s, inter]), adapter);
            }
        }
        let gate = self.project(l, Proj::Gate, x.clone(), adapter);
        let up = self.project(l, Proj::Up, x, adapter);
        let act = if self.fused && fused::available(&gate) {
            fused::silu_mul(gate, up)
        } else {
            silu(gate) * up
        };
        self.project(l, Proj::Down, act, adapter)
    }
}

/// Attention from burn's ops (backends without the fused kernels).
fn composed_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: &Tensor<3, Bool>,
    groups: usize,
) -> Tensor<4> {
    let [b, h, s, _] = q.dims();
    let t = k.dims()[2];
    let mask = mask.clone().unsqueeze_dim::<4>(1).expand([b, h, s, t]);
    // The backend's fused attention shares kv heads across query groups itself; the differentiable
    // fallback used under autodiff needs them repeated.
    let (k, v) = if q.is_autodiff() || k.is_autodiff() || v.is_autodiff() {
        (repeat_kv(k, groups), repeat_kv(v, groups))
    } else {
        (k, v)
    };
    attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
}

/// `x * cos + rotate_half(x) * sin` with `rotate_half(x) = [-x2, x1]`, on `x: [b, s, heads, d]` with
/// `cos, sin: [b, s, d]`.
fn apply_rope(x: Tensor<4>, cos: &Tensor<3>, sin: &Tensor<3>) -> Tensor<4> {
    let half = x.dims()[3] / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone().unsqueeze_dim::<4>(2) + rotated * sin.clone().unsqueeze_dim::<4>(2)
}

/// `[b, kv_heads, t, d]` -> `[b, kv_heads * groups, t, d]`, each kv head repeated for its query group.
fn repeat_kv(x: Tensor<4>, groups: usize) -> Tensor<4> {
    if groups == 1 {
        return x;
    }
    let [b, h, t, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, h, groups, t, d])
        .reshape([b, h * groups, t, d])
}
