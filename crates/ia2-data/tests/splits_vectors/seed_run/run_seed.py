"""Runs the seed's own scripts/create_training_datasets.py (aamixsh/ia2) on toy/main.json, with its unused heavy
imports (torch, transformers, the data module) replaced by empty stubs, and keeps its outputs under expected/.

Usage: python3 run_seed.py /path/to/ia2/scripts/create_training_datasets.py
The Rust test (tests/splits_seed_outputs.rs) only reads the committed JSON files.
"""
import json
import os
import runpy
import shutil
import sys
import tempfile
import types

seed_script = os.path.abspath(sys.argv[1])
here = os.path.dirname(os.path.abspath(__file__))

for name in ["torch", "torch.nn", "torch.nn.functional", "torch.utils", "torch.utils.data", "transformers", "data", "tqdm"]:
    sys.modules[name] = types.ModuleType(name)
sys.modules["torch.utils.data"].Dataset = object
sys.modules["torch.utils.data"].DataLoader = object
sys.modules["tqdm"].tqdm = lambda x, **k: x
sys.modules["data"].ICLDataset = sys.modules["data"].ICLDatasetShuffled = object


class _Tok:
    pad_token = "<pad>"

    @staticmethod
    def from_pretrained(*a, **k):
        return _Tok()


sys.modules["transformers"].AutoTokenizer = _Tok

work = tempfile.mkdtemp()
os.makedirs(os.path.join(work, "data", "toy"))
os.makedirs(os.path.join(work, "scripts"))
shutil.copy(os.path.join(here, "toy_main.json"), os.path.join(work, "data", "toy", "main.json"))
os.chdir(os.path.join(work, "scripts"))
for extra in [[], ["--fixed_demos"], ["--shuffle_demos", "--num_shuffles", "3"]]:
    for n in [1, 4, 9]:
        sys.argv = ["create_training_datasets.py", "--dataset", "toy", "--num_train_examples", str(n), "--num_runs", "2",
                    "--max_icl_demos", "5", "--num_dev_examples", "3"] + extra
        runpy.run_path(seed_script, run_name="__main__")
out = os.path.join(here, "expected")
shutil.rmtree(out, ignore_errors=True)
shutil.copytree(os.path.join(work, "data", "toy"), out, ignore=shutil.ignore_patterns("main.json"))
print(sorted(os.listdir(os.path.join(out, "train"))), sorted(os.listdir(os.path.join(out, "train_fixed"))))
