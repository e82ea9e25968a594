//! The task family: seeded determinism, the held-out split, and labels unknowable without demos.

use ia2_rng::Generator;
use ia2_toy::task::{
    self, CLASSES, HELD_OUT_ONE_IN, LABELS, NUM_CLASSES, NUM_WORDS, Pair, Split, Task,
    WORDS_PER_CLASS,
};
use std::collections::{BTreeSet, HashMap};

fn every_task() -> Vec<Task> {
    let mut out = Vec::new();
    for c0 in 0..NUM_CLASSES {
        for c1 in (0..NUM_CLASSES).filter(|&c| c != c0) {
            for l0 in 0..LABELS.len() {
                for l1 in (0..LABELS.len()).filter(|&l| l != l0) {
                    out.push(Task {
                        classes: [c0, c1],
                        labels: [l0, l1],
                        words_per_class: WORDS_PER_CLASS,
                    });
                }
            }
        }
    }
    out
}

#[test]
fn word_lists_are_distinct_and_disjoint_from_labels() {
    let words: BTreeSet<&str> = (0..NUM_WORDS).map(task::word).collect();
    assert_eq!(words.len(), NUM_WORDS, "a word appears in two classes");
    for w in &words {
        assert!(w.chars().all(|c| c.is_ascii_lowercase()), "{w:?}");
        assert!(!LABELS.contains(w), "{w} is also a label");
    }
    assert_eq!(LABELS.iter().collect::<BTreeSet<_>>().len(), LABELS.len());
    for (c, (_, ws)) in CLASSES.iter().enumerate() {
        for w in ws {
            let id = (0..NUM_WORDS).find(|&i| task::word(i) == *w).unwrap();
            assert_eq!(task::class_of(id), c);
        }
    }
}

#[test]
fn sampling_is_seeded_and_deterministic() {
    let draw = |seed: u64| {
        let mut rng = Generator::new(seed);
        let t = Task::sample(&mut rng, Split::Train);
        (t, t.sample_pairs(&mut rng, 10, &[]))
    };
    assert_eq!(draw(7), draw(7));
    let distinct: BTreeSet<String> = (0..20).map(|s| format!("{:?}", draw(s))).collect();
    assert!(
        distinct.len() >= 19,
        "different seeds should give different tasks"
    );
    assert_eq!(Task::held_out_from_seed(3), Task::held_out_from_seed(3));
}

#[test]
fn the_held_out_split_is_structural_and_never_sampled_for_training() {
    let all = every_task();
    let held: Vec<&Task> = all.iter().filter(|t| t.is_held_out()).collect();
    let frac = held.len() as f64 / all.len() as f64;
    let want = 1.0 / HELD_OUT_ONE_IN as f64;
    assert!((frac - want).abs() < 0.03, "held-out fraction {frac}");
    // The split ignores the order of the classes.
    for t in &all {
        let swapped = Task {
            classes: [t.classes[1], t.classes[0]],
            labels: [t.labels[1], t.labels[0]],
            ..*t
        };
        assert_eq!(t.is_held_out(), swapped.is_held_out());
    }
    let mut rng = Generator::new(1);
    for _ in 0..2000 {
        assert!(!Task::sample(&mut rng, Split::Train).is_held_out());
        assert!(Task::sample(&mut rng, Split::HeldOut).is_held_out());
    }
    for seed in 0..50 {
        assert!(Task::held_out_from_seed(seed).is_held_out());
    }
}

/// Without demos a query's label cannot be known: over the training tasks that contain a word's class, every
/// label is (about) equally likely, so no fixed word → label rule beats chance.
#[test]
fn labels_are_unknowable_without_demos() {
    let mut rng = Generator::new(11);
    let query = 0; // "cat"
    let mut counts: HashMap<usize, usize> = HashMap::new();
    let mut n = 0;
    while n < 16_000 {
        let t = Task::sample(&mut rng, Split::Train);
        if let Some(l) = t.label_of(query) {
            *counts.entry(l).or_default() += 1;
            n += 1;
        }
    }
    assert_eq!(counts.len(), LABELS.len(), "every label occurs");
    let expected = n as f64 / LABELS.len() as f64;
    let best = *counts.values().max().unwrap() as f64;
    // The best fixed guess is right for at most ~1/16 of the tasks (+ sampling noise).
    assert!(
        best / (n as f64) < 1.0 / LABELS.len() as f64 + 0.015,
        "label frequencies {counts:?} (expected {expected} each)"
    );
}

#[test]
fn examples_follow_the_task_and_the_seed_prompt_format() {
    let mut rng = Generator::new(5);
    let t = Task::sample(&mut rng, Split::Train);
    let exclude = [t.words()[0]];
    let pairs = t.sample_pairs(&mut rng, 30, &exclude);
    assert_eq!(pairs.len(), 30);
    let words: BTreeSet<usize> = pairs.iter().map(|p| p.word).collect();
    assert_eq!(words.len(), 30, "words within a prompt are distinct");
    assert!(!words.contains(&exclude[0]));
    for p in &pairs {
        assert_eq!(t.label_of(p.word), Some(p.label));
    }
    // 48 words in a task: asking for more returns them all, once.
    assert_eq!(t.sample_pairs(&mut rng, 100, &[]).len(), 48);
    let bal = t.sample_balanced(&mut rng, 4, &[]);
    for slot in 0..2 {
        let n = bal.iter().filter(|p| p.label == t.labels[slot]).count();
        assert_eq!(n, 2, "balanced demos show each class twice");
    }

    let demo = |w: &str, l: &str| Pair {
        word: (0..NUM_WORDS).find(|&i| task::word(i) == w).unwrap(),
        label: LABELS.iter().position(|x| *x == l).unwrap(),
    };
    assert_eq!(
        task::prompt(
            &[demo("cat", "alpha"), demo("apple", "beta")],
            demo("dog", "alpha")
        ),
        "Text:cat\nLabel:alpha\n\nText:apple\nLabel:beta\n\nText:dog\nLabel:"
    );
    assert_eq!(task::prompt(&[], demo("dog", "alpha")), "Text:dog\nLabel:");
}
