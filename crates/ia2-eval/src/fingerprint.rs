//! Checksums: the base-model fingerprint (the one `ia2 train` records as `ia2.base_model_fingerprint`, so
//! that an adapter trained on one model is never evaluated on another that merely has the same name) and
//! sha256 of data files.

pub use ia2_train::teacher::model_fingerprint as base_model_fingerprint;

/// `sha256` (hex) of a whole file (the one the teacher cache keys on).
pub use ia2_train::teacher::file_sha256 as sha256_file;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(sha256_file(&dir.path().join("missing")).is_err());
    }
}
