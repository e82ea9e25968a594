//! The decoder against transformers' outputs on the tiny fixture models.

mod common;

use common::*;

#[test]
fn logits_and_attention_match_transformers() {
    for name in MODELS {
        let Some((model, cases)) = load(name) else {
            return;
        };
        for i in 0..2 {
            check_case(&model, &cases, name, i);
        }
    }
}
