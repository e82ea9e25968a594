//! The decoder against transformers' outputs on the tiny fixture models.

mod common;

use common::*;
use ia2_model::{Batch, Capture, Positions};

fn full_capture() -> Capture {
    Capture {
        logits: Positions::All,
        attn: Positions::All,
    }
}

#[test]
fn logits_and_attention_match_transformers() {
    for name in MODELS {
        let Some((model, cases)) = load(name) else {
            return;
        };
        for i in 0..2 {
            let ids = ids(&cases, i);
            let mut cache = model.new_cache(1, None);
            let out = model
                .forward(&Batch::single(&ids), &mut cache, None, &full_capture())
                .unwrap();
            let (logits, mut shape) = values(out.logits.unwrap());
            shape.remove(0);
            assert_close(
                &format!("{name} case{i} logits"),
                (logits, shape),
                expected(&cases, &format!("case{i}.logits")),
                1e-4,
            );
            assert_close(
                &format!("{name} case{i} attn"),
                stack_attn(out.attn),
                expected(&cases, &format!("case{i}.attn")),
                1e-4,
            );
        }
    }
}
