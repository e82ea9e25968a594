//! Differential test against files written by the seed's own `create_training_datasets.py`
//! (`tests/splits_vectors/seed_run/run_seed.py`): same `main.json`, same flags, same JSON content
//! (our extra `config` key aside). Also checks that every seed file parses with our schema.

use ia2_data::schema::MainFile;
use ia2_data::splits::schema::TrainFile;
use ia2_data::train_sets::{TrainSetsConfig, build_train_file};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/splits_vectors/seed_run")
}

fn args(fixed: bool, shuffles: Option<usize>) -> TrainSetsConfig {
    TrainSetsConfig {
        dataset: "toy".into(),
        num_train_examples: vec![],
        num_runs: 2,
        max_icl_demos: 5,
        num_dev_examples: 3,
        shuffle_demos: shuffles.is_some(),
        num_shuffles: shuffles.unwrap_or(5),
        fixed_demos: fixed,
        data_dir: PathBuf::from("unused"),
        force: false,
    }
}

#[test]
fn train_files_equal_the_seed_outputs() {
    let main: MainFile = ia2_data::io::read_json(&dir().join("toy_main.json")).unwrap();
    let mut compared = 0;
    for (sub, fixed) in [("train", false), ("train_fixed", true)] {
        for entry in std::fs::read_dir(dir().join("expected").join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let parts: Vec<&str> = name.split('_').collect();
            let (shuffles, n, run) = match parts.as_slice() {
                ["shuffled", k, n, r] => (
                    Some(k.parse().unwrap()),
                    n.parse().unwrap(),
                    r.parse().unwrap(),
                ),
                [n, r] => (None, n.parse().unwrap(), r.parse().unwrap()),
                _ => panic!("unexpected file {}", path.display()),
            };
            let a = args(fixed, shuffles);
            assert!(
                a.output_path(n, run)
                    .ends_with(format!("toy/{sub}/{name}.json"))
            );
            let ours = build_train_file(&main, &a, n, run).unwrap();
            let mut ours = serde_json::to_value(&ours).unwrap();
            ours.as_object_mut().unwrap().remove("config");
            let theirs: Value = ia2_data::io::read_json(&path).unwrap();
            assert_eq!(ours, theirs, "{}", path.display());
            // The seed's file reads with our schema and round-trips to the same JSON.
            let parsed: TrainFile = ia2_data::io::read_json(&path).unwrap();
            assert_eq!(
                serde_json::to_value(&parsed).unwrap(),
                theirs,
                "{}",
                path.display()
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 18);
}
