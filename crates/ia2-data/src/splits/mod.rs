//! Training, evaluation-demo and LDR splits: the seed-compatible file schemas ([`schema`]), the pure sampling
//! algorithms ([`sample`], bit-for-bit equal to the seed's numpy code) and the file plumbing shared by the
//! `train-sets`, `eval-demos` and `ldr` commands ([`common`]).

pub mod common;
pub mod sample;
pub mod schema;
