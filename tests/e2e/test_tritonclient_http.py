"""The main HTTP cases through the real tritonclient.http library.

Needs TRITON_CLIENT_PYTHONPATH: a directory holding the `tritonclient` package (with
geventhttpclient and python-rapidjson importable)."""
import os
import sys

import numpy as np
import pytest

from harness import Server, identity_config, write_model, labelled_config

_path = os.environ.get("TRITON_CLIENT_PYTHONPATH")
if not _path:
    pytest.skip("TRITON_CLIENT_PYTHONPATH is not set: no tritonclient package to test with",
                allow_module_level=True)
sys.path.insert(0, _path)
try:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype
except ImportError as e:  # pragma: no cover - depends on the machine
    pytest.skip(f"tritonclient.http from {_path} cannot be imported: {e}", allow_module_level=True)

CLASSIFY = labelled_config("classify")

DTYPES = [("FP32", np.float32), ("INT64", np.int64), ("UINT8", np.uint8), ("BOOL", np.bool_),
          ("FP16", np.float16), ("BYTES", np.object_)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("tc_http_repo")
    for wire, _ in DTYPES:
        cfg = "TYPE_STRING" if wire == "BYTES" else "TYPE_" + wire
        write_model(repo, "id_" + wire.lower(), identity_config("id_" + wire.lower(), dtype=cfg))
    write_model(repo, "batched", identity_config("batched", dims="[ 4 ]", max_batch_size=8))
    write_model(repo, "classify", CLASSIFY, files={"labels.txt": "cat\ndog\nbird\nfish\n"})
    with Server(repo, wait="ready") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.http_port}")
    yield c
    c.close()


def sample(wire, np_dtype):
    if wire == "BYTES":
        return np.array([b"one", b"", "\u00fcber".encode()], dtype=np.object_)
    if wire == "BOOL":
        return np.array([True, False, True])
    return np.array([1, 0, 7], dtype=np_dtype)


def test_health_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "triton"  # --id's default, which tritonclient's examples check
    assert "binary_tensor_data" in meta["extensions"]
    assert client.is_model_ready("batched")
    assert not client.is_model_ready("nope")


def test_model_metadata_and_config(client):
    meta = client.get_model_metadata("batched")
    assert meta["name"] == "batched"
    assert meta["versions"] == ["1"]
    assert meta["inputs"][0]["shape"] == [-1, 4]
    cfg = client.get_model_config("batched")
    assert cfg["max_batch_size"] == 8
    assert cfg["input"][0]["name"] == "INPUT0"
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("nope")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("wire,np_dtype", DTYPES, ids=[d[0] for d in DTYPES])
def test_infer(client, wire, np_dtype, binary):
    if wire == "FP16" and not binary:
        pytest.skip("FP16 travels only as binary data")
    data = sample(wire, np_dtype)
    inp = httpclient.InferInput("INPUT0", list(data.shape), np_to_triton_dtype(data.dtype)
                                if wire != "BYTES" else "BYTES")
    inp.set_data_from_numpy(data, binary_data=binary)
    out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
    result = client.infer("id_" + wire.lower(), [inp], outputs=[out], request_id="rid-1")
    got = result.as_numpy("OUTPUT0")
    if wire == "BYTES" and not binary:
        got = np.array([s.encode() if isinstance(s, str) else s for s in got], dtype=np.object_)
    np.testing.assert_array_equal(got, data)
    resp = result.get_response()
    assert resp["id"] == "rid-1"
    assert resp["model_name"] == "id_" + wire.lower()


def test_infer_default_outputs_batched(client):
    data = np.arange(8, dtype=np.float32).reshape(2, 4)
    inp = httpclient.InferInput("INPUT0", [2, 4], "FP32")
    inp.set_data_from_numpy(data)
    result = client.infer("batched", [inp])  # no outputs: the client asks for binary
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_infer_error_is_raised(client):
    inp = httpclient.InferInput("INPUT0", [1, 5], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 5), np.float32))
    with pytest.raises(InferenceServerException, match="INPUT0"):
        client.infer("batched", [inp])


def test_classification(client):
    inp = httpclient.InferInput("INPUT0", [4], "FP32")
    inp.set_data_from_numpy(np.array([0.1, 0.7, 0.05, 0.15], np.float32))
    for binary in (True, False):
        out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary, class_count=2)
        result = client.infer("classify", [inp], outputs=[out])
        got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("OUTPUT0")]
        assert [g.split(":")[1:] for g in got] == [["1", "dog"], ["3", "fish"]]


def test_statistics_and_index(client):
    before = client.get_inference_statistics("id_int64")["model_stats"][0]["inference_count"]
    inp = httpclient.InferInput("INPUT0", [2], "INT64")
    inp.set_data_from_numpy(np.array([1, 2], np.int64))
    client.infer("id_int64", [inp])
    stats = client.get_inference_statistics("id_int64")["model_stats"][0]
    assert stats["inference_count"] == before + 1
    assert stats["inference_stats"]["success"]["count"] >= 1
    all_stats = client.get_inference_statistics()["model_stats"]
    assert {"batched", "classify"} <= {m["name"] for m in all_stats}
    index = client.get_model_repository_index()
    assert {e["name"]: e["state"] for e in index}["batched"] == "READY"


def test_logging_settings(client):
    settings = client.get_log_settings()
    assert "log_verbose_level" in settings
    updated = client.update_log_settings({"log_verbose_level": 0})
    assert updated["log_verbose_level"] == 0


def test_explicit_mode_index_and_server_id(tmp_path):
    # The issue-15 defects as tritonclient sees them: the server's name is --id, and the
    # index lists the models never loaded by name only.
    write_model(tmp_path, "loaded", identity_config("loaded"))
    write_model(tmp_path, "idle", identity_config("idle"))
    with Server(tmp_path, ["--model-control-mode=explicit", "--load-model=loaded",
                           "--id=my-triton"], wait="ready") as s:
        c = httpclient.InferenceServerClient(url=f"127.0.0.1:{s.http_port}")
        try:
            meta = c.get_server_metadata()
            assert meta["name"] == "my-triton"
            assert "trace" in meta["extensions"]
            assert c.get_model_repository_index() == [
                {"name": "idle"}, {"name": "loaded", "version": "1", "state": "READY"}]
            c.load_model("idle")
            assert {(e["name"], e.get("state")) for e in c.get_model_repository_index()} == {
                ("idle", "READY"), ("loaded", "READY")}
        finally:
            c.close()


def test_model_control_example_on_an_onnx_simple(tmp_path):
    """What tritonclient's simple_http_model_control example does, on an ONNX `simple`
    that has no config.pbtxt: load, read the completed config, reload with an override."""
    from test_backend_modules import write_onnx_simple
    write_onnx_simple(tmp_path)
    with Server(tmp_path, ["--model-control-mode=explicit"], wait="ready") as s:
        c = httpclient.InferenceServerClient(url=f"127.0.0.1:{s.http_port}")
        assert not c.is_model_ready("simple")
        c.load_model("simple")
        assert c.is_model_ready("simple")
        assert c.get_model_config("simple")["max_batch_size"] == 4
        c.load_model("simple", config='{"max_batch_size":"16"}')
        assert c.get_model_config("simple")["max_batch_size"] == 16
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        for i in inputs:
            i.set_data_from_numpy(a)
        res = c.infer("simple", inputs)
        np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), 2 * a)
        c.unload_model("simple")
        assert not c.is_model_ready("simple")
        c.close()
