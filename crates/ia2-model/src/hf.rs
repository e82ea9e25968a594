//! Loading a decoder from a Hugging Face model directory (see `ia2-hf` for resolution and parsing).

use crate::decoder::{Decoder, WeightSource};
use anyhow::Result;
use burn::tensor::{AllocationProperty, Bytes, DType, Device, TensorData};
use ia2_hf::{Dtype, ModelConfig, Weights};
use std::path::Path;

impl WeightSource for Weights {
    /// A tensor whose file dtype is `dtype` is not copied: it is a reference-counted slice of the file's
    /// mapping ([`Weights::shared_bytes`]), so the model computes straight from the mapped bytes, each
    /// weight is held once (in the page cache, shared with every other process mapping the same file) and
    /// loading reads nothing. So is a bf16 / f16 tensor asked for in f32: its values are exactly f32
    /// values (see [`WeightSource::tensor`]). Any other tensor (f32 stored, bf16 / f16 asked) is
    /// converted into memory of its own, and its mapped pages are released right after
    /// ([`Weights::release`]), so a conversion never holds both.
    fn tensor(&self, name: &str, dtype: DType) -> Result<TensorData> {
        let view = self.get(name)?;
        let shape = view.shape().to_vec();
        let asked = match dtype {
            DType::F32 => Dtype::F32,
            DType::BF16 => Dtype::BF16,
            DType::F16 => Dtype::F16,
            other => {
                anyhow::bail!("tensor {name}: weights are held in f32, bf16 or f16, not {other:?}")
            }
        };
        let file_dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::BF16 => DType::BF16,
            Dtype::F16 => DType::F16,
        };
        if view.used_as_stored(asked) {
            let bytes = Bytes::from_shared(self.shared_bytes(name)?, AllocationProperty::File);
            return TensorData::try_from_bytes(bytes, shape, file_dtype)
                .map_err(|e| anyhow::anyhow!("tensor {name}: {e}"));
        }
        // Misaligned in the file (safetensors writers align the data section): copied as stored.
        let data = if view.stored_exactly_as(asked) {
            TensorData::from_bytes_vec(view.bytes().to_vec(), shape, file_dtype)
        } else {
            TensorData::new(view.to_f32_vec(), shape).convert_dtype(dtype)
        };
        // The bytes are copied: the mapped pages need not stay resident beside the copy.
        self.release(name)?;
        Ok(data)
    }
}

/// Loads config.json and the safetensors weights of a local model directory.
pub fn load_decoder(dir: &Path, dtype: DType, device: &Device) -> Result<Decoder> {
    let config = ModelConfig::from_dir(dir)?;
    let weights = Weights::open(dir)?;
    Decoder::load(config, &weights, dtype, device)
}
