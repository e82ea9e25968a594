//! Checksums: the base-model fingerprint (the one `ia2 train` records as `ia2.base_model_fingerprint`, so
//! that an adapter trained on one model is never evaluated on another that merely has the same name) and
//! sha256 of data files, defined with the on-disk contract in [`ia2_runs::fingerprint`].

pub use ia2_runs::fingerprint::model_fingerprint as base_model_fingerprint;

/// `sha256` (hex) of a whole file (the one the teacher cache keys on).
pub use ia2_runs::fingerprint::file_sha256 as sha256_file;
