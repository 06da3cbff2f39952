#!/usr/bin/env python3
"""Makes the RoPE-scaling goldens in Tests/Fixtures/rope-scaling/.

Run from the repository root, after scripts/make_fixtures.py:  python3 scripts/make_rope_fixtures.py

Needs (CPU only, no network): torch, transformers, gguf, numpy. Seeded: a re-run rewrites the
same files.

- <kind>/config.json: Tests/Fixtures/tiny-llama/config.json with one RoPE scaling each (linear,
  dynamic, yarn, llama3, longrope), some in transformers 5's `rope_parameters`, some in the older
  `rope_scaling`; the weights are tiny-llama's own model.safetensors (not copied).
- logits.json: per kind, prompts of random token ids (some longer than the scaling's original
  context), each fed in `chunks` through transformers' KV cache (so dynamic NTK and longrope pick
  their frequencies per forward call, as transformers does), and the logits of the last row.
- micro-llama3.gguf: a 1-layer random Llama (vocab 32) written with the `gguf` package as
  convert_hf_to_gguf.py writes Llama 3.1: no scaling fields, a `rope_freqs.weight` tensor of
  per-dimension divisors; logits.json's "gguf_llama3" holds the same weights' logits from
  transformers with the equivalent `llama3` rope_parameters.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import f32list, gguf_tensors, init_weights  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "Tests" / "Fixtures"
OUT = FIX / "rope-scaling"

# Each kind: what replaces tiny-llama's rope settings, and the prompts' chunkings. Lengths past
# the original context are the point for dynamic and longrope.
KINDS = {
    "linear": dict(
        edit={"rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}},
        chunks=[[20]]),
    "dynamic": dict(
        edit={"rope_parameters": None, "rope_theta": 10000.0, "max_position_embeddings": 16,
              "rope_scaling": {"type": "dynamic", "factor": 2.0}},
        chunks=[[12], [24], [10, 14], [18, 1, 1]]),
    "yarn": dict(
        edit={"max_position_embeddings": 128,
              "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32,
                                  "beta_fast": 32.0, "beta_slow": 1.0, "rope_theta": 10000.0}},
        chunks=[[20]]),
    "llama3": dict(
        edit={"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
                                  "rope_theta": 10000.0}},
        chunks=[[20]]),
    "longrope": dict(
        edit={"rope_parameters": None, "rope_theta": 10000.0, "max_position_embeddings": 64,
              "rope_scaling": {"rope_type": "longrope", "original_max_position_embeddings": 16,
                               "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.0, 3.5],
                               "long_factor": [1.0, 1.5, 2.5, 4.0, 6.0, 8.0, 12.0, 16.0]}},
        chunks=[[12], [24], [10, 14]]),
}


def log(msg: str) -> None:
    print(f"make_rope_fixtures: {msg}", flush=True)


def prompt(n: int, seed: int, vocab: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return [1] + torch.randint(3, vocab, (n - 1,), generator=g).tolist()


@torch.no_grad()
def last_logits(model, ids: list[int], chunks: list[int]) -> np.ndarray:
    """Feeds `ids` in `chunks` through one KV cache; the logits of the last row."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    done = 0
    for size in chunks:
        out = model(input_ids=torch.tensor([ids[done:done + size]]), past_key_values=cache, use_cache=True)
        done += size
    assert done == len(ids)
    return out.logits[0, -1].numpy()


def fresh_model(config_dict: dict, state_dict):
    """A new model per prompt: dynamic NTK keeps state in its rotary embedding between calls."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig.from_dict(dict(config_dict))).to(torch.float32).eval()
    model.load_state_dict(state_dict)
    return model


def make_kinds(golden: dict) -> None:
    from transformers import LlamaForCausalLM

    base = json.loads((FIX / "tiny-llama" / "config.json").read_text())
    tiny = LlamaForCausalLM.from_pretrained(str(FIX / "tiny-llama"), dtype=torch.float32).eval()
    state = tiny.state_dict()
    for k, (kind, spec) in enumerate(KINDS.items()):
        cfg = dict(base)
        for key, value in spec["edit"].items():
            if value is None:
                cfg.pop(key, None)
            else:
                cfg[key] = value
        d = OUT / kind
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        cases = []
        for j, chunks in enumerate(spec["chunks"]):
            ids = prompt(sum(chunks), 100 * k + j, cfg["vocab_size"])
            got = last_logits(fresh_model(cfg, state), ids, chunks)
            plain = last_logits(tiny, ids, chunks)
            diff = float(np.abs(got - plain).max())
            # The scaling must matter, or the golden would not test it; dynamic NTK leaves a
            # sequence within max_position_embeddings alone.
            if kind == "dynamic" and len(ids) <= cfg["max_position_embeddings"]:
                assert diff == 0, (kind, chunks, diff)
            else:
                assert diff > 1e-2, (kind, chunks, diff)
            cases.append({"ids": ids, "chunks": chunks, "last_logits": f32list(got)})
            log(f"{kind}: {len(ids)} tokens in chunks {chunks}: max |scaled - unscaled| = {diff:.3f}")
        golden[kind] = cases


def llama3_rope_factors(cfg: dict) -> list[float]:
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors: what rope_freqs.weight holds."""
    rp = cfg["rope_parameters"]
    base, dim = rp["rope_theta"], cfg["head_dim"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high, old = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return out


def make_gguf(golden: dict) -> None:
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(vocab_size=32, hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
               num_key_value_heads=1, head_dim=16, max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=1,
               eos_token_id=2, tie_word_embeddings=False,
               rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 64, "rope_theta": 10000.0})
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).to(torch.float32)
    init_weights(model, 7)
    model.eval()
    path = OUT / "micro-llama3.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type("model")
    w.add_name("Petrel Micro Llama 3.1 RoPE (random weights)")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_rope_dimension_count(cfg["head_dim"])
    w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                 np.asarray(llama3_rope_factors(cfg), dtype=np.float32))
    for name, _, arr, _ in gguf_tensors(model):
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    log(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")

    cases = []
    for j, n in enumerate([8, 40]):
        ids = prompt(n, 900 + j, cfg["vocab_size"])
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].numpy()
        cases.append({"ids": ids, "chunks": [n], "last_logits": f32list(logits[-1])})
    golden["gguf_llama3"] = cases


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    import transformers

    golden = {"about": f"RoPE scaling goldens from transformers {transformers.__version__}, torch {torch.__version__} "
                       "(scripts/make_rope_fixtures.py): last-row logits, float32."}
    make_kinds(golden)
    make_gguf(golden)
    (OUT / "logits.json").write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    log(f"wrote {(OUT / 'logits.json').relative_to(ROOT)} ({(OUT / 'logits.json').stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
