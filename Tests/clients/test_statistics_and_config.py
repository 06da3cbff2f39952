"""Statistics and config checks against a real `petrel serve`, with the real clients: the
ensemble's inference and execution counts (Triton's ensemble scheduler counts a successful
request as one execution of its batch size) through HTTP and gRPC statistics and Prometheus, and
config blocks Petrel does not implement refused at load with file, line and field."""
import os
import re

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import init_repo, launch, stop


def ensemble_inputs(module, text, max_tokens):
    inputs = []
    for name, arr, dtype in [("text_input", np.array([[text]], dtype=object), "BYTES"),
                             ("max_tokens", np.array([[max_tokens]], dtype=np.int32), "INT32")]:
        i = module.InferInput(name, arr.shape, dtype)
        i.set_data_from_numpy(arr)
        inputs.append(i)
    return inputs


def counts(stats):
    """(success count, inference_count, execution_count) of the one version in a statistics answer."""
    s = stats["model_stats"][0]
    return int(s["inference_stats"]["success"]["count"]), int(s.get("inference_count", 0)), int(s.get("execution_count", 0))


def prometheus(server, family, model):
    m = re.search(rf'^{family}{{model="{model}",version="1"}} (\S+)$', server.metrics(), re.M)
    return float(m.group(1)) if m else None


def test_ensemble_counts_its_inferences_and_executions(server):
    http = httpclient.InferenceServerClient(server.url)
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    before = counts(http.get_inference_statistics("ensemble"))
    http.infer("ensemble", ensemble_inputs(httpclient, "count me", 3))
    grpc.infer("ensemble", ensemble_inputs(grpcclient, "and me", 3))
    success, inferences, executions = counts(http.get_inference_statistics("ensemble"))
    assert (success - before[0], inferences - before[1], executions - before[2]) == (2, 2, 2)
    g = grpc.get_inference_statistics("ensemble", as_json=True)["model_stats"][0]
    assert int(g["inference_count"]) == inferences and int(g["execution_count"]) == executions
    assert prometheus(server, "nv_inference_count", "ensemble") == inferences
    assert prometheus(server, "nv_inference_exec_count", "ensemble") == executions


@pytest.fixture(scope="module")
def explicit():
    """A server in explicit model control, so the load API can be asked to load a bad config."""
    repo = init_repo()
    s = launch(repo, ["--model-control-mode", "explicit", "--load-model", "*"])
    yield s
    stop(s)


@pytest.mark.parametrize("block,field", [
    ("model_warmup [ { name: \"w\" batch_size: 1 } ]", "model_warmup"),
    ("response_cache { enable: true }", "response_cache"),
    ("optimization { input_pinned_memory { enable: false } }", "optimization"),
])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_block_petrel_does_not_implement_is_refused_at_load(explicit, protocol, block, field):
    path = os.path.join(explicit.repo, "postprocessing", "config.pbtxt")
    original = open(path).read()
    lines = original.count("\n") + (0 if original.endswith("\n") else 1)
    try:
        with open(path, "w") as f:
            f.write(original.rstrip("\n") + "\n" + block + "\n")
        client = (httpclient.InferenceServerClient(explicit.url) if protocol == "http"
                  else grpcclient.InferenceServerClient(f"127.0.0.1:{explicit.grpc_port}"))
        with pytest.raises(InferenceServerException) as e:
            client.load_model("postprocessing")
        message = str(e.value)
        assert "config.pbtxt" in message and field in message and f":{lines + 1}" in message, message
    finally:
        with open(path, "w") as f:
            f.write(original)
        httpclient.InferenceServerClient(explicit.url).load_model("postprocessing")
    assert httpclient.InferenceServerClient(explicit.url).is_model_ready("postprocessing")
