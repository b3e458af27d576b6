"""The response cache: --cache-config=local,size=<bytes> and per-model
`response_cache { enable: true }`. Hits are proven by the backend not running (the
statistics' execution_count, and a Python model that counts its calls), over raw HTTP,
gRPC and the real tritonclient; plus LRU eviction by bytes, what is never cached, the
statistics and metrics, and every bad --cache-config."""
import json
import os
import re
import sys
import textwrap

import grpc
import numpy as np
import pytest
import requests

import grpc_stubs
from harness import Server, identity_config, labelled_config, run_to_exit, write_model

pb2, pb2_grpc = grpc_stubs.load()

CACHED = 'response_cache { enable: true }'

COUNTER_MODEL = textwrap.dedent("""
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def initialize(self, args):
            self.calls = 0

        def execute(self, requests):
            responses = []
            for request in requests:
                self.calls += 1
                if self.calls == 1:
                    responses.append(pb_utils.InferenceResponse(
                        error=pb_utils.TritonError("the first call fails")))
                    continue
                x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
                responses.append(pb_utils.InferenceResponse([
                    pb_utils.Tensor("Y", (x * 2).astype(np.float32)),
                    pb_utils.Tensor("CALLS", np.array([self.calls], dtype=np.int64))]))
            return responses
""")

COUNTER_CONFIG = """
name: "counter"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] },
         { name: "CALLS" data_type: TYPE_INT64 dims: [ 1 ] } ]
response_cache { enable: true }
"""


def cached_identity(name, extra=""):
    return identity_config(name, extra=CACHED + "\n" + extra)


def infer(s, model, data, dtype="FP32", outputs=None, params=None, expect=200):
    body = {"inputs": [{"name": "INPUT0", "shape": [len(data)], "datatype": dtype,
                        "data": list(data)}]}
    if outputs is not None:
        body["outputs"] = outputs
    if params:
        body["parameters"] = params
    r = requests.post(f"{s.url}/v2/models/{model}/infer", json=body, timeout=30)
    assert r.status_code == expect, r.text
    return r.json()


def infer_binary(s, model, arr):
    """An FP32 request in the binary extension, every output binary."""
    raw = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
    header = json.dumps({
        "inputs": [{"name": "INPUT0", "shape": [arr.size], "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        "parameters": {"binary_data_output": True}}).encode()
    r = requests.post(f"{s.url}/v2/models/{model}/infer", data=header + raw,
                      headers={"Inference-Header-Content-Length": str(len(header))}, timeout=30)
    assert r.status_code == 200, r.text
    n = int(r.headers["Inference-Header-Content-Length"])
    return np.frombuffer(r.content[n:], dtype=np.float32)


def model_stats(s, model):
    r = requests.get(f"{s.url}/v2/models/{model}/stats", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["model_stats"][0]


def executions(s, model):
    return model_stats(s, model)["execution_count"]


def metrics(s):
    return requests.get(f"{s.metrics_url}/metrics", timeout=10).text


def metric(text, name, model=None):
    labels = f'{{model="{model}",version="1"}}' if model else ""
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return None if m is None else float(m.group(1))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("cache_repo")
    write_model(repo, "cached", cached_identity("cached"))
    write_model(repo, "plain", identity_config("plain"))
    write_model(repo, "classify", labelled_config("classify") + CACHED,
                files={"labels.txt": "cat\ndog\nbird\nfish\n"})
    write_model(repo, "counter", COUNTER_CONFIG, files={"1/model.py": COUNTER_MODEL})
    write_model(repo, "decoupled", cached_identity(
        "decoupled", "model_transaction_policy { decoupled: true }"))
    write_model(repo, "sequence", identity_config(
        "sequence", max_batch_size=4, extra=CACHED + "\nsequence_batching { }"))
    with Server(repo, ["--cache-config=local,size=1048576"], wait="ready") as s:
        yield s


def test_identical_request_is_answered_from_the_cache_without_running_the_model(server):
    data = [1.5, 2.5, 3.5, 4.5, 1000.0]
    before = model_stats(server, "cached")
    first = infer(server, "cached", data)
    second = infer(server, "cached", data)
    assert first["outputs"] == second["outputs"]
    assert second["outputs"][0]["data"] == data
    assert second["model_name"] == "cached" and second["model_version"] == "1"
    after = model_stats(server, "cached")
    st, st0 = after["inference_stats"], before["inference_stats"]
    # One execution; the hit is a success with cache_hit, but no inference and no compute.
    assert after["execution_count"] - before["execution_count"] == 1
    assert after["inference_count"] - before["inference_count"] == 1
    assert st["success"]["count"] - st0["success"]["count"] == 2
    assert st["queue"]["count"] - st0["queue"]["count"] == 2
    assert st["compute_infer"]["count"] - st0["compute_infer"]["count"] == 1
    assert st["cache_miss"]["count"] - st0["cache_miss"]["count"] == 1
    assert st["cache_hit"]["count"] - st0["cache_hit"]["count"] == 1
    assert st["cache_hit"]["ns"] > st0["cache_hit"]["ns"]
    assert st["cache_miss"]["ns"] > st0["cache_miss"]["ns"]
    # The request id is the new request's, not the cached one's.
    body = {"id": "second-id", "inputs": [{"name": "INPUT0", "shape": [5], "datatype": "FP32",
                                           "data": data}]}
    r = requests.post(f"{server.url}/v2/models/cached/infer", json=body, timeout=30).json()
    assert r["id"] == "second-id" and r["outputs"][0]["data"] == data
    assert executions(server, "cached") == after["execution_count"]


def test_hit_in_another_wire_format_returns_the_same_bytes(server):
    arr = np.arange(7, dtype=np.float32) * 0.25
    infer(server, "cached", arr.tolist())  # JSON: miss
    n = executions(server, "cached")
    # The binary output format is not part of the answer: a hit, same values.
    assert np.array_equal(infer_binary(server, "cached", arr), arr)
    assert np.array_equal(infer_binary(server, "cached", arr), arr)
    assert executions(server, "cached") == n


def test_python_model_counter_proves_the_backend_ran_only_on_misses_and_errors_are_not_cached(
        server):
    body = {"inputs": [{"name": "X", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}
    url = f"{server.url}/v2/models/counter/infer"
    r = requests.post(url, json=body, timeout=60)
    assert r.status_code != 200 and "the first call fails" in r.text
    # The error was not cached: the model runs again (call 2) and succeeds.
    r = requests.post(url, json=body, timeout=60).json()
    outs = {o["name"]: o["data"] for o in r["outputs"]}
    assert outs == {"Y": [2, 4], "CALLS": [2]}
    # Now a hit: the same call count comes back, the model did not run.
    for _ in range(3):
        r = requests.post(url, json=body, timeout=60).json()
        assert {o["name"]: o["data"] for o in r["outputs"]} == outs
    other = {"inputs": [{"name": "X", "shape": [2], "datatype": "FP32", "data": [1, 3]}]}
    r = requests.post(url, json=other, timeout=60).json()
    assert {o["name"]: o["data"] for o in r["outputs"]} == {"Y": [2, 6], "CALLS": [3]}
    st = model_stats(server, "counter")["inference_stats"]
    assert st["cache_hit"]["count"] == 3
    assert st["cache_miss"]["count"] == 2  # successful misses only
    assert st["fail"]["count"] == 1


def test_what_changes_the_answer_misses(server):
    base = [9.0, 8.0, 7.0, 6.0]
    infer(server, "cached", base)
    n = executions(server, "cached")

    def expect_miss(*args, **kw):
        nonlocal n
        infer(server, "cached", *args, **kw)
        assert executions(server, "cached") == n + 1, (args, kw)
        n += 1

    def expect_hit(*args, **kw):
        infer(server, "cached", *args, **kw)
        assert executions(server, "cached") == n, (args, kw)

    expect_hit(base)
    expect_miss([9.0, 8.0, 7.0, 6.5])          # one value differs
    expect_miss([9.0, 8.0, 7.0])               # shape differs
    expect_miss(base, outputs=[{"name": "OUTPUT0"}])  # outputs named explicitly
    expect_hit(base, outputs=[{"name": "OUTPUT0"}])
    expect_miss(base, params={"flavour": "a"})  # a parameter the backend receives
    expect_hit(base, params={"flavour": "a"})
    expect_miss(base, params={"flavour": "b"})
    expect_miss(base, params={"flavour": 1})
    # Only how the output is written: same answer.
    expect_hit(base, params={"binary_data_output": False})


def test_classification_is_part_of_the_key(server):
    data = [0.1, 0.9, 0.5, 0.3]
    n = executions(server, "classify")
    top1 = infer(server, "classify", data,
                 outputs=[{"name": "OUTPUT0", "parameters": {"classification": 1}}])
    top2 = infer(server, "classify", data,
                 outputs=[{"name": "OUTPUT0", "parameters": {"classification": 2}}])
    raw = infer(server, "classify", data)
    assert executions(server, "classify") == n + 3
    again = infer(server, "classify", data,
                  outputs=[{"name": "OUTPUT0", "parameters": {"classification": 2}}])
    assert executions(server, "classify") == n + 3
    assert again["outputs"] == top2["outputs"]
    assert top1["outputs"][0]["data"] == ["0.900000:1:dog"]
    assert len(top2["outputs"][0]["data"]) == 2
    assert raw["outputs"][0]["data"] == data


def test_models_that_do_not_enable_the_cache_are_never_cached(server):
    n = executions(server, "plain")
    for _ in range(3):
        infer(server, "plain", [4.0, 2.0])
    st = model_stats(server, "plain")
    assert st["execution_count"] == n + 3
    assert st["inference_stats"]["cache_hit"]["count"] == 0
    assert st["inference_stats"]["cache_miss"]["count"] == 0
    assert metric(metrics(server), "nv_cache_num_hits_per_model", "plain") is None


@pytest.mark.parametrize("model,why", [
    ("decoupled", "decoupled models are never cached"),
    ("sequence", "sequence models are never cached")])
def test_decoupled_and_sequence_models_are_not_cached_even_when_they_ask(server, model, why):
    assert why in server.log()
    if model == "sequence":
        return  # a sequence model needs sequence ids; that it loads uncached is the point
    n = executions(server, model)
    # A decoupled model answers only over the gRPC stream (HTTP says 501), so the two
    # identical requests go there.
    channel = grpc.insecure_channel(server.grpc_url)
    try:
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(2):
            req = pb2.ModelInferRequest(model_name=model)
            t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[1])
            t.contents.fp32_contents.append(1.0)
            answers = [r for r in stub.ModelStreamInfer(iter([req]), timeout=10)
                       if r.infer_response.outputs]
            assert not any(r.error_message for r in answers)
            assert np.frombuffer(answers[0].infer_response.raw_output_contents[0],
                                 np.float32).tolist() == [1.0]
    finally:
        channel.close()
    st = model_stats(server, model)
    assert st["execution_count"] == n + 2
    assert st["inference_stats"]["cache_hit"]["count"] == 0


def test_metrics_use_tritons_names(server):
    infer(server, "cached", [42.0])
    infer(server, "cached", [42.0])
    text = metrics(server)
    st = model_stats(server, "cached")["inference_stats"]
    assert metric(text, "nv_cache_num_hits_per_model", "cached") == st["cache_hit"]["count"]
    assert metric(text, "nv_cache_num_misses_per_model", "cached") == st["cache_miss"]["count"]
    assert metric(text, "nv_cache_hit_duration_per_model", "cached") == \
        st["cache_hit"]["ns"] // 1000
    assert metric(text, "nv_cache_miss_duration_per_model", "cached") == \
        st["cache_miss"]["ns"] // 1000
    for family, kind in [("nv_cache_num_hits_per_model", "counter"),
                         ("nv_cache_num_entries", "gauge"), ("nv_cache_num_lookups", "gauge"),
                         ("nv_cache_num_hits", "gauge"), ("nv_cache_num_misses", "gauge"),
                         ("nv_cache_num_evictions", "gauge"), ("nv_cache_util", "gauge"),
                         ("nv_cache_lookup_duration", "gauge"),
                         ("nv_cache_insertion_duration", "gauge")]:
        assert f"# TYPE {family} {kind}" in text, family
    assert metric(text, "nv_cache_num_entries") >= 1
    assert metric(text, "nv_cache_num_hits") >= 1
    assert 0 < metric(text, "nv_cache_util") < 1
    assert metric(text, "nv_cache_num_lookups") == \
        metric(text, "nv_cache_num_hits") + metric(text, "nv_cache_num_misses")
    # The success counter includes hits; the inference counter does not.
    ms = model_stats(server, "cached")
    assert metric(text, "nv_inference_request_success", "cached") == \
        ms["inference_stats"]["success"]["count"]
    assert metric(text, "nv_inference_count", "cached") == ms["inference_count"]


def test_statistics_over_grpc(server):
    infer(server, "cached", [7.0, 7.0])
    infer(server, "cached", [7.0, 7.0])
    http = model_stats(server, "cached")["inference_stats"]
    channel = grpc.insecure_channel(server.grpc_url)
    try:
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        # A hit over gRPC too.
        req = pb2.ModelInferRequest(model_name="cached")
        t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[2])
        t.contents.fp32_contents.extend([7.0, 7.0])
        resp = stub.ModelInfer(req)
        assert np.array_equal(np.frombuffer(resp.raw_output_contents[0], np.float32), [7, 7])
        st = stub.ModelStatistics(pb2.ModelStatisticsRequest(name="cached")).model_stats[0]
    finally:
        channel.close()
    inf = st.inference_stats
    assert inf.cache_hit.count == http["cache_hit"]["count"] + 1
    assert inf.cache_miss.count == http["cache_miss"]["count"]
    assert inf.cache_hit.ns > 0 and inf.cache_miss.ns > 0


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    # 1024 FP32 = 4096 bytes per output; an entry costs that plus a few hundred bytes of
    # bookkeeping, so three entries fit in 15000 bytes and four do not.
    repo = tmp_path_factory.mktemp("small_cache_repo")
    write_model(repo, "cached", cached_identity("cached"))
    with Server(repo, ["--cache-config=local,size=15000"], wait="ready") as s:
        yield s


def test_lru_eviction_is_bounded_by_bytes_and_drops_the_least_recently_used(small_server):
    s = small_server
    vec = {k: np.full(1024, float(i), dtype=np.float32) for i, k in enumerate("ABCD")}
    run = lambda k: infer_binary(s, "cached", vec[k])  # noqa: E731

    def expect(k, hit):
        n = executions(s, "cached")
        assert np.array_equal(run(k), vec[k])
        assert executions(s, "cached") == n + (0 if hit else 1), (k, "hit" if hit else "miss")

    for k in "ABC":
        expect(k, hit=False)
    assert metric(metrics(s), "nv_cache_num_entries") == 3
    expect("A", hit=True)        # recency: A C B
    expect("D", hit=False)       # evicts B, the least recently used
    text = metrics(s)
    assert metric(text, "nv_cache_num_entries") == 3
    assert metric(text, "nv_cache_num_evictions") == 1
    expect("C", hit=True)        # still there
    expect("A", hit=True)
    expect("B", hit=False)       # was evicted; re-inserting evicts D (recency A C D -> D)
    expect("D", hit=False)
    text = metrics(s)
    assert metric(text, "nv_cache_num_evictions") == 3
    assert metric(text, "nv_cache_num_entries") == 3
    assert metric(text, "nv_cache_util") <= 1.0


def test_a_response_larger_than_the_cache_is_not_stored_and_evicts_nothing(small_server):
    s = small_server
    before = metrics(s)
    big = np.arange(4096, dtype=np.float32)  # 16 KB > 15000 bytes
    n = executions(s, "cached")
    assert np.array_equal(infer_binary(s, "cached", big), big)
    assert np.array_equal(infer_binary(s, "cached", big), big)
    assert executions(s, "cached") == n + 2
    after = metrics(s)
    assert metric(after, "nv_cache_num_entries") == metric(before, "nv_cache_num_entries")
    assert metric(after, "nv_cache_num_evictions") == metric(before, "nv_cache_num_evictions")


def ensemble(name, step, extra=""):
    return f"""
name: "{name}"
platform: "ensemble"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
ensemble_scheduling {{ step [ {{ model_name: "{step}" model_version: -1
  input_map {{ key: "INPUT0" value: "INPUT0" }} output_map {{ key: "OUTPUT0" value: "OUTPUT0" }} }} ] }}
{extra}
"""


def test_ensembles_and_their_composing_models_each_use_their_own_setting(tmp_path):
    write_model(tmp_path, "step", identity_config("step"))
    write_model(tmp_path, "ens", ensemble("ens", "step", CACHED))
    write_model(tmp_path, "cached_step", cached_identity("cached_step"))
    write_model(tmp_path, "ens_plain", ensemble("ens_plain", "cached_step"))
    with Server(tmp_path, ["--cache-config=local,size=65536"], wait="ready") as s:
        # A cached ensemble: the hit never reaches its (uncached) composing model.
        assert infer(s, "ens", [3.0, 1.0])["outputs"][0]["data"] == [3.0, 1.0]
        assert infer(s, "ens", [3.0, 1.0])["outputs"][0]["data"] == [3.0, 1.0]
        assert executions(s, "step") == 1
        st = model_stats(s, "ens")["inference_stats"]
        assert st["cache_hit"]["count"] == 1 and st["cache_miss"]["count"] == 1
        # An uncached ensemble over a cached model: the step is answered from the cache.
        assert infer(s, "ens_plain", [2.0])["outputs"][0]["data"] == [2.0]
        assert infer(s, "ens_plain", [2.0])["outputs"][0]["data"] == [2.0]
        assert executions(s, "cached_step") == 1
        assert model_stats(s, "ens_plain")["inference_stats"]["cache_hit"]["count"] == 0
        assert model_stats(s, "cached_step")["inference_stats"]["cache_hit"]["count"] == 1
        assert model_stats(s, "ens_plain")["inference_stats"]["success"]["count"] == 2


def test_a_reloaded_model_never_serves_the_previous_load_s_answers(tmp_path):
    write_model(tmp_path, "cached", cached_identity("cached"))
    args = ["--cache-config=local,size=65536", "--model-control-mode=explicit",
            "--load-model=cached"]
    with Server(tmp_path, args, wait="ready") as s:
        infer(s, "cached", [8.0])
        infer(s, "cached", [8.0])
        assert executions(s, "cached") == 1
        config = {"name": "cached", "backend": "identity", "max_batch_size": 0,
                  "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
                  "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
                  "parameters": {"changed": {"string_value": "yes"}},
                  "response_cache": {"enable": True}}
        r = requests.post(f"{s.url}/v2/repository/models/cached/load",
                          json={"parameters": {"config": json.dumps(config)}}, timeout=30)
        assert r.status_code == 200, r.text
        infer(s, "cached", [8.0])  # same request, new load: runs (a miss), then hits
        infer(s, "cached", [8.0])
        st = model_stats(s, "cached")
        assert st["execution_count"] == 1
        assert st["inference_stats"]["cache_miss"]["count"] == 1
        assert st["inference_stats"]["cache_hit"]["count"] == 1


def test_a_model_that_enables_the_cache_on_a_server_without_one_loads_uncached(tmp_path):
    write_model(tmp_path, "cached", cached_identity("cached"))
    with Server(tmp_path, wait="ready") as s:
        infer(s, "cached", [5.0])
        infer(s, "cached", [5.0])
        assert executions(s, "cached") == 2
        assert "the server has no response cache" in s.log()
        assert "nv_cache_" not in metrics(s)


def test_deprecated_response_cache_byte_size_flag_turns_the_local_cache_on(tmp_path):
    write_model(tmp_path, "cached", cached_identity("cached"))
    with Server(tmp_path, ["--response-cache-byte-size=65536"], wait="ready") as s:
        infer(s, "cached", [5.0])
        infer(s, "cached", [5.0])
        assert executions(s, "cached") == 1


@pytest.mark.parametrize("flag,message", [
    ("--cache-config=local", "missing the cache size"),
    ("--cache-config=redis,host=localhost", "cache 'redis' is not supported"),
    ("--cache-config=local,size=lots", "size must be a positive whole number of bytes"),
    ("--cache-config=local,size=-1", "size must be a positive whole number of bytes"),
    ("--cache-config=local,size=0", "size must be a positive whole number of bytes"),
    ("--cache-config=local,size", "expected <cache>,<key>=<value>"),
    ("--cache-config=local,bytes=100", "unknown setting 'bytes'"),
])
def test_bad_cache_config_fails_at_startup_with_a_clear_message(tmp_path, flag, message):
    write_model(tmp_path, "cached", cached_identity("cached"))
    code, out = run_to_exit(tmp_path, [flag], timeout=30)
    assert code != 0
    assert message in out, out


# ---- the real tritonclient -------------------------------------------------------------

def _tritonclient():
    path = os.environ.get("TRITON_CLIENT_PYTHONPATH")
    if not path:
        pytest.skip("TRITON_CLIENT_PYTHONPATH is not set: no tritonclient package to test with")
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient
    except ImportError as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"tritonclient from {path} cannot be imported: {e}")
    return httpclient, grpcclient


def test_tritonclient_statistics_show_cache_hits(server):
    httpclient, grpcclient = _tritonclient()
    data = np.array([11.0, 12.0, 13.0], dtype=np.float32)
    http = httpclient.InferenceServerClient(server.url.replace("http://", ""))
    inp = httpclient.InferInput("INPUT0", [3], "FP32")
    inp.set_data_from_numpy(data, binary_data=True)
    for _ in range(3):
        assert np.array_equal(http.infer("cached", [inp]).as_numpy("OUTPUT0"), data)
    st = http.get_inference_statistics("cached")["model_stats"][0]
    assert st["inference_stats"]["cache_hit"]["count"] >= 2
    assert st["inference_stats"]["cache_miss"]["count"] >= 1

    g = grpcclient.InferenceServerClient(server.grpc_url)
    ginp = grpcclient.InferInput("INPUT0", [3], "FP32")
    ginp.set_data_from_numpy(data)
    before = g.get_inference_statistics("cached").model_stats[0].inference_stats.cache_hit.count
    assert np.array_equal(g.infer("cached", [ginp]).as_numpy("OUTPUT0"), data)
    gst = g.get_inference_statistics("cached", as_json=True)["model_stats"][0]
    assert int(gst["inference_stats"]["cache_hit"]["count"]) == before + 1
    g.close()
    http.close()
