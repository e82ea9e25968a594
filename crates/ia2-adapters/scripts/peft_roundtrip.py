#!/usr/bin/env python3
"""Loads adapters written by ia2's `save_peft` with real PEFT and compares PEFT's logits with ours.

Not run in CI. Needs torch, transformers, peft and safetensors:

    cargo run -p ia2-adapters --example export_for_peft -- /work/shared/fixtures /tmp/ia2_peft_export
    python crates/ia2-adapters/scripts/peft_roundtrip.py /work/shared/fixtures /tmp/ia2_peft_export

Every adapter directory under <export>/<model>/ holds adapter_config.json + adapter_model.safetensors
(written by ia2) and ours.safetensors (case{i}.logits computed by ia2 for the fixture's case{i}.input_ids). Exit status 1 if
any maximum absolute logit difference exceeds 1e-4 or PEFT refuses a file.
"""
import sys
from pathlib import Path

import peft
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main() -> int:
    fixtures, export = Path(sys.argv[1]), Path(sys.argv[2])
    tol = 1e-4
    worst = 0.0
    failures = []
    print(f"peft {peft.__version__}, torch {torch.__version__}")
    for model_dir in sorted(p for p in export.iterdir() if p.is_dir()):
        base_path = fixtures / model_dir.name / "model"
        cases = load_file(str(fixtures / model_dir.name / "cases.safetensors"))
        for adapter_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
            base.eval()
            try:
                model = PeftModel.from_pretrained(base, adapter_dir)
            except Exception as e:  # noqa: BLE001
                failures.append(f"{adapter_dir}: PEFT refused it: {e}")
                print(failures[-1])
                continue
            model.eval()
            ours = load_file(str(adapter_dir / "ours.safetensors"))
            errs = []
            with torch.no_grad():
                for i in range(3):
                    ids = cases[f"case{i}.input_ids"].unsqueeze(0)
                    logits = model(input_ids=ids).logits[0]
                    want = ours[f"case{i}.logits"]
                    if logits.shape != want.shape:
                        errs.append(float("inf"))
                        failures.append(
                            f"{adapter_dir} case{i}: shape {tuple(logits.shape)} vs ours {tuple(want.shape)}"
                        )
                        continue
                    errs.append((logits - want).abs().max().item())
            err = max(errs)
            worst = max(worst, err)
            status = "ok" if err <= tol else "MISMATCH"
            if err > tol:
                failures.append(f"{adapter_dir}: max abs logit error {err:.3g}")
            print(f"{model_dir.name}/{adapter_dir.name}: max abs logit error {err:.3g} {status}")
    print(f"worst {worst:.3g}; {len(failures)} failure(s)")
    for f in failures:
        print("  ", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
