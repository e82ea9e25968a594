"""Generate small transformers reference fixtures for architecture variants that ../shared/fixtures lacks.

Writes crates/ia2-model/tests/data/<name>/{config.json, model.safetensors, cases.safetensors}:
  qwen2-untied   Qwen2ForCausalLM (q/k/v bias), untied lm_head
  llama-bias     LlamaForCausalLM with attention_bias + mlp_bias, untied, default rope
  qwen3-bias     Qwen3ForCausalLM with attention_bias, tied
Every parameter (biases and norm weights included) is randomised so that a loading bug shows up.
cases.safetensors: case{i}.input_ids (int64), case{i}.logits [S, V], case{i}.attn [L, S, H], case{i}.greedy [6].

Run: pip install torch transformers safetensors && python scripts/make_arch_fixtures.py
"""
import os
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "ia2-model", "tests", "data")
COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=8, max_position_embeddings=512, rms_norm_eps=1e-6)


def build(name, cls, cfg):
    torch.manual_seed(7)
    model = cls(cfg).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    for extra in ["generation_config.json"]:
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    captured = []
    hooks = [layer.self_attn.register_forward_hook(lambda m, i, o: captured.append(o[0].detach()))
             for layer in model.model.layers]
    g = torch.Generator().manual_seed(3)
    cases = {}
    for i, n in enumerate([7, 12]):
        ids = torch.randint(0, cfg.vocab_size, (1, n), generator=g)
        captured.clear()
        with torch.no_grad():
            out = model(input_ids=ids)
        cases[f"case{i}.input_ids"] = ids[0].clone()
        cases[f"case{i}.logits"] = out.logits[0].contiguous()
        cases[f"case{i}.attn"] = torch.stack([a[0] for a in captured]).contiguous()
        seq = ids
        greedy = []
        with torch.no_grad():
            for _ in range(6):
                nxt = model(input_ids=seq).logits[0, -1].argmax()
                greedy.append(int(nxt))
                seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
        cases[f"case{i}.greedy"] = torch.tensor(greedy, dtype=torch.int64)
    for h in hooks:
        h.remove()
    save_file(cases, os.path.join(d, "cases.safetensors"), metadata={"format": "pt"})
    print("wrote", d)


build("qwen2-untied", Qwen2ForCausalLM, Qwen2Config(**COMMON, tie_word_embeddings=False, rope_theta=10000.0))
build("llama-bias", LlamaForCausalLM,
      LlamaConfig(**COMMON, tie_word_embeddings=False, attention_bias=True, mlp_bias=True, rope_theta=10000.0))
build("qwen3-bias", Qwen3ForCausalLM, Qwen3Config(**COMMON, tie_word_embeddings=True, attention_bias=True))
