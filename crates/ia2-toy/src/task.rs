//! The synthetic in-context task family.
//!
//! Words belong to [`NUM_CLASSES`] fixed hidden classes (animals, fruits, ...). A *task* picks two of the
//! classes and assigns each a label word drawn from [`LABELS`]; its examples are `Text:{word}\nLabel:{label}`.
//! The class of a word never changes, so a model can learn it; the label of a class is drawn per task,
//! uniformly and independently of the words (only the held-out rule below removes some assignments), so
//! without demos the label of a query cannot be known
//! (chance: 1 / [`LABELS`]`.len()`, or 1/2 among the task's two labels). With a demo of the query's class in
//! the prompt, it can: find the demo whose word is of the same class and copy its label.
//!
//! Held-out tasks are a fixed, structural subset of all tasks (about 1 in [`HELD_OUT_ONE_IN`] of the
//! (class, label) assignments, see [`Task::is_held_out`]): pretraining never sees any of them, so accuracy
//! measured on them is in-context learning, not recall.
//!
//! Every random choice comes from an explicit seed through `ia2_rng::Generator` (numpy's PCG64 stream).

use ia2_data::schema::{Example, icl_prompt};
use ia2_rng::Generator;

/// Bumped whenever the word lists, labels, held-out rule or sampling below change (it keys the model cache).
pub const FAMILY_VERSION: u32 = 1;

/// Number of hidden classes.
pub const NUM_CLASSES: usize = 8;
/// Words per class.
pub const WORDS_PER_CLASS: usize = 24;
/// Classes (and labels) per task.
pub const CLASSES_PER_TASK: usize = 2;
/// About one task in this many is held out of pretraining.
pub const HELD_OUT_ONE_IN: u64 = 8;

/// The hidden classes: a name (documentation only; the model never sees it) and the class's words.
pub const CLASSES: [(&str, [&str; WORDS_PER_CLASS]); NUM_CLASSES] = [
    (
        "animal",
        [
            "cat", "dog", "horse", "cow", "sheep", "goat", "pig", "lion", "tiger", "bear", "wolf",
            "fox", "deer", "rabbit", "mouse", "camel", "zebra", "monkey", "eagle", "owl", "shark",
            "whale", "frog", "snake",
        ],
    ),
    (
        "fruit",
        [
            "apple",
            "banana",
            "cherry",
            "grape",
            "lemon",
            "lime",
            "mango",
            "melon",
            "orange",
            "peach",
            "pear",
            "plum",
            "kiwi",
            "papaya",
            "apricot",
            "fig",
            "guava",
            "date",
            "coconut",
            "berry",
            "olive",
            "quince",
            "lychee",
            "nectarine",
        ],
    ),
    (
        "vehicle",
        [
            "car",
            "bus",
            "truck",
            "train",
            "tram",
            "bicycle",
            "scooter",
            "taxi",
            "van",
            "tractor",
            "ship",
            "boat",
            "canoe",
            "yacht",
            "ferry",
            "plane",
            "jet",
            "helicopter",
            "rocket",
            "subway",
            "wagon",
            "sled",
            "kayak",
            "glider",
        ],
    ),
    (
        "instrument",
        [
            "piano",
            "guitar",
            "violin",
            "cello",
            "flute",
            "trumpet",
            "drum",
            "harp",
            "banjo",
            "oboe",
            "clarinet",
            "tuba",
            "trombone",
            "saxophone",
            "ukulele",
            "accordion",
            "harmonica",
            "bagpipe",
            "mandolin",
            "sitar",
            "xylophone",
            "cymbal",
            "organ",
            "bassoon",
        ],
    ),
    (
        "clothing",
        [
            "shirt", "jacket", "coat", "dress", "skirt", "sweater", "hat", "cap", "scarf", "glove",
            "sock", "shoe", "boot", "sandal", "belt", "tie", "vest", "hoodie", "jeans", "shorts",
            "blouse", "kimono", "poncho", "apron",
        ],
    ),
    (
        "furniture",
        [
            "chair",
            "table",
            "sofa",
            "bed",
            "desk",
            "shelf",
            "stool",
            "bench",
            "cabinet",
            "dresser",
            "wardrobe",
            "couch",
            "armchair",
            "bookcase",
            "cupboard",
            "ottoman",
            "crib",
            "hammock",
            "futon",
            "recliner",
            "sideboard",
            "nightstand",
            "mattress",
            "counter",
        ],
    ),
    (
        "sport",
        [
            "soccer",
            "tennis",
            "golf",
            "hockey",
            "rugby",
            "cricket",
            "baseball",
            "basketball",
            "volleyball",
            "boxing",
            "judo",
            "karate",
            "fencing",
            "rowing",
            "cycling",
            "surfing",
            "skiing",
            "swimming",
            "archery",
            "bowling",
            "polo",
            "curling",
            "wrestling",
            "badminton",
        ],
    ),
    (
        "profession",
        [
            "doctor",
            "nurse",
            "teacher",
            "farmer",
            "baker",
            "pilot",
            "lawyer",
            "judge",
            "chef",
            "singer",
            "painter",
            "writer",
            "dancer",
            "actor",
            "plumber",
            "builder",
            "sailor",
            "soldier",
            "banker",
            "dentist",
            "tailor",
            "miner",
            "poet",
            "carpenter",
        ],
    ),
];

/// The label words a task draws its labels from.
pub const LABELS: [&str; 16] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma",
    "omega", "rho", "tau", "phi", "psi", "chi",
];

/// Number of words over all classes; word ids are `class * WORDS_PER_CLASS + index`.
pub const NUM_WORDS: usize = NUM_CLASSES * WORDS_PER_CLASS;

/// The text of word `id`.
pub fn word(id: usize) -> &'static str {
    CLASSES[id / WORDS_PER_CLASS].1[id % WORDS_PER_CLASS]
}

/// The hidden class of word `id`.
pub fn class_of(id: usize) -> usize {
    id / WORDS_PER_CLASS
}

/// Which tasks a sampler draws: those pretraining may see, or the held-out ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    HeldOut,
}

/// The part of the family tasks are drawn from: the first `classes` classes and the first `words_per_class`
/// words of each. The model and its cache use [`Scope::FULL`]; smaller scopes are easier and make quick tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub classes: usize,
    pub words_per_class: usize,
}

impl Scope {
    pub const FULL: Scope = Scope {
        classes: NUM_CLASSES,
        words_per_class: WORDS_PER_CLASS,
    };

    /// Checks the bounds (user input).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (CLASSES_PER_TASK..=NUM_CLASSES).contains(&self.classes),
            "scope: classes must be in {CLASSES_PER_TASK}..={NUM_CLASSES}"
        );
        anyhow::ensure!(
            (2..=WORDS_PER_CLASS).contains(&self.words_per_class),
            "scope: words_per_class must be in 2..={WORDS_PER_CLASS}"
        );
        Ok(())
    }
}

impl Default for Scope {
    fn default() -> Self {
        Scope::FULL
    }
}

/// One task: `classes[i]` is labelled `LABELS[labels[i]]`; its examples use the first `words_per_class` words
/// of each class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Task {
    pub classes: [usize; CLASSES_PER_TASK],
    pub labels: [usize; CLASSES_PER_TASK],
    pub words_per_class: usize,
}

/// One example of a task: a word and the label index (into [`LABELS`]) of its class in that task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub word: usize,
    pub label: usize,
}

impl Pair {
    /// `Text:{word}\nLabel:` with `{label}` as the answer, in the seed's schema.
    pub fn to_example(self, idx: usize) -> Example {
        Example {
            idx,
            question: question(word(self.word)),
            answer: LABELS[self.label].to_string(),
        }
    }
}

/// The question of a word, in the seed's classification template.
pub fn question(word: &str) -> String {
    format!("Text:{word}\nLabel:")
}

/// The prompt the model sees for `query` after `demos` (the seed's format: demos `question+answer` joined and
/// followed by blank lines).
pub fn prompt(demos: &[Pair], query: Pair) -> String {
    let demos: Vec<Example> = demos
        .iter()
        .enumerate()
        .map(|(i, d)| d.to_example(i))
        .collect();
    let refs: Vec<&Example> = demos.iter().collect();
    icl_prompt(&refs, &query.to_example(demos.len()))
}

/// SplitMix64 finalizer: a fixed, explicit hash for the held-out rule (std's hashers may change).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Task {
    /// A uniformly random task of `split` in the full family.
    pub fn sample(rng: &mut Generator, split: Split) -> Task {
        Task::sample_in(rng, split, Scope::FULL)
    }

    /// A uniformly random task of `split` within `scope` (rejection sampling on [`Task::is_held_out`]).
    pub fn sample_in(rng: &mut Generator, split: Split, scope: Scope) -> Task {
        let n = scope.classes;
        loop {
            let c0 = rng.random_interval((n - 1) as u64) as usize;
            let c1 = (c0 + 1 + rng.random_interval((n - 2) as u64) as usize) % n;
            let l0 = rng.random_interval((LABELS.len() - 1) as u64) as usize;
            let l1 =
                (l0 + 1 + rng.random_interval((LABELS.len() - 2) as u64) as usize) % LABELS.len();
            let task = Task {
                classes: [c0, c1],
                labels: [l0, l1],
                words_per_class: scope.words_per_class,
            };
            if task.is_held_out() == (split == Split::HeldOut) {
                return task;
            }
        }
    }

    /// The held-out task of a seed (what `ia2 toy dataset --task-seed` writes).
    pub fn held_out_from_seed(seed: u64) -> Task {
        Task::sample(&mut Generator::new(seed), Split::HeldOut)
    }

    /// Whether this class → label assignment is held out of pretraining. Depends only on the assignment
    /// (not on the order of the two classes, nor on the scope), so no held-out task is ever trained on.
    pub fn is_held_out(&self) -> bool {
        let mut pairs: Vec<(usize, usize)> = self
            .classes
            .iter()
            .copied()
            .zip(self.labels.iter().copied())
            .collect();
        pairs.sort_unstable();
        let key = pairs.iter().fold(
            0x1a2_u64,
            |h, &(c, l)| mix(h ^ ((c as u64) << 8 | l as u64)),
        );
        key % HELD_OUT_ONE_IN == 0
    }

    /// The words of class slot `slot` that this task uses.
    pub fn class_words(&self, slot: usize) -> std::ops::Range<usize> {
        let c = self.classes[slot];
        c * WORDS_PER_CLASS..c * WORDS_PER_CLASS + self.words_per_class
    }

    /// The label index of `word`, or None when the word is not one of the task's.
    pub fn label_of(&self, word: usize) -> Option<usize> {
        (0..CLASSES_PER_TASK)
            .find(|&s| self.class_words(s).contains(&word))
            .map(|s| self.labels[s])
    }

    /// The task's words (both classes), in id order.
    pub fn words(&self) -> Vec<usize> {
        let mut w: Vec<usize> = (0..CLASSES_PER_TASK)
            .flat_map(|s| self.class_words(s))
            .collect();
        w.sort_unstable();
        w
    }

    /// The pair of `word`, when it belongs to the task.
    pub fn pair(&self, word: usize) -> Option<Pair> {
        self.label_of(word).map(|label| Pair { word, label })
    }

    /// `n` examples with distinct words, not in `exclude`: each picks one of the task's classes uniformly,
    /// then an unused word of that class uniformly (a class with no word left falls back to the other; fewer
    /// than `n` come back when every word is used). Distinct words keep exact repeats out of prompts, so
    /// copying a label takes knowing the classes, not matching the word.
    pub fn sample_pairs(&self, rng: &mut Generator, n: usize, exclude: &[usize]) -> Vec<Pair> {
        let mut used: Vec<usize> = exclude.to_vec();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let slot = rng.random_interval((CLASSES_PER_TASK - 1) as u64) as usize;
            let Some(p) = (0..CLASSES_PER_TASK)
                .map(|i| (slot + i) % CLASSES_PER_TASK)
                .find_map(|s| self.draw_unused(rng, s, &used))
            else {
                break;
            };
            used.push(p.word);
            out.push(p);
        }
        out
    }

    /// A uniformly drawn word of class slot `slot` not in `used`.
    fn draw_unused(&self, rng: &mut Generator, slot: usize, used: &[usize]) -> Option<Pair> {
        let free: Vec<usize> = self
            .class_words(slot)
            .filter(|w| !used.contains(w))
            .collect();
        if free.is_empty() {
            return None;
        }
        let w = free[rng.random_interval((free.len() - 1) as u64) as usize];
        Some(Pair {
            word: w,
            label: self.labels[slot],
        })
    }

    /// `n` examples with distinct words, class-balanced: classes alternate from a random first class, then the
    /// order is shuffled (with `n >= 2`, both classes are shown).
    pub fn sample_balanced(&self, rng: &mut Generator, n: usize, exclude: &[usize]) -> Vec<Pair> {
        let first = rng.random_interval((CLASSES_PER_TASK - 1) as u64) as usize;
        let mut used: Vec<usize> = exclude.to_vec();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let slot = (first + i) % CLASSES_PER_TASK;
            if let Some(p) = self.draw_unused(rng, slot, &used) {
                used.push(p.word);
                out.push(p);
            }
        }
        rng.shuffle(&mut out);
        out
    }

    /// A JSON description (for metadata).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "classes": self.classes.iter().map(|&c| CLASSES[c].0).collect::<Vec<_>>(),
            "labels": self.labels.iter().map(|&l| LABELS[l]).collect::<Vec<_>>(),
            "words_per_class": self.words_per_class,
            "held_out": self.is_held_out(),
        })
    }
}

/// A JSON description of the family (for the model's metadata).
pub fn family_json() -> serde_json::Value {
    serde_json::json!({
        "version": FAMILY_VERSION,
        "classes": CLASSES.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "words_per_class": WORDS_PER_CLASS,
        "labels": LABELS,
        "classes_per_task": CLASSES_PER_TASK,
        "held_out_one_in": HELD_OUT_ONE_IN,
        "template": "Text:{word}\\nLabel:{label}, demos joined by blank lines",
    })
}
