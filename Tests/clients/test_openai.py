"""OpenAI-compatible API conformance with the real `openai` client against a real `petrel serve`:
models list, completions and chat (streaming and not), usage, stop, n, seed, logprobs,
stream_options.include_usage, errors in OpenAI's shape, and greedy text equal to the Triton
generate route's."""
import numpy as np
import openai
import pytest
import requests
import tritonclient.grpc as grpcclient

PROMPT = "What is machine learning?"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0, timeout=120)


def generate(server, model, prompt, max_tokens):
    r = requests.post(f"{server.base}/v2/models/{model}/generate",
                      json={"text_input": prompt, "max_tokens": max_tokens}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_models_lists_the_text_models(client):
    models = client.models.list()
    ids = {m.id for m in models.data}
    assert {"ensemble", "tensorrt_llm_bls", "tensorrt_llm"} <= ids
    assert "preprocessing" not in ids and "postprocessing" not in ids
    assert all(m.object == "model" and m.created > 0 and m.owned_by for m in models.data)
    assert client.models.retrieve("ensemble").id == "ensemble"


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls", "tensorrt_llm"])
def test_greedy_completion_equals_triton_generate(server, client, model):
    want = generate(server, "ensemble", PROMPT, 12)
    c = client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0)
    assert c.object == "text_completion" and c.model == model and c.id.startswith("cmpl-")
    assert len(c.choices) == 1 and c.choices[0].index == 0
    assert c.choices[0].text == want["text_output"]
    assert c.choices[0].finish_reason == want["finish_reason"] == "length"
    # usage counts the same tokens as the engine behind the Triton route
    assert c.usage.prompt_tokens == want["prompt_tokens"]
    assert c.usage.completion_tokens == want["completion_tokens"] == 12
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens


def test_greedy_text_is_the_same_three_ways_in(server, client):
    """HTTP generate, gRPC ModelInfer and OpenAI completions and chat's raw prompt agree."""
    prompt = "The capital of France is"
    http_text = generate(server, "ensemble", prompt, 16)["text_output"]
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    inputs = [grpcclient.InferInput("text_input", [1, 1], "BYTES"), grpcclient.InferInput("max_tokens", [1, 1], "INT32")]
    inputs[0].set_data_from_numpy(np.array([[prompt]], dtype=object))
    inputs[1].set_data_from_numpy(np.array([[16]], dtype=np.int32))
    grpc_text = g.infer("ensemble", inputs).as_numpy("text_output").reshape(-1)[0].decode("utf-8")
    openai_text = client.completions.create(model="ensemble", prompt=prompt, max_tokens=16, temperature=0).choices[0].text
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(model="ensemble", prompt=prompt, max_tokens=16,
                                                                              temperature=0, stream=True) if ch.choices)
    assert http_text == grpc_text == openai_text == streamed


def test_prompt_tokens_equal_the_preprocessing_count(server, client):
    body = {"inputs": [{"name": "QUERY", "shape": [1, 1], "datatype": "BYTES", "data": [PROMPT]},
                       {"name": "REQUEST_OUTPUT_LEN", "shape": [1, 1], "datatype": "INT32", "data": [4]}],
            "outputs": [{"name": "REQUEST_INPUT_LEN"}, {"name": "INPUT_ID"}]}
    r = requests.post(f"{server.base}/v2/models/preprocessing/infer", json=body, timeout=30).json()
    n = {o["name"]: o for o in r["outputs"]}["REQUEST_INPUT_LEN"]["data"][0]
    c = client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=3, temperature=0)
    assert c.usage.prompt_tokens == n
    # the same prompt as token ids gives the same text
    ids = {o["name"]: o for o in r["outputs"]}["INPUT_ID"]["data"]
    by_ids = client.completions.create(model="ensemble", prompt=ids, max_tokens=3, temperature=0)
    assert by_ids.choices[0].text == c.choices[0].text and by_ids.usage.prompt_tokens == n


def test_streamed_completion_joins_to_the_whole(client):
    whole = client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=10, temperature=0)
    chunks = list(client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=10, temperature=0, stream=True))
    assert len(chunks) >= 2 and all(ch.object == "text_completion" and ch.id == chunks[0].id for ch in chunks)
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(ch.usage is None for ch in chunks)


def test_chat_completion_and_stream_agree(server, client):
    messages = [{"role": "user", "content": "Hello! Who are you?"}]
    whole = client.chat.completions.create(model="ensemble", messages=messages, max_tokens=8, temperature=0)
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    msg = whole.choices[0].message
    assert msg.role == "assistant" and isinstance(msg.content, str)
    assert whole.usage.completion_tokens <= 8 and whole.usage.prompt_tokens > 0
    # max_completion_tokens is the newer name of max_tokens
    newer = client.chat.completions.create(model="ensemble", messages=messages, max_completion_tokens=8, temperature=0)
    assert newer.choices[0].message.content == msg.content

    stream = client.chat.completions.create(model="ensemble", messages=messages, max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert content == msg.content
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    # include_usage: every chunk has usage null, then a last chunk with no choices carries it
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(ch.usage is None for ch in chunks[:-1])


def test_chat_prompt_is_rendered_with_the_checkpoint_template(server, client):
    # The tiny Llama's template is Llama 2's: [INST] ... [/INST]; its prompt tokens match the
    # rendered text through preprocessing (the template writes <s>, so nothing is added).
    c = client.chat.completions.create(model="ensemble", messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0)
    rendered = "<s>[INST] Hi [/INST]"
    body = {"inputs": [{"name": "QUERY", "shape": [1, 1], "datatype": "BYTES", "data": [rendered]},
                       {"name": "REQUEST_OUTPUT_LEN", "shape": [1, 1], "datatype": "INT32", "data": [2]}],
            "outputs": [{"name": "REQUEST_INPUT_LEN"}]}
    n = requests.post(f"{server.base}/v2/models/preprocessing/infer", json=body, timeout=30).json()["outputs"][0]["data"][0]
    assert c.usage.prompt_tokens == n - 1  # preprocessing adds a BOS of its own
    # a conversation the template refuses (roles must alternate) is a clear 400
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ensemble", messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
                                       max_tokens=2)


def test_stop_strings_end_the_text(client):
    full = client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=16, temperature=0).choices[0].text
    assert len(full) > 6
    stop = full[4:6]
    cut = full[:full.index(stop)]
    for value in (stop, [stop, "never-generated-string"]):
        c = client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=16, temperature=0, stop=value)
        assert c.choices[0].text == cut and c.choices[0].finish_reason == "stop"
        assert c.usage.completion_tokens < 16
    streamed = list(client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=16, temperature=0, stop=stop, stream=True))
    assert "".join(ch.choices[0].text for ch in streamed) == cut
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_n_choices_and_seeded_sampling(client):
    kwargs = dict(model="ensemble", prompt=PROMPT, max_tokens=12, temperature=0.9, top_p=0.95)
    a = client.completions.create(n=2, seed=1234, **kwargs)
    assert sorted(ch.index for ch in a.choices) == [0, 1]
    assert a.usage.completion_tokens <= 24
    if all(ch.finish_reason == "length" for ch in a.choices):
        assert a.usage.completion_tokens == 24
    b = client.completions.create(n=2, seed=1234, **kwargs)
    assert [ch.text for ch in a.choices] == [ch.text for ch in b.choices]      # same seed, same text
    assert a.choices[0].text != a.choices[1].text                                 # choices draw differently
    other = client.completions.create(n=1, seed=99, **kwargs)
    assert other.choices[0].text != a.choices[0].text                             # another seed, other text
    chat = [client.chat.completions.create(model="ensemble", messages=[{"role": "user", "content": "Tell me a story"}],
                                           max_tokens=10, temperature=1.0, seed=7).choices[0].message.content for _ in range(2)]
    assert chat[0] == chat[1]
    # n with streaming: every chunk names its choice
    chunks = list(client.completions.create(n=2, seed=5, stream=True, **kwargs))
    texts = {0: "", 1: ""}
    for ch in chunks:
        for c in ch.choices:
            texts[c.index] += c.text
    whole = client.completions.create(n=2, seed=5, **kwargs)
    assert [texts[0], texts[1]] == [c.text for c in whole.choices]


def test_completion_logprobs(client):
    c = client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=8, temperature=0, logprobs=3)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == c.usage.completion_tokens == 8
    assert all(v <= 0 for v in lp.token_logprobs)
    assert all(1 <= len(top) <= 4 for top in lp.top_logprobs)
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        # greedy: the chosen token is the most likely one
        assert abs(max(top.values()) - value) < 1e-5 and top.get(token) == pytest.approx(value)
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    assert c.choices[0].logprobs.text_offset[-1] <= len(c.choices[0].text)


def test_chat_logprobs(client):
    c = client.chat.completions.create(model="ensemble", messages=[{"role": "user", "content": "Hi"}], max_tokens=6,
                                       temperature=0, logprobs=True, top_logprobs=3)
    content = c.choices[0].logprobs.content
    assert len(content) == c.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.bytes and bytes(entry.bytes).decode("utf-8", errors="replace") == entry.token
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
        assert entry.top_logprobs[0].token == entry.token and entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)
    without = client.chat.completions.create(model="ensemble", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0)
    assert without.choices[0].logprobs is None
    streamed = list(client.chat.completions.create(model="ensemble", messages=[{"role": "user", "content": "Hi"}], max_tokens=6,
                                                   temperature=0, logprobs=True, top_logprobs=1, stream=True))
    entries = [e for ch in streamed if ch.choices and ch.choices[0].logprobs for e in ch.choices[0].logprobs.content]
    assert [e.token for e in entries] == [e.token for e in content]


def test_penalties_are_accepted(client):
    c = client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=8, temperature=0,
                                  presence_penalty=1.5, frequency_penalty=1.0)
    assert c.choices[0].finish_reason in ("stop", "length")


def test_vllm_sampling_extensions(client):
    """vLLM's body extensions that load tools send: ignore_eos with min_tokens gives exactly the
    asked length; top_k 1 and min_p 1 make sampling greedy whatever the seed; repetition_penalty
    is applied (accepted here; the engine's tests check its arithmetic)."""
    c = client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=16, temperature=0,
                                  extra_body={"min_tokens": 16, "ignore_eos": True})
    assert c.usage.completion_tokens == 16 and c.choices[0].finish_reason == "length"
    greedy = client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=8, temperature=0).choices[0].text
    for seed in (1, 2, 3):
        for extra in ({"top_k": 1}, {"min_p": 1.0}):
            c = client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=8, temperature=1, seed=seed, extra_body=extra)
            assert c.choices[0].text == greedy, (seed, extra)
    c = client.chat.completions.create(model="ensemble", messages=[{"role": "user", "content": "Hi!"}], max_tokens=6,
                                       temperature=0, extra_body={"repetition_penalty": 1.3, "top_k": -1})
    assert c.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("extra,param", [
    ({"top_k": -2}, "top_k"),
    ({"min_p": 1.5}, "min_p"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"min_tokens": -1}, "min_tokens"),
    ({"ignore_eos": "yes"}, "ignore_eos"),
])
def test_bad_vllm_extensions_are_400(client, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=4, extra_body=extra)
    assert e.value.body["param"] == param


def test_min_tokens_past_max_tokens_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="ensemble", prompt=PROMPT, max_tokens=4, extra_body={"min_tokens": 5})
    assert "min_tokens" in e.value.body["message"]


@pytest.mark.parametrize("kwargs,param", [
    (dict(temperature=5), "temperature"),
    (dict(top_p=1.5), "top_p"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(n=0), "n"),
    (dict(presence_penalty=3), "presence_penalty"),
    (dict(logprobs=50), "logprobs"),
    (dict(max_tokens=100000), None),                 # beyond the context length
    (dict(extra_body={"stream_options": {"include_usage": True}}), "stream_options"),
])
def test_bad_requests_are_400_in_openais_shape(server, client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="ensemble", prompt=PROMPT, **kwargs)
    assert e.value.status_code == 400
    body = e.value.body
    assert body["type"] == "invalid_request_error" and body["message"] and body["param"] == param
    assert requests.get(f"{server.base}/v2/health/ready", timeout=5).status_code == 200


def test_unknown_model_and_bad_bodies(server, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="no_such_model", prompt=PROMPT, max_tokens=2)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="preprocessing", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ensemble", messages=[])
    for body in (b"{not json", b"[]", b'{"model": "ensemble"}', b'{"model": "ensemble", "prompt": [1, "x"]}'):
        r = requests.post(f"{server.base}/v1/completions", data=body, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
    r = requests.post(f"{server.base}/v1/chat/completions", json={"model": "ensemble", "messages": [{"role": "user"}],
                                                                 "temperature": "warm"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    assert requests.get(f"{server.base}/v1/nothing", timeout=30).status_code == 404
    assert requests.get(f"{server.base}/v2/health/live", timeout=5).status_code == 200
