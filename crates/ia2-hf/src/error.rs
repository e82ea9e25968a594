//! The crate's error type: every variant names the file and the field or tensor involved.

use std::path::PathBuf;

/// Errors from resolving, parsing and reading Hugging Face model directories.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error (in the message, not a separate source: `{:#}` would print it twice).
        error: std::io::Error,
    },
    /// A file that is not valid JSON (or not the expected JSON shape).
    #[error("{}: invalid JSON: {error}", path.display())]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The underlying error (in the message, not a separate source).
        error: serde_json::Error,
    },
    /// A config file field that is missing, has the wrong type or an unsupported value.
    #[error("{}: field `{field}`: {message}", path.display())]
    Config {
        /// The config file (config.json, tokenizer_config.json, generation_config.json).
        path: PathBuf,
        /// The offending field.
        field: String,
        /// What was expected / found.
        message: String,
    },
    /// A model could not be located (local directory or Hugging Face cache / Hub).
    #[error("{0}")]
    Resolve(String),
    /// A malformed safetensors file or index.
    #[error("{}: {message}", path.display())]
    Safetensors {
        /// The file (shard or index).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor that none of the weight files contains.
    #[error("tensor `{name}` not found (searched {})", fmt_paths(searched))]
    MissingTensor {
        /// The requested tensor name.
        name: String,
        /// The files searched.
        searched: Vec<PathBuf>,
    },
    /// A tensor whose dtype is not F32/BF16/F16 (or not the one requested).
    #[error("{}: tensor `{tensor}` has dtype {dtype}, expected {expected}", path.display())]
    Dtype {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Its dtype as written in the header.
        dtype: String,
        /// What was expected.
        expected: String,
    },
    /// Tokenizer loading / encoding / decoding failure.
    #[error("{}: tokenizer: {message}", path.display())]
    Tokenizer {
        /// tokenizer.json (or its directory).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Invalid arguments to a writer (shape/bytes mismatch, duplicate names...).
    #[error("{}: {message}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn fmt_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no files".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |error| Error::Io { path, error }
}

pub(crate) fn config_err(
    path: impl Into<PathBuf>,
    field: impl Into<String>,
    message: impl Into<String>,
) -> Error {
    Error::Config {
        path: path.into(),
        field: field.into(),
        message: message.into(),
    }
}

/// Reads and parses a JSON file.
pub(crate) fn read_json(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|error| Error::Json {
        path: path.to_path_buf(),
        error,
    })
}
