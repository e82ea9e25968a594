//! `ia2 data show` on a prepared file: counts, balance, prompts with and without demos, lengths.

use ia2_data::prepare::{PrepareConfig, prepare};
use ia2_data::schema::{Example, icl_prompt};
use ia2_data::show::{ShowConfig, render};
use std::path::PathBuf;

fn tokenizer_path() -> Option<PathBuf> {
    ia2_testkit::shared_path("tokenizers/qwen3/tokenizer.json")
}

#[test]
fn icl_prompt_joins_demos_with_blank_lines() {
    let ex = |q: &str, a: &str| Example {
        idx: 0,
        question: q.into(),
        answer: a.into(),
    };
    let d1 = ex("Text:a\nLabel:", "1");
    let d2 = ex("Text:b\nLabel:", "0");
    let q = ex("Text:c\nLabel:", "1");
    assert_eq!(icl_prompt(&[], &q), "Text:c\nLabel:");
    assert_eq!(
        icl_prompt(&[&d1, &d2], &q),
        "Text:a\nLabel:1\n\nText:b\nLabel:0\n\nText:c\nLabel:"
    );
}

#[test]
fn show_renders_counts_balance_and_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sst");
    std::fs::create_dir_all(&src).unwrap();
    let train: String = (0..10)
        .map(|i| format!("{}\tsentence {i}\n", i % 2))
        .collect();
    std::fs::write(src.join("train.tsv"), format!("label\tsentence\n{train}")).unwrap();
    std::fs::write(
        src.join("dev.tsv"),
        "label\tcontent\n0\tbad film\n1\tgood film\n1\tgreat film\n",
    )
    .unwrap();
    prepare(&PrepareConfig {
        dataset: "sst2".into(),
        source: Some(src),
        data_dir: dir.path().join("data"),
        tokenizer: tokenizer_path(),
        num_train_samples: 2000,
        num_val_samples: 500,
        seed: 42,
        force: false,
    })
    .unwrap();
    let text = render(&ShowConfig {
        dataset: "sst2".into(),
        data_dir: dir.path().join("data"),
        tokenizer: tokenizer_path(),
        n: 2,
        num_demos: 3,
    })
    .unwrap();
    assert!(text.contains("train examples: 10"), "{text}");
    assert!(text.contains("val examples:   3"), "{text}");
    assert!(
        text.contains("train balance: \"0\": 5 (50.0%), \"1\": 5 (50.0%)"),
        "{text}"
    );
    assert!(text.contains("template: Text:{text}\\nLabel:"), "{text}");
    assert_eq!(text.matches("=== val example").count(), 2, "{text}");
    assert_eq!(text.matches("--- with 3 demos").count(), 2, "{text}");
    assert!(text.contains("Label:1\n\nText:sentence"), "{text}");
    if tokenizer_path().is_some() {
        assert!(text.contains(" tokens)"), "{text}");
        assert!(text.contains("token_length: max"), "{text}");
    }
    // an unprepared dataset gives a helpful error
    let e = render(&ShowConfig {
        dataset: "gsm8k".into(),
        data_dir: dir.path().join("data"),
        tokenizer: None,
        n: 1,
        num_demos: 1,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("run `ia2 data prepare --dataset gsm8k"), "{e}");
}
