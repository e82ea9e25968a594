//! Loading a decoder from a Hugging Face model directory (see `ia2-hf` for resolution and parsing).

use crate::decoder::{Decoder, WeightSource};
use anyhow::Result;
use burn::tensor::{DType, Device, TensorData};
use ia2_hf::{Dtype, ModelConfig, Weights};
use std::path::Path;

impl WeightSource for Weights {
    fn tensor(&self, name: &str, dtype: DType) -> Result<TensorData> {
        let view = self.get(name)?;
        let shape = view.shape().to_vec();
        Ok(match (view.dtype(), dtype) {
            (Dtype::F32, DType::F32) | (Dtype::BF16, DType::BF16) | (Dtype::F16, DType::F16) => {
                TensorData::from_bytes_vec(view.bytes().to_vec(), shape, dtype)
            }
            _ => TensorData::new(view.to_f32_vec(), shape).convert_dtype(dtype),
        })
    }
}

/// Loads config.json and the safetensors weights of a local model directory.
pub fn load_decoder(dir: &Path, dtype: DType, device: &Device) -> Result<Decoder> {
    let config = ModelConfig::from_dir(dir)?;
    let weights = Weights::open(dir)?;
    Decoder::load(config, &weights, dtype, device)
}
