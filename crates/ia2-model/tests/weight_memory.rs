//! Each weight is held once: a model loaded in its file's dtype computes straight from the mapped file (no
//! anonymous copy), and a converting load never keeps the mapped pages beside the converted copy.
//!
//! Memory is read from `/proc/self/status` (Linux); the peak is reset through `/proc/self/clear_refs`. One
//! test function in its own test binary, so no other test allocates in this process meanwhile.

use burn::tensor::{DType, Device};
mod common;

use common::write_test_model as write_model;
use ia2_hf::Weights;
use ia2_model::{Batch, Capture, Decoder, Positions, WeightSource, load_decoder};

const MIB: f64 = 1024.0 * 1024.0;

/// `field` of /proc/self/status in bytes (`VmHWM`, `RssAnon`, ...).
fn status(field: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
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
    let (config, file_bytes) = write_model(tmp.path(), ia2_hf::Dtype::F32);
    let file_bytes = file_bytes as f64;
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
