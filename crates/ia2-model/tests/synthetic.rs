//! Synthetic checkpoints (`ia2_model::synthetic`) on small shapes: the files are a valid Hugging Face
//! checkpoint (config.json parsed by ia2-hf, sharded safetensors consistent with the index), the values are
//! what was asked (norms 1, weights of standard deviation 0.02), the bytes depend on the seed only, and the
//! decoder loads and runs them.

use burn::tensor::{DType, Device};
use ia2_hf::{Dtype, HfModelDir, ModelConfig, Weights};
use ia2_model::synthetic::{
    self, SyntheticModel, SyntheticOptions, materialize, tensor_specs, write_checkpoint,
};
use ia2_model::{Batch, Capture, Positions, load_decoder};
use std::collections::BTreeMap;
use std::path::Path;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn small_opts(seed: u64, dtype: Dtype) -> SyntheticOptions {
    SyntheticOptions {
        seed,
        dtype,
        // The tiny model is ~50 kB in bf16: several shards.
        shard_bytes: 20_000,
        tokenizer: None,
    }
}

#[test]
fn a_tiny_checkpoint_is_a_valid_sharded_hf_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let config = SyntheticModel::Tiny.config();
    let opts = small_opts(11, Dtype::BF16);
    let mut last = 0;
    let written = write_checkpoint(&config, &dir, &opts, &mut |b| last = b).unwrap();
    let expected_bytes: u64 = tensor_specs(&config)
        .iter()
        .map(|s| 2 * s.numel() as u64)
        .sum();
    assert_eq!(written.bytes, expected_bytes);
    assert_eq!(last, expected_bytes, "progress reaches the total");
    assert_eq!(written.params, synthetic::param_count(&config));
    assert!(written.shards > 1, "{}", written.shards);

    // config.json parses back to the configuration (with the files' dtype).
    let parsed = ModelConfig::from_dir(&dir).unwrap();
    let mut want = config.clone();
    want.torch_dtype = Some("bfloat16".into());
    assert_eq!(parsed, want);

    // The index names every tensor once, each in an existing shard, and its total is the tensors' bytes.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    assert_eq!(
        index["metadata"]["total_size"].as_u64(),
        Some(expected_bytes)
    );
    let map = index["weight_map"].as_object().unwrap();
    let mut names: Vec<String> = map.keys().cloned().collect();
    names.sort();
    let mut expected_names = config.expected_tensor_names();
    expected_names.sort();
    assert_eq!(names, expected_names);
    let shard_files: std::collections::BTreeSet<&str> =
        map.values().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(shard_files.len(), written.shards);
    for (i, f) in shard_files.iter().enumerate() {
        assert_eq!(*f, synthetic::shard_name(i + 1, written.shards));
        assert!(dir.join(f).is_file());
    }

    // Every tensor has its shape and dtype; norms are ones, weights have the asked spread.
    let weights = Weights::open(&dir).unwrap();
    assert_eq!(weights.len(), expected_names.len());
    for spec in tensor_specs(&config) {
        let v = weights.get(&spec.name).unwrap();
        assert_eq!(v.shape(), spec.shape.as_slice(), "{}", spec.name);
        assert_eq!(v.dtype(), Dtype::BF16, "{}", spec.name);
        assert_eq!(
            v.file().file_name().unwrap().to_str(),
            map[&spec.name].as_str()
        );
        let x = v.to_f32_vec();
        if spec.name.ends_with("norm.weight") {
            assert!(x.iter().all(|&a| a == 1.0), "{}", spec.name);
        } else {
            let n = x.len() as f64;
            let mean = x.iter().map(|&a| a as f64).sum::<f64>() / n;
            let std = (x.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            assert!(mean.abs() < 0.004, "{}: mean {mean}", spec.name);
            assert!((std - 0.02).abs() < 0.003, "{}: std {std}", spec.name);
        }
    }

    // The whole directory (tokenizer included) opens as a model, and the decoder runs on it.
    let model = HfModelDir::open(&dir).unwrap();
    let ids = model.tokenizer.encode("synthetic", false).unwrap();
    assert_eq!(ids.len(), "synthetic".len());
    let device = Device::flex();
    for dtype in [DType::F32, DType::BF16] {
        let decoder = load_decoder(&dir, dtype, &device).unwrap();
        let batch = Batch::left_padded(&[ids.clone(), vec![5, 6, 7]], 256);
        let mut cache = decoder.new_cache(2, None);
        let out = decoder
            .forward(
                &batch,
                &mut cache,
                None,
                &Capture {
                    logits: Positions::Last,
                    attn: Positions::All,
                },
            )
            .unwrap();
        let logits = out.logits.unwrap();
        assert_eq!(logits.dims(), [2, 1, config.vocab_size]);
        let v = logits.into_data().try_to_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{dtype:?}");
        assert!(v.iter().any(|&x| x != v[0]), "logits vary");
        assert_eq!(out.attn.len(), config.num_hidden_layers);
    }
}

#[test]
fn the_bytes_depend_on_the_seed_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = SyntheticModel::Tiny.config();
    // Untied, with biases: every kind of tensor.
    config.tie_word_embeddings = false;
    config.attention_bias = true;
    let write = |name: &str, seed: u64, threads: usize| {
        let dir = tmp.path().join(name);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            write_checkpoint(&config, &dir, &small_opts(seed, Dtype::F32), &mut |_| {}).unwrap()
        });
        files(&dir)
    };
    let a = write("a", 1, 1);
    let b = write("b", 1, 3);
    let c = write("c", 2, 1);
    assert_eq!(a, b, "same seed, other thread count: same files");
    assert_eq!(a["config.json"], c["config.json"]);
    let shard = synthetic::shard_name(1, a.keys().filter(|k| k.ends_with(".safetensors")).count());
    assert_ne!(a[&shard], c[&shard], "another seed, other weights");
    let w = Weights::open(tmp.path().join("a")).unwrap();
    assert!(w.contains("lm_head.weight"));
    assert!(w.contains("model.layers.1.self_attn.o_proj.bias"));
    assert_eq!(w.get("lm_head.weight").unwrap().dtype(), Dtype::F32);
}

#[test]
fn materialize_writes_once_and_leaves_no_temporary() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("synthetic");
    let opts = SyntheticOptions::default();
    let first = materialize(
        "tiny",
        &SyntheticModel::Tiny.config(),
        &root,
        &opts,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(first.written);
    assert_eq!(
        first.dir,
        root.join(format!("tiny-v{}", synthetic::VERSION))
    );
    assert_eq!(first.shards, 1);
    let second = materialize(
        "tiny",
        &SyntheticModel::Tiny.config(),
        &root,
        &opts,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(!second.written);
    assert_eq!(second.dir, first.dir);
    let entries: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(entries, vec![format!("tiny-v{}", synthetic::VERSION)]);
    HfModelDir::open(&first.dir).unwrap();
    // Another seed is another directory.
    let other = SyntheticOptions {
        seed: 5,
        ..SyntheticOptions::default()
    };
    let third = materialize(
        "tiny",
        &SyntheticModel::Tiny.config(),
        &root,
        &other,
        &mut |_, _| {},
    )
    .unwrap();
    assert_ne!(third.dir, first.dir);
    assert!(synthetic::free_disk_bytes(&root).unwrap() > 0);
}

/// A real tokenizer is copied when given, and refused when its vocabulary exceeds the model's.
#[test]
fn a_given_tokenizer_is_copied_or_refused() {
    let Some(shared) = ia2_testkit::shared_path("tokenizers/qwen3/tokenizer.json") else {
        eprintln!("SKIPPED: the Qwen3 tokenizer is not in ../shared");
        return;
    };
    let tok_dir = shared.parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = SyntheticOptions {
        tokenizer: Some(tok_dir.to_path_buf()),
        ..small_opts(1, Dtype::BF16)
    };
    // Tiny's 320 tokens cannot hold Qwen3's tokenizer.
    let err = write_checkpoint(
        &SyntheticModel::Tiny.config(),
        &tmp.path().join("t"),
        &opts,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("more than the model's vocabulary"),
        "{err:#}"
    );
    let mut config = SyntheticModel::Tiny.config();
    config.vocab_size = 151_936;
    config.hidden_size = 8;
    config.num_attention_heads = 2;
    config.num_key_value_heads = 1;
    config.head_dim = 8;
    config.intermediate_size = 8;
    config.num_hidden_layers = 1;
    let dir = tmp.path().join("q");
    write_checkpoint(&config, &dir, &opts, &mut |_| {}).unwrap();
    assert_eq!(
        std::fs::read(dir.join("tokenizer.json")).unwrap(),
        std::fs::read(&shared).unwrap()
    );
    let model = HfModelDir::open(&dir).unwrap();
    assert!(model.tokenizer.encode("Hello world", false).unwrap().len() < 11);
}
