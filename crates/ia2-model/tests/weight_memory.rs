//! Each weight is held once: a model loaded in its file's dtype computes straight from the mapped file (no
//! anonymous copy), and a converting load never keeps the mapped pages beside the converted copy.
//!
//! Memory is read from `/proc/self/status` (Linux); the peak is reset through `/proc/self/clear_refs`. One
//! test function in its own test binary, so no other test allocates in this process meanwhile.

use burn::tensor::{DType, Device};
use ia2_hf::{ModelConfig, Weights, save_safetensors_f32};
use ia2_model::{Batch, Capture, Decoder, Positions, Proj, WeightSource, builtin, load_decoder};
use std::path::Path;

const MIB: f64 = 1024.0 * 1024.0;

/// `field` of /proc/self/status in bytes (`VmHWM`, `RssAnon`, ...).
fn status(field: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// A Qwen3-shaped model of 16 layers whose weights spread over many ~1 MiB tensors (64 MiB in f32).
fn write_model(dir: &Path) -> ModelConfig {
    let mut c = builtin::builtin_config("tiny-qwen3").unwrap();
    c.hidden_size = 256;
    c.intermediate_size = 1024;
    c.num_hidden_layers = 16;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 64;
    c.vocab_size = 2048;
    c.write_file(dir.join("config.json")).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut ones: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut k = 0u64;
    let mut add = |name: String, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        k += 1;
        let values = (0..n as u64)
            .map(|i| ((i * 31 + k * 7) % 101) as f32 * 4e-4 - 0.02)
            .collect();
        tensors.push((name, shape, values));
    };
    add(
        "model.embed_tokens.weight".into(),
        vec![c.vocab_size, c.hidden_size],
    );
    for l in 0..c.num_hidden_layers {
        for p in Proj::ALL {
            let (fan_in, fan_out) = p.shape(&c);
            add(format!("{}.weight", p.path(l)), vec![fan_out, fan_in]);
        }
        let p = format!("model.layers.{l}");
        for (n, len) in [
            ("input_layernorm", c.hidden_size),
            ("post_attention_layernorm", c.hidden_size),
            ("self_attn.q_norm", c.head_dim),
            ("self_attn.k_norm", c.head_dim),
        ] {
            ones.push((format!("{p}.{n}.weight"), vec![len], vec![1.0; len]));
        }
    }
    ones.push((
        "model.norm.weight".into(),
        vec![c.hidden_size],
        vec![1.0; c.hidden_size],
    ));
    tensors.extend(ones);
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    save_safetensors_f32(dir.join("model.safetensors"), &refs, None).unwrap();
    c
}

fn logits(model: &Decoder) -> Vec<f32> {
    let mut cache = model.new_cache(1, None);
    let capture = Capture {
        logits: Positions::Last,
        attn: Positions::None,
    };
    let out = model
        .forward(&Batch::single(&[1, 5, 9, 200]), &mut cache, None, &capture)
        .unwrap();
    out.logits.unwrap().into_data().try_to_vec::<f32>().unwrap()
}

/// A source that copies every tensor into memory of its own (the reference for the mapped load).
struct Copying(Weights);

impl WeightSource for Copying {
    fn tensor(&self, name: &str, dtype: DType) -> anyhow::Result<burn::tensor::TensorData> {
        let v = self.0.get(name)?;
        Ok(burn::tensor::TensorData::new(v.to_f32_vec(), v.shape().to_vec()).convert_dtype(dtype))
    }
}

#[test]
fn weights_are_held_once() {
    if status("RssAnon").is_none() || std::fs::write("/proc/self/clear_refs", "5").is_err() {
        eprintln!("SKIPPED: /proc/self/status or clear_refs unavailable (not Linux)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = write_model(tmp.path());
    let file_bytes = std::fs::metadata(tmp.path().join("model.safetensors"))
        .unwrap()
        .len() as f64;
    let device = Device::flex();
    // Same dtype as the file: no anonymous copy of the 64 MiB; the pages are the file's. (Measured first:
    // memory freed by an earlier load would be reused without growing the resident set.)
    let anon = status("RssAnon").unwrap();
    let mapped = load_decoder(tmp.path(), DType::F32, &device).unwrap();
    let grown = status("RssAnon").unwrap() - anon;
    assert!(
        grown < 0.1 * file_bytes,
        "an f32 load of an f32 file grew anonymous memory by {:.1} MiB (file {:.1} MiB): the weights were \
         copied",
        grown / MIB,
        file_bytes / MIB
    );
    // The weights outlive the `Weights` that mapped them, and compute the same logits as a copy.
    let reference = Decoder::load(
        config.clone(),
        &Copying(Weights::open(tmp.path()).unwrap()),
        DType::F32,
        &device,
    )
    .unwrap();
    assert_eq!(logits(&mapped), logits(&reference));
    drop((mapped, reference));

    // Converting (f32 file -> bf16): the peak holds the bf16 copy (half the file) and one tensor in
    // flight, never the whole mapped file beside it (which would be 1.5x the file).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status("VmRSS").unwrap();
    let half = load_decoder(tmp.path(), DType::BF16, &device).unwrap();
    let peak = status("VmHWM").unwrap() - before;
    assert!(
        peak < 0.85 * file_bytes,
        "a bf16 load of a {:.1} MiB f32 file peaked {:.1} MiB above the start (the bf16 copy is {:.1} MiB)",
        file_bytes / MIB,
        peak / MIB,
        file_bytes / 2.0 / MIB
    );
    assert_eq!(half.embed_tokens.dtype(), DType::BF16);
}
