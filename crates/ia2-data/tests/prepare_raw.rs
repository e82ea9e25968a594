//! `prepare` on the public raw copies in ../shared/data/raw, checked against numpy-computed expectations
//! (tests/data/gen_prepare_expect.py → tests/data/prepare_expect.json).

mod prepare_common;

use ia2_data::prepare::{Outcome, prepare};
use prepare_common::*;
use serde_json::Value;

#[test]
fn sst2_train_dev_tsv() {
    let Some(raw) = raw_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = args("sst2", &raw.join("sst2"), dir.path());
    let out = build_with(&a, true);
    check_against(&out, "sst2");
    let q = &out.train_examples[0].question;
    assert!(q.starts_with("Text:") && q.ends_with("\nLabel:"), "{q:?}");
    let md = &out.metadata;
    assert_eq!(md.get("max_choices").unwrap(), &Value::from(2));
    assert_eq!(md.get("remap_dict").unwrap(), &Value::Null);
    // token statistics present and plausible when a tokenizer is given
    if tokenizer().is_some() {
        let max_tok = md.get("max_token_length").unwrap().as_u64().unwrap();
        let max_chr = md.get("max_query_length").unwrap().as_u64().unwrap();
        assert!(
            max_tok > 5 && max_tok < max_chr,
            "{max_tok} tokens vs {max_chr} chars"
        );
        let cfg = md.get("config").unwrap();
        assert_eq!(cfg["tokenizer"]["add_special_tokens"], Value::Bool(true));
        assert_eq!(cfg["tokenizer"]["sha256"].as_str().unwrap().len(), 64);
    }
    // full config recorded, with the source checksums of SOURCES.md
    let cfg = md.get("config").unwrap();
    assert_eq!(cfg["seed"], 42);
    assert_eq!(cfg["num_train_samples"], 2000);
    let files = cfg["source_files"].as_array().unwrap();
    let all: Vec<&Value> = files
        .iter()
        .flat_map(|f| f["files"].as_array().unwrap())
        .collect();
    assert!(
        all.iter()
            .any(|f| f["sha256"]
                == "e981ceb4fe6c9acd1c79851d0d091b9e78103f1f2a399ca83dda27915d41c56c")
    );
    assert!(
        all.iter()
            .any(|f| f["sha256"]
                == "84207e6be5873fb18db798cc6faec86871f5a426554650ff64a1c34e87665f6f")
    );
    assert_eq!(cfg["source_split_rows"]["train"], 67349);
    assert_eq!(cfg["source_split_rows"]["validation"], 872);
}

#[test]
fn agnews_csv_and_missing_train_split() {
    let Some(raw) = raw_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Only test.csv is public: the train split must be reported missing, by name.
    let err = prepare(&args("agnews", &raw.join("agnews"), dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("agnews needs the train split: expected train.csv or train-*.parquet in"),
        "{err}"
    );
    // With the test file standing in for train too, the CSV reader is checked against Python's csv module.
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(raw.join("agnews/test.csv"), src.join("test.csv")).unwrap();
    std::fs::copy(raw.join("agnews/test.csv"), src.join("train.csv")).unwrap();
    let out = build_with(&args("agnews", &src, dir.path()), false);
    check_against(&out, "agnews");
    assert_eq!(out.metadata.get("max_choices").unwrap(), &Value::from(4));
}

#[test]
fn bbcnews_folders_eval_only() {
    let Some(raw) = raw_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = build_with(&args("bbcnews", &raw.join("bbcnews"), dir.path()), false);
    check_against(&out, "bbcnews");
    assert!(out.train_examples.is_empty());
    for e in &out.val_examples {
        let text = e
            .question
            .strip_prefix("Text:")
            .unwrap()
            .strip_suffix("\nLabel:")
            .unwrap();
        assert!(text.chars().count() < 256);
    }
    let cfg = out.metadata.get("config").unwrap();
    assert_eq!(cfg["source_files"][0]["num_files"], 2225);
}

#[test]
fn finsen_shuffle_filter_tail() {
    let Some(raw) = raw_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    // a single file is accepted for a one-split dataset
    let out = build_with(
        &args(
            "finsen",
            &raw.join("finsen/Sentences_50Agree.txt"),
            dir.path(),
        ),
        false,
    );
    check_against(&out, "finsen");
    assert!(!out.train_examples[0].question.contains('\u{feff}'));
    assert!(!out.train_examples.iter().any(|e| e.question.contains('\r')));
}

#[test]
fn poems_eval_only_filtered() {
    let Some(raw) = raw_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = build_with(&args("poems", &raw.join("poems"), dir.path()), false);
    check_against(&out, "poems");
}

#[test]
fn strategytf_tail_reshuffle() {
    let Some(raw) = raw_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = build_with(
        &args("strategytf", &raw.join("strategyqa"), dir.path()),
        false,
    );
    check_against(&out, "strategytf");
    assert!(out.val_examples[0].question.starts_with("Question:"));
}

#[test]
fn gsm8k_jsonl_with_answer_stats() {
    let Some(raw) = raw_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = build_with(&args("gsm8k", &raw.join("gsm8k"), dir.path()), true);
    check_against(&out, "gsm8k");
    let md = &out.metadata;
    assert_eq!(md.get("max_choices").unwrap(), "free");
    if tokenizer().is_some() {
        assert!(md.get("max_token_answer_length").unwrap().as_u64().unwrap() > 10);
    }
    // every gold answer parses with the registry's GSM parser
    let spec = ia2_data::registry::DatasetId::Gsm8k.spec();
    for e in &out.val_examples {
        let tail = e
            .answer
            .rsplit("####")
            .next()
            .unwrap()
            .trim()
            .replace(',', "");
        assert_eq!(spec.parser.parse(&e.answer).unwrap(), tail);
    }
}

#[test]
fn hmath_algebra_per_problem_json() {
    let Some(raw) = raw_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = build_with(
        &args("hmath_algebra", &raw.join("hmath_algebra"), dir.path()),
        false,
    );
    check_against(&out, "hmath_algebra");
    let cfg = out.metadata.get("config").unwrap();
    let files = cfg["source_files"].as_array().unwrap();
    let train = files.iter().find(|f| f["split"] == "train").unwrap();
    let test = files.iter().find(|f| f["split"] == "test").unwrap();
    assert_eq!(
        (train["num_files"].as_u64(), test["num_files"].as_u64()),
        (Some(1744), Some(1187))
    );
    // the boxed parser finds an answer in the gold solutions
    let spec = ia2_data::registry::DatasetId::parse("hmath_algebra")
        .unwrap()
        .spec();
    let parsed = out
        .val_examples
        .iter()
        .filter(|e| spec.parser.parse(&e.answer).is_some())
        .count();
    assert!(parsed > 490, "{parsed}");
}

#[test]
fn prepare_writes_then_skips_then_forces() {
    let Some(raw) = raw_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut a = args("poems", &raw.join("poems/train.tsv"), dir.path());
    let path = dir.path().join("poems/main.json");
    assert_eq!(prepare(&a).unwrap(), Outcome::Written(path.clone()));
    let main: ia2_data::schema::MainFile = ia2_data::io::read_json(&path).unwrap();
    assert_eq!(main.val_examples.len(), 288);
    std::fs::write(&path, "sentinel").unwrap();
    assert_eq!(prepare(&a).unwrap(), Outcome::Skipped(path.clone()));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "sentinel");
    a.force = true;
    assert_eq!(prepare(&a).unwrap(), Outcome::Written(path.clone()));
    let main: ia2_data::schema::MainFile = ia2_data::io::read_json(&path).unwrap();
    assert_eq!(main.val_examples.len(), 288);
    // no temporary files left behind
    let names: Vec<_> = std::fs::read_dir(dir.path().join("poems"))
        .unwrap()
        .collect();
    assert_eq!(names.len(), 1);
}
