#!/usr/bin/env python3
"""Makes the FP8 (E4M3, W8A8) fixtures in Tests/Fixtures/fp8/.

Run from the repository root:  python3 scripts/make_fp8_fixtures.py   (CPU only, seconds)

  e4m3-goldens.json    torch's float8_e4m3fn cast of edge and random fp32 values (code per input),
                       every code's value, and per-token / static activation quantization of a few rows
  compressed-tensors/  tiny-llama as llm-compressor's FP8_DYNAMIC scheme writes it: quant_method
                       "compressed-tensors", format "float-quantized", weights F8_E4M3 with
                       weight_scale [out, 1] per channel (amax / 448, in the model dtype, BF16),
                       activations dynamic per token; lm_head, embeddings, norms BF16
  modelopt/            tiny-llama as ModelOpt's FP8 export writes it: quant_method "modelopt",
                       quant_algo "FP8", weight_scale F32 [] per tensor, input_scale F32 [] per tensor
                       (static: amax of each projection's input over a calibration prompt / 448)
  reference.json       per fixture, last-position logits of transformers' LlamaForCausalLM (fp32, eager)
                       with every projection replaced by the emulated FP8 GEMM:
                         s_x = input_scale or amax(|x_t|) / 448;  q = (x / s_x).to(float8_e4m3fn)
                         y   = (q.float() @ decode(W).T) * (s_x * s_w)

Weights are tiny-llama's (Tests/Fixtures/tiny-llama), quantized as both tools do: s = amax / 448,
codes = (w / s).clamp(-448, 448).to(torch.float8_e4m3fn). Needs torch, transformers, safetensors.
"""

import json
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "Tests" / "Fixtures"
OUT = FIX / "fp8"
E4M3 = torch.float8_e4m3fn
FP8_MAX = 448.0
PROMPTS = [[1, 17, 99, 4, 250, 3, 77, 401], [1, 300, 2, 45, 45, 45, 9], [1, 510, 128, 64, 32, 16, 8, 4, 2, 1, 0]]
CALIBRATION = [1, 5, 200, 33, 480, 7, 91, 12, 256, 301, 44, 9, 150, 2]
PROJECTIONS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
               "mlp.up_proj", "mlp.down_proj"]


def f32(v):
    """A float32 as JSON: its shortest repr, or its bit pattern for NaN / inf."""
    v = np.float32(v)
    return float(str(v)) if np.isfinite(v) else {"bits": int(v.view(np.uint32))}


def quantize_weight(w, per_channel):
    amax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax().reshape(1, 1)
    scale = amax / FP8_MAX
    codes = torch.where(scale > 0, w / scale, torch.zeros_like(w)).clamp(-FP8_MAX, FP8_MAX).to(E4M3)
    return codes, scale


def quantize_activations(x, input_scale=None):
    """(codes decoded, scales) of rows of x: the FP8 GEMM's input."""
    s = torch.full_like(x[..., :1], input_scale) if input_scale is not None else x.abs().amax(-1, keepdim=True) / FP8_MAX
    q = torch.where(s > 0, x / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(x)).to(E4M3).float()
    return q, s


class FP8Linear(torch.nn.Module):
    def __init__(self, codes, scale, input_scale):
        super().__init__()
        self.w = codes.float()                    # (out, in), decoded E4M3
        self.sw = scale.float().reshape(1, -1).expand(1, codes.shape[0]) if scale.numel() > 1 else scale.float().reshape(1, 1)
        self.input_scale = input_scale

    def forward(self, x):
        q, s = quantize_activations(x.float(), self.input_scale)
        return (q @ self.w.T) * (s * self.sw)


def goldens():
    g = torch.Generator().manual_seed(18)
    edges = [0.0, -0.0, 2**-9, -(2**-9), 2**-10, 3 * 2**-10, 5 * 2**-10, 2**-10 * 1.0001, 2**-10 * 0.9999, 7 * 2**-9,
             15 * 2**-10, 2**-6, 2**-6 * 1.0625, 1.0, 1.0625, 1.1875, 1.0625 * (1 + 2**-20), 240.0, 248.0, 256.0, 447.0, 448.0,
             449.0, 463.99, 464.0, 464.01, 479.0, 480.0, 1e6, -1e6, 3.4e38, 1e-40, -1e-45, 2**-12, float("inf"), float("-inf"),
             float("nan"), -float("nan")]
    mags = torch.exp2(torch.rand(600, generator=g) * 22 - 12)
    signs = torch.where(torch.rand(600, generator=g) < 0.5, -1.0, 1.0)
    x = torch.tensor(edges + (mags * signs).tolist(), dtype=torch.float32)
    codes = x.to(E4M3).view(torch.uint8)
    values = torch.arange(256, dtype=torch.uint8).view(E4M3).float()
    rows = torch.randn(4, 48, generator=g) * torch.tensor([[0.01], [1.0], [30.0], [0.0]])
    rows[1, 5] = 900.0
    dq, ds = quantize_activations(rows)
    sq, ss = quantize_activations(rows, 0.02)
    return {
        "about": "torch " + torch.__version__ + ": x.to(torch.float8_e4m3fn) per input (bits: float32 bit patterns), the value "
                 "of every code (NaN: null), and rows quantized as an FP8 GEMM's input (x / s cast to E4M3, decoded)",
        "inputs": [int(v) for v in x.view(torch.int32).numpy().astype(np.uint32)],
        "codes": codes.tolist(),
        "values": [None if math.isnan(v) else v for v in values.tolist()],
        "activations": {"rows": rows.tolist(), "dynamic_scales": ds.flatten().tolist(), "dynamic_codes": dq.tolist(),
                        "static_scale": 0.02, "static_codes": sq.tolist()},
    }


def build(kind, base, config):
    """The checkpoint's tensors and quantization_config, and the reference model."""
    per_channel = kind == "compressed-tensors"
    tensors, fp8 = {}, {}
    model = LlamaForCausalLM(config).eval()
    # Non-quantized tensors in bf16, as both tools leave a bf16 model's.
    for name, t in base.items():
        if not any(name.endswith(p + ".weight") for p in PROJECTIONS):
            tensors[name] = t.to(torch.bfloat16)
    state = {k: v.float() for k, v in tensors.items()}
    # Static input scales: the amax of each projection's input over the calibration prompt, with
    # the float model (ModelOpt calibrates the unquantized model).
    input_amax = {}
    if not per_channel:
        full = {**state, **{k: v for k, v in base.items() if k not in state}}
        model.load_state_dict(full, strict=True)
        hooks = []
        for i, layer in enumerate(model.model.layers):
            for p in PROJECTIONS:
                mod = layer.get_submodule(p)
                key = f"model.layers.{i}.{p}"
                hooks.append(mod.register_forward_hook(
                    lambda m, inp, out, key=key: input_amax.__setitem__(key, inp[0].abs().max().item())))
        with torch.no_grad():
            model(torch.tensor([CALIBRATION]))
        for h in hooks:
            h.remove()
    for i in range(config.num_hidden_layers):
        for p in PROJECTIONS:
            key = f"model.layers.{i}.{p}"
            codes, scale = quantize_weight(base[key + ".weight"].float(), per_channel)
            tensors[key + ".weight"] = codes
            if per_channel:
                scale = scale.to(torch.bfloat16)   # the model dtype; the codes were chosen with the fp32 scale
                tensors[key + ".weight_scale"] = scale
                fp8[key] = (codes, scale.float(), None)
            else:
                tensors[key + ".weight_scale"] = scale.reshape(())
                input_scale = torch.tensor(input_amax[key] / FP8_MAX, dtype=torch.float32)
                tensors[key + ".input_scale"] = input_scale.reshape(())
                fp8[key] = (codes, scale, input_scale.item())
            state[key + ".weight"] = codes.float() * scale.float()   # placeholder; replaced below
    model.load_state_dict(state, strict=True)
    for i, layer in enumerate(model.model.layers):
        for p in PROJECTIONS:
            parent, _, leaf = p.rpartition(".")
            codes, scale, input_scale = fp8[f"model.layers.{i}.{p}"]
            setattr(layer.get_submodule(parent), leaf, FP8Linear(codes, scale, input_scale))
    if per_channel:
        group = {"format": "float-quantized", "targets": ["Linear"], "output_activations": None,
                 "weights": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel", "dynamic": False,
                             "group_size": None, "block_structure": None, "actorder": None, "observer": "minmax",
                             "observer_kwargs": {}},
                 "input_activations": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True,
                                       "group_size": None, "block_structure": None, "actorder": None, "observer": None,
                                       "observer_kwargs": {}}}
        qc = {"config_groups": {"group_0": group}, "format": "float-quantized", "global_compression_ratio": None,
              "ignore": ["lm_head"], "kv_cache_scheme": None, "quant_method": "compressed-tensors",
              "quantization_status": "compressed", "sparsity_config": {}}
    else:
        qc = {"quant_method": "modelopt", "quant_algo": "FP8", "kv_cache_quant_algo": None, "exclude_modules": ["lm_head"],
              "producer": {"name": "modelopt", "version": "0.27.0"}}
    return tensors, qc, model


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    base = load_file(str(FIX / "tiny-llama" / "model.safetensors"))
    config_json = json.loads((FIX / "tiny-llama" / "config.json").read_text())
    config = LlamaConfig(**{k: v for k, v in config_json.items() if k not in ("architectures", "transformers_version", "dtype")})
    config._attn_implementation = "eager"
    reference = {"about": "Last-position float32 logits of transformers' LlamaForCausalLM (eager) with every projection the "
                          "emulated FP8 GEMM (scripts/make_fp8_fixtures.py)", "prompts": PROMPTS}
    for kind in ["compressed-tensors", "modelopt"]:
        tensors, qc, model = build(kind, base, config)
        d = OUT / kind
        d.mkdir(exist_ok=True)
        save_file({k: tensors[k].contiguous() for k in sorted(tensors)}, str(d / "model.safetensors"), metadata={"format": "pt"})
        cj = dict(config_json, dtype="bfloat16", quantization_config=qc)
        (d / "config.json").write_text(json.dumps(cj, indent=2, sort_keys=True) + "\n")
        with torch.no_grad():
            logits = [[f32(v) for v in model(torch.tensor([ids])).logits[0, -1].numpy()] for ids in PROMPTS]
        reference[kind] = {"logits_last": logits}
    (OUT / "reference.json").write_text(json.dumps(reference, separators=(",", ":")) + "\n")
    (OUT / "e4m3-goldens.json").write_text(json.dumps(goldens(), separators=(",", ":")) + "\n")
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(FIX)}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
