//! Architecture variants the shared fixtures lack (Qwen2 q/k/v bias, untied heads, Llama attention and MLP
//! biases, Qwen3 attention bias), against transformers outputs made by scripts/make_arch_fixtures.py.

mod common;

use burn::tensor::DType;
use common::*;
use ia2_hf::Weights;
use ia2_model::{GenerateOptions, greedy, load_decoder};
use std::path::PathBuf;

#[test]
fn variants_match_transformers() {
    for name in ["qwen2-untied", "llama-bias", "qwen3-bias"] {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        let model = load_decoder(&dir, DType::F32, &device()).unwrap();
        let cases = Weights::open_file(dir.join("cases.safetensors")).unwrap();
        for i in 0..2 {
            check_case(&model, &cases, name, i);
            let ids = ids(&cases, i);
            let (want, _) = cases.get_i64(&format!("case{i}.greedy")).unwrap();
            let opts = GenerateOptions {
                max_new_tokens: want.len(),
                eos_token_ids: vec![],
                pad_token_id: 0,
                use_cache: true,
            };
            let got = greedy(&model, None, &[ids], &opts, |_, _| false, |_| {}).unwrap();
            let want: Vec<u32> = want.into_iter().map(|t| t as u32).collect();
            assert_eq!(got[0].tokens, want, "{name} case{i} greedy");
        }
    }
}
