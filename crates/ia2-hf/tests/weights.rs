mod common;

use ia2_hf::{Dtype, Error, Weights, save_safetensors, save_safetensors_f32};
use std::collections::HashMap;
use std::path::Path;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn fixture_weights_f32() {
    let Some(dir) = common::fixture_model("qwen3-tiny") else {
        return;
    };
    let w = Weights::open(&dir).unwrap();
    assert!(w.names().contains(&"model.embed_tokens.weight"));
    assert!(w.contains("model.layers.0.self_attn.q_norm.weight"));
    let t = w.get("model.embed_tokens.weight").unwrap();
    assert_eq!(t.dtype(), Dtype::F32);
    assert_eq!(t.shape(), &[1024, 64]);
    assert_eq!(t.numel(), 1024 * 64);
    assert_eq!(t.bytes().len(), 1024 * 64 * 4);
    let v = t.to_f32_vec();
    assert_eq!(v.len(), 1024 * 64);
    assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|&x| x != 0.0));
    assert_eq!(w.shape("model.norm.weight").unwrap(), &[64]);
    assert_eq!(w.metadata().get("format").map(String::as_str), Some("pt"));
    assert_eq!(w.files(), vec![dir.join("model.safetensors").as_path()]);
}

#[test]
fn fixture_cases_int64_input_ids() {
    let Some(shared) = common::shared() else {
        return;
    };
    let w = Weights::open_file(shared.join("fixtures/llama-tiny/cases.safetensors")).unwrap();
    let (ids, shape) = w.get_i64("case0.input_ids").unwrap();
    assert_eq!(shape.iter().product::<usize>(), ids.len());
    assert_eq!(ids[0], 0, "llama-tiny adds BOS id 0");
    // an int64 tensor through the float accessor is an error naming it and its dtype
    let e = w.get("case0.input_ids").unwrap_err().to_string();
    assert!(
        e.contains("case0.input_ids") && e.contains("I64") && e.contains("cases.safetensors"),
        "{e}"
    );
    // a float tensor through get_i64 is an error too
    let e = w.get_i64("case0.logits").unwrap_err().to_string();
    assert!(e.contains("case0.logits") && e.contains("F32"), "{e}");
}

#[test]
fn write_read_round_trip_all_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.safetensors");
    let a = [1.5f32, -2.0, 3.25, 0.0, 1e-3, 7.0];
    let bf: Vec<u8> = a
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes())
        .collect();
    let hf: Vec<u8> = a
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
        .collect();
    let fb = f32_bytes(&a);
    save_safetensors(
        &p,
        &[
            ("a", Dtype::F32, &[2, 3], &fb),
            ("b", Dtype::BF16, &[6], &bf),
            ("c", Dtype::F16, &[3, 2], &hf),
        ],
        None,
    )
    .unwrap();
    let w = Weights::open(dir.path()).unwrap();
    assert_eq!(w.names(), vec!["a", "b", "c"]);
    assert_eq!(w.metadata().get("format").map(String::as_str), Some("pt"));
    assert_eq!(w.get("a").unwrap().to_f32_vec(), a.to_vec());
    let b = w.get("b").unwrap();
    assert_eq!((b.dtype(), b.shape()), (Dtype::BF16, &[6usize][..]));
    assert_eq!(b.bytes(), &bf[..]);
    let bv = b.to_f32_vec();
    for (x, y) in bv.iter().zip(&a) {
        assert!((x - y).abs() <= y.abs() * 1e-2, "{x} vs {y}");
    }
    assert_eq!(
        b.to_u16_bits().unwrap()[0],
        half::bf16::from_f32(1.5).to_bits()
    );
    let c = w.get("c").unwrap();
    assert_eq!(c.dtype(), Dtype::F16);
    assert_eq!(c.to_f32_vec()[2], 3.25);
    assert!(w.get("a").unwrap().to_u16_bits().is_err());
    // the file is also readable by the safetensors crate itself, with metadata
    let bytes = std::fs::read(&p).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(
        meta.metadata().as_ref().unwrap().get("format").unwrap(),
        "pt"
    );
    // no temporary file left behind
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1);
}

#[test]
fn writer_metadata_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.safetensors");
    let meta = HashMap::from([("step".to_string(), "3".to_string())]);
    save_safetensors_f32(&p, &[("w", &[2], &[1.0, 2.0])], Some(meta)).unwrap();
    let w = Weights::open_file(&p).unwrap();
    assert_eq!(w.metadata().get("step").map(String::as_str), Some("3"));
    assert_eq!(w.metadata().get("format").map(String::as_str), Some("pt"));
    // explicit format is kept
    let meta = HashMap::from([("format".to_string(), "np".to_string())]);
    save_safetensors_f32(&p, &[("w", &[1], &[1.0])], Some(meta)).unwrap();
    assert_eq!(Weights::open_file(&p).unwrap().metadata()["format"], "np");

    let e = save_safetensors(&p, &[("w", Dtype::F32, &[3], &[0u8; 8])], None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`w`") && e.contains("12 bytes") && e.contains("got 8"),
        "{e}"
    );
    let e = save_safetensors(
        &p,
        &[
            ("w", Dtype::F16, &[1], &[0u8; 2]),
            ("w", Dtype::F16, &[1], &[0u8; 2]),
        ],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("duplicate") && e.contains("`w`"), "{e}");
    let e = save_safetensors(dir.path().join("no/such/dir/y.safetensors"), &[], None).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

fn write_shards(dir: &Path) {
    save_safetensors_f32(
        dir.join("model-00001-of-00002.safetensors"),
        &[("x.a", &[2], &[1.0, 2.0]), ("x.b", &[1], &[3.0])],
        None,
    )
    .unwrap();
    save_safetensors_f32(
        dir.join("model-00002-of-00002.safetensors"),
        &[("y.c", &[1, 2], &[4.0, 5.0])],
        None,
    )
    .unwrap();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"metadata": {"total_size": 20}, "weight_map": {
            "x.a": "model-00001-of-00002.safetensors", "x.b": "model-00001-of-00002.safetensors",
            "y.c": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
}

#[test]
fn sharded_index() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(dir.path());
    let w = Weights::open(dir.path()).unwrap();
    assert_eq!(w.names(), vec!["x.a", "x.b", "y.c"]);
    assert_eq!(w.len(), 3);
    assert_eq!(w.files().len(), 2);
    assert_eq!(w.get("x.b").unwrap().to_f32_vec(), vec![3.0]);
    let c = w.get("y.c").unwrap();
    assert_eq!(
        (c.shape(), c.to_f32_vec()),
        (&[1usize, 2][..], vec![4.0, 5.0])
    );
    assert!(c.file().ends_with("model-00002-of-00002.safetensors"));

    let e = w.get("z.missing").unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }));
    let e = e.to_string();
    assert!(
        e.contains("z.missing")
            && e.contains("model-00001-of-00002")
            && e.contains("model-00002-of-00002"),
        "{e}"
    );
}

#[test]
fn sharded_index_errors() {
    // tensor named in the index but absent from its shard
    let dir = tempfile::tempdir().unwrap();
    write_shards(dir.path());
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"x.a": "model-00001-of-00002.safetensors", "y.c": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let e = Weights::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("y.c") && e.contains("absent") && e.contains("model-00001-of-00002"),
        "{e}"
    );
    // missing shard file
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"x.a": "gone.safetensors"}}"#,
    )
    .unwrap();
    let e = Weights::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("gone.safetensors") && e.contains("x.a"), "{e}");
    // malformed index
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"weights": {}}"#,
    )
    .unwrap();
    let e = Weights::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("weight_map") && e.contains("model.safetensors.index.json"),
        "{e}"
    );
}

#[test]
fn missing_and_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let e = Weights::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains(&dir.path().display().to_string()),
        "{e}"
    );
    let p = dir.path().join("model.safetensors");
    std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}").unwrap();
    let e = Weights::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("header") && e.contains("model.safetensors"),
        "{e}"
    );
    std::fs::write(&p, b"abc").unwrap();
    assert!(Weights::open(dir.path()).is_err());
    // a truncated data section
    save_safetensors_f32(&p, &[("w", &[4], &[1.0, 2.0, 3.0, 4.0])], None).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.truncate(bytes.len() - 4);
    std::fs::write(&p, &bytes).unwrap();
    let e = Weights::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    let e = Weights::open_file(dir.path().join("nope.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.safetensors"), "{e}");
}

#[test]
fn fixture_tensor_names_match_config() {
    for name in ["qwen3-tiny", "llama-tiny"] {
        let Some(dir) = common::fixture_model(name) else {
            return;
        };
        let c = ia2_hf::ModelConfig::from_dir(&dir).unwrap();
        let w = Weights::open(&dir).unwrap();
        let mut expected = c.expected_tensor_names();
        // tied checkpoints may or may not store lm_head.weight
        if c.tie_word_embeddings && w.contains("lm_head.weight") {
            expected.push("lm_head.weight".into());
            expected.sort();
        }
        assert_eq!(w.names(), expected, "{name}");
        let q = w.get("model.layers.0.self_attn.q_proj.weight").unwrap();
        assert_eq!(
            q.shape(),
            &[c.num_attention_heads * c.head_dim, c.hidden_size]
        );
        let k = w.get("model.layers.0.self_attn.k_proj.weight").unwrap();
        assert_eq!(
            k.shape(),
            &[c.num_key_value_heads * c.head_dim, c.hidden_size]
        );
        let g = w.get("model.layers.2.mlp.gate_proj.weight").unwrap();
        assert_eq!(g.shape(), &[c.intermediate_size, c.hidden_size]);
    }
}

#[test]
fn empty_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
    let e = Weights::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Weights>();
    check::<ia2_hf::Tokenizer>();
    check::<ia2_hf::ModelConfig>();
    check::<ia2_hf::Error>();
    check::<ia2_hf::HfModelDir>();
}

/// Tensors larger than one conversion block (converted in parallel blocks) convert exactly, every element in
/// its place, for each stored dtype.
#[test]
fn large_tensors_convert_exactly_in_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.safetensors");
    let n = 3 * 65_536 + 123;
    let vals: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 20_011) as f32 * 1e-3 - 10.0)
        .collect();
    let bf16: Vec<u16> = vals
        .iter()
        .map(|&x| half::bf16::from_f32(x).to_bits())
        .collect();
    let f16: Vec<u16> = vals
        .iter()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect();
    let bytes16 = |v: &[u16]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let f32b: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (bb, hb) = (bytes16(&bf16), bytes16(&f16));
    save_safetensors(
        &p,
        &[
            ("f32", Dtype::F32, &[n], &f32b),
            ("bf16", Dtype::BF16, &[n], &bb),
            ("f16", Dtype::F16, &[n], &hb),
        ],
        None,
    )
    .unwrap();
    let w = Weights::open(dir.path()).unwrap();
    assert_eq!(w.get("f32").unwrap().to_f32_vec(), vals);
    let want_bf: Vec<f32> = bf16
        .iter()
        .map(|&b| half::bf16::from_bits(b).to_f32())
        .collect();
    assert_eq!(w.get("bf16").unwrap().to_f32_vec(), want_bf);
    let want_h: Vec<f32> = f16
        .iter()
        .map(|&b| half::f16::from_bits(b).to_f32())
        .collect();
    assert_eq!(w.get("f16").unwrap().to_f32_vec(), want_h);
}
