//! End-to-end checks of `ia2 data train-sets / eval-demos / ldr` on a temporary data directory.

use ia2_data::eval_demos::{self, EvalDemoSetsConfig};
use ia2_data::ldr::{self, LdrConfig};
use ia2_data::splits::sample::factorial_saturating;
use ia2_data::splits::schema::{EvalDemosFile, IclDemos, TrainFile};
use ia2_data::train_sets::{self, TrainSetsConfig};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system temp dir (removed on drop).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("ia2-splits-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn question(name: &str, i: usize) -> String {
    format!("Text:{name} example {i}\nLabel:")
}

/// Writes `<dir>/<name>/main.json` with `n_train` / `n_val` synthetic examples.
fn write_main(dir: &Path, name: &str, n_train: usize, n_val: usize) {
    let ex = |i: usize, tag: &str| json!({"idx": i, "question": question(&format!("{name}-{tag}"), i), "answer": (i % 2).to_string()});
    let main = json!({
        "metadata": {"max_choices": 2},
        "train_examples": (0..n_train).map(|i| ex(i, "train")).collect::<Vec<_>>(),
        "val_examples": (0..n_val).map(|i| ex(i, "val")).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(
        dir.join(name).join("main.json"),
        serde_json::to_vec(&main).unwrap(),
    )
    .unwrap();
}

fn train_args(dir: &Path, name: &str, ns: &[usize], runs: u32) -> TrainSetsConfig {
    TrainSetsConfig {
        dataset: name.to_string(),
        num_train_examples: ns.to_vec(),
        num_runs: runs,
        max_icl_demos: 256,
        num_dev_examples: 48,
        shuffle_demos: false,
        num_shuffles: 5,
        fixed_demos: false,
        data_dir: dir.to_path_buf(),
        force: false,
    }
}

fn read<T: serde::de::DeserializeOwned>(p: &Path) -> T {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn split_vectors() -> Value {
    let t = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/splits_vectors/split_vectors.json"
    ))
    .unwrap();
    serde_json::from_str(&t).unwrap()
}

fn idxs(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// The written files carry the seed's schema and content for a 37-row pool (compared with numpy vectors).
#[test]
fn train_sets_files_match_seed_content() {
    let tmp = TempDir::new("train");
    write_main(&tmp.0, "toy", 37, 5);
    train_sets::run(train_args(&tmp.0, "toy", &[4, 16], 2)).unwrap();
    let vectors = split_vectors();
    for (n, run) in [(4usize, 0u32), (4, 1), (16, 0), (16, 1)] {
        let c = vectors["training"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["pool_len"] == 37
                    && c["n"] == n
                    && c["run"] == run
                    && c["max_icl_demos"] == 256
                    && c["fixed"] == false
            })
            .unwrap_or_else(|| panic!("no vector for N {n} run {run}"));
        let path = tmp.0.join(format!("toy/train/{n}_{run}.json"));
        let raw: Value = read(&path);
        for key in ["train", "dev", "remaining_indices", "demo_type"] {
            assert!(raw.get(key).is_some(), "{}: missing {key}", path.display());
        }
        assert_eq!(raw["demo_type"], "unique");
        assert_eq!(raw["config"]["seed"], run);
        let train_idx: Vec<usize> = raw["train"]["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["idx"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(train_idx, idxs(&c["train"]));
        let dev_idx: Vec<usize> = raw["dev"]["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["idx"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(dev_idx, idxs(&c["dev"]));
        assert_eq!(
            raw["remaining_indices"].as_array().unwrap().len(),
            c["remaining_len"].as_u64().unwrap() as usize
        );
        // Demo strings are question + answer of the training examples at the numpy-chosen positions.
        let demos: Vec<Vec<usize>> = c["demos"].as_array().unwrap().iter().map(idxs).collect();
        let tf: TrainFile = read(&path);
        let train = tf.train.unwrap();
        let IclDemos::PerExample(lists) = &train.icl_demos else {
            panic!("unique mode writes per-example lists")
        };
        for (i, list) in lists.iter().enumerate() {
            let want: Vec<String> = demos[i]
                .iter()
                .map(|&p| format!("{}{}", train.examples[p].question, train.examples[p].answer))
                .collect();
            assert_eq!(list, &want, "N {n} run {run} example {i}");
        }
        let dev = tf.dev.unwrap();
        assert_eq!(
            dev.icl_demos,
            IclDemos::PerExample(lists[..dev.examples.len()].to_vec())
        );
    }
}

#[test]
fn existing_files_are_skipped_unless_forced() {
    let tmp = TempDir::new("skip");
    write_main(&tmp.0, "toy", 20, 3);
    train_sets::run(train_args(&tmp.0, "toy", &[4], 1)).unwrap();
    let path = tmp.0.join("toy/train/4_0.json");
    let original = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"{\"sentinel\": true}").unwrap();
    train_sets::run(train_args(&tmp.0, "toy", &[4], 1)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"sentinel\": true}");
    let mut args = train_args(&tmp.0, "toy", &[4], 1);
    args.force = true;
    train_sets::run(args).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), original);
    // No temporary files left behind (the sidecar recording main.json's checksum stays).
    let leftovers: Vec<_> = std::fs::read_dir(tmp.0.join("toy/train"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().ends_with(".ia2-source.json"))
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let tmp = TempDir::new("errors");
    let err = train_sets::run(train_args(&tmp.0, "nope", &[4], 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&tmp.0.join("nope").display().to_string()),
        "{err}"
    );
    std::fs::create_dir_all(tmp.0.join("empty")).unwrap();
    let err = train_sets::run(train_args(&tmp.0, "empty", &[4], 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&tmp.0.join("empty/main.json").display().to_string()),
        "{err}"
    );
    write_main(&tmp.0, "small", 10, 2);
    let err = format!(
        "{:#}",
        train_sets::run(train_args(&tmp.0, "small", &[4, 11], 1)).unwrap_err()
    );
    assert!(err.contains("N = 11") && err.contains("10"), "{err}");
    assert!(
        !tmp.0.join("small/train").exists(),
        "nothing may be written when an N is invalid"
    );
}

#[test]
fn fixed_and_shuffled_modes() {
    let tmp = TempDir::new("modes");
    write_main(&tmp.0, "toy", 37, 3);
    let mut args = train_args(&tmp.0, "toy", &[8], 1);
    args.fixed_demos = true;
    args.max_icl_demos = 5;
    train_sets::run(args).unwrap();
    let tf: TrainFile = read(&tmp.0.join("toy/train_fixed/8_0.json"));
    assert_eq!(tf.demo_type.as_deref(), Some("fixed"));
    let c = split_vectors()["training"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["pool_len"] == 37
                && c["n"] == 8
                && c["run"] == 0
                && c["max_icl_demos"] == 5
                && c["fixed"] == true
        })
        .cloned()
        .unwrap();
    let want: Vec<String> = idxs(&c["demos"])
        .iter()
        .map(|&i| format!("{}{}", question("toy-train", i), i % 2))
        .collect();
    assert_eq!(
        tf.train.as_ref().unwrap().icl_demos,
        IclDemos::Fixed(want.clone())
    );
    assert_eq!(tf.dev.as_ref().unwrap().icl_demos, IclDemos::Fixed(want));

    let mut args = train_args(&tmp.0, "toy", &[8], 1);
    args.shuffle_demos = true;
    args.num_shuffles = 3;
    train_sets::run(args).unwrap();
    train_sets::run(train_args(&tmp.0, "toy", &[8], 1)).unwrap();
    let shuffled: TrainFile = read(&tmp.0.join("toy/train/shuffled_3_8_0.json"));
    let plain: TrainFile = read(&tmp.0.join("toy/train/8_0.json"));
    assert_eq!(shuffled.train, plain.train);
    assert_eq!(shuffled.dev, plain.dev);
    assert_eq!(shuffled.remaining_indices, plain.remaining_indices);
}

#[test]
fn eval_only_dataset_gets_seed_stub() {
    let tmp = TempDir::new("stub");
    write_main(&tmp.0, "evalonly", 0, 7);
    train_sets::run(train_args(&tmp.0, "evalonly", &[4], 1)).unwrap();
    let raw: Value = read(&tmp.0.join("evalonly/train/4_0.json"));
    assert_eq!(raw, json!({"remaining_indices": [0, 1, 2, 3, 4, 5, 6]}));
}

#[test]
fn eval_demos_come_from_held_out_pool_with_count_in_name() {
    let tmp = TempDir::new("eval");
    write_main(&tmp.0, "src", 40, 2);
    write_main(&tmp.0, "ev", 3, 6);
    train_sets::run(train_args(&tmp.0, "src", &[8], 2)).unwrap();
    let args = EvalDemoSetsConfig {
        eval_dataset: "ev".into(),
        icl_source: "src".into(),
        num_train_examples: vec![8],
        num_runs: 2,
        icl_max_demos: vec![3, 100],
        no_n_cap: false,
        data_dir: tmp.0.clone(),
        force: false,
    };
    eval_demos::run(args.clone()).unwrap();
    for run in 0..2u32 {
        let tf: TrainFile = read(&tmp.0.join(format!("src/train/8_{run}.json")));
        let pool: Vec<String> = tf
            .remaining_indices
            .iter()
            .map(|&i| format!("{}{}", question("src-train", i), i % 2))
            .collect();
        let held: HashSet<&String> = pool.iter().collect();
        // 3 demos, and 100 capped at N - 1 = 7: two files.
        for d in [3usize, 7] {
            let f: EvalDemosFile =
                read(&eval_demos::eval_demos_path(&tmp.0, "ev", "src", 8, run, d));
            assert_eq!(f.examples.len(), 6);
            assert_eq!(f.examples[5].question, question("ev-val", 5));
            assert_eq!(f.config.icl_max_demos, d);
            assert_eq!(f.config.seed, run);
            let positions = ia2_data::splits::sample::eval_demo_positions(6, pool.len(), d, run);
            for (list, pos) in f.icl_demos.iter().zip(&positions) {
                assert_eq!(list.len(), d);
                assert!(
                    list.iter().all(|s| held.contains(s)),
                    "demos must come from the held-out pool"
                );
                assert_eq!(
                    list,
                    &pos.iter().map(|&p| pool[p].clone()).collect::<Vec<_>>()
                );
                assert_eq!(
                    list.iter().collect::<HashSet<_>>().len(),
                    d,
                    "no repeated demo"
                );
            }
        }
    }
    // A missing training file is named in the error.
    let mut bad = args;
    bad.num_train_examples = vec![5];
    let err = format!("{:#}", eval_demos::run(bad).unwrap_err());
    assert!(
        err.contains(&tmp.0.join("src/train/5_0.json").display().to_string()),
        "{err}"
    );
}

fn ldr_args(dir: &Path, n: usize, m: usize, k: usize) -> LdrConfig {
    LdrConfig {
        dataset: "toy".into(),
        num_labelled: vec![n],
        num_unlabelled: vec![m],
        max_permutations: vec![k],
        num_runs: 2,
        num_dev_examples: 4,
        data_dir: dir.to_path_buf(),
        force: false,
    }
}

#[test]
fn ldr_files_have_disjoint_demos_and_distinct_bounded_orders() {
    let tmp = TempDir::new("ldr");
    write_main(&tmp.0, "toy", 60, 3);
    for (n, m, k) in [(4usize, 30usize, 5usize), (3, 20, 24), (1, 10, 3)] {
        ldr::run(ldr_args(&tmp.0, n, m, k)).unwrap();
        let expected_orders = k.min(factorial_saturating(n));
        for run in 0..2u32 {
            let path = ldr::ldr_file_path(&tmp.0, "toy", n, m, k, run);
            assert!(path.ends_with(format!("toy-ldr/train/{n}_{m}_{k}_{run}.json")));
            let tf: TrainFile = read(&path);
            let raw: Value = read(&path);
            let labelled: Vec<usize> = idxs(&raw["config"]["labelled_idx"]);
            assert_eq!(labelled.len(), n);
            let demo_set: HashSet<String> = labelled
                .iter()
                .map(|&i| format!("{}{}", question("toy-train", i), i % 2))
                .collect();
            let train = tf.train.unwrap();
            let dev = tf.dev.unwrap();
            assert_eq!(train.examples.len(), m);
            assert_eq!(dev.examples.len(), 4.min(m / 2));
            let query_idx: HashSet<usize> = train
                .examples
                .iter()
                .chain(&dev.examples)
                .map(|e| e.idx)
                .collect();
            assert_eq!(query_idx.len(), train.examples.len() + dev.examples.len());
            assert!(
                labelled.iter().all(|i| !query_idx.contains(i)),
                "demos and queries must be disjoint"
            );
            assert!(
                tf.remaining_indices
                    .iter()
                    .all(|i| !query_idx.contains(i) && !labelled.contains(i))
            );
            assert_eq!(tf.remaining_indices.len() + n + query_idx.len(), 60);
            let mut orders = HashSet::new();
            for split in [&train, &dev] {
                let IclDemos::PerExample(lists) = &split.icl_demos else {
                    panic!("per-example demos")
                };
                assert_eq!(lists.len(), split.examples.len());
                for list in lists {
                    assert_eq!(list.len(), n);
                    assert_eq!(
                        list.iter().cloned().collect::<HashSet<_>>(),
                        demo_set,
                        "each query sees all N demos"
                    );
                    orders.insert(list.clone());
                }
            }
            assert!(orders.len() <= k);
            assert_eq!(orders.len(), expected_orders.min(m), "N {n} M {m} K {k}");
            assert_eq!(raw["config"]["num_permutations"], expected_orders);
            let perms: Vec<Vec<usize>> = raw["config"]["permutations"]
                .as_array()
                .unwrap()
                .iter()
                .map(idxs)
                .collect();
            assert_eq!(
                perms.iter().collect::<HashSet<_>>().len(),
                perms.len(),
                "orders are distinct"
            );
        }
        // Deterministic from the seed, different across runs.
        let a =
            ldr::build_ldr_file(&read(&tmp.0.join("toy/main.json")), "toy", n, m, k, 4, 0).unwrap();
        let b =
            ldr::build_ldr_file(&read(&tmp.0.join("toy/main.json")), "toy", n, m, k, 4, 0).unwrap();
        let c =
            ldr::build_ldr_file(&read(&tmp.0.join("toy/main.json")), "toy", n, m, k, 4, 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            read::<TrainFile>(&ldr::ldr_file_path(&tmp.0, "toy", n, m, k, 0))
        );
        assert_ne!(a.train, c.train);
    }
    let err = format!("{:#}", ldr::run(ldr_args(&tmp.0, 10, 51, 2)).unwrap_err());
    assert!(
        err.contains("N = 10") && err.contains("M = 51") && err.contains("60"),
        "{err}"
    );
}

/// Training files record the main.json they were built from; `train-sets` rebuilds them once it changed.
#[test]
fn train_sets_rebuild_files_built_from_an_older_main_json() {
    use ia2_data::train_sets::{TrainSetsConfig, run};
    use ia2_runs::provenance::{SourceCheck, check_sources};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let main = data.join("t/main.json");
    let ex = |i: usize| serde_json::json!({"idx": i, "question": format!("q{i}"), "answer": (i % 2).to_string()});
    let write_main = |offset: usize| {
        let v = serde_json::json!({"metadata": {"max_choices": 2}, 
            "train_examples": (0..10).map(|i| ex(i + offset)).collect::<Vec<_>>(),
            "val_examples": (0..3).map(ex).collect::<Vec<_>>()});
        std::fs::create_dir_all(main.parent().unwrap()).unwrap();
        std::fs::write(&main, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    write_main(0);
    let args = || TrainSetsConfig {
        num_runs: 1,
        ..TrainSetsConfig::new("t", data.clone(), vec![2])
    };
    run(args()).unwrap();
    let file = data.join("t/train/2_0.json");
    assert_eq!(
        check_sources(&file, &[&main]).unwrap(),
        SourceCheck::Current
    );
    let old = std::fs::read(&file).unwrap();
    write_main(100);
    assert!(matches!(
        check_sources(&file, &[&main]).unwrap(),
        SourceCheck::Changed(_)
    ));
    run(args()).unwrap();
    assert_ne!(
        std::fs::read(&file).unwrap(),
        old,
        "rebuilt from the new main.json"
    );
    assert_eq!(
        check_sources(&file, &[&main]).unwrap(),
        SourceCheck::Current
    );
}
