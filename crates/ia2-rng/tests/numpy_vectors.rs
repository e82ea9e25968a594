//! Checks every stream against vectors produced by real numpy (`tests/data/gen_vectors.py`).

use ia2_rng::{Generator, RandomState, SeedSequence};
use serde_json::Value;

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/numpy_vectors.json"
    ))
    .expect("reading numpy_vectors.json");
    serde_json::from_str(&text).expect("parsing numpy_vectors.json")
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    u64s(v).into_iter().map(|x| x as usize).collect()
}

/// Doubles are stored as their IEEE-754 bit patterns.
fn f64s(v: &Value) -> Vec<f64> {
    u64s(v).into_iter().map(f64::from_bits).collect()
}

/// Compares a permutation with numpy's (full, or prefix + suffix + checksum for long ones).
fn check_perm(p: &[usize], expected: &Value, what: &str) {
    let n = expected["n"].as_u64().unwrap() as usize;
    assert_eq!(p.len(), n, "{what}: length");
    if let Some(full) = expected.get("full") {
        assert_eq!(p, usizes(full).as_slice(), "{what}");
        return;
    }
    assert_eq!(
        &p[..32],
        usizes(&expected["prefix"]).as_slice(),
        "{what}: prefix"
    );
    assert_eq!(
        &p[n - 32..],
        usizes(&expected["suffix"]).as_slice(),
        "{what}: suffix"
    );
    let checksum: u64 = p
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u64 + 1) * v as u64)
        .sum();
    assert_eq!(
        checksum,
        expected["checksum"].as_u64().unwrap(),
        "{what}: checksum"
    );
}

#[test]
fn seed_sequence_state_matches_numpy() {
    for e in vectors()["generator"].as_array().unwrap() {
        let seed = e["seed"].as_u64().unwrap();
        let state: Vec<u64> = SeedSequence::new(seed)
            .generate_state(8)
            .into_iter()
            .map(u64::from)
            .collect();
        assert_eq!(state, u64s(&e["seed_sequence_state_u32"]), "seed {seed}");
    }
}

#[test]
fn pcg64_raw_and_doubles_match_numpy() {
    for e in vectors()["generator"].as_array().unwrap() {
        let seed = e["seed"].as_u64().unwrap();
        let mut g = Generator::new(seed);
        let raw: Vec<u64> = (0..8).map(|_| g.next_u64()).collect();
        assert_eq!(raw, u64s(&e["raw_u64"]), "seed {seed}");
        let mut g = Generator::new(seed);
        let doubles: Vec<f64> = (0..4).map(|_| g.random()).collect();
        assert_eq!(doubles, f64s(&e["random_bits"]), "seed {seed}");
    }
}

#[test]
fn generator_permutations_match_numpy() {
    for e in vectors()["generator"].as_array().unwrap() {
        let seed = e["seed"].as_u64().unwrap();
        for exp in e["permutations"].as_array().unwrap() {
            let n = exp["n"].as_u64().unwrap() as usize;
            check_perm(
                &Generator::new(seed).permutation(n),
                exp,
                &format!("default_rng({seed}).permutation({n})"),
            );
        }
        let mut g = Generator::new(seed);
        for exp in e["successive_permutations"].as_array().unwrap() {
            let n = exp["n"].as_u64().unwrap() as usize;
            check_perm(
                &g.permutation(n),
                exp,
                &format!("seed {seed}: successive permutation({n})"),
            );
        }
    }
}

#[test]
fn generator_shuffle_equals_permutation_of_any_items() {
    let mut items: Vec<String> = (0..50).map(|i| format!("item{i}")).collect();
    Generator::new(7).shuffle(&mut items);
    let perm = Generator::new(7).permutation(50);
    let expected: Vec<String> = perm.iter().map(|i| format!("item{i}")).collect();
    assert_eq!(items, expected);
}

#[test]
fn random_state_streams_match_numpy() {
    for e in vectors()["random_state"].as_array().unwrap() {
        let seed = e["seed"].as_u64().unwrap() as u32;
        let mut rs = RandomState::new(seed);
        let raw: Vec<u64> = (0..8).map(|_| u64::from(rs.next_u32())).collect();
        assert_eq!(raw, u64s(&e["raw_u32"]), "seed {seed}");
        let mut rs = RandomState::new(seed);
        let samples: Vec<f64> = (0..4).map(|_| rs.random_sample()).collect();
        assert_eq!(samples, f64s(&e["random_sample_bits"]), "seed {seed}");
    }
}

#[test]
fn random_state_permutations_match_numpy() {
    for e in vectors()["random_state"].as_array().unwrap() {
        let seed = e["seed"].as_u64().unwrap() as u32;
        for exp in e["permutations"].as_array().unwrap() {
            let n = exp["n"].as_u64().unwrap() as usize;
            check_perm(
                &RandomState::new(seed).permutation(n),
                exp,
                &format!("RandomState({seed}).permutation({n})"),
            );
        }
        let mut rs = RandomState::new(seed);
        for exp in e["successive_permutations"].as_array().unwrap() {
            let n = exp["n"].as_u64().unwrap() as usize;
            check_perm(
                &rs.permutation(n),
                exp,
                &format!("seed {seed}: successive permutation({n})"),
            );
        }
    }
}

#[test]
fn random_state_choice_randint_and_list_shuffle_match_numpy() {
    for e in vectors()["random_state"].as_array().unwrap() {
        let seed = e["seed"].as_u64().unwrap() as u32;
        let mut rs = RandomState::new(seed);
        for c in e["successive_choices"].as_array().unwrap() {
            let (n, k) = (
                c["n"].as_u64().unwrap() as usize,
                c["k"].as_u64().unwrap() as usize,
            );
            assert_eq!(
                rs.choice_without_replacement(n, k),
                usizes(&c["out"]),
                "seed {seed}: choice({n}, {k})"
            );
        }
        let mut rs = RandomState::new(seed);
        for c in e["successive_randint"].as_array().unwrap() {
            let (low, high) = (c["low"].as_i64().unwrap(), c["high"].as_i64().unwrap());
            let got: Vec<i64> = (0..3).map(|_| rs.randint(low, high)).collect();
            let want: Vec<i64> = c["out"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            assert_eq!(got, want, "seed {seed}: randint({low}, {high})");
        }
        let mut rs = RandomState::new(seed);
        let mut list: Vec<usize> = (0..12).collect();
        rs.shuffle(&mut list);
        let exp = &e["list_shuffle_12_then_sample"];
        assert_eq!(list, usizes(&exp["shuffled"]), "seed {seed}: shuffle");
        assert_eq!(
            rs.random_sample(),
            f64::from_bits(exp["next_sample_bits"].as_u64().unwrap()),
            "seed {seed}: sample after shuffle"
        );
    }
}

#[test]
fn random_state_array_seeds_match_numpy() {
    for e in vectors()["random_state_array"].as_array().unwrap() {
        let key: Vec<u32> = u64s(&e["key"]).into_iter().map(|x| x as u32).collect();
        let mut rs = RandomState::from_array(&key);
        let raw: Vec<u64> = (0..8).map(|_| u64::from(rs.next_u32())).collect();
        assert_eq!(raw, u64s(&e["raw_u32"]), "key of length {}", key.len());
    }
}

/// data.md stage 2 vectors: `RandomState(run).shuffle(arange(2000))`, first 4 = train, next 2 = dev.
#[test]
fn data_md_training_split_vectors() {
    let p0 = RandomState::new(0).permutation(2000);
    assert_eq!(&p0[..4], &[405, 1190, 1132, 731]);
    assert_eq!(&p0[4..6], &[1754, 1178]);
    assert_eq!(&p0[6..11], &[1533, 1303, 1857, 18, 1266]);
    let p1 = RandomState::new(1).permutation(2000);
    assert_eq!(&p1[..4], &[674, 1699, 1282, 1315]);
    assert_eq!(&p1[4..6], &[1210, 1636]);
}
