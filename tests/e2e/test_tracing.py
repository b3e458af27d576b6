"""Tracing (Triton's trace extension): settings over HTTP and gRPC, the --trace-config
flags, and the JSON trace records the server writes.

Decisions under test: values travel as strings (trace_level as a list); a model's
settings follow the global ones until it sets its own, and null (HTTP) or an empty value
list (gRPC) clears an override; tracing on without a trace_file is refused; a settings
change writes what the replaced settings collected (log_frequency 0), so a test changes a
setting to read the file; mode=opentelemetry is refused at startup (no OpenTelemetry
library in this build).
"""
import json
import os
import pathlib
import sys
import time

import grpc
import numpy as np
import pytest
import requests

from grpc_stubs import load
from harness import Server, identity_config, run_to_exit, write_model

pb2, pb2_grpc = load()

POINTS = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
          "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]


def ensemble_config(name):
    io = '{ name: "%s" data_type: TYPE_FP32 dims: [ -1 ] }'
    return f"""
name: "{name}"
platform: "ensemble"
max_batch_size: 0
input [ {io % "IN"} ]
output [ {io % "OUT"} ]
ensemble_scheduling {{ step [
  {{ model_name: "a" model_version: -1 input_map {{ key: "INPUT0" value: "IN" }}
     output_map {{ key: "OUTPUT0" value: "MID" }} }},
  {{ model_name: "b" model_version: -1 input_map {{ key: "INPUT0" value: "MID" }}
     output_map {{ key: "OUTPUT0" value: "OUT" }} }}
] }}
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("trace_repo")
    for name in ("m", "other", "a", "b"):
        write_model(repo, name, identity_config(name))
    write_model(repo, "ens", ensemble_config("ens"))
    return repo


@pytest.fixture
def server(repo):
    with Server(repo, wait="ready") as s:
        channel = grpc.insecure_channel(s.grpc_url)
        s.stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        yield s
        channel.close()


def get(s, model=""):
    path = f"/v2/models/{model}/trace/setting" if model else "/v2/trace/setting"
    r = requests.get(s.url + path, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def post(s, body, model="", status=200):
    path = f"/v2/models/{model}/trace/setting" if model else "/v2/trace/setting"
    r = requests.post(s.url + path, data=json.dumps(body) if not isinstance(body, str) else body,
                      timeout=10)
    assert r.status_code == status, r.text
    return r.json()


def grpc_trace(s, model="", **settings):
    req = pb2.TraceSettingRequest(model_name=model)
    for k, v in settings.items():
        req.settings[k].value.extend(v)
    resp = s.stub.TraceSetting(req, timeout=10)
    return {k: list(v.value) for k, v in resp.settings.items()}


def infer(s, model="m", n=1, data=(1.0, 2.0, 3.0)):
    body = {"inputs": [{"name": "INPUT0" if model != "ens" else "IN", "shape": [len(data)],
                        "datatype": "FP32", "data": list(data)}]}
    for _ in range(n):
        r = requests.post(f"{s.url}/v2/models/{model}/infer", json=body, timeout=10)
        assert r.status_code == 200, r.text


def read_records(path, expect_at_least=1, timeout=10):
    """The JSON array in `path` once it holds at least that many objects (written by the
    server's writer thread, so possibly a moment after the request that caused it)."""
    path = pathlib.Path(path)
    deadline = time.time() + timeout
    while True:
        if path.exists():
            try:
                records = json.loads(path.read_text())
                if len(records) >= expect_at_least:
                    return records
            except json.JSONDecodeError:
                pass
        assert time.time() < deadline, f"{path}: no {expect_at_least} trace records"
        time.sleep(0.05)


def traces(records):
    return [r for r in records if "timestamps" in r or "model_name" in r]


def check_timestamps(rec, points=POINTS):
    ts = rec["timestamps"]
    assert [t["name"] for t in ts] == points, rec
    ns = [t["ns"] for t in ts]
    assert all(isinstance(v, int) and v > 0 for v in ns)
    assert ns == sorted(ns), rec


# ---- settings ------------------------------------------------------------------------------

def test_defaults_and_extension(server):
    g = get(server)
    assert g == {"trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1",
                 "log_frequency": "0", "trace_file": "", "trace_mode": "triton"}
    assert get(server, "m") == g
    assert "trace" in requests.get(server.url + "/v2").json()["extensions"]


def test_global_and_model_settings_http(server, tmp_path):
    f = str(tmp_path / "t.json")
    g = post(server, {"trace_file": f, "trace_rate": "5"})
    assert g["trace_file"] == f and g["trace_rate"] == "5" and g["trace_level"] == ["OFF"]
    # A model override, the rest from the global settings.
    m = post(server, {"trace_level": ["TIMESTAMPS", "TENSORS"], "log_frequency": "3"}, "m")
    assert m["trace_level"] == ["TIMESTAMPS", "TENSORS"] and m["log_frequency"] == "3"
    assert m["trace_rate"] == "5" and m["trace_file"] == f
    assert get(server, "m") == m
    assert get(server)["trace_level"] == ["OFF"] and get(server, "other")["trace_level"] == ["OFF"]
    # Global changes reach the model where it has no value of its own.
    post(server, {"trace_rate": "9", "log_frequency": "7"})
    m = get(server, "m")
    assert m["trace_rate"] == "9" and m["log_frequency"] == "3"
    # null clears: back to the global value for a model, the startup value globally.
    m = post(server, {"log_frequency": None, "trace_level": None}, "m")
    assert m["log_frequency"] == "7" and m["trace_level"] == ["OFF"]
    g = post(server, {"trace_rate": None, "log_frequency": None})
    assert g["trace_rate"] == "1000" and g["log_frequency"] == "0" and g["trace_file"] == f
    assert get(server, "m")["trace_rate"] == "1000"
    # A single string is accepted for the level too.
    assert post(server, {"trace_level": "TIMESTAMPS"}, "m")["trace_level"] == ["TIMESTAMPS"]


@pytest.mark.parametrize("body,words", [
    ({"trace_rate": "0"}, "trace_rate"),
    ({"trace_rate": "often"}, "often"),
    ({"trace_rate": 5}, "must be a string"),
    ({"trace_count": "-2"}, "trace_count"),
    ({"log_frequency": "-1"}, "log_frequency"),
    ({"trace_level": ["LOUD"]}, "LOUD"),
    ({"trace_level": ["OFF", "TIMESTAMPS"]}, "OFF cannot be combined"),
    ({"trace_level": []}, "empty list"),
    ({"trace_level": [1]}, "must be a string"),
    ({"trace_rate": ["1", "2"]}, "exactly one value"),
    ({"trace_colour": "red"}, "unknown trace setting 'trace_colour'"),
    ({"trace_mode": "opentelemetry"}, "not supported in this build"),
    ({"trace_mode": "zipkin"}, "zipkin"),
    ({"trace_level": ["TIMESTAMPS"]}, "no trace_file"),
    ("[1]", "must be an object"),
    ("{", "failed to parse"),
])
def test_invalid_settings_http(server, body, words):
    before = get(server)
    err = post(server, body, status=400)["error"]
    assert words in err, err
    assert get(server) == before  # nothing applied


def test_settings_misuse_http(server):
    r = requests.post(server.url + "/v2/models/ghost/trace/setting", json={}, timeout=10)
    assert r.status_code == 404 and "ghost" in r.json()["error"]
    assert requests.get(server.url + "/v2/models/ghost/trace/setting").status_code == 404
    assert requests.delete(server.url + "/v2/trace/setting").status_code == 405
    assert requests.get(server.url + "/v2/trace").status_code == 404
    assert requests.get(server.url + "/v2/models/m/versions/1/trace/setting").status_code == 404
    # A model override that turns tracing on without a file anywhere is refused too.
    err = post(server, {"trace_level": ["TIMESTAMPS"]}, "m", status=400)["error"]
    assert "trace_file" in err


def test_settings_grpc(server, tmp_path):
    f = str(tmp_path / "g.json")
    g = grpc_trace(server)  # no settings: a read
    assert g["trace_level"] == ["OFF"] and g["trace_rate"] == ["1000"]
    g = grpc_trace(server, trace_file=[f], trace_rate=["3"])
    assert g["trace_file"] == [f] and g["trace_rate"] == ["3"]
    m = grpc_trace(server, "m", trace_level=["TIMESTAMPS"], trace_count=["4"])
    assert m["trace_level"] == ["TIMESTAMPS"] and m["trace_count"] == ["4"]
    assert m["trace_rate"] == ["3"]
    assert grpc_trace(server, "m") == m
    assert grpc_trace(server)["trace_level"] == ["OFF"]
    # The same store as HTTP.
    assert get(server, "m")["trace_count"] == "4"
    m = grpc_trace(server, "m", trace_level=[], trace_count=[])  # empty list: clear
    assert m["trace_level"] == ["OFF"] and m["trace_count"] == ["-1"]
    assert grpc_trace(server, trace_rate=[])["trace_rate"] == ["1000"]


@pytest.mark.parametrize("settings,words", [
    ({"trace_rate": ["0"]}, "trace_rate"),
    ({"trace_level": ["LOUD"]}, "LOUD"),
    ({"trace_count": ["x"]}, "trace_count"),
    ({"nope": ["1"]}, "unknown trace setting"),
    ({"trace_level": ["TIMESTAMPS"]}, "trace_file"),
])
def test_invalid_settings_grpc(server, settings, words):
    with pytest.raises(grpc.RpcError) as e:
        grpc_trace(server, **settings)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        grpc_trace(server, "ghost", trace_rate=["1"])
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


# ---- trace files ---------------------------------------------------------------------------

def test_records_rate_1(server, tmp_path):
    f = tmp_path / "r1.json"
    post(server, {"trace_file": str(f), "trace_rate": "1", "trace_level": ["TIMESTAMPS"]})
    infer(server, n=5)
    assert not f.exists()  # log_frequency 0: written when the settings change or at exit
    post(server, {"trace_level": ["OFF"]})
    records = read_records(f, 5)
    assert len(records) == 5
    for r in records:
        assert r["model_name"] == "m" and r["model_version"] == 1 and "parent_id" not in r
        check_timestamps(r)
    assert len({r["id"] for r in records}) == 5
    # Later traces to the same file extend the same array.
    post(server, {"trace_level": ["TIMESTAMPS"]})
    infer(server, n=2)
    post(server, {"trace_level": ["OFF"]})
    records = read_records(f, 7)
    assert len(records) == 7 and len({r["id"] for r in records}) == 7
    infer(server, n=2)  # tracing off: nothing more
    time.sleep(0.3)
    assert len(read_records(f, 7)) == 7


def test_rate_and_model_override(server, tmp_path):
    f = tmp_path / "rate.json"
    post(server, {"trace_file": str(f), "trace_rate": "3", "trace_level": ["TIMESTAMPS"]})
    post(server, {"trace_rate": "1"}, "other")
    infer(server, "m", n=9)
    infer(server, "other", n=2)
    post(server, {"trace_level": ["OFF"]})
    records = read_records(f, 5)
    names = sorted(r["model_name"] for r in records)
    assert names == ["m", "m", "m", "other", "other"]


def test_count_stops_and_writes_indexed_file(server, tmp_path):
    f = tmp_path / "count.json"
    post(server, {"trace_file": str(f), "trace_rate": "1", "trace_count": "3",
                  "trace_level": ["TIMESTAMPS"]})
    infer(server, n=6)
    # Triton: once the count is spent its traces go to <file>.0, whatever log_frequency.
    records = read_records(str(f) + ".0", 3)
    assert len(records) == 3
    assert get(server)["trace_count"] == "0"
    post(server, {"trace_level": ["OFF"]})
    time.sleep(0.3)
    assert not f.exists() and not pathlib.Path(str(f) + ".1").exists()


def test_log_frequency(server, tmp_path):
    f = tmp_path / "freq.json"
    post(server, {"trace_file": str(f), "trace_rate": "1", "log_frequency": "2",
                  "trace_level": ["TIMESTAMPS"]})
    infer(server, n=5)
    assert len(read_records(str(f) + ".0", 2)) == 2
    assert len(read_records(str(f) + ".1", 2)) == 2
    post(server, {"trace_level": ["OFF"]})  # the fifth goes to the next index
    assert len(read_records(str(f) + ".2", 1)) == 1
    assert not f.exists()


def test_tensors_level(server, tmp_path):
    f = tmp_path / "tensors.json"
    post(server, {"trace_file": str(f), "trace_rate": "1", "trace_level": ["TIMESTAMPS", "TENSORS"]})
    infer(server, n=1, data=(1.5, -2.0))
    post(server, {"trace_level": ["TENSORS"]})
    infer(server, n=1, data=(4.0,))
    post(server, {"trace_level": ["OFF"]})
    records = read_records(f, 6)
    heads = traces(records)
    assert len(heads) == 2
    check_timestamps(heads[0])
    assert "timestamps" not in heads[1]  # TENSORS alone: no timestamps
    acts = [r for r in records if "activity" in r]
    first = [a for a in acts if a["id"] == heads[0]["id"]]
    assert {a["activity"] for a in first} == {"TENSOR_QUEUE_INPUT", "TENSOR_BACKEND_OUTPUT"}
    inp = next(a["tensor"] for a in first if a["activity"] == "TENSOR_QUEUE_INPUT")
    assert inp["name"] == "INPUT0" and inp["dtype"] == "FP32" and inp["shape"] == "2"
    assert [float(v) for v in inp["data"].split(",")] == [1.5, -2.0]
    out = next(a["tensor"] for a in first if a["activity"] == "TENSOR_BACKEND_OUTPUT")
    assert out["name"] == "OUTPUT0" and [float(v) for v in out["data"].split(",")] == [1.5, -2.0]
    second = [a for a in acts if a["id"] == heads[1]["id"]]
    assert len(second) == 2


def test_ensemble_children_link_to_parent(server, tmp_path):
    f = tmp_path / "ens.json"
    post(server, {"trace_file": str(f), "trace_rate": "1", "trace_level": ["TIMESTAMPS"]})
    infer(server, "ens", n=2)
    post(server, {"trace_level": ["OFF"]})
    records = read_records(f, 6)
    assert len(records) == 6
    parents = [r for r in records if r["model_name"] == "ens"]
    assert len(parents) == 2
    for p in parents:
        assert "parent_id" not in p
        # The ensemble's own trace: its steps carry the compute points.
        check_timestamps(p, ["REQUEST_START", "QUEUE_START", "REQUEST_END"])
        kids = [r for r in records if r.get("parent_id") == p["id"]]
        assert sorted(k["model_name"] for k in kids) == ["a", "b"]
        for k in kids:
            check_timestamps(k)
            pts = {t["name"]: t["ns"] for t in p["timestamps"]}
            kts = {t["name"]: t["ns"] for t in k["timestamps"]}
            assert pts["REQUEST_START"] <= kts["REQUEST_START"]
            assert kts["COMPUTE_END"] <= pts["REQUEST_END"]
    assert len({r["id"] for r in records}) == 6


def test_grpc_requests_are_traced(server, tmp_path):
    f = tmp_path / "grpc.json"
    grpc_trace(server, trace_file=[str(f)], trace_rate=["1"], trace_level=["TIMESTAMPS"])
    req = pb2.ModelInferRequest(model_name="m")
    t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[2])
    t.contents.fp32_contents.extend([1.0, 2.0])
    for _ in range(3):
        server.stub.ModelInfer(req, timeout=10)
    grpc_trace(server, trace_level=["OFF"])
    records = read_records(f, 3)
    assert len(records) == 3
    for r in records:
        check_timestamps(r)


def test_written_at_exit(repo, tmp_path):
    f = tmp_path / "exit.json"
    with Server(repo, ["--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1",
                       "--trace-config", f"triton,file={f}"], wait="ready") as s:
        infer(s, n=4)
        assert not f.exists()
    assert len(read_records(f, 4, timeout=1)) == 4


# ---- startup flags -------------------------------------------------------------------------

def test_trace_config_flags(repo, tmp_path):
    f = tmp_path / "flags.json"
    args = ["--trace-config", "level=TIMESTAMPS", "--trace-config", "level=TENSORS",
            "--trace-config", "rate=2", "--trace-config", "count=10",
            "--trace-config", f"triton,file={f}", "--trace-config", "triton,log-frequency=4",
            "--trace-config", "mode=triton"]
    with Server(repo, args, wait="ready") as s:
        g = get(s)
        assert g == {"trace_level": ["TIMESTAMPS", "TENSORS"], "trace_rate": "2",
                     "trace_count": "10", "log_frequency": "4", "trace_file": str(f),
                     "trace_mode": "triton"}
        # Clearing returns to the startup value, not Triton's default.
        post(s, {"trace_rate": "7"})
        assert post(s, {"trace_rate": None})["trace_rate"] == "2"


def test_deprecated_trace_flags(repo, tmp_path):
    f = tmp_path / "old.json"
    args = [f"--trace-file={f}", "--trace-level=TIMESTAMPS", "--trace-rate=3",
            "--trace-count=5", "--trace-log-frequency=1"]
    with Server(repo, args, wait="ready") as s:
        g = get(s)
        assert g["trace_level"] == ["TIMESTAMPS"] and g["trace_rate"] == "3"
        assert g["trace_count"] == "5" and g["log_frequency"] == "1" and g["trace_file"] == str(f)


@pytest.mark.parametrize("args,words", [
    (["--trace-config", "level=LOUD"], "LOUD"),
    (["--trace-config", "rate=0"], "trace_rate"),
    (["--trace-config", "rate=abc"], "abc"),
    (["--trace-config", "count=-5"], "trace_count"),
    (["--trace-config", "colour=red"], "unknown trace setting 'colour'"),
    (["--trace-config", "level"], "expected <setting>=<value>"),
    (["--trace-config", "zipkin,file=/tmp/x"], "unknown trace mode 'zipkin'"),
    (["--trace-config", "mode=opentelemetry"], "not supported in this build"),
    (["--trace-config", "opentelemetry,url=localhost:4318"], "not supported in this build"),
    (["--trace-config", "level=TIMESTAMPS"], "no trace_file"),
    (["--trace-rate=-1"], "--trace-rate"),
])
def test_bad_trace_flags(repo, args, words):
    rc, out = run_to_exit(repo, args)
    assert rc != 0
    assert words in out, out


# ---- access --------------------------------------------------------------------------------

def test_trace_api_group_restricted(repo):
    args = ["--http-restricted-api=trace:tk=tv", "--grpc-restricted-protocol=trace:tk=tv"]
    with Server(repo, args, wait="ready") as s:
        assert requests.get(s.url + "/v2/trace/setting").status_code == 403
        assert requests.post(s.url + "/v2/models/m/trace/setting", json={}).status_code == 403
        assert requests.get(s.url + "/v2/trace/setting", headers={"tk": "tv"}).status_code == 200
        with grpc.insecure_channel(s.grpc_url) as ch:
            stub = pb2_grpc.GRPCInferenceServiceStub(ch)
            with pytest.raises(grpc.RpcError) as e:
                stub.TraceSetting(pb2.TraceSettingRequest(), timeout=10)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
            resp = stub.TraceSetting(pb2.TraceSettingRequest(), timeout=10,
                                     metadata=[("triton-grpc-protocol-tk", "tv")])
            assert list(resp.settings["trace_rate"].value) == ["1000"]


# ---- the real tritonclient -----------------------------------------------------------------

CLIENT_PATH = os.environ.get("TRITON_CLIENT_PYTHONPATH")
needs_client = pytest.mark.skipif(not CLIENT_PATH, reason="TRITON_CLIENT_PYTHONPATH is not set: "
                                  "no tritonclient to test against")


def _client_modules():
    sys.path.insert(0, CLIENT_PATH)
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException
    return httpclient, grpcclient, InferenceServerException


@needs_client
def test_tritonclient_http(server, tmp_path):
    httpclient, _, InferenceServerException = _client_modules()
    c = httpclient.InferenceServerClient(server.url.replace("http://", ""))
    f = str(tmp_path / "tc.json")
    s = c.update_trace_settings(settings={"trace_file": f, "trace_rate": "1",
                                          "trace_level": ["TIMESTAMPS"]})
    assert s["trace_level"] == ["TIMESTAMPS"] and s["trace_rate"] == "1"
    s = c.update_trace_settings(model_name="m", settings={"trace_count": "2"})
    assert s["trace_count"] == "2" and c.get_trace_settings(model_name="m")["trace_count"] == "2"
    x = np.array([1.0, 2.0], dtype=np.float32)
    inp = httpclient.InferInput("INPUT0", [2], "FP32")
    inp.set_data_from_numpy(x)
    for _ in range(3):
        c.infer("m", [inp])
    assert c.get_trace_settings(model_name="m")["trace_count"] == "0"
    assert len(read_records(f + ".0", 2)) == 2
    s = c.update_trace_settings(model_name="m", settings={"trace_count": None})
    assert s["trace_count"] == "-1"
    with pytest.raises(InferenceServerException, match="LOUD"):
        c.update_trace_settings(settings={"trace_level": ["LOUD"]})
    c.update_trace_settings(settings={"trace_level": ["OFF"]})
    assert c.get_trace_settings()["trace_level"] == ["OFF"]


@needs_client
def test_tritonclient_grpc(server, tmp_path):
    _, grpcclient, InferenceServerException = _client_modules()
    c = grpcclient.InferenceServerClient(server.grpc_url)
    f = str(tmp_path / "tcg.json")
    s = c.update_trace_settings(settings={"trace_file": f, "trace_rate": "1",
                                          "trace_level": ["TIMESTAMPS"]}, as_json=True)
    assert s["settings"]["trace_level"]["value"] == ["TIMESTAMPS"]
    s = c.update_trace_settings(model_name="m", settings={"trace_rate": "2"}, as_json=True)
    assert s["settings"]["trace_rate"]["value"] == ["2"]
    s = c.get_trace_settings(model_name="m", as_json=True)
    assert s["settings"]["trace_rate"]["value"] == ["2"]
    s = c.update_trace_settings(model_name="m", settings={"trace_rate": None}, as_json=True)
    assert s["settings"]["trace_rate"]["value"] == ["1"]
    inp = grpcclient.InferInput("INPUT0", [2], "FP32")
    inp.set_data_from_numpy(np.array([1.0, 2.0], dtype=np.float32))
    for _ in range(2):
        c.infer("m", [inp])
    c.update_trace_settings(settings={"trace_level": ["OFF"]})
    records = read_records(f, 2)
    assert len(records) == 2
    for r in records:
        check_timestamps(r)
    with pytest.raises(InferenceServerException, match="trace_rate"):
        c.update_trace_settings(settings={"trace_rate": "0"})
    c.close()
