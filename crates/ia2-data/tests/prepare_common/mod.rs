//! Shared helpers of the prepare tests.
#![allow(dead_code)]

use ia2_data::prepare::{MainOut, PrepareConfig, build};
use ia2_data::registry::DatasetId;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data/raw`, or `None` (with a printed notice) when the shared checkout is absent.
pub fn raw_dir() -> Option<PathBuf> {
    ia2_testkit::shared_path("data/raw")
}

pub fn tokenizer_path() -> Option<PathBuf> {
    ia2_testkit::shared_path("tokenizers/qwen3/tokenizer.json")
}

pub fn tokenizer() -> Option<&'static tokenizers::Tokenizer> {
    static T: OnceLock<Option<tokenizers::Tokenizer>> = OnceLock::new();
    T.get_or_init(|| tokenizer_path().map(|p| tokenizers::Tokenizer::from_file(p).unwrap()))
        .as_ref()
}

pub fn expectations() -> &'static Value {
    static E: OnceLock<Value> = OnceLock::new();
    E.get_or_init(|| {
        let p = manifest().join("tests/data/prepare_expect.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    })
}

pub fn args(dataset: &str, source: &Path, data_dir: &Path) -> PrepareConfig {
    PrepareConfig {
        dataset: dataset.to_string(),
        source: Some(source.to_path_buf()),
        data_dir: data_dir.to_path_buf(),
        tokenizer: None,
        num_train_samples: 2000,
        num_val_samples: 500,
        seed: 42,
        force: false,
    }
}

/// Builds a dataset in memory, optionally with the shared tokenizer.
pub fn build_with(a: &PrepareConfig, with_tokenizer: bool) -> MainOut {
    let spec = DatasetId::parse(&a.dataset).unwrap().spec();
    let tok = if with_tokenizer { tokenizer() } else { None };
    let mut a = a.clone();
    if tok.is_some() {
        a.tokenizer = tokenizer_path();
    }
    build(&spec, a.source.as_ref().unwrap(), &a, tok).unwrap()
}

fn prefix(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Equal up to a few ULP: serde_json's default float parser (no `float_roundtrip`) may be 1 ULP off when it
/// reads the expectations, so exact equality cannot be asserted through it.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 4.0 * f64::EPSILON * b.abs()
}

fn check_stats(out: &MainOut, key: &str, exp: &Value) {
    let m = &out.metadata;
    for (ours, theirs) in [
        ("max", "max"),
        ("max_95p", "p95"),
        ("min", "min"),
        ("mean", "mean"),
        ("median", "median"),
        ("std", "std"),
    ] {
        let got = m.get(&format!("{ours}_{key}")).unwrap().as_f64().unwrap();
        let want = exp[theirs].as_f64().unwrap();
        assert!(close(got, want), "{ours}_{key}: got {got}, numpy {want}");
    }
}

/// Compares a built main file with the numpy-computed expectations under `key`.
pub fn check_against(out: &MainOut, key: &str) {
    let e = &expectations()[key];
    assert!(e.is_object(), "no expectation {key}");
    assert_eq!(
        out.train_examples.len() as u64,
        e["num_train"].as_u64().unwrap(),
        "{key} train count"
    );
    assert_eq!(
        out.val_examples.len() as u64,
        e["num_val"].as_u64().unwrap(),
        "{key} val count"
    );
    let cmp = |examples: &[ia2_data::schema::Example], exp: &Value, from_end: bool, what: &str| {
        let exp = exp.as_array().unwrap();
        for (k, pair) in exp.iter().enumerate() {
            let ex = if from_end {
                &examples[examples.len() - exp.len() + k]
            } else {
                &examples[k]
            };
            let want_q = pair[0].as_str().unwrap();
            let want_a = pair[1].as_str().unwrap();
            assert_eq!(
                prefix(&ex.question, 400),
                want_q,
                "{key} {what}[{k}] question"
            );
            assert_eq!(prefix(&ex.answer, 400), want_a, "{key} {what}[{k}] answer");
        }
    };
    cmp(&out.train_examples, &e["train_head"], false, "train_head");
    cmp(&out.train_examples, &e["train_last"], true, "train_last");
    cmp(&out.val_examples, &e["val_head"], false, "val_head");
    cmp(&out.val_examples, &e["val_last"], true, "val_last");
    for (i, ex) in out.train_examples.iter().enumerate() {
        assert_eq!(ex.idx, i);
    }
    for (i, ex) in out.val_examples.iter().enumerate() {
        assert_eq!(ex.idx, i);
    }
    check_stats(out, "query_length", &e["query_stats"]);
    if let Some(a) = e.get("answer_stats") {
        check_stats(out, "answer_length", a);
    } else {
        let lc = out.metadata.get("label_counts").unwrap();
        let want_train = if e["num_train"].as_u64() == Some(0) {
            serde_json::json!({})
        } else {
            e["label_counts"]["train"].clone()
        };
        assert_eq!(lc["train"], want_train, "{key} train label counts");
        assert_eq!(
            lc["val"], e["label_counts"]["val"],
            "{key} val label counts"
        );
    }
    if let Some(r) = e.get("remap") {
        assert_eq!(
            out.metadata.get("remap_dict").unwrap(),
            r,
            "{key} remap table"
        );
    }
    let md = &out.metadata;
    assert_eq!(md.get("num_train_examples").unwrap(), &e["num_train"]);
    assert_eq!(md.get("num_val_examples").unwrap(), &e["num_val"]);
}
