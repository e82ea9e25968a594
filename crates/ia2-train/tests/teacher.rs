//! Teacher targets: the batched, KV-cached collection equals greedy decoding and a direct forward pass of
//! the ICL prompt plus response; the cache returns what was stored, detects corruption and never serves an
//! entry to another configuration.

mod common;

use ia2_hf::Tokenizer;
use ia2_model::{Batch, Capture, Decoder, GenerateOptions, Positions};
use ia2_testkit::{device, max_abs_diff, values};
use ia2_train::TopK;
use ia2_train::examples::{DemoOrder, RunData, load_run_data};
use ia2_train::teacher::{self, CacheKey, Distribution, Target, Targets};

const T: usize = 4;

fn opts(eos: &[u32], batch: usize) -> teacher::DecodeOptions {
    teacher::DecodeOptions {
        eos: eos.to_vec(),
        pad: 0,
        batch,
    }
}

fn setup(name: &str, root: &std::path::Path) -> Option<(Decoder, Tokenizer, RunData, Vec<u32>)> {
    let model_dir = common::model(name)?;
    let data_dir = common::dataset(root, "toy", 6, 1);
    let tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    let eos = tokenizer.special_tokens().eos.as_ref().map(|e| e.1);
    let data = load_run_data(
        &data_dir.join("toy/train/6_0.json"),
        &tokenizer,
        T,
        eos,
        DemoOrder {
            shuffles: None,
            run: 0,
        },
    )
    .unwrap();
    let decoder = ia2_model::load_decoder(&model_dir, burn::tensor::DType::F32, &device()).unwrap();
    Some((decoder, tokenizer, data, eos.into_iter().collect()))
}

fn collect(
    decoder: &Decoder,
    data: &RunData,
    eos: &[u32],
    dist: Option<TopK>,
    batch: usize,
) -> Vec<Target> {
    let bar = indicatif::ProgressBar::hidden();
    teacher::collect(decoder, &data.train, T, dist, &opts(eos, batch), &bar).unwrap()
}

#[test]
fn collection_equals_greedy_decoding_and_a_direct_forward() {
    for name in ia2_testkit::MODELS {
        let tmp = tempfile::tempdir().unwrap();
        let Some((decoder, tokenizer, data, eos)) = setup(name, tmp.path()) else {
            return;
        };
        if tokenizer.adds_bos_token() {
            assert_eq!(
                data.train[0].icl_ids[0],
                tokenizer.special_tokens().bos.as_ref().unwrap().1
            );
        }
        let c = &decoder.config;
        let (v, h, layers) = (c.vocab_size, c.hidden_size, c.num_hidden_layers);
        let batched = collect(&decoder, &data, &eos, Some(TopK::All), 4);
        let single = collect(&decoder, &data, &eos, Some(TopK::All), 1);
        let topk = collect(&decoder, &data, &eos, Some(TopK::K(5)), 3);
        for (i, seq) in data.train.iter().enumerate() {
            let what = format!("{name} sequence {i}");
            let t = &batched[i];
            assert_eq!(
                t.tokens, single[i].tokens,
                "{what}: batched vs single tokens"
            );
            assert!(
                max_abs_diff(&t.activations, &single[i].activations) < 1e-4,
                "{what}"
            );
            // Greedy decoding of the ICL prompt gives the same response.
            let greedy = ia2_model::greedy(
                &decoder,
                None,
                std::slice::from_ref(&seq.icl_ids),
                &GenerateOptions {
                    max_new_tokens: T,
                    eos_token_ids: eos.clone(),
                    pad_token_id: 0,
                    use_cache: false,
                },
                |_, _| false,
                |_| {},
            )
            .unwrap();
            assert_eq!(t.tokens, greedy[0].tokens, "{what}: teacher vs greedy");
            // A direct forward over prompt + response gives the same activations and logits.
            let n = t.tokens.len();
            let mut ids = seq.icl_ids.clone();
            ids.extend_from_slice(&t.tokens[..n - 1]);
            let pos: Vec<usize> = (seq.icl_ids.len() - 1..seq.icl_ids.len() - 1 + n).collect();
            let mut cache = decoder.new_cache(1, None);
            let out = decoder
                .forward(
                    &Batch::single(&ids),
                    &mut cache,
                    None,
                    &Capture {
                        logits: Positions::At(vec![pos.clone()]),
                        attn: Positions::At(vec![pos]),
                    },
                )
                .unwrap();
            let mut direct = vec![0.0f32; layers * n * h];
            for (l, a) in out.attn.into_iter().enumerate() {
                direct[l * n * h..(l + 1) * n * h].copy_from_slice(&values(a).0);
            }
            let diff = max_abs_diff(&t.activations, &direct);
            assert!(diff < 1e-4, "{what}: activations differ by {diff}");
            let logits = values(out.logits.unwrap()).0;
            let Some(Distribution::Full(stored)) = &t.dist else {
                panic!("{what}: full distribution missing")
            };
            assert!(max_abs_diff(stored, &logits) < 1e-3, "{what}: logits");
            let Some(Distribution::TopK { indices, probs, k }) = &topk[i].dist else {
                panic!("{what}: top-k missing")
            };
            assert_eq!(*k, 5);
            for step in 0..n {
                let (want_i, want_p) = teacher::top_k_probs(&logits[step * v..(step + 1) * v], 5);
                assert_eq!(
                    &indices[step * 5..step * 5 + 5],
                    want_i.as_slice(),
                    "{what}"
                );
                assert!(max_abs_diff(&probs[step * 5..step * 5 + 5], &want_p) < 1e-5);
            }
        }
    }
}

#[test]
fn cache_round_trips_detects_corruption_and_keys_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((decoder, _, data, eos)) = setup("qwen3-tiny", tmp.path()) else {
        return;
    };
    let dir = tmp.path().join("cache");
    let key = CacheKey {
        format: 1,
        model_fingerprint: "m".into(),
        dtype: "f32".into(),
        data_file_sha256: "d".into(),
        demo_shuffles: None,
        num_generated_tokens: T,
        distributions: Some("3".into()),
    };
    let (first, cached) =
        teacher::get_or_collect(&dir, &key, &decoder, &data.train, &data.dev, &opts(&eos, 4))
            .unwrap();
    assert!(!cached);
    let (second, cached) =
        teacher::get_or_collect(&dir, &key, &decoder, &data.train, &data.dev, &opts(&eos, 4))
            .unwrap();
    assert!(cached, "the second request is served from the cache");
    assert_eq!(first.train, second.train);
    assert_eq!(first.dev, second.dev);

    // Another T is another entry; nothing is served across configurations.
    let other = CacheKey {
        num_generated_tokens: 2,
        ..key.clone()
    };
    assert_ne!(
        teacher::cache_path(&dir, &other),
        teacher::cache_path(&dir, &key)
    );
    assert!(teacher::load(&dir, &other).unwrap().is_none());

    // Flip one byte of the tensor data: detected, reported, recomputed.
    let path = teacher::cache_path(&dir, &key);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    let err = teacher::load(&dir, &key).unwrap_err();
    assert!(format!("{err:#}").contains("checksum"), "{err:#}");
    let (third, cached) =
        teacher::get_or_collect(&dir, &key, &decoder, &data.train, &data.dev, &opts(&eos, 4))
            .unwrap();
    assert!(!cached);
    assert_eq!(third.train, first.train);
    assert!(
        teacher::load(&dir, &key).unwrap().is_some(),
        "the entry was rewritten"
    );

    // An entry renamed to another key's file is stale, not used.
    std::fs::copy(&path, teacher::cache_path(&dir, &other)).unwrap();
    let err = teacher::load(&dir, &other).unwrap_err();
    assert!(
        format!("{err:#}").contains("another configuration"),
        "{err:#}"
    );
    let _: Targets = first;
}
