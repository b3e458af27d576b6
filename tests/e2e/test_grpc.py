"""The gRPC frontend end to end: every RPC, every datatype, streaming, errors, TLS.

Stubs are generated from our own proto/ at test time (grpc_stubs.py); models are
identity models, so every answer is predictable.
"""
import json
import queue
import struct
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
import requests

import grpc_stubs
from cases import DATATYPES, MODEL_ERROR_CASES
from harness import BIN, Server, free_port, identity_config, write_model, labelled_config

pb2, pb2_grpc = grpc_stubs.load()

# Where typed (non-raw) contents carry each datatype; FP16 and BF16 have no typed field.
TYPED_FIELD = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}

BIG = 64 * 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_send_message_length", BIG),
                   ("grpc.max_receive_message_length", BIG)]


def model_with_params(name, dtype="TYPE_FP32", dims="[ -1 ]", max_batch_size=0, **params):
    extra = "".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
                    for k, v in params.items())
    return identity_config(name, dtype=dtype, dims=dims, max_batch_size=max_batch_size,
                           extra=extra)


LABELLED = labelled_config("labelled")


def build_repo(repo):
    for d in DATATYPES:
        write_model(repo, d.model, identity_config(d.model, dtype=d.config))
    write_model(repo, "fixed", identity_config("fixed", dims="[ 2, 3 ]"))
    write_model(repo, "batched", identity_config("batched", dims="[ 4 ]", max_batch_size=8,
                                                 extra="version_policy: { all { } }"),
                versions=(1, 2))
    write_model(repo, "slow", model_with_params("slow", execute_delay_ms=400))
    write_model(repo, "labelled", LABELLED, files={"labels.txt": "a\nb\nc\nd\n"})
    write_model(repo, "spare", identity_config("spare"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("grpc_repo")
    build_repo(repo)
    # explicit mode with every model loaded, so load/unload can be exercised too
    with Server(repo, ["--model-control-mode=explicit", "--load-model=*"], wait="ready") as s:
        yield s


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_url, options=CHANNEL_OPTIONS)
    grpc.channel_ready_future(channel).result(timeout=10)
    yield pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


# ---- helpers ----------------------------------------------------------------------------

def serialize_bytes(values):
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def deserialize_bytes(raw):
    out, off = [], 0
    while off < len(raw):
        (n,) = struct.unpack_from("<I", raw, off)
        out.append(raw[off + 4:off + 4 + n])
        off += 4 + n
    return out


def make_input(name, datatype, shape, **contents):
    t = pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=list(shape))
    for field, values in contents.items():
        getattr(t.contents, field).extend(values)
    return t


def infer_request(model, arr=None, datatype="FP32", raw=None, id="", version="", typed=None,
                  outputs=(), params=None):
    """One INPUT0. `raw` bytes or numpy `arr` (sent raw), or typed=(field, values)."""
    req = pb2.ModelInferRequest(model_name=model, model_version=version, id=id)
    shape = list(arr.shape) if arr is not None else [len(typed[1])] if typed else []
    if typed:
        req.inputs.append(make_input("INPUT0", datatype, shape, **{typed[0]: typed[1]}))
    else:
        req.inputs.append(make_input("INPUT0", datatype, shape))
        req.raw_input_contents.append(raw if raw is not None else arr.tobytes())
    for out in outputs:
        req.outputs.append(out)
    for k, v in (params or {}).items():
        p = req.parameters[k]
        if isinstance(v, bool):
            p.bool_param = v
        elif isinstance(v, int):
            p.int64_param = v
        else:
            p.string_param = v
    return req


def output_array(resp, index=0, np_dtype=np.float32):
    return np.frombuffer(resp.raw_output_contents[index], dtype=np_dtype)


def expect_error(fn, code, *fragments):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    assert e.value.code() == code, e.value.details()
    for f in fragments:
        assert f in e.value.details(), e.value.details()
    return e.value.details()


# ---- health and metadata ------------------------------------------------------------------

def test_health(stub):
    assert stub.ServerLive(pb2.ServerLiveRequest()).live
    assert stub.ServerReady(pb2.ServerReadyRequest()).ready
    assert stub.ModelReady(pb2.ModelReadyRequest(name="id_fp32")).ready
    assert stub.ModelReady(pb2.ModelReadyRequest(name="batched", version="2")).ready
    assert not stub.ModelReady(pb2.ModelReadyRequest(name="no_such_model")).ready
    assert not stub.ModelReady(pb2.ModelReadyRequest(name="batched", version="7")).ready


def test_server_metadata(stub):
    md = stub.ServerMetadata(pb2.ServerMetadataRequest())
    assert md.name == "triton"  # --id's default, as tritonserver reports
    assert md.version
    assert "model_repository" in md.extensions and "statistics" in md.extensions


def test_model_metadata(stub):
    md = stub.ModelMetadata(pb2.ModelMetadataRequest(name="batched"))
    assert md.name == "batched"
    assert list(md.versions) == ["1", "2"]
    assert md.platform == "identity"
    def tensors(ts):
        return [(t.name, t.datatype, list(t.shape)) for t in ts]

    assert tensors(md.inputs) == [("INPUT0", "FP32", [-1, 4])]
    assert tensors(md.outputs) == [("OUTPUT0", "FP32", [-1, 4])]
    md = stub.ModelMetadata(pb2.ModelMetadataRequest(name="id_bytes"))
    assert md.inputs[0].datatype == "BYTES" and list(md.inputs[0].shape) == [-1]
    expect_error(lambda: stub.ModelMetadata(pb2.ModelMetadataRequest(name="nope")),
                 grpc.StatusCode.NOT_FOUND, "nope")


def test_model_config(stub):
    cfg = stub.ModelConfig(pb2.ModelConfigRequest(name="batched")).config
    assert cfg.name == "batched" and cfg.backend == "identity" and cfg.max_batch_size == 8
    assert cfg.input[0].name == "INPUT0" and list(cfg.input[0].dims) == [4]
    assert cfg.input[0].data_type == 11  # TYPE_FP32
    cfg = stub.ModelConfig(pb2.ModelConfigRequest(name="labelled", version="1")).config
    assert cfg.output[0].label_filename == "labels.txt"
    expect_error(lambda: stub.ModelConfig(pb2.ModelConfigRequest(name="nope")),
                 grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: stub.ModelConfig(pb2.ModelConfigRequest(name="batched", version="x")),
                 grpc.StatusCode.INVALID_ARGUMENT)


def test_statistics_count_inferences(stub):
    def stats():
        s = stub.ModelStatistics(pb2.ModelStatisticsRequest(name="id_int32"))
        assert len(s.model_stats) == 1 and s.model_stats[0].name == "id_int32"
        return s.model_stats[0]

    before = stats()
    for _ in range(3):
        stub.ModelInfer(infer_request("id_int32", np.arange(4, dtype=np.int32), "INT32"))
    after = stats()
    assert after.version == "1"
    assert after.inference_count == before.inference_count + 3
    assert after.execution_count == before.execution_count + 3
    assert after.inference_stats.success.count == before.inference_stats.success.count + 3
    assert after.inference_stats.success.ns > before.inference_stats.success.ns
    assert after.last_inference > 0
    every = stub.ModelStatistics(pb2.ModelStatisticsRequest())
    names = {(m.name, m.version) for m in every.model_stats}
    assert ("batched", "1") in names and ("batched", "2") in names and ("id_fp32", "1") in names
    one = stub.ModelStatistics(pb2.ModelStatisticsRequest(name="batched", version="2"))
    assert [(m.name, m.version) for m in one.model_stats] == [("batched", "2")]
    expect_error(lambda: stub.ModelStatistics(pb2.ModelStatisticsRequest(name="nope")),
                 grpc.StatusCode.NOT_FOUND)


# ---- repository -----------------------------------------------------------------------------

def test_repository_index_load_unload(stub):
    index = stub.RepositoryIndex(pb2.RepositoryIndexRequest())
    states = {(m.name, m.version): m.state for m in index.models}
    assert states[("spare", "1")] == "READY"
    stub.RepositoryModelUnload(pb2.RepositoryModelUnloadRequest(model_name="spare"))
    assert not stub.ModelReady(pb2.ModelReadyRequest(name="spare")).ready
    ready = stub.RepositoryIndex(pb2.RepositoryIndexRequest(ready=True))
    assert "spare" not in {m.name for m in ready.models}
    assert "id_fp32" in {m.name for m in ready.models}
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(infer_request("spare", np.ones(2, np.float32)))
    assert e.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE)
    assert "spare" in e.value.details()
    stub.RepositoryModelLoad(pb2.RepositoryModelLoadRequest(model_name="spare"))
    assert stub.ModelReady(pb2.ModelReadyRequest(name="spare")).ready
    resp = stub.ModelInfer(infer_request("spare", np.ones(2, np.float32)))
    assert output_array(resp).tolist() == [1.0, 1.0]
    expect_error(lambda: stub.RepositoryModelLoad(
        pb2.RepositoryModelLoadRequest(model_name="not_in_repo")), grpc.StatusCode.NOT_FOUND,
        "not_in_repo")


def test_load_with_config_override(stub):
    override = json.dumps({"name": "spare", "backend": "identity", "max_batch_size": 4,
                           "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [2]}],
                           "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [2]}]})
    req = pb2.RepositoryModelLoadRequest(model_name="spare")
    req.parameters["config"].string_param = override
    stub.RepositoryModelLoad(req)
    try:
        cfg = stub.ModelConfig(pb2.ModelConfigRequest(name="spare")).config
        assert cfg.max_batch_size == 4 and list(cfg.input[0].dims) == [2]
    finally:
        stub.RepositoryModelLoad(pb2.RepositoryModelLoadRequest(model_name="spare"))
    assert stub.ModelConfig(pb2.ModelConfigRequest(name="spare")).config.max_batch_size == 0
    bad = pb2.RepositoryModelLoadRequest(model_name="spare")
    bad.parameters["config"].bool_param = True
    expect_error(lambda: stub.RepositoryModelLoad(bad), grpc.StatusCode.INVALID_ARGUMENT, "config")


# ---- inference: datatypes -----------------------------------------------------------------

def raw_bytes(d, arr):
    return serialize_bytes(list(arr)) if d.wire == "BYTES" else arr.tobytes()


@pytest.mark.parametrize("d", DATATYPES, ids=repr)
def test_every_datatype_raw(stub, d):
    arr = d.array()
    raw = raw_bytes(d, arr)
    resp = stub.ModelInfer(infer_request(d.model, arr, d.wire, raw=raw))
    out = resp.outputs[0]
    assert (out.name, out.datatype, list(out.shape)) == ("OUTPUT0", d.wire, [len(arr)])
    assert resp.model_name == d.model and resp.model_version == "1"
    if d.wire == "BYTES":
        assert deserialize_bytes(resp.raw_output_contents[0]) == list(arr)
    else:
        assert resp.raw_output_contents[0] == raw
        assert np.array_equal(output_array(resp, np_dtype=arr.dtype), arr)


@pytest.mark.parametrize("d", [d for d in DATATYPES if d.wire in TYPED_FIELD], ids=repr)
def test_every_datatype_typed_contents(stub, d):
    arr = d.array()
    values = list(arr) if d.wire == "BYTES" else arr.tolist()
    resp = stub.ModelInfer(infer_request(d.model, datatype=d.wire,
                                         typed=(TYPED_FIELD[d.wire], values)))
    if d.wire == "BYTES":
        assert deserialize_bytes(resp.raw_output_contents[0]) == values
    else:
        assert np.array_equal(output_array(resp, np_dtype=arr.dtype), arr)


@pytest.mark.parametrize("wire", ["FP16", "BF16"])
def test_half_types_refuse_typed_contents(stub, wire):
    req = infer_request(f"id_{wire.lower()}", datatype=wire, typed=("fp32_contents", [1.0]))
    expect_error(lambda: stub.ModelInfer(req), grpc.StatusCode.INVALID_ARGUMENT,
                 "raw_input_contents")


def test_narrow_typed_value_out_of_range(stub):
    req = infer_request("id_int8", datatype="INT8", typed=("int_contents", [1, 300]))
    expect_error(lambda: stub.ModelInfer(req), grpc.StatusCode.INVALID_ARGUMENT, "300", "INT8")


def test_batched_multidim_and_versions(stub):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    for version in ("", "1", "2"):
        resp = stub.ModelInfer(infer_request("batched", arr, version=version))
        assert list(resp.outputs[0].shape) == [3, 4]
        assert np.array_equal(output_array(resp).reshape(3, 4), arr)
        assert resp.model_version == (version or "2")


def test_large_tensor_beyond_default_grpc_limit(stub):
    arr = np.random.default_rng(0).random(5 * 1024 * 1024, dtype=np.float32)  # 20 MiB
    resp = stub.ModelInfer(infer_request("id_fp32", arr))
    assert np.array_equal(output_array(resp), arr)


# ---- inference: ids, parameters, outputs --------------------------------------------------

def test_request_id_and_parameters(stub):
    resp = stub.ModelInfer(infer_request("id_fp32", np.ones(3, np.float32), id="req-42",
                                         params={"priority": 1, "timeout": 5_000_000,
                                                 "custom": "x"}))
    assert resp.id == "req-42"
    bad = infer_request("id_fp32", np.ones(3, np.float32), params={"priority": "high"})
    expect_error(lambda: stub.ModelInfer(bad), grpc.StatusCode.INVALID_ARGUMENT, "priority")
    bad = infer_request("id_fp32", np.ones(3, np.float32), params={"timeout": -1})
    expect_error(lambda: stub.ModelInfer(bad), grpc.StatusCode.INVALID_ARGUMENT, "timeout")


def test_requested_outputs_and_classification(stub):
    arr = np.array([0.1, 0.9, 0.3, 0.5], dtype=np.float32)
    plain = pb2.ModelInferRequest.InferRequestedOutputTensor(name="OUTPUT0")
    resp = stub.ModelInfer(infer_request("labelled", arr, outputs=[plain]))
    assert np.array_equal(output_array(resp), arr)
    cls = pb2.ModelInferRequest.InferRequestedOutputTensor(name="OUTPUT0")
    cls.parameters["classification"].int64_param = 2
    resp = stub.ModelInfer(infer_request("labelled", arr, outputs=[cls]))
    assert resp.outputs[0].datatype == "BYTES" and list(resp.outputs[0].shape) == [2]
    labels = [v.decode().split(":") for v in deserialize_bytes(resp.raw_output_contents[0])]
    assert [(float(s), int(i), lab) for s, i, lab in labels] == [(0.9, 1, "b"), (0.5, 3, "d")]
    unknown = pb2.ModelInferRequest.InferRequestedOutputTensor(name="NOPE")
    expect_error(lambda: stub.ModelInfer(infer_request("labelled", arr, outputs=[unknown])),
                 grpc.StatusCode.INVALID_ARGUMENT, "NOPE")


# ---- inference: errors ----------------------------------------------------------------------

def http_error(server, model, body):
    r = requests.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=10)
    return r.status_code, r.json().get("error", "")


GRPC_CODE = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND}
NP = {d.wire: d.np_dtype for d in DATATYPES}


@pytest.mark.parametrize("case", MODEL_ERROR_CASES, ids=lambda c: c["id"])
def test_model_error_cases_match_http(server, stub, case):
    req = pb2.ModelInferRequest(model_name=case["model"])
    body = {"inputs": []}
    for name, wire, shape, data in case["inputs"]:
        req.inputs.append(make_input(name, wire, shape))
        req.raw_input_contents.append(np.array(data, dtype=NP[wire]).tobytes())
        body["inputs"].append({"name": name, "datatype": wire, "shape": shape, "data": data})
    for name in case.get("outputs", []):
        req.outputs.append(pb2.ModelInferRequest.InferRequestedOutputTensor(name=name))
    body["outputs"] = [{"name": n} for n in case.get("outputs", [])] or None
    if body["outputs"] is None:
        del body["outputs"]
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req)
    assert e.value.code() in {GRPC_CODE[c] for c in case["status"]}, e.value.details()
    for fragment in case["contains"]:
        assert fragment in e.value.details()
    status, message = http_error(server, case["model"], body)
    assert GRPC_CODE[status] == e.value.code() and message == e.value.details()


def test_wrong_shape_and_sizes(stub):
    expect_error(lambda: stub.ModelInfer(infer_request("fixed", np.ones((3, 2), np.float32))),
                 grpc.StatusCode.INVALID_ARGUMENT, "INPUT0")
    short = infer_request("id_fp32", np.ones(4, np.float32), raw=b"\0" * 12)
    expect_error(lambda: stub.ModelInfer(short), grpc.StatusCode.INVALID_ARGUMENT, "INPUT0")
    few = infer_request("id_fp32", datatype="FP32", typed=("fp32_contents", [1.0, 2.0]))
    few.inputs[0].shape[:] = [3]
    expect_error(lambda: stub.ModelInfer(few), grpc.StatusCode.INVALID_ARGUMENT, "INPUT0")
    bad_bytes = infer_request("id_bytes", np.empty(2), "BYTES", raw=serialize_bytes([b"x"]))
    expect_error(lambda: stub.ModelInfer(bad_bytes), grpc.StatusCode.INVALID_ARGUMENT, "INPUT0")


def test_malformed_requests(stub):
    two_raw = infer_request("id_fp32", np.ones(1, np.float32))
    two_raw.raw_input_contents.append(b"\0\0\0\0")
    expect_error(lambda: stub.ModelInfer(two_raw), grpc.StatusCode.INVALID_ARGUMENT,
                 "raw_input_contents")
    bad_type = infer_request("id_fp32", np.ones(1, np.float32), "FLOAT32")
    expect_error(lambda: stub.ModelInfer(bad_type), grpc.StatusCode.INVALID_ARGUMENT, "FLOAT32")
    bad_version = infer_request("id_fp32", np.ones(1, np.float32), version="v1")
    expect_error(lambda: stub.ModelInfer(bad_version), grpc.StatusCode.INVALID_ARGUMENT)
    missing_version = infer_request("id_fp32", np.ones(1, np.float32), version="9")
    expect_error(lambda: stub.ModelInfer(missing_version), grpc.StatusCode.NOT_FOUND)


def test_shared_memory_rpcs_answer(stub):
    # The full coverage is in test_shared_memory.py; here: the RPCs are served.
    stub.SystemSharedMemoryStatus(pb2.SystemSharedMemoryStatusRequest())
    expect_error(lambda: stub.SystemSharedMemoryRegister(pb2.SystemSharedMemoryRegisterRequest(
        name="r", key="/flowserve-no-such-key", byte_size=16)), grpc.StatusCode.INVALID_ARGUMENT,
        "No such file")
    expect_error(lambda: stub.CudaSharedMemoryRegister(pb2.CudaSharedMemoryRegisterRequest(
        name="r")), grpc.StatusCode.INVALID_ARGUMENT, "GPUs not supported")
    req = infer_request("id_fp32", np.ones(1, np.float32))
    req.inputs[0].parameters["shared_memory_region"].string_param = "r"
    req.inputs[0].parameters["shared_memory_byte_size"].int64_param = 4
    del req.raw_input_contents[:]
    expect_error(lambda: stub.ModelInfer(req), grpc.StatusCode.NOT_FOUND, "'r'")


# ---- concurrency and streaming --------------------------------------------------------------

def test_many_concurrent_unary_calls(stub):
    def call(i):
        req = infer_request("id_int64", np.full(8, i, np.int64), "INT64", id=str(i))
        return stub.ModelInfer.future(req)

    futures = [(i, call(i)) for i in range(64)]
    for i, f in futures:
        resp = f.result(timeout=30)
        assert resp.id == str(i)
        assert output_array(resp, np_dtype=np.int64).tolist() == [i] * 8


class Stream:
    """A ModelStreamInfer call fed from a queue; responses collected with arrival order."""

    def __init__(self, stub):
        self.requests = queue.Queue()
        self.responses = []
        self.error = None
        self.call = stub.ModelStreamInfer(iter(self.requests.get, None))
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self):
        try:
            for r in self.call:
                self.responses.append(r)
        except grpc.RpcError as e:  # the call ended abnormally; tests look at .error
            self.error = e

    def send(self, req):
        self.requests.put(req)

    def close(self, timeout=30):
        self.requests.put(None)
        self.reader.join(timeout)
        assert not self.reader.is_alive()
        assert self.error is None, self.error
        return self.responses


def test_stream_out_of_order_completion(stub):
    s = Stream(stub)
    s.send(infer_request("slow", np.array([1.0], np.float32), id="slow-1"))
    time.sleep(0.05)
    s.send(infer_request("id_fp32", np.array([2.0], np.float32), id="fast-1"))
    responses = s.close()
    assert [r.infer_response.id for r in responses] == ["fast-1", "slow-1"]
    assert all(r.error_message == "" for r in responses)
    assert output_array(responses[0].infer_response).tolist() == [2.0]
    assert output_array(responses[1].infer_response).tolist() == [1.0]


def test_stream_interleaved_models_and_errors(stub):
    s = Stream(stub)
    expected = {}
    for i in range(40):
        if i % 10 == 7:
            s.send(infer_request("ghost", np.ones(1, np.float32), id=f"e{i}"))
            expected[f"e{i}"] = None
        elif i % 10 == 8:
            s.send(infer_request("id_fp32", np.ones(2, np.int32), "INT32", id=f"e{i}"))
            expected[f"e{i}"] = None
        elif i % 10 == 9:  # refused by the frontend itself, before the core sees it
            s.send(infer_request("id_fp32", np.ones(2, np.float32), id=f"e{i}",
                                 params={"priority": "urgent"}))
            expected[f"e{i}"] = None
        elif i % 2:
            s.send(infer_request("id_int32", np.array([i, -i], np.int32), "INT32", id=f"r{i}"))
            expected[f"r{i}"] = (np.int32, [i, -i])
        else:
            s.send(infer_request("batched", np.full((1, 4), i, np.float32), id=f"r{i}"))
            expected[f"r{i}"] = (np.float32, [i] * 4)
    responses = s.close()
    assert sorted(r.infer_response.id for r in responses) == sorted(expected)
    for r in responses:
        want = expected[r.infer_response.id]
        if want is None:
            assert r.error_message, r
        else:
            assert r.error_message == ""
            assert output_array(r.infer_response, np_dtype=want[0]).tolist() == want[1]
    errors = {r.infer_response.id: r.error_message for r in responses if r.error_message}
    assert "ghost" in errors["e7"] and "INT32" in errors["e8"] and "priority" in errors["e9"]


def test_stream_empty_final_response_flag(stub):
    s = Stream(stub)
    s.send(infer_request("id_fp32", np.ones(1, np.float32), id="f",
                         params={"triton_enable_empty_final_response": True}))
    (r,) = s.close()
    assert r.infer_response.parameters["triton_final_response"].bool_param


def test_stream_client_cancel_leaves_server_healthy(stub):
    requests_q = queue.Queue()
    call = stub.ModelStreamInfer(iter(requests_q.get, None))
    requests_q.put(infer_request("slow", np.ones(1, np.float32), id="x"))
    time.sleep(0.1)
    call.cancel()
    time.sleep(0.6)  # the slow request completes after its stream is gone
    assert stub.ServerLive(pb2.ServerLiveRequest()).live
    resp = stub.ModelInfer(infer_request("id_fp32", np.ones(1, np.float32)))
    assert output_array(resp).tolist() == [1.0]


# ---- settings -------------------------------------------------------------------------------

def trace(stub, model="", **settings):
    req = pb2.TraceSettingRequest(model_name=model)
    for k, v in settings.items():
        req.settings[k].value.extend(v)
    resp = stub.TraceSetting(req)
    return {k: list(v.value) for k, v in resp.settings.items()}


def test_trace_settings(stub, tmp_path):
    base = trace(stub)
    assert base["trace_level"] == ["OFF"] and base["trace_rate"] == ["1000"]
    assert trace(stub, trace_rate=["7"])["trace_rate"] == ["7"]
    m = trace(stub, "id_fp32", trace_level=["TIMESTAMPS", "TENSORS"],
              trace_file=[str(tmp_path / "t.json")])
    assert m["trace_level"] == ["TIMESTAMPS", "TENSORS"] and m["trace_rate"] == ["7"]
    assert trace(stub)["trace_level"] == ["OFF"]  # the model override stays with the model
    assert trace(stub, "id_fp32", trace_level=[], trace_file=[])["trace_level"] == ["OFF"]
    assert trace(stub, trace_rate=[])["trace_rate"] == ["1000"]
    expect_error(lambda: trace(stub, trace_level=["LOUD"]), grpc.StatusCode.INVALID_ARGUMENT,
                 "LOUD")
    expect_error(lambda: trace(stub, trace_rate=["often"]), grpc.StatusCode.INVALID_ARGUMENT,
                 "trace_rate")
    expect_error(lambda: trace(stub, "ghost", trace_rate=["1"]), grpc.StatusCode.NOT_FOUND)


def test_log_settings(stub):
    current = stub.LogSettings(pb2.LogSettingsRequest()).settings
    assert set(current) >= {"log_info", "log_warning", "log_error", "log_verbose_level",
                            "log_format", "log_file"}
    req = pb2.LogSettingsRequest()
    req.settings["log_verbose_level"].uint32_param = 1
    assert stub.LogSettings(req).settings["log_verbose_level"].uint32_param == 1
    req.settings["log_verbose_level"].uint32_param = current["log_verbose_level"].uint32_param
    stub.LogSettings(req)
    bad = pb2.LogSettingsRequest()
    bad.settings["log_info"].string_param = "yes"
    expect_error(lambda: stub.LogSettings(bad), grpc.StatusCode.INVALID_ARGUMENT, "log_info")
    bad = pb2.LogSettingsRequest()
    bad.settings["log_colour"].bool_param = True
    expect_error(lambda: stub.LogSettings(bad), grpc.StatusCode.INVALID_ARGUMENT, "log_colour")


# ---- transport ------------------------------------------------------------------------------

def make_cert(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return key, cert


def tls_stub(server, cert, client_pair=None):
    root = cert.read_bytes()
    creds = grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=client_pair[0].read_bytes() if client_pair else None,
        certificate_chain=client_pair[1].read_bytes() if client_pair else None)
    channel = grpc.secure_channel(f"localhost:{server.grpc_port}", creds)
    return pb2_grpc.GRPCInferenceServiceStub(channel), channel


def test_tls(tmp_path):
    key, cert = make_cert(tmp_path)
    repo = tmp_path / "repo"
    write_model(repo, "m", identity_config("m"))
    args = ["--grpc-use-ssl=true", f"--grpc-server-cert={cert}", f"--grpc-server-key={key}"]
    with Server(repo, args, wait="ready") as s:
        secure, channel = tls_stub(s, cert)
        grpc.channel_ready_future(channel).result(timeout=10)
        assert secure.ServerLive(pb2.ServerLiveRequest(), timeout=10).live
        resp = secure.ModelInfer(infer_request("m", np.array([3.0], np.float32)), timeout=10)
        assert output_array(resp).tolist() == [3.0]
        channel.close()
        plain = pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(s.grpc_url))
        expect_error(lambda: plain.ServerLive(pb2.ServerLiveRequest(), timeout=3),
                     grpc.StatusCode.UNAVAILABLE)


def test_tls_mutual(tmp_path):
    key, cert = make_cert(tmp_path)
    repo = tmp_path / "repo"
    write_model(repo, "m", identity_config("m"))
    args = ["--grpc-use-ssl-mutual=true", f"--grpc-server-cert={cert}",
            f"--grpc-server-key={key}", f"--grpc-root-cert={cert}"]
    with Server(repo, args, wait="ready") as s:
        with_cert, c1 = tls_stub(s, cert, (key, cert))
        grpc.channel_ready_future(c1).result(timeout=10)
        assert with_cert.ServerLive(pb2.ServerLiveRequest(), timeout=10).live
        without, c2 = tls_stub(s, cert)
        expect_error(lambda: without.ServerLive(pb2.ServerLiveRequest(), timeout=5),
                     grpc.StatusCode.UNAVAILABLE)
        c1.close()
        c2.close()


def test_transport_flags(tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "m", identity_config("m", dtype="TYPE_INT32"))
    args = ["--grpc-infer-allocation-pool-size=0", "--grpc-keepalive-time=1000",
            "--grpc-keepalive-timeout=500", "--grpc-keepalive-permit-without-calls=true",
            "--grpc-http2-max-pings-without-data=0", "--grpc-http2-max-ping-strikes=0",
            "--grpc-http2-min-recv-ping-interval-without-data=500"]
    with Server(repo, args, wait="ready") as s:
        channel = grpc.insecure_channel(s.grpc_url, options=[("grpc.keepalive_time_ms", 1000)])
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        for i in range(20):  # no pool: every call allocates and frees its messages
            resp = stub.ModelInfer(infer_request("m", np.array([i, i], np.int32), "INT32"))
            assert output_array(resp, np_dtype=np.int32).tolist() == [i, i]
        time.sleep(1.5)  # idle pings within the permitted rate keep the connection
        assert stub.ServerLive(pb2.ServerLiveRequest(), timeout=5).live
        channel.close()


def run_with_grpc_args(repo, grpc_args):
    cmd = [BIN, f"--model-repository={repo}", f"--http-port={free_port()}",
           f"--metrics-port={free_port()}", *grpc_args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def test_tls_missing_cert_fails_start(tmp_path):
    rc, out = run_with_grpc_args(tmp_path, [f"--grpc-port={free_port()}", "--grpc-use-ssl=true",
                                            f"--grpc-server-cert={tmp_path / 'missing.pem'}"])
    assert rc != 0 and "missing.pem" in out


def test_port_in_use_fails_start(server, tmp_path):
    rc, out = run_with_grpc_args(tmp_path, ["--grpc-address=127.0.0.1",
                                            f"--grpc-port={server.grpc_port}"])
    assert rc != 0
    assert str(server.grpc_port) in out


def test_sigterm_finishes_inflight_calls_and_exits(tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "slow", model_with_params("slow", execute_delay_ms=500))
    s = Server(repo, wait="ready")
    try:
        channel = grpc.insecure_channel(s.grpc_url)
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        pending = stub.ModelInfer.future(infer_request("slow", np.array([5.0], np.float32)))
        idle_stream = Stream(stub)  # open and silent: must not hold the exit up for long
        time.sleep(0.1)
        start = time.time()
        assert s.stop(timeout=20) == 0, s.log()
        assert time.time() - start < 10
        assert output_array(pending.result(timeout=5)).tolist() == [5.0]
        idle_stream.reader.join(5)
        assert not idle_stream.reader.is_alive()
        assert idle_stream.error is not None  # cancelled by the shutdown, not left hanging
    finally:
        s.stop()
