//! Activation similarity against direct computations on the qwen3-tiny fixture (transformers-checked model
//! and LoRA adapter): teacher-forced against the attention outputs of one plain forward pass over the whole
//! sequence (what `ia2 activations` writes), free-running against greedy decoding with attention capture.

// Index arithmetic over [layers, steps, hidden] reads best as plain index loops.
#![allow(clippy::needless_range_loop)]

use burn::tensor::{DType, Tensor};
use ia2_analyze::similarity::{ExampleSim, cosine, free_running, teacher_forced};
use ia2_model::{
    Batch, Capture, Decoder, GenerateOptions, Observation, Positions, greedy_observed,
};
use ia2_train::examples::prompt_ids;
use ia2_train::teacher::DecodeOptions;

struct Fx {
    base: Decoder,
    merged: Decoder,
    tok: ia2_hf::Tokenizer,
    eos: Vec<u32>,
}

fn fixture() -> Option<Fx> {
    let root = ia2_testkit::fixture("qwen3-tiny")?;
    let device = ia2_testkit::device();
    let base = ia2_model::load_decoder(&root.join("model"), DType::F32, &device).unwrap();
    let (adapter, _) =
        ia2_adapters::load_peft(root.join("adapters/lora"), &base.config, &device).unwrap();
    let mut merged = base.clone();
    ia2_adapters::merge(&mut merged, &adapter).unwrap();
    let hf = ia2_hf::HfModelDir::open(root.join("model")).unwrap();
    Some(Fx {
        base,
        merged,
        tok: hf.tokenizer,
        eos: hf.generation.eos_token_ids.clone(),
    })
}

/// `ia2 activations`-style: every position's attention output of one forward pass, `[layers][pos][hidden]`.
fn all_attn(decoder: &Decoder, ids: &[u32]) -> Vec<Vec<Vec<f32>>> {
    let mut cache = decoder.new_cache(1, None);
    let capture = Capture {
        logits: Positions::None,
        attn: Positions::All,
    };
    let out = decoder
        .forward(&Batch::single(ids), &mut cache, None, &capture)
        .unwrap();
    out.attn
        .into_iter()
        .map(|t: Tensor<3>| {
            let [_, p, h] = t.dims();
            let v = t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            (0..p).map(|i| v[i * h..(i + 1) * h].to_vec()).collect()
        })
        .collect()
}

/// Independent cosine for the checks.
fn cos(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na.max(1e-8) * nb.max(1e-8))
}

const ICL: &str = "Text:dull and lifeless\nLabel:0\n\nText:a joy to watch\nLabel:1\n\nText:the plot is a mess\nLabel:";
const QUERY: &str = "Text:the plot is a mess\nLabel:";

fn opts(fx: &Fx) -> DecodeOptions {
    DecodeOptions {
        eos: fx.eos.clone(),
        pad: 0,
        batch: 2,
    }
}

#[test]
fn teacher_forced_matches_a_direct_forward_pass() {
    let Some(fx) = fixture() else { return };
    let (layers, hidden) = (fx.base.config.num_hidden_layers, fx.base.config.hidden_size);
    let icl = prompt_ids(&fx.tok, ICL).unwrap();
    let query = prompt_ids(&fx.tok, QUERY).unwrap();
    let steps = 5;
    // Base with demos, decoded with the KV cache.
    let base = free_running(
        &fx.base,
        None,
        std::slice::from_ref(&icl),
        steps,
        &opts(&fx),
    )
    .unwrap();
    let base = &base[0];
    let n = base.tokens.len();
    assert!(n >= 1 && n <= steps);
    // The cached decode's activations equal a plain forward pass over prompt + response.
    let mut seq = icl.clone();
    seq.extend_from_slice(&base.tokens[..n - 1]);
    let direct = all_attn(&fx.base, &seq);
    for l in 0..layers {
        for t in 0..n {
            let got = &base.activations[(l * n + t) * hidden..(l * n + t + 1) * hidden];
            let want = &direct[l][icl.len() - 1 + t];
            assert!(
                ia2_testkit::max_abs_diff(got, want) < 1e-4,
                "base layer {l} step {t}"
            );
        }
    }
    // The adapter fed the query plus the base response.
    let acts = teacher_forced(&fx.merged, None, &query, &base.tokens).unwrap();
    assert_eq!(acts.len(), layers * n * hidden);
    let mut seq = query.clone();
    seq.extend_from_slice(&base.tokens[..n - 1]);
    let direct = all_attn(&fx.merged, &seq);
    let sim = ExampleSim::between(&base.activations, n, &acts, n, layers, hidden);
    assert_eq!((sim.layers, sim.steps), (layers, n));
    let mut total = 0.0;
    for l in 0..layers {
        for t in 0..n {
            let a = &acts[(l * n + t) * hidden..(l * n + t + 1) * hidden];
            let want = &direct[l][query.len() - 1 + t];
            assert!(
                ia2_testkit::max_abs_diff(a, want) < 1e-4,
                "adapter layer {l} step {t}"
            );
            let b = &base.activations[(l * n + t) * hidden..(l * n + t + 1) * hidden];
            let c = cos(b, want);
            assert!((sim.at(l, t) - c).abs() < 1e-5, "cosine layer {l} step {t}");
            assert!((cosine(b, a) - c).abs() < 1e-5);
            total += c;
        }
    }
    assert!((sim.overall() - total / (layers * n) as f64).abs() < 1e-5);
    // Teacher-forcing the base model's own response with demos reproduces its activations: similarity 1.
    let own = teacher_forced(&fx.base, None, &icl, &base.tokens).unwrap();
    let s = ExampleSim::between(&base.activations, n, &own, n, layers, hidden);
    assert!((s.overall() - 1.0).abs() < 1e-5, "{}", s.overall());
    // The adapter changes the activations (the comparison can fail).
    assert!(sim.overall() < 0.99999);
}

#[test]
fn free_running_matches_greedy_decoding_with_attention_capture() {
    let Some(fx) = fixture() else { return };
    let (layers, hidden) = (fx.base.config.num_hidden_layers, fx.base.config.hidden_size);
    let icl = prompt_ids(&fx.tok, ICL).unwrap();
    let q1 = prompt_ids(&fx.tok, QUERY).unwrap();
    let q2 = prompt_ids(&fx.tok, "Text:a gripping, funny and moving film\nLabel:").unwrap();
    let steps = 4;
    // Batched (left-padded) through the analysis...
    let got = free_running(
        &fx.merged,
        None,
        &[q1.clone(), q2.clone()],
        steps,
        &opts(&fx),
    )
    .unwrap();
    let base = free_running(
        &fx.base,
        None,
        &[icl.clone(), icl.clone()],
        steps,
        &opts(&fx),
    )
    .unwrap();
    // ...and one prompt at a time straight through greedy decoding with attention capture.
    for (i, q) in [q1, q2].iter().enumerate() {
        let mut acts: Vec<Vec<f32>> = Vec::new();
        let options = GenerateOptions {
            max_new_tokens: steps,
            eos_token_ids: fx.eos.clone(),
            pad_token_id: 0,
            use_cache: false,
        };
        let g = greedy_observed(
            &fx.merged,
            None,
            std::slice::from_ref(q),
            &options,
            true,
            |_, _| false,
            |o| {
                if let Observation::Token { row, outputs } = o {
                    let mut step = Vec::new();
                    for l in 0..layers {
                        step.extend_from_slice(outputs.attn(l, row));
                    }
                    acts.push(step);
                }
            },
        )
        .unwrap();
        assert_eq!(
            got[i].tokens, g[0].tokens,
            "example {i}: same greedy tokens"
        );
        let n = g[0].tokens.len();
        let tb = base[i].tokens.len();
        let sim = ExampleSim::between(
            &base[i].activations,
            tb,
            &got[i].activations,
            n,
            layers,
            hidden,
        );
        assert_eq!(sim.steps, n.min(tb), "T_i is the shorter response");
        for l in 0..layers {
            for t in 0..sim.steps {
                let mine = &acts[t][l * hidden..(l + 1) * hidden];
                let analysed = &got[i].activations[(l * n + t) * hidden..(l * n + t + 1) * hidden];
                assert!(ia2_testkit::max_abs_diff(mine, analysed) < 1e-4);
                let b = &base[i].activations[(l * tb + t) * hidden..(l * tb + t + 1) * hidden];
                assert!(
                    (sim.at(l, t) - cos(b, mine)).abs() < 1e-5,
                    "example {i} layer {l} step {t}"
                );
            }
        }
        let lw = sim.layerwise();
        for (l, v) in lw.iter().enumerate() {
            let want: f64 = (0..sim.steps).map(|t| sim.at(l, t)).sum::<f64>() / sim.steps as f64;
            assert!((v - want).abs() < 1e-12);
        }
    }
}
