"""Generates tests/data/numpy_vectors.json with real numpy (run: python3 gen_vectors.py).

The Rust tests only read the JSON; this script documents where every vector came from.
Doubles are stored as IEEE-754 bit patterns. Long permutations are stored as prefix, suffix and a checksum sum((i + 1) * p[i]).
"""
import json
import os

import numpy as np


def bits(x):
    """A double as its IEEE-754 bit pattern (exact through any JSON parser)."""
    return int(np.float64(x).view(np.uint64))


def summarize(p):
    p = [int(v) for v in p]
    if len(p) <= 64:
        return {"n": len(p), "full": p}
    return {
        "n": len(p),
        "prefix": p[:32],
        "suffix": p[-32:],
        "checksum": sum((i + 1) * v for i, v in enumerate(p)),
    }


SIZES = [0, 1, 2, 10, 63, 2000, 67349]
out = {"numpy_version": np.__version__, "generator": [], "random_state": [], "random_state_array": []}

for seed in [0, 1, 42, 12345, 2**32 - 1, 2**32 + 5, 2**63 + 7]:
    entry = {"seed": seed}
    entry["seed_sequence_state_u32"] = [int(v) for v in np.random.SeedSequence(seed).generate_state(8, np.uint32)]
    entry["raw_u64"] = [int(v) for v in np.random.default_rng(seed).bit_generator.random_raw(8)]
    entry["random_bits"] = [bits(v) for v in np.random.default_rng(seed).random(4)]
    entry["permutations"] = [summarize(np.random.default_rng(seed).permutation(n)) for n in SIZES]
    # Successive draws from one generator, exercising the buffered 32-bit half across calls.
    g = np.random.default_rng(seed)
    entry["successive_permutations"] = [summarize(g.permutation(n)) for n in [3, 5, 10, 1, 7]]
    out["generator"].append(entry)

for seed in [0, 1, 2, 3, 42, 2**32 - 1]:
    entry = {"seed": seed}
    rs = np.random.RandomState(seed)
    entry["raw_u32"] = [int(v) for v in rs.randint(0, 2**32, size=8)]
    entry["random_sample_bits"] = [bits(v) for v in np.random.RandomState(seed).random_sample(4)]
    entry["permutations"] = [summarize(np.random.RandomState(seed).permutation(n)) for n in SIZES]
    rs = np.random.RandomState(seed)
    entry["successive_permutations"] = [summarize(rs.permutation(n)) for n in [3, 5, 10, 1, 7]]
    choices = []
    rs = np.random.RandomState(seed)
    for n, k in [(10, 3), (2000, 5), (5, 5), (7, 0), (300, 256)]:
        choices.append({"n": n, "k": k, "out": [int(v) for v in rs.choice(n, k, replace=False)]})
    entry["successive_choices"] = choices
    ints = []
    rs = np.random.RandomState(seed)
    for low, high in [(0, 1), (0, 2), (-5, 5), (0, 1000), (10, 2**31), (0, 2**32), (0, 2**40), (-(2**62), 2**62)]:
        ints.append({"low": low, "high": high, "out": [int(rs.randint(low, high)) for _ in range(3)]})
    entry["successive_randint"] = ints
    # List shuffle (legacy algorithm for Python lists) interleaved with a sample.
    rs = np.random.RandomState(seed)
    lst = list(range(12))
    rs.shuffle(lst)
    entry["list_shuffle_12_then_sample"] = {"shuffled": lst, "next_sample_bits": bits(rs.random_sample())}
    out["random_state"].append(entry)

for key in [[1, 2, 3], [0x123, 0x234, 0x345, 0x456], [5], list(range(700))]:
    rs = np.random.RandomState(key)
    out["random_state_array"].append({"key": key, "raw_u32": [int(v) for v in rs.randint(0, 2**32, size=8)]})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "numpy_vectors.json")
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"))
    f.write("\n")
print("wrote", path, os.path.getsize(path), "bytes")
