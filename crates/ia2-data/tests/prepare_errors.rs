//! Bad input: unknown datasets, malformed rows (file, line and field named), missing splits, file sources for
//! two-split datasets. All on small files the tests write.

mod prepare_common;

use ia2_data::prepare::prepare;
use prepare_common::args;
use std::path::Path;

fn err_of(dataset: &str, source: &Path, data_dir: &Path) -> String {
    format!(
        "{:#}",
        prepare(&args(dataset, source, data_dir)).unwrap_err()
    )
}

#[test]
fn unknown_dataset_lists_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let e = err_of("sst3", dir.path(), dir.path());
    assert!(e.contains("unknown dataset `sst3`"), "{e}");
    for name in [
        "sst2",
        "agnews",
        "hmath_algebra",
        "hmath_precalculus",
        "sciq_remap",
        "qasc_remap",
        "gsm8ks",
    ] {
        assert!(e.contains(name), "{name} missing from: {e}");
    }
}

#[test]
fn malformed_jsonl_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("gsm");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("train.jsonl"),
        "{\"question\": \"q1\", \"answer\": \"a #### 1\"}\n\n{\"question\": \"q2\", \"answer\": 5}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("test.jsonl"),
        "{\"question\": \"q\", \"answer\": \"#### 2\"}\n",
    )
    .unwrap();
    let e = err_of("gsm8k", &src, dir.path());
    assert!(e.contains("train.jsonl line 3"), "{e}");
    assert!(
        e.contains("field `answer`: expected a string, found 5"),
        "{e}"
    );

    std::fs::write(src.join("train.jsonl"), "{\"question\": \"q1\"}\n").unwrap();
    let e = err_of("gsm8k", &src, dir.path());
    assert!(
        e.contains("train.jsonl line 1: missing field `answer`"),
        "{e}"
    );

    std::fs::write(src.join("train.jsonl"), "{\"question\": \"q1\", \n").unwrap();
    let e = err_of("gsm8k", &src, dir.path());
    assert!(e.contains("train.jsonl line 1: invalid JSON"), "{e}");
    // nothing was written
    assert!(!dir.path().join("gsm8k").exists());
}

#[test]
fn malformed_tsv_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sst");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("train.tsv"), "label\tsentence\n0\tgood\n1\n").unwrap();
    std::fs::write(src.join("dev.tsv"), "label\tcontent\n0\tfine\n").unwrap();
    let e = err_of("sst2", &src, dir.path());
    assert!(
        e.contains("train.tsv line 3: expected 2 tab-separated fields"),
        "{e}"
    );
    std::fs::write(src.join("train.tsv"), "label\tsentence\n0\tgood\n7\tbad\n").unwrap();
    let e = err_of("sst2", &src, dir.path());
    assert!(
        e.contains("train.tsv line 3: field `label`: expected a label in {0, 1}, found 7"),
        "{e}"
    );
    std::fs::write(src.join("train.tsv"), "label\tsentence\nx\tgood\n").unwrap();
    let e = err_of("sst2", &src, dir.path());
    assert!(
        e.contains("line 2: field `label`: expected an integer"),
        "{e}"
    );
}

#[test]
fn missing_validation_split_and_file_for_two_splits() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sst");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("train.tsv"), "label\tsentence\n0\tgood\n").unwrap();
    let e = err_of("sst2", &src, dir.path());
    assert!(
        e.contains("sst2 needs the validation split: expected dev.tsv or validation.tsv or validation-*.parquet in"),
        "{e}"
    );
    let e = err_of("sst2", &src.join("train.tsv"), dir.path());
    assert!(e.contains("pass the directory that holds them"), "{e}");
    let e = err_of("sst2", &dir.path().join("nope"), dir.path());
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn csv_quoting_and_phrasebank_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("ag");
    std::fs::create_dir_all(&src).unwrap();
    // original (headerless) AG News CSV: quoted fields with commas, doubled quotes, quoted newline
    std::fs::write(
        src.join("train.csv"),
        "\"3\",\"Title, one\",\"Desc \"\"quoted\"\"\nsecond line\"\n\"1\",\"T2\",\"D2\"\n",
    )
    .unwrap();
    std::fs::write(
        src.join("test.csv"),
        "\"2\",\"T3\",\"D3\"\n\"5\",\"T4\",\"D4\"\n",
    )
    .unwrap();
    let e = err_of("agnews", &src, dir.path());
    assert!(
        e.contains(
            "test.csv line 2: field `class_index`: expected a label in {1, 2, 3, 4}, found 5"
        ),
        "{e}"
    );
    std::fs::write(src.join("test.csv"), "\"2\",\"T3\",\"D3\"\n").unwrap();
    prepare(&args("agnews", &src, dir.path())).unwrap();
    let main: ia2_data::schema::MainFile =
        ia2_data::io::read_json(&dir.path().join("agnews/main.json")).unwrap();
    let mut qs: Vec<(String, String)> = main
        .train_examples
        .iter()
        .map(|e| (e.question.clone(), e.answer.clone()))
        .collect();
    qs.sort();
    assert_eq!(
        qs,
        vec![
            ("Text:T2 D2\nLabel:".to_string(), "0".to_string()),
            (
                "Text:Title, one Desc \"quoted\"\nsecond line\nLabel:".to_string(),
                "2".to_string()
            ),
        ]
    );

    let fin = dir.path().join("fin.txt");
    std::fs::write(&fin, "Good news@positive\r\nNo label here\r\n").unwrap();
    let e = err_of("finsen", &fin, dir.path());
    assert!(
        e.contains("fin.txt line 2: expected `<sentence>@<label>`"),
        "{e}"
    );
    std::fs::write(&fin, "Good news@positive\r\nBad@awful\r\n").unwrap();
    let e = err_of("finsen", &fin, dir.path());
    assert!(
        e.contains("line 2: field `label`: expected negative, neutral or positive"),
        "{e}"
    );
}
