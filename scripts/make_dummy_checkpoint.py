#!/usr/bin/env python3
"""A Hugging Face Llama folder of a real model's shape with random fp16 weights, for measuring the
server on the GPU machine (which has no model hub): `petrel serve` and `petrel bench --model` load
it like any checkpoint, so served and offline runs see the same weights.

The tokenizer files are copied from --tokenizer (default: the tiny Llama fixture, vocabulary 512),
and the config's vocab_size is that tokenizer's, so every id the model samples decodes; everything
else (hidden size, layers, heads, intermediate size) is the shape's. Weights are N(0, 0.02) like
`transformers`' initialiser, norms 1, written in shards of at most 4 GiB with an index.

Usage: python3 scripts/make_dummy_checkpoint.py OUT_DIR [--shape llama-2-7b] [--tokenizer DIR]
Needs torch and safetensors (the GPU machine has both); generates on the GPU when there is one.
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SHAPES = {
    # hidden, layers, heads, kv heads, intermediate, context
    "llama-2-7b": (4096, 32, 32, 32, 11008, 4096),
    "llama-3-8b": (4096, 32, 32, 8, 14336, 8192),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", default="llama-2-7b", choices=sorted(SHAPES))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "Tests/Fixtures/tiny-llama"))
    args = ap.parse_args()
    hidden, layers, heads, kv_heads, inter, context = SHAPES[args.shape]
    tok_config = json.load(open(os.path.join(args.tokenizer, "config.json")))
    vocab = tok_config["vocab_size"]
    os.makedirs(args.out, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json"):
        if os.path.exists(os.path.join(args.tokenizer, name)):
            shutil.copy(os.path.join(args.tokenizer, name), args.out)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": hidden // heads,
        "max_position_embeddings": context, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "vocab_size": vocab, "bos_token_id": tok_config.get("bos_token_id", 1),
        "eos_token_id": tok_config.get("eos_token_id", 2), "tie_word_embeddings": False,
        "torch_dtype": "float16", "attention_bias": False, "mlp_bias": False,
    }
    json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=2)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(0)
    hd = hidden // heads

    def rand(*shape):
        return (torch.randn(*shape, generator=gen, device=device, dtype=torch.float32) * 0.02).half().cpu()

    tensors = [("model.embed_tokens.weight", lambda: rand(vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors += [
            (p + "input_layernorm.weight", lambda: torch.ones(hidden, dtype=torch.float16)),
            (p + "post_attention_layernorm.weight", lambda: torch.ones(hidden, dtype=torch.float16)),
            (p + "self_attn.q_proj.weight", lambda: rand(heads * hd, hidden)),
            (p + "self_attn.k_proj.weight", lambda: rand(kv_heads * hd, hidden)),
            (p + "self_attn.v_proj.weight", lambda: rand(kv_heads * hd, hidden)),
            (p + "self_attn.o_proj.weight", lambda: rand(hidden, heads * hd)),
            (p + "mlp.gate_proj.weight", lambda: rand(inter, hidden)),
            (p + "mlp.up_proj.weight", lambda: rand(inter, hidden)),
            (p + "mlp.down_proj.weight", lambda: rand(hidden, inter)),
        ]
    tensors += [("model.norm.weight", lambda: torch.ones(hidden, dtype=torch.float16)),
                ("lm_head.weight", lambda: rand(vocab, hidden))]

    limit = 4 << 30
    shards, current, size = [], {}, 0
    for name, make in tensors:
        t = make()
        if current and size + t.numel() * 2 > limit:
            shards.append(current)
            current, size = {}, 0
        current[name] = t
        size += t.numel() * 2
    shards.append(current)
    index, total = {}, 0
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(args.out, file), metadata={"format": "pt"})
        for name, t in shard.items():
            index[name] = file
            total += t.numel() * 2
    json.dump({"metadata": {"total_size": total}, "weight_map": index},
              open(os.path.join(args.out, "model.safetensors.index.json"), "w"), indent=2)
    print(f"{args.out}: {args.shape} shape, vocab {vocab}, {total / 1e9:.2f} GB in {len(shards)} shards")


if __name__ == "__main__":
    main()
