"""Expected index-level splits, computed with real numpy following the seed's procedure
(scripts/create_training_datasets.py and create_or_load_evaluation_dataset in aamixsh/ia2).

Run: python3 gen_split_vectors.py  -> split_vectors.json (the Rust tests only read the JSON).
"""
import json
import os

import numpy as np


def training_split(pool_len, n, num_dev, max_icl_demos, fixed, run):
    rng = np.random.RandomState(run)
    order = list(range(pool_len))
    rng.shuffle(order)
    ndev = min(num_dev, n // 2)
    train, dev, rest = order[:n], order[n:n + ndev], order[n + ndev:]
    cap = min(max_icl_demos, n - 1 if n > 1 else 0)
    if fixed:
        if not rest:
            demos = []
        else:
            demos = list(rng.choice(rest, cap, replace=False)) if len(rest) > cap else list(rest)
            rng.shuffle(demos)
        demos = [int(x) for x in demos]
    else:
        demos = []
        for i in range(n):
            others = [j for j in range(n) if j != i]
            chosen = list(rng.choice(others, cap, replace=False)) if len(others) > cap else others
            rng.shuffle(chosen)
            demos.append([int(x) for x in chosen])
    return {"train": train, "dev": dev, "remaining_len": len(rest), "remaining_head": rest[:20],
            "remaining_tail": rest[-20:], "demos": demos}


def eval_positions(num_eval, pool_len, d, run):
    rng = np.random.RandomState(run)
    return [[int(x) for x in rng.choice(list(range(pool_len)), d, replace=False)] for _ in range(num_eval)]


cases = []
for pool_len in [2000, 37]:
    for n in [1, 2, 4, 8, 16, 64]:
        if n > pool_len:
            continue
        for max_demos in [256, 5]:
            for fixed in [False, True]:
                for run in [0, 1, 4]:
                    c = {"pool_len": pool_len, "n": n, "num_dev": 48, "max_icl_demos": max_demos, "fixed": fixed, "run": run}
                    c.update(training_split(pool_len, n, 48, max_demos, fixed, run))
                    cases.append(c)
# Pool exhausted before the dev split is full (Python slices shorten silently).
for n in [30, 37]:
    c = {"pool_len": 37, "n": n, "num_dev": 48, "max_icl_demos": 4, "fixed": False, "run": 2}
    c.update(training_split(37, n, 48, 4, False, 2))
    cases.append(c)

evals = []
for num_eval, pool_len, d, run in [(5, 1994, 3, 0), (4, 1900, 48, 1), (3, 10, 10, 2), (2, 7, 0, 3)]:
    evals.append({"num_eval": num_eval, "pool_len": pool_len, "d": d, "run": run,
                  "positions": eval_positions(num_eval, pool_len, d, run)})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "split_vectors.json")
with open(path, "w") as f:
    json.dump({"numpy_version": np.__version__, "training": cases, "eval": evals}, f, separators=(",", ":"))
    f.write("\n")
print("wrote", path, os.path.getsize(path), "bytes")
