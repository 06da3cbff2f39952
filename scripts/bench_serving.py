#!/usr/bin/env python3
"""Served throughput against the offline engine, and the three ways in against each other.

For each concurrency C it runs, on the same model with the same request count and lengths:
  offline      `petrel bench --mode serving --concurrency C` (the Engine alone, no server)
  generate     POST /v2/models/ensemble/generate (HTTP, tokenizer + LLM + detokenizer ensemble)
  stream-http  POST /v2/models/ensemble/generate_stream (Server-Sent Events)
  stream-async the same route from an asyncio client (one task and one kept-alive connection per
               client, no threads or client library): the one that keeps up at 128-256 streams
  stream-grpc  tritonclient.grpc start_stream + async_stream_infer with stream=True
and prints one markdown table: requests/s, output tokens/s, time to first token (streaming paths),
and each served path's throughput relative to the offline engine (the overhead of HTTP/gRPC and
the ensemble). Every request asks for exactly --output-len tokens (min_tokens = max_tokens; the
server's generated-token counter is checked after each point), and its prompt is text that the
model's own preprocessing turns into exactly --input-len tokens.

The engines are configured alike: for each concurrency C a fresh server runs a repository written
with max_batch_size C, the offline engine's KV block count (max_tokens_in_paged_kv_cache), its
max_num_tokens, and enable_kv_cache_reuse false (every served request has the same prompt; the
offline engine neither reuses nor shares prompts). Clients keep their connection (one HTTP session
and one gRPC stream per client thread), as a load generator does. Each point runs --repeats
times, offline and served interleaved; the table gives the mean and the spread (min-max).

Usage: python3 scripts/bench_serving.py [--bin .build/release/petrel] [--model PATH]
       [--concurrency "1;32"] [--num-requests 32] [--input-len 64] [--output-len 32] [--repeats 2]
"""
import argparse
import json
import os
import queue
import re
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


BLOCK_SIZE = 32     # tokens_per_block, the same default on both sides


def matched_repo_args(concurrency, in_len, out_len):
    """`petrel repo init` arguments for the engine `petrel bench --mode serving` builds (Bench.makeEngine):
    max batch = concurrency, blocks = batch * ceil((in + out) / block) + 1, max_num_tokens 8192, no reuse."""
    blocks = concurrency * ((in_len + out_len + BLOCK_SIZE - 1) // BLOCK_SIZE) + 1
    return ["--max-batch-size", str(concurrency), "--max-tokens-in-paged-kv-cache", str(blocks * BLOCK_SIZE),
            "--max-num-tokens", "8192", "--enable-kv-cache-reuse", "false"]


class Server:
    def __init__(self, binary, model, extra, device="cpu"):
        self.tmp = tempfile.mkdtemp(prefix="petrel-bench-")
        repo = os.path.join(self.tmp, "repo")
        subprocess.run([binary, "repo", "init", "--model", model, "--output", repo] + extra, check=True,
                       stdout=subprocess.DEVNULL)
        self.http, self.grpc, self.metrics = free_port(), free_port(), free_port()
        self.log = open(os.path.join(self.tmp, "server.log"), "w")
        self.proc = subprocess.Popen([binary, "serve", "--model-repository", repo, "--http-port", str(self.http),
                                      "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics),
                                      "--device", device],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.http}"
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("petrel serve exited:\n" + open(self.log.name).read())
            try:
                if urllib.request.urlopen(self.base + "/v2/health/ready", timeout=2).status == 200:
                    return
            except Exception:
                time.sleep(0.5)
        raise RuntimeError("petrel serve did not become ready")

    def generated_tokens(self):
        """petrel_generation_tokens_total of the tensorrt_llm model."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10).read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("petrel_generation_tokens_total{") and 'model="tensorrt_llm"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def token_count(server, text):
    body = {"inputs": [{"name": "QUERY", "shape": [1, 1], "datatype": "BYTES", "data": [text]},
                       {"name": "REQUEST_OUTPUT_LEN", "shape": [1, 1], "datatype": "INT32", "data": [1]}]}
    req = urllib.request.Request(server.base + "/v2/models/preprocessing/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    for o in json.loads(urllib.request.urlopen(req, timeout=60).read())["outputs"]:
        if o["name"] == "REQUEST_INPUT_LEN":
            return int(o["data"][0])
    raise RuntimeError("preprocessing returned no REQUEST_INPUT_LEN")


def prompt_of_length(server, n):
    """Text the model's preprocessing turns into exactly n tokens (words varied so no merge)."""
    words = ["river", "stone", "light", "north", "paper", "green", "quiet", "market", "window", "garden"]
    for extra in range(0, 4 * n):
        text = " ".join(words[i % len(words)] for i in range(max(1, n - 1 - extra // 4)))
        text = text + "." * (extra % 4)
        c = token_count(server, text)
        if c == n:
            return text
    raise RuntimeError(f"could not build a {n}-token prompt")


def ensemble_body(text, out_len, stream=False):
    return {"text_input": text, "max_tokens": out_len, "min_tokens": out_len, "bad_words": "", "stop_words": "",
            "stream": stream}


def run_closed_loop(concurrency, total, one):
    """Runs `one()` total times with `concurrency` in flight; returns (wall seconds, results)."""
    results, lock = [], threading.Lock()
    counter = iter(range(total))

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            r = one()
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, results


_local = threading.local()


def session():
    import requests   # only the threaded paths need it (the asyncio one uses no library)
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def http_generate(server, text, out_len):
    def one():
        t0 = time.perf_counter()
        r = session().post(server.base + "/v2/models/ensemble/generate", json=ensemble_body(text, out_len), timeout=600)
        r.raise_for_status()
        assert "text_output" in r.json()
        return {"ttft": None, "latency": time.perf_counter() - t0}
    return one


def http_stream(server, text, out_len):
    def one():
        t0 = time.perf_counter()
        first = None
        events = 0
        with session().post(server.base + "/v2/models/ensemble/generate_stream", json=ensemble_body(text, out_len, True),
                           stream=True, timeout=600) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if line.startswith(b"data:"):
                    payload = json.loads(line[5:])
                    if "error" in payload:
                        raise RuntimeError(payload["error"])
                    if first is None:
                        first = time.perf_counter() - t0
                    events += 1
        return {"ttft": first, "latency": time.perf_counter() - t0, "events": events}
    return one


async def _sse_request(reader, writer, host, path, body):
    """One POST on a kept-alive HTTP/1.1 connection; yields the `data:` payloads of the SSE body
    (chunked or sized) as they arrive."""
    writer.write((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"HTTP {status!r}")
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    buffer = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            buffer += await reader.readexactly(size)
            await reader.readexactly(2)
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if event.startswith(b"data:"):
                    yield event[5:]
    else:
        buffer = await reader.readexactly(int(headers.get("content-length", "0")))
        for event in buffer.split(b"\n\n"):
            if event.startswith(b"data:"):
                yield event[5:]


def http_stream_async(server, text, out_len, concurrency, total):
    """generate_stream from one asyncio task per client, each on its own kept-alive connection
    (no threads, no client library): returns (wall seconds, results)."""
    import asyncio
    body = json.dumps(ensemble_body(text, out_len, True)).encode()
    host, port = server.base.split("//")[1].split(":")

    async def client(counter, results):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while next(counter, None) is not None:
                t0 = time.perf_counter()
                first, events = None, 0
                async for payload in _sse_request(reader, writer, host, "/v2/models/ensemble/generate_stream", body):
                    if b'"error"' in payload and "error" in json.loads(payload):
                        raise RuntimeError(json.loads(payload)["error"])
                    if first is None:
                        first = time.perf_counter() - t0
                    events += 1
                results.append({"ttft": first, "latency": time.perf_counter() - t0, "events": events})
        finally:
            writer.close()

    async def run():
        counter, results = iter(range(total)), []
        start = time.perf_counter()
        await asyncio.gather(*(client(counter, results) for _ in range(concurrency)))
        return time.perf_counter() - start, results

    return asyncio.run(run())


grpc_clients = []


def close_grpc_clients():
    while grpc_clients:
        c = grpc_clients.pop()
        c.stop_stream()
        c.close()


def grpc_stream(server, text, out_len):
    import tritonclient.grpc as grpcclient

    def make(name, arr, dtype):
        i = grpcclient.InferInput(name, arr.shape, dtype)
        i.set_data_from_numpy(arr)
        return i

    def one():
        # One client and one open stream per client thread, reused by its requests.
        if getattr(_local, "grpc_port", None) != server.grpc:
            _local.grpc_port = server.grpc
            _local.grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}")
            _local.results = queue.Queue()
            _local.grpc.start_stream(callback=lambda result, error, q=_local.results: q.put((result, error)))
            grpc_clients.append(_local.grpc)
        client, results = _local.grpc, _local.results
        inputs = [make("text_input", np.array([[text]], dtype=object), "BYTES"),
                  make("max_tokens", np.array([[out_len]], dtype=np.int32), "INT32"),
                  make("min_tokens", np.array([[out_len]], dtype=np.int32), "INT32"),
                  make("stream", np.array([[True]], dtype=bool), "BOOL")]
        t0 = time.perf_counter()
        client.async_stream_infer("ensemble", inputs, enable_empty_final_response=True)
        first, final, events = None, False, 0
        while not final:
            result, error = results.get(timeout=600)
            if error is not None:
                raise RuntimeError(str(error))
            response = result.get_response()
            final = response.parameters["triton_final_response"].bool_param
            out = result.as_numpy("text_output")
            if out is not None and out.size:
                events += 1
                if first is None:
                    first = time.perf_counter() - t0
        latency = time.perf_counter() - t0
        return {"ttft": first, "latency": latency, "events": events}
    return one


def offline(binary, model, concurrency, total, in_len, out_len, device):
    out = subprocess.run([binary, "bench", "--mode", "serving", "--model", model, "--num-requests", str(total),
                          "--concurrency", str(concurrency), "--input-len", str(in_len), "--output-len", str(out_len),
                          "--device", device], check=True, capture_output=True, text=True).stdout
    row = [l for l in out.splitlines() if l.startswith("| concurrency")][-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # | load | requests | in/out | requests/s | output tok/s | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 |
    return {"req_s": float(cells[3]), "tok_s": float(cells[4]), "ttft50": float(cells[5]), "ttft99": float(cells[6])}


def spread(values, fmt="{:.1f}"):
    """mean (min-max)"""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "petrel"))
    p.add_argument("--model", default=os.path.expanduser("~/.cache/petrel/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--concurrency", default="1;32")
    p.add_argument("--num-requests", type=int, default=32)
    p.add_argument("--requests-per-client", type=int, default=0,
                   help="if set, each point runs concurrency x this many requests instead of --num-requests")
    p.add_argument("--input-len", type=int, default=64)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--paths", default="offline;generate;stream-http;stream-grpc")
    p.add_argument("--repo-args", default="", help="extra arguments for `petrel repo init` (after the matched ones)")
    a = p.parse_args()
    paths = a.paths.split(";")
    names = {"offline": "offline engine", "generate": "HTTP generate", "stream-http": "HTTP generate_stream",
             "stream-async": "HTTP generate_stream (asyncio)", "stream-grpc": "gRPC stream"}
    count = f"{a.requests_per_client} requests per client" if a.requests_per_client else f"{a.num_requests} requests"
    print(f"model: {os.path.basename(a.model)}, {count} per point, "
          f"input {a.input_len} tokens, output exactly {a.output_len} tokens, device {a.device}, {a.repeats} runs per point "
          "(mean, min-max in brackets)")
    print("| path | concurrency | requests/s | output tok/s | vs offline | TTFT p50 ms | TTFT p99 ms | mean latency ms |")
    print("|---|---|---|---|---|---|---|---|")
    total = a.num_requests
    for c in [int(x) for x in a.concurrency.split(";")]:
        a.num_requests = c * a.requests_per_client if a.requests_per_client else total
        server = None
        if any(x != "offline" for x in paths):
            server = Server(a.bin, a.model, matched_repo_args(c, a.input_len, a.output_len) + a.repo_args.split(), a.device)
        try:
            text = prompt_of_length(server, a.input_len) if server else None
            if server:   # warm-up, not reported
                http_generate(server, text, 4)()
            runs = {path: [] for path in paths}
            for _ in range(a.repeats):
                for path in paths:
                    if path == "offline":
                        runs[path].append(offline(a.bin, a.model, c, a.num_requests, a.input_len, a.output_len, a.device))
                        continue
                    before = server.generated_tokens()
                    if path == "stream-async":
                        wall, results = http_stream_async(server, text, a.output_len, c, a.num_requests)
                    else:
                        fn = {"generate": http_generate, "stream-http": http_stream, "stream-grpc": grpc_stream}[path]
                        wall, results = run_closed_loop(c, a.num_requests, fn(server, text, a.output_len))
                    close_grpc_clients()
                    generated = server.generated_tokens() - before
                    if generated != a.num_requests * a.output_len:
                        raise RuntimeError(f"{path}: the server generated {generated} tokens, expected "
                                           f"{a.num_requests} x {a.output_len}")
                    ttfts = [r["ttft"] * 1000 for r in results if r["ttft"] is not None]
                    runs[path].append({"req_s": a.num_requests / wall, "tok_s": generated / wall,
                                       "ttft50": percentile(ttfts, 50) if ttfts else None,
                                       "ttft99": percentile(ttfts, 99) if ttfts else None,
                                       "latency": statistics.mean(r["latency"] for r in results) * 1000})
            base = statistics.mean(r["tok_s"] for r in runs["offline"]) if "offline" in runs else None
            for path in paths:
                rs = runs[path]
                tok = [r["tok_s"] for r in rs]
                rel = f"{100 * statistics.mean(tok) / base:.1f}%" if base else "-"
                t50 = spread([r["ttft50"] for r in rs]) if rs[0]["ttft50"] is not None else "-"
                t99 = spread([r["ttft99"] for r in rs]) if rs[0]["ttft99"] is not None else "-"
                lat = spread([r["latency"] for r in rs]) if "latency" in rs[0] else "-"
                print(f"| {names[path]} | {c} | {spread([r['req_s'] for r in rs], '{:.2f}')} | {spread(tok)} | {rel} | "
                      f"{t50} | {t99} | {lat} |", flush=True)
        finally:
            if server:
                server.stop()


if __name__ == "__main__":
    main()
