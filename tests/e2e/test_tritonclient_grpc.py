"""The main gRPC cases again, through the real tritonclient.grpc package.

Set TRITON_CLIENT_PYTHONPATH to a folder holding the `tritonclient` package to run them;
this proves wire compatibility with the client users actually have.
"""
import os
import queue
import sys
import time

import numpy as np
import pytest

from cases import DATATYPES, MODEL_ERROR_CASES
from harness import Server, identity_config, write_model, labelled_config

CLIENT_PATH = os.environ.get("TRITON_CLIENT_PYTHONPATH")
if not CLIENT_PATH:
    pytest.skip("TRITON_CLIENT_PYTHONPATH is not set: no tritonclient to test against",
                allow_module_level=True)
sys.path.insert(0, CLIENT_PATH)
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException, np_to_triton_dtype  # noqa: E402

# tritonclient builds tensors from numpy, which has no bfloat16.
CLIENT_DATATYPES = [d for d in DATATYPES if d.wire != "BF16"]

LABELLED = labelled_config("labelled")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("tc_grpc_repo")
    for d in CLIENT_DATATYPES:
        write_model(repo, d.model, identity_config(d.model, dtype=d.config))
    write_model(repo, "batched", identity_config("batched", dims="[ 4 ]", max_batch_size=8))
    write_model(repo, "slow", identity_config(
        "slow", extra='parameters { key: "execute_delay_ms" value { string_value: "400" } }'))
    write_model(repo, "labelled", LABELLED, files={"labels.txt": "a\nb\nc\nd\n"})
    write_model(repo, "spare", identity_config("spare"))
    with Server(repo, ["--model-control-mode=explicit", "--load-model=*"], wait="ready") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    c = grpcclient.InferenceServerClient(server.grpc_url)
    deadline = time.time() + 10
    while time.time() < deadline:  # HTTP answers ready a moment before gRPC listens
        try:
            if c.is_server_live():
                break
        except InferenceServerException:
            time.sleep(0.05)
    yield c
    c.close()


def make_input(arr, name="INPUT0"):
    inp = grpcclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
    inp.set_data_from_numpy(arr)
    return inp


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("id_fp32") and not client.is_model_ready("ghost")
    md = client.get_server_metadata()
    assert md.name == "triton" and "statistics" in md.extensions
    mm = client.get_model_metadata("batched", as_json=True)
    assert mm["name"] == "batched" and mm["inputs"][0]["shape"] == ["-1", "4"]
    cfg = client.get_model_config("batched", as_json=True)["config"]
    assert cfg["max_batch_size"] == 8 and cfg["input"][0]["name"] == "INPUT0"


@pytest.mark.parametrize("d", CLIENT_DATATYPES, ids=repr)
def test_infer_every_datatype(client, d):
    arr = d.array()
    result = client.infer(d.model, [make_input(arr)],
                          outputs=[grpcclient.InferRequestedOutput("OUTPUT0")], request_id="r1")
    out = result.as_numpy("OUTPUT0")
    assert out.shape == arr.shape
    if d.wire == "BYTES":
        assert list(out) == list(arr)
    else:
        assert np.array_equal(out, arr)
    assert result.get_response().id == "r1"


def test_classification(client):
    arr = np.array([0.1, 0.9, 0.3, 0.5], dtype=np.float32)
    result = client.infer("labelled", [make_input(arr)],
                          outputs=[grpcclient.InferRequestedOutput("OUTPUT0", class_count=2)])
    got = [v.decode().split(":") for v in result.as_numpy("OUTPUT0")]
    assert [(i, lab) for _, i, lab in got] == [("1", "b"), ("3", "d")]


def test_errors(client):
    with pytest.raises(InferenceServerException) as e:
        client.infer("ghost", [make_input(np.ones(1, np.float32))])
    assert e.value.status() == "StatusCode.NOT_FOUND" and "ghost" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.infer("id_fp32", [make_input(np.ones(2, np.int32))])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "INPUT0" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.unregister_system_shared_memory("never-registered")
    assert e.value.status() == "StatusCode.NOT_FOUND"


GRPC_STATUS = {400: "StatusCode.INVALID_ARGUMENT", 404: "StatusCode.NOT_FOUND"}
NP = {d.wire: d.np_dtype for d in DATATYPES}


@pytest.mark.parametrize("case", MODEL_ERROR_CASES, ids=lambda c: c["id"])
def test_model_error_cases(client, case):
    inputs = []
    for name, wire, shape, data in case["inputs"]:
        inputs.append(make_input(np.array(data, dtype=NP[wire]).reshape(shape), name))
    outputs = [grpcclient.InferRequestedOutput(n) for n in case.get("outputs", [])] or None
    with pytest.raises(InferenceServerException) as e:
        client.infer(case["model"], inputs, outputs=outputs)
    assert e.value.status() in {GRPC_STATUS[c] for c in case["status"]}
    for fragment in case["contains"]:
        assert fragment in e.value.message()


def test_async_infer(client):
    results = queue.Queue()
    for i in range(16):
        client.async_infer("id_int64", [make_input(np.full(4, i, np.int64))],
                           lambda result, error: results.put((result, error)),
                           request_id=str(i))
    seen = set()
    for _ in range(16):
        r, err = results.get(timeout=30)
        assert err is None
        i = int(r.get_response().id)
        assert r.as_numpy("OUTPUT0").tolist() == [i] * 4
        seen.add(i)
    assert seen == set(range(16))


def test_stream_out_of_order_and_errors(client):
    results = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer("slow", [make_input(np.array([1.0], np.float32))],
                                  request_id="slow")
        client.async_stream_infer("ghost", [make_input(np.array([1.0], np.float32))],
                                  request_id="bad")
        client.async_stream_infer("id_fp32", [make_input(np.array([2.0], np.float32))],
                                  request_id="fast")
        got = [results.get(timeout=30) for _ in range(3)]
    finally:
        client.stop_stream()
    errors = [err for r, err in got if err is not None]
    oks = [r.get_response().id for r, err in got if err is None]
    assert len(errors) == 1 and "ghost" in errors[0].message()
    assert oks == ["fast", "slow"]


def test_repository_and_statistics(client):
    names = {m.name for m in client.get_model_repository_index().models}
    assert {"spare", "id_fp32"} <= names
    client.unload_model("spare")
    assert not client.is_model_ready("spare")
    client.load_model("spare")
    assert client.is_model_ready("spare")
    before = client.get_inference_statistics("id_int8", as_json=True)["model_stats"][0]
    client.infer("id_int8", [make_input(np.ones(3, np.int8))])
    after = client.get_inference_statistics("id_int8", as_json=True)["model_stats"][0]
    assert int(after.get("inference_count", 0)) == int(before.get("inference_count", 0)) + 1


def test_explicit_mode_index_and_server_id(tmp_path):
    # The issue-15 defects as tritonclient sees them: the server's name is --id, and the
    # index lists the models never loaded by name only (empty version and state).
    write_model(tmp_path, "loaded", identity_config("loaded"))
    write_model(tmp_path, "idle", identity_config("idle"))
    with Server(tmp_path, ["--model-control-mode=explicit", "--load-model=loaded",
                           "--id=my-triton"], wait="ready") as s:
        c = grpcclient.InferenceServerClient(s.grpc_url)
        try:
            deadline = time.time() + 10
            while time.time() < deadline:  # gRPC listens a moment after HTTP is ready
                try:
                    if c.is_server_live():
                        break
                except InferenceServerException:
                    time.sleep(0.05)
            md = c.get_server_metadata()
            assert md.name == "my-triton" and "trace" in md.extensions
            index = [(m.name, m.version, m.state) for m in c.get_model_repository_index().models]
            assert index == [("idle", "", ""), ("loaded", "1", "READY")]
            c.load_model("idle")
            assert {(m.name, m.state) for m in c.get_model_repository_index().models} == {
                ("idle", "READY"), ("loaded", "READY")}
        finally:
            c.close()


def test_settings(client):
    log = client.get_log_settings(as_json=True)["settings"]
    assert "log_verbose_level" in log
    trace = client.update_trace_settings(settings={"trace_rate": "9"}, as_json=True)
    assert trace["settings"]["trace_rate"]["value"] == ["9"]
    client.update_trace_settings(settings={"trace_rate": None})
    assert client.get_trace_settings(as_json=True)["settings"]["trace_rate"]["value"] == ["1000"]
