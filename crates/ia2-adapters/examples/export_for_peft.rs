//! Writes adapters with `save_peft`, plus our logits for the fixture inputs, for
//! `scripts/peft_roundtrip.py` to load with real PEFT and compare.
//!
//! `cargo run -p ia2-adapters --example export_for_peft -- <fixtures dir> <out dir>`
//!
//! For each fixture model: the six fixture adapters with every value changed (×1.5 + a ramp), and four
//! adapters built from scratch by `init_adapter` (LoRA with `init_lora_weights: false` so B ≠ 0, IA3 with
//! random init, prompt and prefix tuning). Each directory gets `ours.safetensors` with
//! `case{i}.logits` for the fixture's `case{i}.input_ids` (virtual tokens included for prompt tuning).

use anyhow::{Context, Result};
use burn::tensor::{DType, Device, Tensor, TensorData};
use ia2_adapters::{
    Ia3Config, LoraConfig, LoraInit, PeftConfig, PrefixTuningConfig, PromptTuningConfig,
    init_adapter, load_peft, save_peft,
};
use ia2_hf::{Dtype, Weights, save_safetensors};
use ia2_model::adapter::AdapterTensorMut;
use ia2_model::{Adapter, Batch, Capture, Decoder, Positions, load_decoder};
use std::path::Path;

fn perturb(a: &mut Adapter, device: &Device) {
    for t in a.tensors_mut() {
        match t {
            AdapterTensorMut::D1(t) => {
                let n = t.dims()[0];
                let ramp: Vec<f32> = (0..n).map(|i| 0.01 * (i % 7) as f32).collect();
                *t = t.clone().mul_scalar(1.5)
                    + Tensor::from_data(TensorData::new(ramp, [n]), device);
            }
            AdapterTensorMut::D2(t) => {
                let [r, c] = t.dims();
                let ramp: Vec<f32> = (0..r * c).map(|i| 0.01 * (i % 5) as f32).collect();
                *t = t.clone().mul_scalar(1.5)
                    + Tensor::from_data(TensorData::new(ramp, [r, c]), device);
            }
        }
    }
}

fn write_outputs(model: &Decoder, cases: &Weights, adapter: &Adapter, dir: &Path) -> Result<()> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for i in 0..3 {
        let (ids, _) = cases.get_i64(&format!("case{i}.input_ids"))?;
        let ids32: Vec<u32> = ids.iter().map(|&x| x as u32).collect();
        let mut cache = model.new_cache(1, Some(adapter));
        let out = model.forward(
            &Batch::single(&ids32),
            &mut cache,
            Some(adapter),
            &Capture {
                logits: Positions::All,
                attn: Positions::None,
            },
        )?;
        let logits = out.logits.context("logits")?;
        let [_, s, v] = logits.dims();
        let data = logits
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        owned.push((
            format!("case{i}.logits"),
            Dtype::F32,
            vec![s, v],
            data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
    }
    let list: Vec<ia2_hf::TensorToWrite<'_>> = owned
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice()))
        .collect();
    save_safetensors(dir.join("ours.safetensors"), &list, None)?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (fixtures, out) = (Path::new(&args[1]), Path::new(&args[2]));
    let device = Device::flex();
    for name in ["qwen3-tiny", "llama-tiny"] {
        let fdir = fixtures.join(name);
        let model = load_decoder(&fdir.join("model"), DType::F32, &device)?;
        let cases = Weights::open_file(fdir.join("cases.safetensors"))?;
        let mc = &model.config;
        let mut jobs: Vec<(String, Adapter, PeftConfig)> = Vec::new();
        for kind in ia2_testkit::ADAPTER_KINDS {
            let (mut a, c) = load_peft(fdir.join("adapters").join(kind), mc, &device)?;
            perturb(&mut a, &device);
            jobs.push((format!("fixture_{kind}"), a, c));
        }
        let mut lora = LoraConfig::new(4, 16.0, &["q_proj", "v_proj", "up_proj"]);
        lora.init_lora_weights = LoraInit::Bool(false);
        lora.use_rslora = true;
        let mut ia3 = Ia3Config::new(&["k_proj", "gate_proj", "down_proj"], &["down_proj"]);
        ia3.init_ia3_weights = false;
        for (tag, mut c) in [
            ("new_lora", PeftConfig::Lora(lora)),
            ("new_ia3", PeftConfig::Ia3(ia3)),
            (
                "new_prompt",
                PeftConfig::PromptTuning(PromptTuningConfig::new(5, mc)),
            ),
            (
                "new_prefix",
                PeftConfig::PrefixTuning(PrefixTuningConfig::new(3, mc)),
            ),
        ] {
            c.set_base_model_name_or_path(Some(fdir.join("model").display().to_string()));
            let a = init_adapter(&c, mc, 1234, &device)?;
            jobs.push((tag.to_string(), a, c));
        }
        for (tag, a, c) in jobs {
            let dir = out.join(name).join(&tag);
            save_peft(&dir, &a, &c)?;
            write_outputs(&model, &cases, &a, &dir)?;
            println!("wrote {}", dir.display());
        }
    }
    Ok(())
}
