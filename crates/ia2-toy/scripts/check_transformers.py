#!/usr/bin/env python3
"""Check that Python transformers loads the toy model directory and agrees with ia2.

Loads the directory written by `ia2 toy pretrain` with `AutoTokenizer` and `AutoModelForCausalLM`, tokenizes a
few toy prompts, and compares token ids, logits (every position) and each layer's self-attention output (after
o_proj) with those `ia2 activations` writes for the same prompts. Also checks that the greedy next token of
each prompt decodes to the expected label. Not part of CI (needs torch + transformers).

    python3 crates/ia2-toy/scripts/check_transformers.py [--model DIR] [--ia2 target/release/ia2]

Without --model, `ia2 toy pretrain` is run to get the cached model's directory (it trains it if needed).
Exits non-zero when a difference exceeds --tol.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

# (demos, query, gold label) in the seed's prompt format; the classes are animal, fruit, vehicle, ...
EXAMPLES = [
    ([("cat", "alpha"), ("apple", "beta"), ("dog", "alpha"), ("pear", "beta")], "lion", "alpha"),
    ([("piano", "omega"), ("bus", "tau"), ("violin", "omega"), ("train", "tau")], "ferry", "tau"),
    ([("doctor", "kappa"), ("sofa", "rho")], "chair", "rho"),
    ([], "tiger", None),
]


def prompt(demos, query):
    parts = [f"Text:{w}\nLabel:{l}" for w, l in demos] + [f"Text:{query}\nLabel:"]
    return "\n\n".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="toy model directory (default: `ia2 toy pretrain`)")
    ap.add_argument("--ia2", default="target/release/ia2", help="ia2 binary")
    ap.add_argument("--tol", type=float, default=1e-3, help="largest allowed absolute difference")
    args = ap.parse_args()

    model_dir = args.model
    if model_dir is None:
        out = subprocess.run([args.ia2, "toy", "pretrain"], check=True, capture_output=True, text=True)
        model_dir = Path(out.stdout.strip().splitlines()[-1])
    print(f"model: {model_dir}")

    prompts = [prompt(d, q) for d, q, _ in EXAMPLES]
    with tempfile.TemporaryDirectory() as tmp:
        pfile = Path(tmp) / "prompts.jsonl"
        pfile.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
        act_file = Path(tmp) / "act.safetensors"
        subprocess.run(
            [args.ia2, "activations", "--model", str(model_dir), "--prompts-file", str(pfile), "-o", str(act_file)],
            check=True,
            capture_output=True,
        )
        ours = load_file(str(act_file))

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    print(f"transformers: {type(tok).__name__}, {type(model).__name__}, vocab {len(tok)}")

    attn_outputs = []
    hooks = [
        layer.self_attn.register_forward_hook(lambda _m, _i, out: attn_outputs.append(out[0].detach()))
        for layer in model.model.layers
    ]
    worst_logits = worst_attn = 0.0
    ok = True
    for i, ((demos, query, gold), text) in enumerate(zip(EXAMPLES, prompts)):
        ids = tok(text)["input_ids"]
        ref_ids = ours[f"prompt{i}.input_ids"].tolist()
        if ids != ref_ids:
            print(f"prompt {i}: token ids differ\n  transformers {ids}\n  ia2          {ref_ids}")
            ok = False
            continue
        if tok.decode(ids) != text:
            print(f"prompt {i}: decode does not round-trip: {tok.decode(ids)!r}")
            ok = False
        attn_outputs.clear()
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        d_logits = (logits - ours[f"prompt{i}.logits"]).abs().max().item()
        attn = torch.stack([a[0] for a in attn_outputs])
        d_attn = (attn - ours[f"prompt{i}.attn"]).abs().max().item()
        worst_logits, worst_attn = max(worst_logits, d_logits), max(worst_attn, d_attn)
        pred = tok.decode([int(logits[-1].argmax())])
        verdict = "" if gold is None else ("  (correct)" if pred == gold else f"  (expected {gold})")
        print(f"prompt {i}: {len(ids)} tokens, max |Δlogits| {d_logits:.2e}, max |Δattn| {d_attn:.2e}, "
              f"next token {pred!r}{verdict}")
    for h in hooks:
        h.remove()
    print(f"max abs difference: logits {worst_logits:.3e}, attention outputs {worst_attn:.3e} (tol {args.tol})")
    if not ok or worst_logits > args.tol or worst_attn > args.tol:
        sys.exit(1)


if __name__ == "__main__":
    main()
