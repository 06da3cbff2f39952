#!/usr/bin/env python3
"""Makes the sliding-window goldens in Tests/Fixtures/sliding-window/.

Run from the repository root, after scripts/make_fixtures.py:  python3 scripts/make_window_fixtures.py

Needs (CPU only, no network): torch, transformers, numpy. Seeded: a re-run rewrites the same files.

- mistral/config.json: Tests/Fixtures/tiny-llama's config as a MistralForCausalLM with
  sliding_window 6 (its weights are tiny-llama's model.safetensors, not copied: Mistral's tensor
  names are Llama's).
- qwen2/config.json: Tests/Fixtures/tiny-qwen2's config with use_sliding_window, sliding_window 5
  and max_window_layers 1 (layer 0 full, layer 1 windowed; weights tiny-qwen2's).
- logits.json: per model, prompts of random ids longer than the window, each fed in `chunks`
  through transformers' KV cache (eager attention, which applies the window), the last row's
  logits; the script checks the window changes them (against the same model without it).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import f32list  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "Tests" / "Fixtures"
OUT = FIX / "sliding-window"

MODELS = {
    "mistral": dict(source="tiny-llama", edit={"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                                               "sliding_window": 6}),
    # layer_types removed, so the layers come from max_window_layers (transformers' Qwen2Config).
    "qwen2": dict(source="tiny-qwen2", edit={"use_sliding_window": True, "sliding_window": 5, "max_window_layers": 1,
                                             "layer_types": None}),
}
CHUNKS = [[20], [12, 8], [9, 1, 1, 1]]


def prompt(n: int, seed: int, vocab: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return [1] + torch.randint(3, vocab, (n - 1,), generator=g).tolist()


@torch.no_grad()
def last_logits(model, ids, chunks) -> np.ndarray:
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    done = 0
    for size in chunks:
        out = model(input_ids=torch.tensor([ids[done:done + size]]), past_key_values=cache, use_cache=True)
        done += size
    return out.logits[0, -1].numpy()


def main() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    golden = {}
    for k, (name, spec) in enumerate(MODELS.items()):
        base = json.loads((FIX / spec["source"] / "config.json").read_text())
        cfg = dict(base, **spec["edit"])
        cfg = {key: value for key, value in cfg.items() if value is not None}
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        source = AutoModelForCausalLM.from_pretrained(str(FIX / spec["source"]), dtype=torch.float32).eval()
        config = AutoConfig.for_model(**cfg)
        config._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(config).to(torch.float32).eval()
        model.load_state_dict(source.state_dict())
        cases = []
        for j, chunks in enumerate(CHUNKS):
            ids = prompt(sum(chunks), 10 * k + j, cfg["vocab_size"])
            got = last_logits(model, ids, chunks)
            plain = last_logits(source, ids, chunks)
            diff = float(np.abs(got - plain).max())
            assert diff > 1e-3, (name, chunks, diff)   # the window must matter, or the golden tests nothing
            cases.append({"ids": ids, "chunks": chunks, "last_logits": f32list(got)})
            print(f"make_window_fixtures: {name}: {len(ids)} tokens in chunks {chunks}: max |windowed - full| = {diff:.3f}")
        golden[name] = cases
    (OUT / "logits.json").write_text(json.dumps(golden) + "\n")


if __name__ == "__main__":
    main()
