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
        let same = matches!(
            (view.dtype(), dtype),
            (Dtype::F32, DType::F32) | (Dtype::BF16, DType::BF16) | (Dtype::F16, DType::F16)
        );
        // Asked for f32, stored in bf16 / f16: every stored value is an f32, so the tensor is held as
        // stored (mapped, half the memory) and widened exactly where it is used.
        let narrower = dtype == DType::F32 && matches!(view.dtype(), Dtype::BF16 | Dtype::F16);
        let file_dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::BF16 => DType::BF16,
            Dtype::F16 => DType::F16,
        };
        // Elements must be aligned to their size to be read in place (safetensors writers align the data
        // section; a file that does not is copied instead).
        if (same || narrower)
            && (view.bytes().as_ptr() as usize).is_multiple_of(view.dtype().size())
        {
            let bytes = Bytes::from_shared(self.shared_bytes(name)?, AllocationProperty::File);
            return TensorData::try_from_bytes(bytes, shape, file_dtype)
                .map_err(|e| anyhow::anyhow!("tensor {name}: {e}"));
        }
        let data = if same || narrower {
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
