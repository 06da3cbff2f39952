"""transformers.generate in fp16 on a randomly initialised Llama-2-7B over petrel bench's static
grid (batch x input/output), the reference `petrel bench --device cuda` is compared with.
Greedy, exactly `output` new tokens (min_new_tokens = max_new_tokens), random prompt ids.
Prints one markdown row per point: batch | input | output | latency ms | tokens/s, for
`generate` and for a plain greedy loop of forward calls over the model's KV cache (what the
model costs without generate's per-step machinery).
Usage: python3 scripts/hf_bench.py [--batch-size '1;8'] [--input-output-len '60,20;128,20']"""
import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", default="1;8;16;32;64;128")
    p.add_argument("--input-output-len", default="60,20;128,20;512,20")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    batches = [int(b) for b in args.batch_size.split(";")]
    pairs = [tuple(int(v) for v in s.split(",")) for s in args.input_output_len.split(";")]

    config = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                         rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(args.seed)
    t0 = time.time()
    torch.set_default_dtype(torch.float16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.eval()
    print(f"transformers model: random Llama-2-7B fp16 on {torch.cuda.get_device_name()}, "
          f"attention {model.config._attn_implementation}, built in {time.time() - t0:.1f} s", flush=True)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)

    def run(batch, input_len, output_len):
        ids = torch.randint(3, config.vocab_size, (batch, input_len), generator=gen).cuda()
        mask = torch.ones_like(ids)
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=output_len,
                                 min_new_tokens=output_len, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        assert out.shape[1] == input_len + output_len, out.shape
        return (time.perf_counter() - start) * 1e3

    def loop(batch, input_len, output_len):
        ids = torch.randint(3, config.vocab_size, (batch, input_len), generator=gen).cuda()
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            for _ in range(output_len - 1):
                next_ids = out.logits[:, -1].argmax(-1, keepdim=True)
                out = model(input_ids=next_ids, past_key_values=cache, use_cache=True)
                cache = out.past_key_values
            out.logits[:, -1].argmax(-1)
        torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3

    for batch in batches:  # warm-up, not reported
        run(batch, 16, 2)
        loop(batch, 16, 2)
    print("| batch | input | output | generate ms | generate tok/s | forward loop ms | forward loop tok/s |")
    print("|---|---|---|---|---|---|---|")
    for input_len, output_len in pairs:
        for batch in batches:
            ms = run(batch, input_len, output_len)
            torch.cuda.empty_cache()
            lms = loop(batch, input_len, output_len)
            torch.cuda.empty_cache()
            print(f"| {batch} | {input_len} | {output_len} | {ms:.1f} | {batch * output_len / ms * 1e3:.1f} "
                  f"| {lms:.1f} | {batch * output_len / lms * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
