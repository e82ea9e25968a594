//! Folding LoRA and IA3 into the base weights of a [`Decoder`] and back.

use anyhow::{Result, bail, ensure};
use burn::tensor::{DType, Tensor};
use ia2_model::{Adapter, Decoder, Proj};

fn f32<const D: usize>(t: &Tensor<D>) -> Tensor<D> {
    let t = t.clone().without_autodiff();
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(DType::F32)
    }
}

fn vec_of(t: &Tensor<1>) -> Result<Vec<f32>> {
    f32(t)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading IA3 vector: {e:?}"))
}

/// Merges `adapter` into the decoder's weights, so that `forward(.., None, ..)` computes what
/// `forward(.., Some(adapter), ..)` computed: LoRA `W += scaling · B A`; IA3 scales W's columns
/// (feed-forward modules, input scaling) or its rows and bias (output scaling), as PEFT's `merge`.
/// Merged weights are written in the decoder's precision ([`Decoder::dtype`]; the update is computed in
/// f32): a bf16 checkpoint loaded in f32 and held as its exact bf16 values gets f32 merged weights. Prompt and prefix tuning cannot be merged.
/// The decoder does not record the merge: do not also pass the adapter to `forward`, and undo it
/// with [`unmerge`] and the same adapter.
pub fn merge(decoder: &mut Decoder, adapter: &Adapter) -> Result<()> {
    apply(decoder, adapter, false)
}

/// Undoes [`merge`] with the same adapter (exact up to float rounding; IA3 divides by its vector, so a
/// vector with a zero entry cannot be unmerged and is refused before anything changes).
pub fn unmerge(decoder: &mut Decoder, adapter: &Adapter) -> Result<()> {
    apply(decoder, adapter, true)
}

fn apply(decoder: &mut Decoder, adapter: &Adapter, undo: bool) -> Result<()> {
    let layers = decoder.config.num_hidden_layers;
    let slots = layers * Proj::ALL.len();
    let dtype = decoder.dtype;
    let site = |i: usize| (i / Proj::ALL.len(), Proj::ALL[i % Proj::ALL.len()]);
    match adapter {
        Adapter::Lora { scaling, pairs } => {
            ensure!(
                pairs.len() == slots,
                "LoRA adapter has {} module slots, the decoder {slots}",
                pairs.len()
            );
            // Check every shape before touching any weight.
            for (i, p) in pairs.iter().enumerate() {
                let Some(p) = p else { continue };
                let (l, proj) = site(i);
                let [out, inp] = decoder.layers[l].proj[proj.index()].weight.dims();
                let (da, db) = (p.a.dims(), p.b.dims());
                ensure!(
                    da[1] == inp && db[0] == out && da[0] == db[1],
                    "{}: LoRA A {da:?} / B {db:?} do not fit the weight [{out}, {inp}]",
                    proj.path(l)
                );
            }
            let sign = if undo { -scaling } else { *scaling };
            for (i, p) in pairs.iter().enumerate() {
                let Some(p) = p else { continue };
                let (l, proj) = site(i);
                let lin = &mut decoder.layers[l].proj[proj.index()];
                let delta = f32(&p.b).matmul(f32(&p.a)).mul_scalar(sign);
                lin.weight = (f32(&lin.weight) + delta).cast(dtype);
            }
        }
        Adapter::Ia3 { vectors } => {
            ensure!(
                vectors.len() == slots,
                "IA3 adapter has {} module slots, the decoder {slots}",
                vectors.len()
            );
            for (i, v) in vectors.iter().enumerate() {
                let Some(v) = v else { continue };
                let (l, proj) = site(i);
                let [out, inp] = decoder.layers[l].proj[proj.index()].weight.dims();
                let n = v.scale.dims()[0];
                let want = if v.on_input { inp } else { out };
                ensure!(
                    n == want,
                    "{}: IA3 vector has {n} entries, the {} has {want}",
                    proj.path(l),
                    if v.on_input { "input" } else { "output" }
                );
                if undo && vec_of(&v.scale)?.contains(&0.0) {
                    bail!(
                        "{}: IA3 vector has a zero entry; the merge cannot be undone",
                        proj.path(l)
                    );
                }
            }
            for (i, v) in vectors.iter().enumerate() {
                let Some(v) = v else { continue };
                let (l, proj) = site(i);
                let lin = &mut decoder.layers[l].proj[proj.index()];
                let s = f32(&v.scale);
                let s = if undo { s.recip() } else { s };
                if v.on_input {
                    lin.weight = (f32(&lin.weight) * s.unsqueeze_dim::<2>(0)).cast(dtype);
                } else {
                    lin.weight = (f32(&lin.weight) * s.clone().unsqueeze_dim::<2>(1)).cast(dtype);
                    if let Some(bias) = &mut lin.bias {
                        *bias = (f32(bias) * s).cast(dtype);
                    }
                }
            }
        }
        Adapter::Prompt { .. } | Adapter::Prefix { .. } => bail!(
            "{} adapters cannot be merged into the weights; pass them to forward",
            crate::io::adapter_kind(adapter)
        ),
    }
    Ok(())
}
