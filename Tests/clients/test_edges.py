"""Serving edges against a real `petrel serve`, with the real clients: invalid UTF-8 in JSON
bodies, request priority (dynamic_batching priority_levels) over HTTP and gRPC, extensions Petrel
lacks answered as Triton answers without them, the logging extension changing the server's
log, and max_tokens beyond the model's context."""
import os
import re
import threading
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import init_repo, launch, stop

# --- invalid UTF-8 -------------------------------------------------------------------------


@pytest.mark.parametrize("path,body,offset", [
    ("/v2/models/ensemble/generate", b'{"text_input": "\xff\xfe", "max_tokens": 4}', 16),
    ("/v2/models/ensemble/infer",
     b'{"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1, 1], "data": ["\xff"]}]}', 83),
    ("/v1/completions", b'{"model": "ensemble", "prompt": "\xff\xfe", "max_tokens": 4}', 33),
    ("/v1/chat/completions", b'{"model": "ensemble", "messages": [{"role": "user", "content": "a\xfe"}]}', 65),
])
def test_invalid_utf8_in_a_json_body_is_400_naming_the_byte(server, path, body, offset):
    r = requests.post(server.base + path, data=body, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    message = error if isinstance(error, str) else error["message"]
    assert "invalid UTF-8" in message and f"offset {offset}" in message, message
    assert requests.get(f"{server.base}/v2/health/ready", timeout=10).status_code == 200


# --- priority ------------------------------------------------------------------------------

SLOW = """name: "slow"
backend: "identity"
max_batch_size: 1
dynamic_batching { priority_levels: 2 default_priority_level: 2 }
instance_group [ { count: 1 kind: KIND_CPU } ]
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ -1 ] } ]
parameters { key: "execute_delay_ms" value: { string_value: "300" } }
"""


@pytest.fixture(scope="module")
def busy():
    """Everything at max_batch_size 1; tensorrt_llm with two priority levels (default 2); a slow
    identity model (300 ms an execution, one instance) with the same levels."""
    repo = init_repo("--max-batch-size", "1")
    path = os.path.join(repo, "tensorrt_llm", "config.pbtxt")
    text = open(path).read().replace("dynamic_batching {", "dynamic_batching {\n  priority_levels: 2\n  default_priority_level: 2", 1)
    open(path, "w").write(text)
    os.makedirs(os.path.join(repo, "slow", "1"))
    open(os.path.join(repo, "slow", "config.pbtxt"), "w").write(SLOW)
    s = launch(repo)
    yield s
    stop(s)


def metric(server, request_type):
    m = re.search(r'nv_trt_llm_request_metrics\{[^}]*model="tensorrt_llm"[^}]*request_type="%s"[^}]*\} (\S+)' % request_type,
                  server.metrics())
    return float(m.group(1)) if m else 0


def run_in_order(plan, send, queued):
    """Starts send(name, priority) for each (name, priority) of `plan` in turn, calling
    queued(i) until the i-th has queued; returns the names in the order they finished."""
    finished, lock, threads = [], threading.Lock(), []

    def run(name, priority):
        send(name, priority)
        with lock:
            finished.append(name)

    for i, (name, priority) in enumerate(plan):
        t = threading.Thread(target=run, args=(name, priority))
        t.start()
        threads.append(t)
        queued(i)
        assert not finished, f"{finished[0]} ended before every request queued: the test proves nothing"
    for t in threads:
        t.join(120)
    return finished


PLAN = [("running", 0), ("default1", 0), ("default2", 0), ("high", 1)]


def identity_send(protocol, server):
    def send(name, priority):
        module = httpclient if protocol == "http" else grpcclient
        url = server.url if protocol == "http" else f"127.0.0.1:{server.grpc_port}"
        i = module.InferInput("INPUT0", [1, 1], "INT32")
        i.set_data_from_numpy(np.array([[1]], dtype=np.int32))
        module.InferenceServerClient(url).infer("slow", [i], priority=priority)
    return send


def ensemble_send(protocol, server):
    def send(name, priority):
        module = httpclient if protocol == "http" else grpcclient
        url = server.url if protocol == "http" else f"127.0.0.1:{server.grpc_port}"
        inputs = []
        for n, arr, dtype in [("text_input", np.array([[name]], dtype=object), "BYTES"),
                              ("max_tokens", np.array([[220 if name == "running" else 16]], dtype=np.int32), "INT32"),
                              ("end_id", np.array([[-1]], dtype=np.int32), "INT32")]:
            i = module.InferInput(n, arr.shape, dtype)
            i.set_data_from_numpy(arr)
            inputs.append(i)
        module.InferenceServerClient(url).infer("ensemble", inputs, priority=priority)
    return send


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_dynamic_batcher_serves_priority_1_before_queued_default_requests(busy, protocol):
    order = run_in_order(PLAN, identity_send(protocol, busy), lambda i: time.sleep(0.05))
    assert [n for n in order if n != "running"] == ["high", "default1", "default2"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_llm_admits_priority_1_before_queued_default_requests(busy, protocol):
    def queued(i):
        deadline = time.time() + 30
        want = ("active", 1) if i == 0 else ("waiting", i)
        while metric(busy, want[0]) < want[1] and time.time() < deadline:
            time.sleep(0.002)
    order = run_in_order(PLAN, ensemble_send(protocol, busy), queued)
    # The long request's answer may reach its client after the short one that followed it.
    assert [n for n in order if n != "running"] == ["high", "default1", "default2"]


# --- extensions Petrel lacks ---------------------------------------------------------------


def test_tracing_and_shared_memory_answer_as_triton_without_them(server):
    meta = requests.get(f"{server.base}/v2", timeout=10).json()
    assert "logging" in meta["extensions"]
    assert not {"trace", "system_shared_memory", "cuda_shared_memory"} & set(meta["extensions"])

    h = httpclient.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException, match="does not support tracing"):
        h.get_trace_settings()
    with pytest.raises(InferenceServerException, match="does not support tracing"):
        h.update_trace_settings(settings={"trace_rate": "1"})
    assert h.get_system_shared_memory_status() == []
    assert h.get_cuda_shared_memory_status() == []
    for call in (h.unregister_system_shared_memory, h.unregister_cuda_shared_memory):
        with pytest.raises(InferenceServerException, match="shared memory is not supported"):
            call()
    assert requests.post(f"{server.base}/v2/systemsharedmemory/unregister", timeout=10).status_code == 501

    g = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    with pytest.raises(InferenceServerException, match="does not support trace"):
        g.get_trace_settings()
    assert len(g.get_system_shared_memory_status().regions) == 0
    assert len(g.get_cuda_shared_memory_status().regions) == 0
    for call in (g.unregister_system_shared_memory, g.unregister_cuda_shared_memory):
        with pytest.raises(InferenceServerException, match="shared memory is not supported"):
            call()


# --- logging -------------------------------------------------------------------------------


def log_lines_after(server, mark):
    return open(server.log, errors="replace").read()[mark:]


def wait_for(server, mark, pattern):
    deadline = time.time() + 10
    while time.time() < deadline:
        text = log_lines_after(server, mark)
        if re.search(pattern, text, re.MULTILINE):
            return text
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r} in the server log:\n{log_lines_after(server, mark)}")


def test_logging_settings_change_what_the_server_logs(server):
    h = httpclient.InferenceServerClient(server.url)
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        before = h.get_log_settings()
        assert before["log_verbose_level"] == 0 and before["log_format"] == "default" and before["log_file"] == ""
        mark = len(open(server.log, errors="replace").read())
        h.is_model_ready("tensorrt_llm")
        time.sleep(0.3)
        assert "HTTP request" not in log_lines_after(server, mark)

        # HTTP: verbose 1 in ISO 8601 logs each request.
        updated = h.update_log_settings({"log_verbose_level": 1, "log_format": "ISO8601"})
        assert updated["log_verbose_level"] == 1 and updated["log_format"] == "ISO8601"
        h.is_model_ready("tensorrt_llm")
        wait_for(server, mark, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ V \d+ \S+:\d+\] HTTP request: GET /v2/models/tensorrt_llm/ready$")

        # gRPC sees and changes the same settings: back to the default format.
        settings = g.get_log_settings(as_json=True)["settings"]
        assert settings["log_verbose_level"]["uint32_param"] == 1
        g.update_log_settings({"log_format": "default"})
        assert h.get_log_settings()["log_format"] == "default"
        mark = len(open(server.log, errors="replace").read())
        g.is_server_live()
        wait_for(server, mark, r"^V\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ \S+:\d+\] gRPC request: inference.GRPCInferenceService/ServerLive$")

        # Verbose off: requests go unlogged again.
        g.update_log_settings({"log_verbose_level": 0})
        mark = len(open(server.log, errors="replace").read())
        h.is_server_live()
        g.is_server_live()
        time.sleep(0.3)
        assert "request:" not in log_lines_after(server, mark)

        # The log file cannot be changed over the network, on either protocol.
        with pytest.raises(InferenceServerException, match="log file location"):
            h.update_log_settings({"log_file": "/tmp/petrel.log"})
        with pytest.raises(InferenceServerException, match="log file location"):
            g.update_log_settings({"log_file": "/tmp/petrel.log"})
    finally:
        h.update_log_settings({"log_verbose_level": 0, "log_format": "default", "log_info": True})


# --- max_tokens beyond the context ---------------------------------------------------------


def test_max_tokens_beyond_the_context_is_400_with_the_limit(server):
    r = requests.post(f"{server.base}/v2/models/ensemble/generate", json={"text_input": "Hello", "max_tokens": 300}, timeout=30)
    assert r.status_code == 400
    assert "maximum context length is 256 tokens" in r.json()["error"] and "300 in the completion" in r.json()["error"]

    r = requests.post(f"{server.base}/v1/chat/completions", timeout=30,
                      json={"model": "ensemble", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 300})
    assert r.status_code == 400
    assert "This model's maximum context length is 256 tokens. However, you requested" in r.json()["error"]["message"]
    assert "in the messages, 300 in the completion" in r.json()["error"]["message"]

    g = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    inputs = []
    for n, arr, dtype in [("text_input", np.array([["Hello"]], dtype=object), "BYTES"),
                          ("max_tokens", np.array([[300]], dtype=np.int32), "INT32")]:
        i = grpcclient.InferInput(n, arr.shape, dtype)
        i.set_data_from_numpy(arr)
        inputs.append(i)
    with pytest.raises(InferenceServerException, match="maximum context length is 256"):
        g.infer("ensemble", inputs)
