//! A held-out toy task as `data/<name>/main.json`, consumable by `ia2 data train-sets`.

use ia2_data::schema::MainFile;
use ia2_data::train_sets::{TrainSetsConfig, build_train_file};
use ia2_toy::task::{LABELS, Task};
use std::collections::BTreeSet;

#[test]
fn the_dataset_is_one_held_out_task_in_the_seed_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = ia2_toy::write_task_dataset(4, dir.path(), "toy", 24, 30).unwrap();
    assert_eq!(path, dir.path().join("toy/main.json"));
    let main: MainFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(main.train_examples.len(), 24);
    assert_eq!(main.val_examples.len(), 30);

    let task = Task::held_out_from_seed(4);
    assert!(task.is_held_out());
    let labels: BTreeSet<String> = task.labels.iter().map(|&l| LABELS[l].to_string()).collect();
    let word = |q: &str| {
        q.strip_prefix("Text:")
            .and_then(|r| r.strip_suffix("\nLabel:"))
            .unwrap_or_else(|| panic!("question {q:?}"))
            .to_string()
    };
    let train_words: BTreeSet<String> = main
        .train_examples
        .iter()
        .map(|e| word(&e.question))
        .collect();
    let val_words: BTreeSet<String> = main
        .val_examples
        .iter()
        .map(|e| word(&e.question))
        .collect();
    assert_eq!(train_words.len(), 24, "24 distinct training words");
    assert!(
        train_words.is_disjoint(&val_words),
        "queries never appear as demos"
    );
    for (i, e) in main
        .train_examples
        .iter()
        .chain(&main.val_examples)
        .enumerate()
    {
        assert!(labels.contains(&e.answer), "{e:?}");
        let w = (0..ia2_toy::task::NUM_WORDS)
            .find(|&w| ia2_toy::task::word(w) == word(&e.question))
            .unwrap();
        assert_eq!(
            Some(LABELS.iter().position(|l| *l == e.answer).unwrap()),
            task.label_of(w)
        );
        let _ = i;
    }
    let md = &main.metadata;
    assert_eq!(md["max_choices"], 2);
    assert_eq!(md["remap_dict"]["0"], LABELS[task.labels[0]]);
    assert_eq!(md["num_train_examples"], 24);
    assert_eq!(
        md["max_token_length"], 2,
        "`Text:` and the word fused with the cue"
    );
    assert_eq!(md["config"]["task_seed"], 4);

    // Deterministic, and the data command builds training sets from it.
    let again = ia2_toy::write_task_dataset(4, dir.path(), "toy2", 24, 30).unwrap();
    let m2: MainFile = serde_json::from_slice(&std::fs::read(again).unwrap()).unwrap();
    assert_eq!(m2.train_examples, main.train_examples);
    let args = TrainSetsConfig {
        num_runs: 1,
        ..TrainSetsConfig::new("toy", dir.path(), vec![4])
    };
    let file = build_train_file(&main, &args, 4, 0).unwrap();
    assert_eq!(file.train.unwrap().examples.len(), 4);

    assert!(ia2_toy::write_task_dataset(4, dir.path(), "../x", 4, 4).is_err());
    assert!(ia2_toy::write_task_dataset(4, dir.path(), "toy", 0, 4).is_err());
}

#[test]
fn another_task_does_not_replace_main_json_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = ia2_toy::write_task_dataset_with(4, dir.path(), "toy", 8, 8, false).unwrap();
    let before = std::fs::read(&path).unwrap();
    // The same dataset again: nothing to do, no error.
    ia2_toy::write_task_dataset_with(4, dir.path(), "toy", 8, 8, false).unwrap();
    let err = ia2_toy::write_task_dataset_with(5, dir.path(), "toy", 8, 8, false).unwrap_err();
    assert!(format!("{err:#}").contains("--force"), "{err:#}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    ia2_toy::write_task_dataset_with(5, dir.path(), "toy", 8, 8, true).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), before);
}
