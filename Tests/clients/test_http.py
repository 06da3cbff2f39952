"""Triton HTTP conformance: curl-style generate, generate_stream, tritonclient.http, bad inputs,
concurrency and metrics, against a real `petrel serve`."""
import concurrent.futures
import json
import re
import subprocess

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

GEN = {"text_input": "What is machine learning?", "max_tokens": 20, "bad_words": "", "stop_words": "",
       "pad_id": 2, "end_id": 2}


def test_the_curl_command_returns_text_output(server):
    # Exactly the command: curl -X POST …/generate -d '{…}' (no content type).
    out = subprocess.run(["curl", "-s", "-X", "POST", f"{server.base}/v2/models/ensemble/generate",
                          "-d", json.dumps(GEN)], capture_output=True, text=True, check=True).stdout
    body = json.loads(out)
    assert isinstance(body["text_output"], str) and body["model_name"] == "ensemble"


def stream_text(server, payload):
    r = requests.post(f"{server.base}/v2/models/ensemble/generate_stream", json=payload, stream=True, timeout=60)
    assert r.status_code == 200
    pieces = []
    for line in r.iter_lines(decode_unicode=False):
        if line.startswith(b"data: "):
            event = json.loads(line[6:].decode("utf-8"))
            assert "error" not in event, event
            pieces.append(event["text_output"])
    return pieces


def test_generate_stream_joins_to_generate(server):
    full = requests.post(f"{server.base}/v2/models/ensemble/generate", json=GEN, timeout=60).json()["text_output"]
    pieces = stream_text(server, dict(GEN, stream=True))
    assert len(pieces) > 1
    joined = "".join(pieces)
    assert joined == full or joined.endswith(full)  # some templates echo the prompt in the first chunk


def test_tritonclient_metadata_config_and_infer(server):
    c = httpclient.InferenceServerClient(server.url)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("ensemble") and c.is_model_ready("preprocessing")
    meta = c.get_model_metadata("ensemble")
    assert {"text_input", "max_tokens"} <= {i["name"] for i in meta["inputs"]}
    assert "text_output" in {o["name"] for o in meta["outputs"]}
    cfg = c.get_model_config("tensorrt_llm")
    assert cfg["name"] == "tensorrt_llm"
    server_meta = c.get_server_metadata()
    assert "name" in server_meta and "extensions" in server_meta


@pytest.mark.parametrize("binary", [False, True])
def test_infer_on_preprocessing(server, binary):
    c = httpclient.InferenceServerClient(server.url)
    text = np.array([["Hello, world! ünïcödé"]], dtype=object)
    max_tokens = np.array([[8]], dtype=np.int32)
    inputs = [httpclient.InferInput("QUERY", text.shape, "BYTES"),
              httpclient.InferInput("REQUEST_OUTPUT_LEN", max_tokens.shape, "INT32")]
    inputs[0].set_data_from_numpy(text, binary_data=binary)
    inputs[1].set_data_from_numpy(max_tokens, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("INPUT_ID", binary_data=binary),
               httpclient.InferRequestedOutput("REQUEST_INPUT_LEN", binary_data=binary)]
    res = c.infer("preprocessing", inputs, outputs=outputs)
    ids = res.as_numpy("INPUT_ID")
    n = res.as_numpy("REQUEST_INPUT_LEN")
    assert ids.ndim == 2 and int(n.reshape(-1)[0]) > 0


def test_infer_on_ensemble(server):
    c = httpclient.InferenceServerClient(server.url)
    text = np.array([["What is machine learning?"]], dtype=object)
    mt = np.array([[12]], dtype=np.int32)
    inputs = [httpclient.InferInput("text_input", text.shape, "BYTES"),
              httpclient.InferInput("max_tokens", mt.shape, "INT32")]
    inputs[0].set_data_from_numpy(text)
    inputs[1].set_data_from_numpy(mt)
    res = c.infer("ensemble", inputs)
    out = res.as_numpy("text_output")
    assert out is not None and out.size == 1


@pytest.mark.parametrize("path,body,status", [
    ("/v2/models/no_such_model/generate", GEN, 404),
    ("/v2/models/ensemble/generate", dict(GEN, max_tokens=-1), 400),
    ("/v2/models/ensemble/generate", dict(GEN, max_tokens="twenty"), 400),
    ("/v2/models/ensemble/generate", {"max_tokens": 5}, 400),                    # missing text_input
])
def test_bad_inputs_get_clear_errors(server, path, body, status):
    r = requests.post(server.base + path, json=body, timeout=30)
    assert r.status_code == status, r.text
    assert "error" in r.json()
    assert requests.get(f"{server.base}/v2/health/ready", timeout=5).status_code == 200


def test_malformed_json_and_oversized_body(server):
    r = requests.post(f"{server.base}/v2/models/ensemble/generate", data=b"{not json", timeout=30)
    assert r.status_code == 400 and "error" in r.json()
    r = requests.post(f"{server.base}/v2/models/ensemble/generate", data=b"x" * (200 * 1024 * 1024), timeout=60)
    assert r.status_code in (400, 413)
    assert requests.get(f"{server.base}/v2/health/live", timeout=5).status_code == 200


def test_wrong_datatype_and_shape(server):
    body = {"inputs": [{"name": "QUERY", "shape": [1, 1], "datatype": "INT32", "data": [1]},
                       {"name": "REQUEST_OUTPUT_LEN", "shape": [1, 1], "datatype": "INT32", "data": [4]}]}
    r = requests.post(f"{server.base}/v2/models/preprocessing/infer", json=body, timeout=30)
    assert r.status_code == 400 and "error" in r.json()
    body["inputs"][0] = {"name": "QUERY", "shape": [1, 3], "datatype": "BYTES", "data": ["a"]}
    r = requests.post(f"{server.base}/v2/models/preprocessing/infer", json=body, timeout=30)
    assert r.status_code == 400


def test_32_concurrent_generates_equal_sequential(server):
    prompts = [dict(GEN, text_input=f"Question {i}: what is {i} plus {i}?", max_tokens=8) for i in range(32)]
    url = f"{server.base}/v2/models/ensemble/generate"
    sequential = [requests.post(url, json=p, timeout=60).json()["text_output"] for p in prompts[:6]]
    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        results = list(ex.map(lambda p: requests.post(url, json=p, timeout=120), prompts))
    assert all(r.status_code == 200 for r in results)
    assert [r.json()["text_output"] for r in results[:6]] == sequential


def test_metrics_move(server):
    def value(text, name, model):
        m = re.search(rf'^{name}\{{[^}}]*model="{model}"[^}}]*\}} ([0-9.e+]+)$', text, re.M)
        return float(m.group(1)) if m else 0.0
    before = value(server.metrics(), "nv_inference_request_success", "ensemble")
    requests.post(f"{server.base}/v2/models/ensemble/generate", json=GEN, timeout=60)
    after = value(server.metrics(), "nv_inference_request_success", "ensemble")
    assert after == before + 1
