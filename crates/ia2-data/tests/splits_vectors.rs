//! The index-level split algorithms against vectors computed with real numpy following the seed's procedure
//! (`tests/splits_vectors/gen_split_vectors.py`), and data.md's published vectors.

use ia2_data::splits::sample::{DemoIndices, eval_demo_positions, training_split};
use serde_json::Value;

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/splits_vectors/split_vectors.json"
    ))
    .expect("reading split_vectors.json");
    serde_json::from_str(&text).expect("parsing split_vectors.json")
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn num(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

#[test]
fn training_splits_match_numpy_seed_procedure() {
    let v = vectors();
    let cases = v["training"].as_array().unwrap();
    assert!(cases.len() > 100);
    for c in cases {
        let (pool, n, run) = (
            num(&c["pool_len"]),
            num(&c["n"]),
            c["run"].as_u64().unwrap() as u32,
        );
        let fixed = c["fixed"].as_bool().unwrap();
        let what = format!(
            "pool {pool} N {n} max {} fixed {fixed} run {run}",
            c["max_icl_demos"]
        );
        let s = training_split(
            pool,
            n,
            num(&c["num_dev"]),
            num(&c["max_icl_demos"]),
            fixed,
            run,
        );
        assert_eq!(s.train, usizes(&c["train"]), "{what}: train");
        assert_eq!(s.dev, usizes(&c["dev"]), "{what}: dev");
        assert_eq!(
            s.remaining.len(),
            num(&c["remaining_len"]),
            "{what}: remaining length"
        );
        let head = usizes(&c["remaining_head"]);
        let tail = usizes(&c["remaining_tail"]);
        assert_eq!(
            &s.remaining[..head.len()],
            head.as_slice(),
            "{what}: remaining head"
        );
        assert_eq!(
            &s.remaining[s.remaining.len() - tail.len()..],
            tail.as_slice(),
            "{what}: remaining tail"
        );
        match (&s.demos, fixed) {
            (DemoIndices::Fixed(d), true) => assert_eq!(d, &usizes(&c["demos"]), "{what}: demos"),
            (DemoIndices::PerExample(d), false) => {
                let want: Vec<Vec<usize>> =
                    c["demos"].as_array().unwrap().iter().map(usizes).collect();
                assert_eq!(d, &want, "{what}: demos");
            }
            _ => panic!("{what}: wrong demo mode"),
        }
    }
}

#[test]
fn eval_demo_positions_match_numpy_seed_procedure() {
    for c in vectors()["eval"].as_array().unwrap() {
        let got = eval_demo_positions(
            num(&c["num_eval"]),
            num(&c["pool_len"]),
            num(&c["d"]),
            c["run"].as_u64().unwrap() as u32,
        );
        let want: Vec<Vec<usize>> = c["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(usizes)
            .collect();
        assert_eq!(got, want, "{c:?}");
    }
}

/// data.md, stage 2: 2000-row pool, N=4, num_dev=48, max_icl_demos=256.
#[test]
fn data_md_published_vectors() {
    let s = training_split(2000, 4, 48, 256, false, 0);
    assert_eq!(s.train, vec![405, 1190, 1132, 731]);
    assert_eq!(s.dev, vec![1754, 1178]);
    assert_eq!(&s.remaining[..5], &[1533, 1303, 1857, 18, 1266]);
    assert_eq!(
        s.demos,
        DemoIndices::PerExample(vec![
            vec![2, 3, 1],
            vec![0, 3, 2],
            vec![0, 3, 1],
            vec![2, 0, 1]
        ])
    );
    let s = training_split(2000, 4, 48, 256, false, 1);
    assert_eq!(s.train, vec![674, 1699, 1282, 1315]);
    assert_eq!(s.dev, vec![1210, 1636]);
    assert_eq!(
        s.demos,
        DemoIndices::PerExample(vec![
            vec![2, 1, 3],
            vec![2, 0, 3],
            vec![0, 1, 3],
            vec![2, 1, 0]
        ])
    );
}
