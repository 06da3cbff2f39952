#!/usr/bin/env python3
"""Soak test: a running `petrel serve` under mixed load for a while, then its books checked.

CONCURRENCY clients (asyncio, raw HTTP/1.1, no client library) loop until DURATION seconds have
passed, each request drawn in turn from:
  generate        POST /v2/models/ensemble/generate (unary)
  stream          POST /v2/models/ensemble/generate_stream, read to the end
  openai          POST /v1/completions (half of them streamed)
  disconnect      generate_stream, read two events, then close the socket mid-stream
  bad-json        a truncated JSON body                      → must be 400 with {"error": ...}
  bad-utf8        invalid UTF-8 inside a JSON string          → must be 400 with {"error": ...}
Every response must be what its kind expects; any other outcome is a failure. The server's
resident memory (VmRSS) is sampled every 10 s: a leak grows it steadily, an allocator settling
into its working set grows it early and then less and less, so the test is the mean of the last
quarter of the run against the third's (at most --rss-slack-mib more); device memory (nvidia-smi, when there is one) must not grow
after the warm-up, and the tensorrt_llm model's KV blocks in use (nv_trt_llm_kv_cache_block_metrics
used) must be back to 0 once the load stops. Prints a table; exits 1 on failure.

Usage: python3 scripts/soak.py --http-port 8000 --metrics-port 8002 --pid PID
       [--duration 600] [--concurrency 64] [--max-tokens 32] [--rss-slack-mib 64]
"""
import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request

KINDS = ["generate", "stream", "openai", "disconnect", "bad-json", "bad-utf8"]


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def device_mib(pid):
    """The process's device memory in MiB from nvidia-smi, or None without a GPU."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        p, _, m = line.partition(",")
        if p.strip() == str(pid):
            return int(m.strip())
    return None


def kv_blocks_used(metrics_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    total = 0
    for m in re.finditer(r'^nv_trt_llm_kv_cache_block_metrics\{([^}]*)\} (\S+)$', text, re.M):
        if 'kv_cache_block_type="used"' in m.group(1):
            total += float(m.group(2))
    return int(total)


async def request(host, port, path, body, read_events=None):
    """POST on a fresh connection; returns (status, body bytes). With read_events, closes the
    connection after that many SSE events (a client going away)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
        await writer.drain()
        head = (await reader.readline()).decode()
        status = int(head.split()[1])
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        if read_events is None:
            return status, await reader.read()
        data = b""
        while data.count(b"\n\n") < read_events:
            chunk = await reader.read(4096)
            if not chunk:
                break
            data += chunk
        return status, data
    finally:
        writer.close()


def events(body):
    """The JSON payloads of the SSE `data:` lines in a (possibly chunked) body."""
    out = []
    for line in body.split(b"\n"):
        line = line.strip()
        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
            out.append(json.loads(line[5:]))
    return out


async def one(kind, host, port, max_tokens, i):
    ensemble = {"text_input": f"soak request {i}: tell me about the sea", "max_tokens": max_tokens,
                "bad_words": "", "stop_words": ""}
    if kind == "generate":
        status, body = await request(host, port, "/v2/models/ensemble/generate", json.dumps(ensemble).encode())
        return status == 200 and "text_output" in json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])
    if kind == "stream":
        status, body = await request(host, port, "/v2/models/ensemble/generate_stream",
                                     json.dumps(dict(ensemble, stream=True)).encode())
        evs = events(body)
        return status == 200 and len(evs) > 0 and all("error" not in e for e in evs)
    if kind == "openai":
        stream = i % 2 == 0
        body = {"model": "ensemble", "prompt": f"soak {i}", "max_tokens": max_tokens, "stream": stream}
        status, out = await request(host, port, "/v1/completions", json.dumps(body).encode())
        if stream:
            evs = events(out)
            return status == 200 and len(evs) > 0 and all("error" not in e for e in evs)
        return status == 200 and b'"choices"' in out
    if kind == "disconnect":
        status, _ = await request(host, port, "/v2/models/ensemble/generate_stream",
                                  json.dumps(dict(ensemble, stream=True, max_tokens=max_tokens * 4)).encode(), read_events=2)
        return status == 200
    if kind == "bad-json":
        status, body = await request(host, port, "/v2/models/ensemble/generate", b'{"text_input": "x", "max_tok')
    else:
        status, body = await request(host, port, "/v2/models/ensemble/generate", b'{"text_input": "\xff\xfe", "max_tokens": 4}')
    return status == 400 and b'"error"' in body


async def load(host, port, duration, concurrency, max_tokens, pid=None):
    counts = {k: [0, 0] for k in KINDS}   # kind -> [done, failed]
    failures = []
    samples = []   # (seconds, RSS KiB)
    start = time.time()
    deadline = start + duration
    serial = iter(range(10 ** 9))

    async def sampler():
        while time.time() < deadline:
            samples.append((time.time() - start, rss_kib(pid)))
            await asyncio.sleep(10)

    async def client(c):
        while time.time() < deadline:
            i = next(serial)
            kind = KINDS[(i + c) % len(KINDS)]
            try:
                ok = await one(kind, host, port, max_tokens, i)
            except Exception as e:   # a reset or a refused connection is a failure too
                ok = False
                failures.append(f"{kind}: {e!r}")
            counts[kind][0] += 1
            if not ok:
                counts[kind][1] += 1
                if len(failures) < 20:
                    failures.append(f"{kind} #{i} failed")

    await asyncio.gather(*(client(c) for c in range(concurrency)), *([sampler()] if pid else []))
    return counts, failures, samples


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--pid", type=int, required=True, help="the petrel serve process")
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--rss-slack-mib", type=float, default=16, help="RSS growth allowed from the third quarter's mean to the last's")
    a = p.parse_args()
    # Warm-up: every kind once, so caches and pools are at their working size before the baseline.
    asyncio.run(load(a.host, a.http_port, 5, min(a.concurrency, 8), a.max_tokens))
    time.sleep(1)
    rss0, dev0 = rss_kib(a.pid), device_mib(a.pid)
    start = time.time()
    counts, failures, samples = asyncio.run(load(a.host, a.http_port, a.duration, a.concurrency, a.max_tokens, a.pid))
    elapsed = time.time() - start
    time.sleep(2)
    rss1, dev1 = rss_kib(a.pid), device_mib(a.pid)
    kv = kv_blocks_used(a.metrics_port)
    print(f"soak: {elapsed:.0f} s at concurrency {a.concurrency}, max_tokens {a.max_tokens}")
    print("| kind | requests | failed |")
    print("|---|---|---|")
    for k in KINDS:
        print(f"| {k} | {counts[k][0]} | {counts[k][1]} |")
    # RSS swings by tens of MiB from one sample to the next under load, so quarters are compared
    # by their means: the last quarter against the third.
    q = max(len(samples) // 4, 1)
    means = [sum(k for _, k in samples[i * q:(i + 1) * q]) / q / 1024 for i in range(4)] if len(samples) >= 4 else None
    grew = means[3] - means[2] if means else (rss1 - rss0) / 1024
    print(f"RSS: {rss0 / 1024:.1f} MiB after the warm-up, {rss1 / 1024:.1f} MiB at the end ({(rss1 - rss0) / 1024:+.1f} MiB); "
          + (f"quarter means {' '.join(f'{m:.0f}' for m in means)} MiB, last quarter {grew:+.1f} MiB on the third" if means else ""))
    print("RSS every 10 s, MiB: " + " ".join(f"{kib / 1024:.0f}" for _, kib in samples))
    if dev0 is not None:
        print(f"device memory: {dev0} MiB after the warm-up, {dev1} MiB at the end")
    print(f"KV blocks in use at the end: {kv}")
    for f in failures[:20]:
        print("  " + f)
    ok = (all(c[1] == 0 for c in counts.values()) and grew <= a.rss_slack_mib and kv == 0
          and (dev0 is None or dev1 == dev0))
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
