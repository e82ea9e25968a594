#!/usr/bin/env python3
"""Expected `ia2 data prepare` outputs, computed the seed's way with real numpy.

Independent Python re-implementation of the pool rules of the seed's prepare_data.py: HF
`Dataset.shuffle(seed=42)` == `numpy.random.default_rng(42).permutation(len)`, the legacy global
`np.random` for the remap table and sciq option shuffles, numpy statistics. Raw rows are read with Python's
own csv/json modules (not our Rust readers).

Usage: python3 gen_prepare_expect.py [RAW_DIR]   (default: ../../../../../shared/data/raw)
Writes prepare_expect.json next to this script. Needs numpy.
"""
import csv
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../../../../shared/data/raw")
REMAP_VOCAB = ["Monday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "apple", "banana", "orange"]
N_TRAIN, N_VAL = 2000, 500


def shuffle(rows):
    perm = np.random.default_rng(42).permutation(len(rows))
    return [rows[i] for i in perm]


def stats(values):
    return {
        "max": int(max(values)),
        "p95": float(np.percentile(values, 95)),
        "min": int(min(values)),
        "mean": float(np.mean(values)),
        "median": float(np.median(values)),
        "std": float(np.std(values)),
    }


def summary(train, val, answer_stats=False):
    allx = train + val
    out = {
        "num_train": len(train),
        "num_val": len(val),
        "train_head": train[:3],
        "train_last": train[-1:] if train else [],
        "val_head": val[:3],
        "val_last": val[-1:],
        "query_stats": stats([len(q) for q, _ in allx]),
        "label_counts": {
            "train": count([a for _, a in train]) if not answer_stats else None,
            "val": count([a for _, a in val]) if not answer_stats else None,
        },
    }
    if answer_stats:
        out["answer_stats"] = stats([len(a) for _, a in allx])
    # keep the file small: cut long strings (the Rust test compares prefixes of this length)
    for key in ["train_head", "train_last", "val_head", "val_last"]:
        out[key] = [[q[:400], a[:400]] for q, a in out[key]]
    return out


def count(xs):
    d = {}
    for x in xs:
        d[x] = d.get(x, 0) + 1
    return dict(sorted(d.items()))


def text_label(text, label):
    return (f"Text:{text}\nLabel:", str(label))


def qa(q, a):
    return (f"Question:{q}\nAnswer:", a)


def lines(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        data = f.read()
    return [l[:-1] if l.endswith("\r") else l for l in data.split("\n") if l.strip()]


def remap_table(n):
    np.random.seed(42)
    table, used = {}, set()
    for label in range(n):
        while True:
            tok = np.random.choice(REMAP_VOCAB)
            if tok not in used:
                used.add(tok)
                break
        table[label] = str(tok)
    return table


def mcq(question, options, table):
    s = "".join(f"[{table[i]}]{o}\n" for i, o in enumerate(options))
    return f"Question:{question}\nChoices:\n{s}\nAnswer:"


# ---- synthetic sources (the Rust tests build the same rows) ----
def syn_sciq(split, n):
    return [
        {
            "question": f"{split} question {i}?",
            "distractor1": f"{split}-d1-{i}",
            "distractor2": f"{split}-d2-{i}",
            "distractor3": f"{split}-d3-{i}",
            "correct_answer": f"{split}-ok-{i}",
            "support": f"{split} support {i}.",
        }
        for i in range(n)
    ]


def syn_qasc(split, n):
    return [
        {
            "question": f"{split} qasc {i}?",
            "choices": {"text": [f"{split}-c{k}-{i}" for k in range(8)], "label": list("ABCDEFGH")},
            "answerKey": "ABCDEFGH"[(i * 3) % 8],
        }
        for i in range(n)
    ]


def syn_gsm(n):
    return [{"question": f"How many {i}?", "answer": f"We add {i}.\n#### {i * 7}"} for i in range(n)]


def main():
    exp = {}

    # sst2: train.tsv / dev.tsv, "label<TAB>sentence" with header
    def sst(path):
        rows = [l.split("\t") for l in lines(path)[1:]]
        return [text_label(s, int(lab)) for lab, s in rows]

    exp["sst2"] = summary(
        shuffle(sst(f"{RAW}/sst2/train.tsv"))[:N_TRAIN], shuffle(sst(f"{RAW}/sst2/dev.tsv"))[:N_VAL]
    )

    # agnews: the test builds a source dir whose train.csv AND test.csv are the public test.csv
    with open(f"{RAW}/agnews/test.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, quotechar='"', delimiter=",", skipinitialspace=True))[1:]
    ag = [text_label(f"{t} {d}", int(c) - 1) for c, t, d in rows]
    exp["agnews"] = summary(shuffle(ag)[:N_TRAIN], shuffle(ag)[:N_VAL])

    # bbcnews (raw folders; eval only): text = non-empty stripped lines joined by " ", cut to 256 chars
    # minus the last partial word; SetFit ids -> AG News ids
    setfit = {"tech": 0, "business": 1, "sport": 2, "entertainment": 3, "politics": 4}
    agmap = {3: 0, 4: 0, 2: 1, 1: 2, 0: 3}
    bbc = []
    for cat in ["business", "entertainment", "politics", "sport", "tech"]:
        d = f"{RAW}/bbcnews/bbc/{cat}"
        for name in sorted(os.listdir(d)):
            if not name.endswith(".txt"):
                continue
            with open(f"{d}/{name}", "rb") as f:
                b = f.read()
            try:
                t = b.decode("utf-8")
            except UnicodeDecodeError:
                t = b.decode("latin-1")
            text = " ".join(l.strip() for l in t.splitlines() if l.strip())
            text = " ".join(text[:256].split(" ")[:-1])
            bbc.append(text_label(text, agmap[setfit[cat]]))
    exp["bbcnews"] = summary([], shuffle(bbc)[:N_VAL])

    # finsen: shuffle whole split, keep labels {0, 2}, 2 -> 1, last 500 val, rest train (first 2000)
    fin = []
    for l in lines(f"{RAW}/finsen/Sentences_50Agree.txt"):
        s, lab = l.rsplit("@", 1)
        fin.append((s, {"negative": 0, "neutral": 1, "positive": 2}[lab.strip()]))
    fin = [(s, 1 if lab == 2 else lab) for s, lab in shuffle(fin) if lab in (0, 2)]
    sp = len(fin) - N_VAL
    exp["finsen"] = summary([text_label(*x) for x in fin[:sp]][:N_TRAIN], [text_label(*x) for x in fin[sp:]])

    # poems: eval only, train split filtered to HF labels {0,1} (raw -1 -> 0, 1 -> 1), then shuffled
    poem = []
    for l in lines(f"{RAW}/poems/train.tsv"):
        _, verse, lab = l.split("\t")
        hf = {-1: 0, 1: 1, 0: 2, 2: 3}[int(lab)]
        if hf in (0, 1):
            poem.append(text_label(verse, hf))
    exp["poems"] = summary([], shuffle(poem)[:N_VAL])

    # strategytf: shuffle, last 500 val, rest train, each reshuffled
    with open(f"{RAW}/strategyqa/test.jsonl", encoding="utf-8") as f:
        sq = [json.loads(l) for l in f if l.strip()]
    sq = [qa(r["question"], str(int(r["answer"]))) for r in shuffle(sq)]
    sp = len(sq) - N_VAL
    exp["strategytf"] = summary(shuffle(sq[:sp])[:N_TRAIN], shuffle(sq[sp:])[:N_VAL])

    # gsm8k
    def jl(path):
        with open(path, encoding="utf-8") as f:
            return [json.loads(l) for l in f if l.strip()]

    g_tr = [qa(r["question"], r["answer"]) for r in jl(f"{RAW}/gsm8k/train.jsonl")]
    g_te = [qa(r["question"], r["answer"]) for r in jl(f"{RAW}/gsm8k/test.jsonl")]
    exp["gsm8k"] = summary(shuffle(g_tr)[:N_TRAIN], shuffle(g_te)[:N_VAL], answer_stats=True)

    # hmath_algebra: per-problem json, files sorted by name
    def math(split):
        d = f"{RAW}/hmath_algebra/{split}/algebra"
        out = []
        for name in sorted(os.listdir(d)):
            with open(f"{d}/{name}", encoding="utf-8") as f:
                r = json.load(f)
            out.append(qa(r["problem"], r["solution"]))
        return out

    exp["hmath_algebra"] = summary(shuffle(math("train"))[:N_TRAIN], shuffle(math("test"))[:N_VAL], answer_stats=True)

    # ---- synthetic sources, small sample counts: train 20, val 8 ----
    nt, nv = 20, 8
    # gsm8ks: 40 rows; val = shuffle[:8] (the seed's val), train = shuffle[8:28]
    g = shuffle([qa(r["question"], r["answer"]) for r in syn_gsm(40)])
    exp["gsm8ks_synthetic"] = summary(g[nv : nv + nt], g[:nv], answer_stats=True)

    # sciqa: 30 train rows, 12 validation rows
    tr, va = syn_sciq("train", 30), syn_sciq("validation", 12)
    sa = lambda r: qa(r["question"], f"{r['support']}\n#### {r['correct_answer']}")
    exp["sciqa_synthetic"] = summary([sa(r) for r in shuffle(tr)[:nt]], [sa(r) for r in shuffle(va)[:nv]], answer_stats=True)

    # sciq_remap: remap table from the global legacy RNG seeded 42, then option shuffles on the same stream
    table = remap_table(4)
    out = {}
    for split, rows, n in [("train", shuffle(tr), nt), ("val", shuffle(va), nv)]:
        ex = []
        for r in rows[:n]:
            options = [r["distractor1"], r["distractor2"], r["distractor3"], None]
            np.random.shuffle(options)
            idx = options.index(None)
            options[idx] = r["correct_answer"]
            ex.append((mcq(r["question"], options, table), table[idx]))
        out[split] = ex
    exp["sciq_remap_synthetic"] = summary(out["train"], out["val"])
    exp["sciq_remap_synthetic"]["remap"] = table

    # qasc_remap: options in dataset order, answer = remap token (a string)
    table8 = remap_table(8)
    qtr, qva = syn_qasc("train", 30), syn_qasc("validation", 12)
    qf = lambda r: (mcq(r["question"], r["choices"]["text"], table8), table8["ABCDEFGH".index(r["answerKey"])])
    exp["qasc_remap_synthetic"] = summary([qf(r) for r in shuffle(qtr)[:nt]], [qf(r) for r in shuffle(qva)[:nv]])
    exp["qasc_remap_synthetic"]["remap"] = table8

    with open(os.path.join(HERE, "prepare_expect.json"), "w") as f:
        json.dump(exp, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
