//! Pure sampling algorithms, index-level, bit-for-bit equal to the seed's numpy code.

use ia2_rng::RandomState;

/// Index-level content of a training file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainSplit {
    /// Pool positions of the training examples.
    pub train: Vec<usize>,
    /// Pool positions of the dev examples.
    pub dev: Vec<usize>,
    /// Pool positions used by neither.
    pub remaining: Vec<usize>,
    pub demos: DemoIndices,
}

/// Demo choice of a training file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoIndices {
    /// "unique" mode: for training example `i`, positions *within `train`* of its demos, in prompt order.
    PerExample(Vec<Vec<usize>>),
    /// "fixed" mode: pool positions of the shared demos (drawn from `remaining`), in prompt order.
    Fixed(Vec<usize>),
}

/// The seed's per-example demo cap: `min(max_icl_demos, N - 1)` (0 when N <= 1).
pub fn demo_cap(max_icl_demos: usize, n: usize) -> usize {
    max_icl_demos.min(n.saturating_sub(1))
}

/// `rng.choice(a, k, replace=False)` for a 1-d array `a`: `a[permutation(len(a))[:k]]`.
pub fn choice_from<T: Copy>(rng: &mut RandomState, a: &[T], k: usize) -> Vec<T> {
    rng.choice_without_replacement(a.len(), k)
        .into_iter()
        .map(|i| a[i])
        .collect()
}

/// Stage 2 of the seed (`create_training_datasets.py`), run `run` over a pool of `pool_len` examples:
/// `RandomState(run)` shuffles `0..pool_len`; the first `n` are train, the next `min(num_dev, n / 2)` dev (fewer
/// if the pool runs out, like a Python slice), the rest remaining. Demos:
/// * unique: for each training example, the other `n - 1` (a `choice` of `demo_cap` of them when there are
///   more), then `shuffle`d;
/// * fixed: `choice` of `demo_cap` of the remaining examples when there are more, else all of them, then
///   `shuffle`d (none when nothing remains).
///
/// The caller must ensure `n <= pool_len`.
pub fn training_split(
    pool_len: usize,
    n: usize,
    num_dev: usize,
    max_icl_demos: usize,
    fixed: bool,
    run: u32,
) -> TrainSplit {
    assert!(n <= pool_len, "N = {n} exceeds the pool size {pool_len}");
    let mut rng = RandomState::new(run);
    let all = rng.permutation(pool_len);
    let ndev = num_dev.min(n / 2);
    let dev_end = (n + ndev).min(pool_len);
    let train = all[..n].to_vec();
    let dev = all[n..dev_end].to_vec();
    let remaining = all[dev_end..].to_vec();
    let cap = demo_cap(max_icl_demos, n);
    let demos = if fixed {
        let mut list = if remaining.is_empty() {
            Vec::new()
        } else if remaining.len() > cap {
            choice_from(&mut rng, &remaining, cap)
        } else {
            remaining.clone()
        };
        if !list.is_empty() {
            rng.shuffle(&mut list);
        }
        DemoIndices::Fixed(list)
    } else {
        let lists = (0..n)
            .map(|i| {
                let available: Vec<usize> = (0..n).filter(|&j| j != i).collect();
                let mut list = if available.len() > cap {
                    choice_from(&mut rng, &available, cap)
                } else {
                    available
                };
                rng.shuffle(&mut list);
                list
            })
            .collect();
        DemoIndices::PerExample(lists)
    };
    TrainSplit {
        train,
        dev,
        remaining,
        demos,
    }
}

/// Stage 3 of the seed (`create_or_load_evaluation_dataset`): one `RandomState(run)` walks `num_eval` evaluation
/// examples in order; each gets `choice(pool_len, d, replace=False)`, i.e. the first `d` of a fresh permutation
/// of the pool, in sampled order. Returns positions within the pool. The caller ensures `d <= pool_len`.
pub fn eval_demo_positions(
    num_eval: usize,
    pool_len: usize,
    d: usize,
    run: u32,
) -> Vec<Vec<usize>> {
    assert!(
        d <= pool_len,
        "{d} demos requested from a pool of {pool_len}"
    );
    let mut rng = RandomState::new(run);
    (0..num_eval)
        .map(|_| rng.choice_without_replacement(pool_len, d))
        .collect()
}

/// Index-level content of an LDR file (see [`crate::ldr`] for the semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdrSplit {
    /// Pool positions of the N labelled demos, in base order.
    pub labelled: Vec<usize>,
    /// Pool positions of the M unlabelled training queries.
    pub queries: Vec<usize>,
    /// Pool positions of the dev queries.
    pub dev: Vec<usize>,
    /// Pool positions used by none of the above.
    pub remaining: Vec<usize>,
    /// The distinct demo orders, each a permutation of `0..N` (positions within `labelled`).
    pub permutations: Vec<Vec<usize>>,
}

impl LdrSplit {
    /// The demo order of query / dev example `j`: permutations are used cyclically.
    pub fn order_for(&self, j: usize) -> &[usize] {
        &self.permutations[j % self.permutations.len()]
    }
}

/// `n!`, saturating at `usize::MAX`.
pub fn factorial_saturating(n: usize) -> usize {
    (1..=n)
        .try_fold(1usize, |acc, k| acc.checked_mul(k))
        .unwrap_or(usize::MAX)
}

/// All permutations of `0..n` in lexicographic order.
fn all_permutations(n: usize) -> Vec<Vec<usize>> {
    let mut cur: Vec<usize> = (0..n).collect();
    let mut out = vec![cur.clone()];
    loop {
        // Next lexicographic permutation.
        let Some(i) = (1..n).rev().find(|&i| cur[i - 1] < cur[i]) else {
            return out;
        };
        let j = (i..n)
            .rev()
            .find(|&j| cur[j] > cur[i - 1])
            .expect("a larger element exists");
        cur.swap(i - 1, j);
        cur[i..].reverse();
        out.push(cur.clone());
    }
}

/// LDR split: `RandomState(run).permutation(pool_len)` gives, in order, N labelled demos, M queries, then
/// `min(num_dev, M / 2)` dev queries (fewer if the pool runs out), then the remaining positions. The same
/// generator then draws `P = min(K, N!)` distinct demo orders: when `N! <= K` all of them (lexicographic order,
/// then shuffled), else random `permutation(N)` draws, skipping repeats. The caller ensures
/// `n >= 1`, `k >= 1` and `n + m <= pool_len`.
pub fn ldr_split(
    pool_len: usize,
    n: usize,
    m: usize,
    k: usize,
    num_dev: usize,
    run: u32,
) -> LdrSplit {
    assert!(n >= 1 && k >= 1, "LDR needs N >= 1 and K >= 1");
    assert!(
        n + m <= pool_len,
        "N + M = {} exceeds the pool size {pool_len}",
        n + m
    );
    let mut rng = RandomState::new(run);
    let all = rng.permutation(pool_len);
    let ndev = num_dev.min(m / 2);
    let dev_end = (n + m + ndev).min(pool_len);
    let labelled = all[..n].to_vec();
    let queries = all[n..n + m].to_vec();
    let dev = all[n + m..dev_end].to_vec();
    let remaining = all[dev_end..].to_vec();
    let total = factorial_saturating(n);
    let permutations = if total <= k {
        let mut perms = all_permutations(n);
        rng.shuffle(&mut perms);
        perms
    } else {
        let mut seen = std::collections::HashSet::new();
        let mut perms = Vec::with_capacity(k);
        while perms.len() < k {
            let p = rng.permutation(n);
            if seen.insert(p.clone()) {
                perms.push(p);
            }
        }
        perms
    };
    LdrSplit {
        labelled,
        queries,
        dev,
        remaining,
        permutations,
    }
}
