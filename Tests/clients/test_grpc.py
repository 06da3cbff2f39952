"""Triton gRPC conformance with the real tritonclient.grpc against a real `petrel serve`:
metadata, config, infer on the ensemble, and decoupled streaming (start_stream +
async_stream_infer) as TensorRT-LLM's end_to_end_grpc_client.py --streaming uses it."""
import queue

import numpy as np
import requests
import tritonclient.grpc as grpcclient


def ensemble_inputs(text, max_tokens, stream):
    def make(name, arr, dtype):
        i = grpcclient.InferInput(name, arr.shape, dtype)
        i.set_data_from_numpy(arr)
        return i
    return [make("text_input", np.array([[text]], dtype=object), "BYTES"),
            make("max_tokens", np.array([[max_tokens]], dtype=np.int32), "INT32"),
            make("stream", np.array([[stream]], dtype=bool), "BOOL")]


def test_metadata_and_config(server):
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("ensemble")
    meta = c.get_model_metadata("ensemble")
    assert "text_input" in {i.name for i in meta.inputs}
    cfg = c.get_model_config("tensorrt_llm").config
    assert cfg.name == "tensorrt_llm" and cfg.model_transaction_policy.decoupled


def test_infer_matches_http_generate(server):
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    res = c.infer("ensemble", ensemble_inputs("What is machine learning?", 12, False))
    grpc_text = res.as_numpy("text_output").reshape(-1)[0].decode("utf-8")
    http_text = requests.post(f"{server.base}/v2/models/ensemble/generate",
                              json={"text_input": "What is machine learning?", "max_tokens": 12}, timeout=60).json()["text_output"]
    assert grpc_text == http_text


def test_streaming_sends_several_responses_then_the_final_one(server):
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    results = queue.Queue()
    c.start_stream(callback=lambda result, error: results.put((result, error)))
    c.async_stream_infer("ensemble", ensemble_inputs("What is machine learning?", 10, True),
                         request_id="s1", enable_empty_final_response=True)
    texts, final = [], False
    while not final:
        result, error = results.get(timeout=60)
        assert error is None, error
        response = result.get_response()
        final = response.parameters["triton_final_response"].bool_param
        out = result.as_numpy("text_output")
        if out is not None and out.size:
            texts.append(out.reshape(-1)[0].decode("utf-8"))
        assert response.id == "s1"
    c.stop_stream()
    assert len(texts) >= 2
    full = requests.post(f"{server.base}/v2/models/ensemble/generate",
                         json={"text_input": "What is machine learning?", "max_tokens": 10}, timeout=60).json()["text_output"]
    assert "".join(texts) == full
