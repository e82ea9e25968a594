//! Memory-mapped safetensors weights (single file or sharded index) and an atomic writer.

use crate::error::{Error, Result, io_err, read_json};
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::SafeTensors;
use safetensors::tensor::TensorInfo;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Floating-point element types supported for model tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE float32
    F32,
    /// bfloat16
    BF16,
    /// IEEE float16
    F16,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::BF16 | Dtype::F16 => 2,
        }
    }

    fn to_st(self) -> safetensors::Dtype {
        match self {
            Dtype::F32 => safetensors::Dtype::F32,
            Dtype::BF16 => safetensors::Dtype::BF16,
            Dtype::F16 => safetensors::Dtype::F16,
        }
    }

    fn from_st(d: safetensors::Dtype) -> Option<Self> {
        match d {
            safetensors::Dtype::F32 => Some(Dtype::F32),
            safetensors::Dtype::BF16 => Some(Dtype::BF16),
            safetensors::Dtype::F16 => Some(Dtype::F16),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "F32",
            Dtype::BF16 => "BF16",
            Dtype::F16 => "F16",
        })
    }
}

/// A borrowed view of one tensor inside a memory-mapped file (little-endian, row-major).
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    name: &'a str,
    dtype: Dtype,
    shape: &'a [usize],
    data: &'a [u8],
    file: &'a Path,
}

impl<'a> TensorView<'a> {
    /// Tensor name.
    pub fn name(&self) -> &'a str {
        self.name
    }
    /// Element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }
    /// Shape (row-major).
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Raw little-endian bytes, e.g. to keep bf16/f16 without conversion.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }
    /// The file the tensor lives in.
    pub fn file(&self) -> &'a Path {
        self.file
    }
    /// Whether a model asking for this tensor in `asked` uses it as stored, straight from the mapping
    /// ([`Weights::shared_bytes`]) rather than converted into memory of its own: stored in `asked`, or in
    /// bf16 / f16 when f32 is asked (each 16-bit value is exactly an f32 value, widened where it is used),
    /// and its elements aligned to their size in the mapping.
    pub fn used_as_stored(&self, asked: Dtype) -> bool {
        self.stored_exactly_as(asked)
            && (self.data.as_ptr() as usize).is_multiple_of(self.dtype.size())
    }
    /// Whether every stored value is exactly a value of `asked`, so the tensor can be held as stored: the
    /// same dtype, or bf16 / f16 asked for in f32.
    pub fn stored_exactly_as(&self, asked: Dtype) -> bool {
        self.dtype == asked || (asked == Dtype::F32 && self.dtype != Dtype::F32)
    }
    /// Converts to f32 (exact for bf16/f16). Large tensors are converted in parallel blocks.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let n = self.numel();
        let mut out = vec![0f32; n];
        let size = self.dtype.size();
        // Blocks of 64 Ki elements: enough work per task, and each thread faults in its own pages.
        const BLOCK: usize = 1 << 16;
        let convert = |(dst, src): (&mut [f32], &[u8])| match self.dtype {
            Dtype::F32 => {
                for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                    *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            // bf16 is the upper half of an f32: a shift (vectorised by the compiler).
            Dtype::BF16 => {
                for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16);
                }
            }
            Dtype::F16 => {
                for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
                }
            }
        };
        if n <= BLOCK {
            convert((&mut out, self.data));
        } else {
            out.par_chunks_mut(BLOCK)
                .zip(self.data.par_chunks(BLOCK * size))
                .for_each(convert);
        }
        out
    }
    /// Raw 16-bit values (bf16 or f16 bit patterns). Errors for F32 tensors.
    pub fn to_u16_bits(&self) -> Result<Vec<u16>> {
        if self.dtype == Dtype::F32 {
            return Err(self.dtype_err("BF16 or F16"));
        }
        Ok(self
            .data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }

    fn dtype_err(&self, expected: &str) -> Error {
        Error::Dtype {
            path: self.file.to_path_buf(),
            tensor: self.name.to_string(),
            dtype: self.dtype.to_string(),
            expected: expected.to_string(),
        }
    }
}

/// Owner of a mapping for [`bytes::Bytes::from_owner`]: the mapping lives as long as any tensor made from it.
struct MappedFile(Arc<Mmap>);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

struct Shard {
    path: PathBuf,
    mmap: Arc<Mmap>,
    /// The whole mapping as reference-counted bytes: tensors handed out by [`Weights::shared_bytes`] are
    /// slices of it and keep the mapping alive after the [`Weights`] are dropped.
    shared: bytes::Bytes,
    /// Byte offset of the data section (8 + header length).
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
    metadata: HashMap<String, String>,
}

impl Shard {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io_err(path))?;
        // SAFETY: the file is opened read-only; like every safetensors loader we assume it is
        // not truncated or modified while mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        let (n, meta) = SafeTensors::read_metadata(&mmap).map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            message: format!("invalid safetensors header: {e}"),
        })?;
        let tensors = meta
            .tensors()
            .into_iter()
            .map(|(k, v)| (k, v.clone()))
            .collect();
        let metadata = meta.metadata().clone().unwrap_or_default();
        let mmap = Arc::new(mmap);
        Ok(Shard {
            path: path.to_path_buf(),
            shared: bytes::Bytes::from_owner(MappedFile(mmap.clone())),
            mmap,
            data_start: 8 + n,
            tensors,
            metadata,
        })
    }

    fn raw(&self, name: &str) -> Option<(&TensorInfo, &[u8])> {
        let info = self.tensors.get(name)?;
        let (a, b) = info.data_offsets;
        Some((info, &self.mmap[self.data_start + a..self.data_start + b]))
    }
}

/// Model weights: one `model.safetensors`, or `model.safetensors.index.json` and its shards,
/// memory-mapped (nothing is read into RAM until a tensor is converted).
pub struct Weights {
    shards: Vec<Shard>,
    /// tensor name → shard index (sorted by name)
    index: BTreeMap<String, usize>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("files", &self.files())
            .field("tensors", &self.index.len())
            .finish()
    }
}

/// Name of the single-file weights.
pub const SAFETENSORS_FILE: &str = "model.safetensors";
/// Name of the sharded-weights index.
pub const SAFETENSORS_INDEX_FILE: &str = "model.safetensors.index.json";

impl Weights {
    /// Opens the weights of a model directory: `model.safetensors.index.json` (and every
    /// shard it names) if present, else `model.safetensors`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let index = dir.join(SAFETENSORS_INDEX_FILE);
        let single = dir.join(SAFETENSORS_FILE);
        if index.is_file() {
            Self::open_index(&index)
        } else if single.is_file() {
            Self::open_file(&single)
        } else {
            Err(Error::Safetensors {
                path: dir.to_path_buf(),
                message: format!(
                    "no weights: neither {SAFETENSORS_FILE} nor {SAFETENSORS_INDEX_FILE} exists"
                ),
            })
        }
    }

    /// Opens one `.safetensors` file (any name; also usable for adapters and fixtures).
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        let shard = Shard::open(path.as_ref())?;
        let index = shard.tensors.keys().map(|k| (k.clone(), 0)).collect();
        Ok(Weights {
            shards: vec![shard],
            index,
        })
    }

    /// Opens a sharded checkpoint from its `*.safetensors.index.json` (`weight_map`:
    /// tensor → shard file, relative to the index's directory). Every tensor named in the
    /// index must be present in its shard.
    pub fn open_index(index_path: impl AsRef<Path>) -> Result<Self> {
        let index_path = index_path.as_ref();
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let value = read_json(index_path)?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::Safetensors {
                path: index_path.to_path_buf(),
                message: "missing or invalid `weight_map` object".into(),
            })?;
        let mut shard_ids: HashMap<String, usize> = HashMap::new();
        let mut shards: Vec<Shard> = Vec::new();
        let mut index = BTreeMap::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| Error::Safetensors {
                path: index_path.to_path_buf(),
                message: format!("`weight_map.{name}`: expected a file name, found {file}"),
            })?;
            let id = match shard_ids.get(file) {
                Some(&id) => id,
                None => {
                    let shard_path = dir.join(file);
                    if !shard_path.is_file() {
                        return Err(Error::Safetensors {
                            path: index_path.to_path_buf(),
                            message: format!(
                                "shard {} (named for tensor `{name}`) does not exist",
                                shard_path.display()
                            ),
                        });
                    }
                    shards.push(Shard::open(&shard_path)?);
                    shard_ids.insert(file.to_string(), shards.len() - 1);
                    shards.len() - 1
                }
            };
            if !shards[id].tensors.contains_key(name) {
                return Err(Error::Safetensors {
                    path: shards[id].path.clone(),
                    message: format!(
                        "tensor `{name}` is listed in {} but absent from this shard",
                        index_path.display()
                    ),
                });
            }
            index.insert(name.clone(), id);
        }
        Ok(Weights { shards, index })
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.index.keys().map(String::as_str).collect()
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The files opened (one, or each shard).
    pub fn files(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// The `__metadata__` of the first file (e.g. `{"format": "pt"}`).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.shards[0].metadata
    }

    /// A floating-point tensor (F32, BF16 or F16; any other dtype is an error naming it).
    pub fn get(&self, name: &str) -> Result<TensorView<'_>> {
        let (key, shard, info, data) = self.raw(name)?;
        let dtype = Dtype::from_st(info.dtype).ok_or_else(|| Error::Dtype {
            path: shard.path.clone(),
            tensor: name.to_string(),
            dtype: format!("{:?}", info.dtype),
            expected: "F32, BF16 or F16".into(),
        })?;
        Ok(TensorView {
            name: key,
            dtype,
            shape: &info.shape,
            data,
            file: &shard.path,
        })
    }

    /// The raw bytes of tensor `name` as a reference-counted slice of the mapping, without copying: a model
    /// can compute straight from the file (its pages are read on first use, stay in the page cache shared
    /// with every other process mapping the same file, and are counted once). The mapping stays alive as
    /// long as the returned bytes do.
    pub fn shared_bytes(&self, name: &str) -> Result<bytes::Bytes> {
        let (_, shard, info, _) = self.raw(name)?;
        let (a, b) = info.data_offsets;
        Ok(shard
            .shared
            .slice(shard.data_start + a..shard.data_start + b))
    }

    /// Drops the mapped pages of tensor `name` from this process's resident memory once its bytes have been
    /// copied out (`madvise(MADV_DONTNEED)`; Linux and other Unixes, a no-op elsewhere). Without this, every
    /// page read while loading stays resident beside the loaded copy until the mapping is dropped, so a
    /// model's load peaks at about twice its weight bytes. The mapping is read-only and file-backed, so a
    /// later read of the tensor (or of a neighbour sharing a page at the range's edges) faults the pages
    /// back in from the page cache with the same bytes; nothing is lost.
    pub fn release(&self, name: &str) -> Result<()> {
        #[cfg(unix)]
        {
            let (_, shard, info, _) = self.raw(name)?;
            let (a, b) = info.data_offsets;
            // SAFETY: the mapping is read-only and backed by a file nobody modifies while it is
            // mapped (the same assumption as mapping it at all); after MADV_DONTNEED its pages read back
            // the file's unchanged contents, so every outstanding `&[u8]` into it stays valid and equal.
            unsafe {
                shard.mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    shard.data_start + a,
                    b - a,
                )
            }
            .map_err(io_err(&shard.path))?;
        }
        #[cfg(not(unix))]
        let _ = name;
        Ok(())
    }

    /// Shape of a tensor of any dtype.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self.raw(name)?.2.shape)
    }

    /// Reads an integer tensor (I64, I32, U32, I16, U8...) as i64 with its shape — e.g. the
    /// `input_ids` stored in test fixtures. Floating-point tensors are an error.
    pub fn get_i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        use safetensors::Dtype as D;
        let (_, shard, info, d) = self.raw(name)?;
        let vals: Vec<i64> = match info.dtype {
            D::I64 => d
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            D::I32 => d
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                .collect(),
            D::U32 => d
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                .collect(),
            D::I16 => d
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes(c.try_into().expect("2 bytes")) as i64)
                .collect(),
            D::U8 | D::BOOL => d.iter().map(|&b| b as i64).collect(),
            D::I8 => d.iter().map(|&b| b as i8 as i64).collect(),
            other => {
                return Err(Error::Dtype {
                    path: shard.path.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}"),
                    expected: "an integer dtype (I64, I32, U32, I16, I8, U8, BOOL)".into(),
                });
            }
        };
        Ok((vals, info.shape.clone()))
    }

    fn raw(&self, name: &str) -> Result<(&str, &Shard, &TensorInfo, &[u8])> {
        let (key, &id) = self
            .index
            .get_key_value(name)
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
                searched: self.shards.iter().map(|s| s.path.clone()).collect(),
            })?;
        let shard = &self.shards[id];
        let (info, data) = shard.raw(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            searched: vec![shard.path.clone()],
        })?;
        Ok((key.as_str(), shard, info, data))
    }
}

/// One tensor to write: name, dtype, shape and little-endian bytes.
pub type TensorToWrite<'a> = (&'a str, Dtype, &'a [usize], &'a [u8]);

struct WriteView<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    data: &'a [u8],
}

impl safetensors::View for WriteView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.to_st()
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes a safetensors file atomically (temporary file in the same directory, then rename).
///
/// `metadata` is stored as `__metadata__`; `"format": "pt"` is added unless given, since
/// PEFT/transformers refuse files without it. Checks that each tensor's byte length matches
/// its shape and dtype and that names are unique.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &[TensorToWrite<'_>],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let werr = |message: String| Error::Write {
        path: path.to_path_buf(),
        message,
    };
    let mut seen = std::collections::HashSet::new();
    let mut views = Vec::with_capacity(tensors.len());
    for &(name, dtype, shape, data) in tensors {
        if !seen.insert(name) {
            return Err(werr(format!("duplicate tensor name `{name}`")));
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| werr(format!("tensor `{name}`: shape {shape:?} overflows")))?;
        if numel * dtype.size() != data.len() {
            return Err(werr(format!(
                "tensor `{name}`: shape {shape:?} with dtype {dtype} needs {} bytes, got {}",
                numel * dtype.size(),
                data.len()
            )));
        }
        views.push((name, WriteView { dtype, shape, data }));
    }
    let mut metadata = metadata.unwrap_or_default();
    metadata
        .entry("format".to_string())
        .or_insert_with(|| "pt".to_string());
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| werr(format!("serialization failed: {e}")))?;
    write_atomic(path, &bytes).map_err(io_err(path))
}

/// Convenience: writes f32 tensors `(name, shape, values)` with [`save_safetensors`].
pub fn save_safetensors_f32(
    path: impl AsRef<Path>,
    tensors: &[(&str, &[usize], &[f32])],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let list: Vec<TensorToWrite<'_>> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| (*name, Dtype::F32, *shape, b.as_slice()))
        .collect();
    save_safetensors(path, &list, metadata)
}

/// Writes `bytes` to `path` via a temporary file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?;
    // The project's one temporary-name scheme (ia2_runs::tmp): recognised and removed after a crash.
    let tmp = dir.join(ia2_runs::tmp::tmp_name(&file_name.to_string_lossy()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
