#!/usr/bin/env python3
"""Makes the pre-quantized checkpoint fixtures in Tests/Fixtures/quantized/ (AWQ and GPTQ).

Run from the repository root:  python3 scripts/make_quantized_fixtures.py

Tiny random Llamas whose projections are packed by the reference libraries' own packing code,
running on the CPU:
  AWQ   AutoAWQ 0.2.9      awq/modules/linear/gemm.py   WQLinear_GEMM.from_linear
                           awq/utils/packing_utils.py   dequantize_gemm (the reference weights)
  GPTQ  AutoGPTQ 0.7.1     auto_gptq/nn_modules/qlinear/qlinear_cuda.py  QuantLinear.pack; its
                           CPU forward (unpack, scales[g_idx] * (q - zeros[g_idx])) with float32
                           scales on an identity input gives the reference weights
The two packages are fetched with `pip download --no-deps` into $PETREL_QUANT_REFS (default
/tmp/petrel-quant-refs) and only those modules are imported: their packages are registered by
path without running the packages' __init__.py (which pull in their whole quantization
pipelines: datasets, old transformers internals). Nothing is stubbed; AutoGPTQ's missing CUDA
extension is an import its module already guards.

Codes, scales, zeros and act-order permutations are random and seeded; every float weight is
(q - z) * s exactly, so each library recovers the chosen codes (checked), and the reference
logits are transformers' LlamaForCausalLM in float32 with every projection replaced by the
library's dequantization. Tests/Fixtures/README.md gets a section (between markers) on them.

Needs: torch, transformers, safetensors, numpy (scripts/setup-reference.sh), pip and PyPI.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BUILD_CUDA_EXT", "0")

import copy
import importlib
import importlib.metadata as md
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "Tests" / "Fixtures"
OUT = FIX / "quantized"
REFS = Path(os.environ.get("PETREL_QUANT_REFS", "/tmp/petrel-quant-refs"))
AWQ_VERSION = "0.2.9"
GPTQ_VERSION = "0.7.1"

# The tiny model: hidden 128 so that groups of 128 and 64 fit; intermediate 256 so that the
# down projection has two groups of 128 and differs in size from the others; vocabulary 128,
# tied embeddings, to keep the files small.
TINY = dict(vocab_size=128, hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
            rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=256, tie_word_embeddings=True,
            bos_token_id=1, eos_token_id=2)
PROJECTIONS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
# Projections that read the same input get the same act-order permutation (GPTQ derives it from
# that input's Hessian): q/k/v, and gate/up.
SHARED_INPUT = {"self_attn.k_proj": "self_attn.q_proj", "self_attn.v_proj": "self_attn.q_proj",
                "mlp.up_proj": "mlp.gate_proj"}

CASES = [
    dict(name="awq-g128", layers=1, method="awq", bits=4, group=128, seed=11),
    dict(name="awq-g64", layers=1, method="awq", bits=4, group=64, seed=12),
    dict(name="gptq-4bit", layers=1, method="gptq", bits=4, group=64, sym=True, desc_act=False, seed=13),
    dict(name="gptq-4bit-actorder", layers=2, method="gptq", bits=4, group=32, sym=False, desc_act=True, seed=14),
    dict(name="gptq-8bit", layers=1, method="gptq", bits=8, group=64, sym=True, desc_act=False, seed=15),
]
PROMPT_LENGTHS = [1, 7, 19]


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------
# The reference libraries
# --------------------------------------------------------------------------------------


def fetch_references() -> tuple[Path, Path]:
    REFS.mkdir(parents=True, exist_ok=True)
    awq_dir = REFS / f"autoawq-{AWQ_VERSION}"
    gptq_dir = REFS / f"auto_gptq-{GPTQ_VERSION}"
    if not awq_dir.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", f"autoawq=={AWQ_VERSION}",
                        "-d", str(REFS)], check=True)
        with tarfile.open(REFS / f"autoawq-{AWQ_VERSION}.tar.gz") as t:
            t.extractall(REFS, filter="data")
    if not gptq_dir.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", f"auto-gptq=={GPTQ_VERSION}", "-d", str(REFS)], check=True)
        wheel = next(REFS.glob(f"auto_gptq-{GPTQ_VERSION}-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(gptq_dir)
    return awq_dir / "awq", gptq_dir / "auto_gptq"


def register_package(name: str, path: Path) -> None:
    """Makes `name` importable as a package at `path` without running its __init__.py."""
    m = types.ModuleType(name)
    m.__path__ = [str(path)]
    sys.modules[name] = m


def import_references():
    awq, gptq = fetch_references()
    register_package("awq", awq)
    register_package("awq.modules", awq / "modules")
    register_package("awq.modules.linear", awq / "modules" / "linear")
    register_package("awq.utils", awq / "utils")
    gemm = importlib.import_module("awq.modules.linear.gemm")
    packing = importlib.import_module("awq.utils.packing_utils")
    register_package("auto_gptq", gptq)
    register_package("auto_gptq.nn_modules", gptq / "nn_modules")
    register_package("auto_gptq.nn_modules.qlinear", gptq / "nn_modules" / "qlinear")
    logging.getLogger("auto_gptq.nn_modules.qlinear.qlinear_cuda").setLevel(logging.ERROR)
    qlinear = importlib.import_module("auto_gptq.nn_modules.qlinear.qlinear_cuda")
    return gemm.WQLinear_GEMM, packing.dequantize_gemm, qlinear.QuantLinear


# --------------------------------------------------------------------------------------
# One projection: chosen codes, packed by the library, dequantized by the library
# --------------------------------------------------------------------------------------


def choose(rng: np.random.Generator, out_f: int, in_f: int, case: dict, perm):
    """Random codes q (out, in), and per group (out, groups) scales s (fp16 values) and zeros z.
    Group of input i: its position in `perm` (act-order) // group, else i // group."""
    bits, group = case["bits"], case["group"]
    maxq = 2 ** bits - 1
    groups = in_f // group
    q = rng.integers(0, maxq + 1, size=(out_f, in_f))
    # weights of about 0.1 standard deviation: the codes' spread is maxq / sqrt(12)
    s = (0.1 / (maxq / 12 ** 0.5)) * rng.uniform(0.5, 1.5, size=(out_f, groups))
    s = s.astype(np.float16).astype(np.float32)
    if case["method"] == "awq":
        z = rng.integers(0, maxq + 1, size=(out_f, groups))
    elif case["sym"]:
        z = np.full((out_f, groups), 2 ** (bits - 1))
    else:
        # GPTQ v1 stores z - 1 in `bits` bits, so z = 0 cannot be stored (it overflows into
        # the neighbouring fields); real asymmetric v1 checkpoints avoid it the same way.
        z = rng.integers(1, maxq + 1, size=(out_f, groups))
    if perm is None:
        g_idx = np.arange(in_f) // group
    else:
        g_idx = np.empty(in_f, dtype=np.int64)
        g_idx[perm] = np.arange(in_f) // group
    w = (q - z[:, g_idx]).astype(np.float32) * s[:, g_idx]   # exact in float32
    return q, s, z, g_idx.astype(np.int32), w


def pack_awq(WQLinear_GEMM, dequantize_gemm, w, s, z, case):
    out_f, in_f = w.shape
    linear = torch.nn.Linear(in_f, out_f, bias=False).half()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w))
    # AutoAWQ passes scales and zeros as (groups, out), the layout it stores
    m = WQLinear_GEMM.from_linear(linear, case["bits"], case["group"], init_only=False,
                                  scales=torch.from_numpy(s.T.copy()), zeros=torch.from_numpy(z.T.copy()).float())
    tensors = {"qweight": m.qweight, "qzeros": m.qzeros, "scales": m.scales}
    ref = dequantize_gemm(m.qweight, m.qzeros, m.scales.float(), case["bits"], case["group"]).T.contiguous()
    return tensors, ref.numpy(), m


def pack_gptq(QuantLinear, w, s, z, g_idx, case):
    out_f, in_f = w.shape
    linear = torch.nn.Linear(in_f, out_f, bias=False).half()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w))
    m = QuantLinear(case["bits"], case["group"], in_f, out_f, bias=False)
    # AutoGPTQ's quantizer hands pack (out, groups) scales and zeros and the g_idx of every input
    m.pack(linear, torch.from_numpy(s.copy()), torch.from_numpy(z.astype(np.float32)), torch.from_numpy(g_idx))
    tensors = {"qweight": m.qweight, "qzeros": m.qzeros, "scales": m.scales, "g_idx": m.g_idx}
    # The library's own dequantization (its CPU forward), in float32: identity input, float32 scales.
    f = copy.deepcopy(m)
    f.scales = f.scales.float()
    with torch.no_grad():
        ref = f(torch.eye(in_f, dtype=torch.float32)).T.contiguous()
    return tensors, ref.numpy(), m


def check_forward(module, ref_w: np.ndarray, rng: np.random.Generator, what: str) -> None:
    """The library's own fp16 forward agrees with x · ref_wᵀ (catches a transposed reference)."""
    x = torch.from_numpy(rng.standard_normal((3, ref_w.shape[1])).astype(np.float32))
    with torch.no_grad():
        got = module(x.half()).float().reshape(3, -1).numpy()
    want = x.numpy() @ ref_w.T
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-2, f"{what}: library forward differs from the reference weights by {err}"


# --------------------------------------------------------------------------------------
# Fingerprints: what the Swift test recomputes from Petrel's dequantized matrices
# --------------------------------------------------------------------------------------


def fingerprint(w: np.ndarray, rng: np.random.Generator) -> dict:
    """weighted_sum = Σ w[i] · (1 + (i·7919 mod 1009) / 1009) over the row-major flat index i, in
    float64; samples: 24 (row, column, value) triples, exact float32."""
    flat = w.astype(np.float64).reshape(-1)
    i = np.arange(flat.size, dtype=np.int64)
    m = 1.0 + (i * 7919 % 1009) / 1009.0
    picks = rng.choice(flat.size, size=24, replace=False)
    samples = [[int(p // w.shape[1]), int(p % w.shape[1]), float(str(np.float32(w.reshape(-1)[p])))] for p in sorted(picks)]
    return {"shape": list(w.shape), "weighted_sum": float((flat * m).sum()), "samples": samples}


# --------------------------------------------------------------------------------------
# One fixture: a folder with config.json and model.safetensors, and its reference entry
# --------------------------------------------------------------------------------------


def quantization_config(case: dict) -> dict:
    if case["method"] == "awq":   # AutoAWQ 0.2.9's AwqConfig.to_transformers_dict
        return {"quant_method": "awq", "zero_point": True, "group_size": case["group"], "bits": case["bits"],
                "version": "gemm", "modules_to_not_convert": None}
    # AutoGPTQ 0.7.1's BaseQuantizeConfig.to_dict
    return {"bits": case["bits"], "group_size": case["group"], "damp_percent": 0.01, "desc_act": case["desc_act"],
            "static_groups": False, "sym": case["sym"], "true_sequential": True, "model_name_or_path": None,
            "model_file_base_name": "model", "is_marlin_format": False, "quant_method": "gptq"}


def make_case(case: dict, refs, prompts) -> dict:
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    WQLinear_GEMM, dequantize_gemm, QuantLinear = refs
    rng = np.random.default_rng(case["seed"])
    torch.manual_seed(case["seed"])
    cfg = LlamaConfig(num_hidden_layers=case["layers"], **TINY)
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    hidden, inter = cfg.hidden_size, cfg.intermediate_size
    tensors = {}
    matrices = {}
    with torch.no_grad():
        # Embedding and norms: random, rounded to fp16 as the file stores them.
        emb = torch.from_numpy((0.5 * rng.standard_normal((cfg.vocab_size, hidden))).astype(np.float16))
        model.model.embed_tokens.weight.copy_(emb.float())
        tensors["model.embed_tokens.weight"] = emb
        norms = [f"model.layers.{l}.{n}" for l in range(case["layers"]) for n in ("input_layernorm", "post_attention_layernorm")]
        for name in norms + ["model.norm"]:
            v = torch.from_numpy((1 + 0.1 * rng.standard_normal(hidden)).astype(np.float16))
            model.get_submodule(name).weight.copy_(v.float())
            tensors[name + ".weight"] = v
        for l in range(case["layers"]):
            perms = {}
            for proj in PROJECTIONS:
                name = f"model.layers.{l}.{proj}"
                linear = model.get_submodule(name)
                out_f, in_f = linear.weight.shape
                perm = None
                if case.get("desc_act"):
                    perm = perms[SHARED_INPUT[proj]] if proj in SHARED_INPUT else rng.permutation(in_f)
                    perms[proj] = perm
                q, s, z, g_idx, w = choose(rng, out_f, in_f, case, perm)
                if case["method"] == "awq":
                    packed, ref, module = pack_awq(WQLinear_GEMM, dequantize_gemm, w, s, z, case)
                else:
                    packed, ref, module = pack_gptq(QuantLinear, w, s, z, g_idx, case)
                assert np.array_equal(ref, w), f"{case['name']} {name}: the library did not keep the chosen codes"
                check_forward(module, ref, rng, f"{case['name']} {name}")
                linear.weight.copy_(torch.from_numpy(ref))
                for k, t in packed.items():
                    tensors[f"{name}.{k}"] = t.contiguous()
                matrices[name] = fingerprint(ref, rng)
        logits = []
        for ids in prompts:
            out = model(torch.tensor([ids])).logits[0, -1]
            logits.append([float(str(np.float32(v))) for v in out.numpy()])

    d = OUT / case["name"]
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    config = cfg.to_dict()
    config["architectures"] = ["LlamaForCausalLM"]
    config["dtype"] = "float16"
    config["quantization_config"] = quantization_config(case)
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    log(f"{case['name']}: {sum(t.numel() * t.element_size() for t in tensors.values()):,} bytes of tensors")
    return {"quantization_config": quantization_config(case), "layers": case["layers"], "logits_last": logits,
            "matrices": matrices}


# --------------------------------------------------------------------------------------


def write_json(path: Path, obj) -> None:
    """Lists of scalars on one line, containers indented."""
    def dump(o, level):
        pad, end = " " * (level + 1), " " * level
        if isinstance(o, dict):
            return "{\n" + ",\n".join(f"{pad}{json.dumps(k)}: {dump(v, level + 1)}" for k, v in o.items()) + "\n" + end + "}"
        if isinstance(o, list) and o and any(isinstance(v, (dict, list)) for v in o):
            return "[\n" + ",\n".join(pad + dump(v, level + 1) for v in o) + "\n" + end + "]"
        if isinstance(o, list):
            return "[" + ",".join(json.dumps(v) for v in o) + "]"
        return json.dumps(o)
    path.write_text(dump(obj, 0) + "\n")


README_BEGIN = "<!-- quantized fixtures: written by scripts/make_quantized_fixtures.py -->"
README_END = "<!-- end of quantized fixtures -->"


def write_readme_section(sizes: dict) -> None:
    versions = {p: md.version(p) for p in ("torch", "transformers", "safetensors", "numpy")}
    rows = "\n".join(f"| `quantized/{k}` | {v:,} |" for k, v in sizes.items())
    total = sum(sizes.values())
    section = f"""{README_BEGIN}
## Pre-quantized checkpoints (`quantized/`, {total:,} bytes in all)

Made by `scripts/make_quantized_fixtures.py` (seeded; CPU only; fetches the two reference packages
below with `pip download --no-deps` into `$PETREL_QUANT_REFS`, default /tmp/petrel-quant-refs).
Made with: python {sys.version.split()[0]}, {", ".join(f"{k} {v}" for k, v in versions.items())},
AutoAWQ {AWQ_VERSION}, AutoGPTQ {GPTQ_VERSION}.

| file | bytes |
|---|---|
{rows}

- **The model**: `LlamaConfig(vocab_size=128, hidden_size=128, intermediate_size=256, num_attention_heads=4,
  num_key_value_heads=2 (head_dim 32), tie_word_embeddings=True, rope_theta=10000, rms_norm_eps=1e-5)`, 1 layer
  (2 for `gptq-4bit-actorder`). Embedding and norms random (N(0, 0.5²); 1 + 0.1·N(0, 1)), stored F16.
- **Every projection** gets random codes q, per-group fp16 scales s (weights of about 0.1 std) and zeros z;
  the float weight (q − z)·s is handed to the library's own packing code, which recovers exactly q (checked):
  - `awq-g128`, `awq-g64`: AutoAWQ `WQLinear_GEMM.from_linear(linear, 4, group, scales=(groups, out),
    zeros=(groups, out))`: `qweight` I32 [in, out/8] and `qzeros` I32 [in/group, out/8] with AutoAWQ's
    nibble order [0, 2, 4, 6, 1, 3, 5, 7], `scales` F16 [in/group, out]; z in 0…15. config: AutoAWQ's
    `to_transformers_dict` (`version: "gemm"`, `zero_point: true`).
  - `gptq-4bit` (sym, desc_act false, group 64), `gptq-4bit-actorder` (asym, desc_act true, group 32),
    `gptq-8bit` (sym, desc_act false, group 64): AutoGPTQ `qlinear_cuda.QuantLinear.pack(linear, scales,
    zeros, g_idx)`: `qweight` I32 [in·bits/32, out], `qzeros` I32 [groups, out·bits/32] holding z − 1
    (GPTQ v1; so asymmetric z is drawn from 1…15: z = 0 would overflow into the next field), `scales` F16
    [groups, out], `g_idx` I32 [in]. Act-order: one random permutation per input (q/k/v share one,
    gate/up share one, as GPTQ's Hessian order does), g_idx[perm[p]] = p / group. config: AutoGPTQ's
    `BaseQuantizeConfig.to_dict`.
- **The reference weights** are the libraries' own dequantization in float32: AutoAWQ's
  `packing_utils.dequantize_gemm` with float32 scales; AutoGPTQ's QuantLinear CPU forward (unpack,
  `scales[g_idx] * (q − (zeros + 1)[g_idx])`) with float32 scales on an identity input. Each is also checked
  against the library's fp16 forward on random inputs.
- **`quantized/reference.json`**: `prompts` (3 prompts of lengths {PROMPT_LENGTHS}, ids in 3…127); per
  fixture its `quantization_config`, `logits_last` (transformers `LlamaForCausalLM`, float32, eager CPU,
  every projection replaced by its reference weights: the last position's logits of each prompt) and, per
  projection (HF name, logical (out, in) layout), `weighted_sum` = Σ w[i]·(1 + (i·7919 mod 1009)/1009) over
  the row-major index i (float64) and 24 exact `samples` [row, column, value].
{README_END}"""
    readme = FIX / "README.md"
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN in text:
        head, rest = text.split(README_BEGIN, 1)
        tail = rest.split(README_END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text, encoding="utf-8")


def main() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    import transformers

    transformers.logging.set_verbosity_error()
    refs = import_references()
    rng = np.random.default_rng(0)
    prompts = [[1] + [int(v) for v in rng.integers(3, TINY["vocab_size"], size=n - 1)] for n in PROMPT_LENGTHS]
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    models = {c["name"]: make_case(c, refs, prompts) for c in CASES}
    write_json(OUT / "reference.json", {
        "about": "Last-position float32 logits of transformers' LlamaForCausalLM with each projection replaced by the "
                 "reference library's own dequantization, and fingerprints of those matrices; see "
                 "Tests/Fixtures/README.md.",
        "prompts": prompts, "models": models})
    sizes = {p.relative_to(OUT).as_posix(): p.stat().st_size for p in sorted(OUT.rglob("*")) if p.is_file()}
    write_readme_section(sizes)
    log(f"wrote {len(sizes)} files, {sum(sizes.values()):,} bytes")


if __name__ == "__main__":
    main()
