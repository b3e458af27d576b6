"""System shared memory (Triton's system_shared_memory extension) end to end.

Regions are POSIX shared memory objects made here with Python's multiprocessing.shared_memory
(what tritonclient.utils.shared_memory uses too); the server maps them by key. Covered: the
register / status / unregister endpoints over raw HTTP and gRPC, inputs read from and outputs
written to regions for the identity model and a TorchScript model, every misuse, unregister
while a request uses the region, access control, and the real tritonclient's shm example flow.

Decision under test: unregister never waits. The name goes at once; the mapping lives until
the last request that resolved it ends, so that request still completes correctly.
"""
import json
import os
import struct
import sys
import threading
import time
from multiprocessing import shared_memory

import grpc
import numpy as np
import pytest
import requests
import torch

import grpc_stubs
import models_torch
from harness import Server, identity_config, write_model

pb2, pb2_grpc = grpc_stubs.load()

SLOW = identity_config("slow", extra='parameters { key: "execute_delay_ms" '
                                     'value { string_value: "1500" } }')


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    repo = tmp_path_factory.mktemp("shm_repo")
    write_model(repo, "id", identity_config("id"))
    write_model(repo, "id_bytes", identity_config("id_bytes", dtype="TYPE_STRING"))
    write_model(repo, "slow", SLOW)
    torch.manual_seed(7)
    paths = {
        "affine": models_torch._save(
            models_torch.Affine(4, 3), repo, "affine",
            models_torch.config("affine", [models_torch.tensor_io("INPUT__0", "TYPE_FP32", [4])],
                                [models_torch.tensor_io("OUTPUT__0", "TYPE_FP32", [3])],
                                max_batch_size=8),
            example=torch.rand(2, 4)),
        "multi_io": models_torch._save(
            models_torch.MultiIO(), repo, "multi_io",
            models_torch.config(
                "multi_io",
                [models_torch.tensor_io("INPUT__0", "TYPE_FP32", [3]),
                 models_torch.tensor_io("INPUT__1", "TYPE_FP32", [3])],
                [models_torch.tensor_io(f"OUTPUT__{i}", "TYPE_FP32", d)
                 for i, d in ((0, [3]), (1, [3]), (2, [1]))],
                max_batch_size=4)),
    }
    with Server(repo, wait="ready") as s:
        yield s, paths


@pytest.fixture()
def server(env):
    s = env[0]
    yield s
    # Each test starts with no region registered.
    requests.post(f"{s.url}/v2/systemsharedmemory/unregister", timeout=10)


@pytest.fixture()
def stub(server):
    channel = grpc.insecure_channel(server.grpc_url)
    yield pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


class Shm:
    """A POSIX shared memory object of `size` bytes, unlinked at the end of the test."""

    def __init__(self, size):
        self.obj = shared_memory.SharedMemory(create=True, size=size)
        self.key = "/" + self.obj.name

    def write(self, data, offset=0):
        self.obj.buf[offset:offset + len(data)] = data

    def read(self, n, offset=0):
        return bytes(self.obj.buf[offset:offset + n])

    def close(self):
        self.obj.close()
        self.obj.unlink()


@pytest.fixture()
def make_shm():
    made = []

    def make(size):
        made.append(Shm(size))
        return made[-1]

    yield make
    for m in made:
        m.close()


# ---- raw HTTP helpers -------------------------------------------------------------------

def register(s, name, key, byte_size, offset=None):
    body = {"key": key, "byte_size": byte_size}
    if offset is not None:
        body["offset"] = offset
    return requests.post(f"{s.url}/v2/systemsharedmemory/region/{name}/register", json=body,
                         timeout=10)


def unregister(s, name=None):
    path = f"/region/{name}" if name else ""
    return requests.post(f"{s.url}/v2/systemsharedmemory{path}/unregister", timeout=10)


def status(s, name=None):
    path = f"/region/{name}" if name else ""
    return requests.get(f"{s.url}/v2/systemsharedmemory{path}/status", timeout=10)


def shm_params(region, byte_size, offset=None):
    p = {"shared_memory_region": region, "shared_memory_byte_size": byte_size}
    if offset is not None:
        p["shared_memory_offset"] = offset
    return p


def http_infer(s, model, inputs, outputs=None, timeout=10):
    body = {"inputs": inputs}
    if outputs is not None:
        body["outputs"] = outputs
    return requests.post(f"{s.url}/v2/models/{model}/infer", data=json.dumps(body),
                         timeout=timeout)


def fp32_shm_input(name, shape, region, offset=None):
    n = int(np.prod(shape)) * 4
    return {"name": name, "datatype": "FP32", "shape": shape,
            "parameters": shm_params(region, n, offset)}


def ok(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r


def error(r, code, *words):
    assert r.status_code == code, (r.status_code, r.text)
    message = r.json()["error"]
    for w in words:
        assert w in message, (w, message)
    return message


# ---- raw gRPC helpers -------------------------------------------------------------------

def grpc_register(stub, name, key, byte_size, offset=0):
    return stub.SystemSharedMemoryRegister(pb2.SystemSharedMemoryRegisterRequest(
        name=name, key=key, offset=offset, byte_size=byte_size), timeout=10)


def set_grpc_shm(params, region, byte_size, offset=None):
    params["shared_memory_region"].string_param = region
    params["shared_memory_byte_size"].int64_param = byte_size
    if offset is not None:
        params["shared_memory_offset"].int64_param = offset


def grpc_request(model, inputs, outputs=()):
    """inputs: [(name, shape, region, offset)]; outputs: [(name, region, size, offset)]."""
    req = pb2.ModelInferRequest(model_name=model)
    for name, shape, region, offset in inputs:
        t = req.inputs.add(name=name, datatype="FP32", shape=shape)
        set_grpc_shm(t.parameters, region, int(np.prod(shape)) * 4, offset)
    for name, region, size, offset in outputs:
        o = req.outputs.add(name=name)
        if region is not None:
            set_grpc_shm(o.parameters, region, size, offset)
    return req


def grpc_error(call, code, *words):
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == code, (e.value.code(), e.value.details())
    for w in words:
        assert w in e.value.details(), (w, e.value.details())


# ---- happy paths --------------------------------------------------------------------------

def test_http_identity_reads_input_from_and_writes_output_to_regions(server, make_shm):
    x = np.arange(16, dtype=np.float32) * 1.5
    shm_in, shm_out = make_shm(64), make_shm(64)
    shm_in.write(x.tobytes())
    ok(register(server, "in", shm_in.key, 64))
    ok(register(server, "out", shm_out.key, 64))
    got = ok(status(server)).json()
    assert got == [{"name": "in", "key": shm_in.key, "offset": 0, "byte_size": 64},
                   {"name": "out", "key": shm_out.key, "offset": 0, "byte_size": 64}]
    assert ok(status(server, "out")).json() == got[1:]

    r = ok(http_infer(server, "id", [fp32_shm_input("INPUT0", [16], "in")],
                      [{"name": "OUTPUT0", "parameters": shm_params("out", 64)}]))
    out = r.json()["outputs"][0]
    # Triton's shape for an output in shared memory: no data, no binary_data_size.
    assert out == {"name": "OUTPUT0", "datatype": "FP32", "shape": [16]}
    assert np.array_equal(np.frombuffer(shm_out.read(64), np.float32), x)

    # The region is read at request time: new contents, new answer, same registration.
    shm_in.write((x + 1).tobytes())
    ok(http_infer(server, "id", [fp32_shm_input("INPUT0", [16], "in")],
                  [{"name": "OUTPUT0", "parameters": shm_params("out", 64)}]))
    assert np.array_equal(np.frombuffer(shm_out.read(64), np.float32), x + 1)

    ok(unregister(server, "in"))
    assert [g["name"] for g in ok(status(server)).json()] == ["out"]
    ok(unregister(server))
    assert ok(status(server)).json() == []


def test_http_offsets_within_object_and_region(server, make_shm):
    # The registration offset (100) is not page aligned, and tensors sit at offsets in
    # the region, input and output sharing one region.
    shm = make_shm(8192)
    x = np.array([3.5, -1.0, 2.25], np.float32)
    shm.write(x.tobytes(), offset=100 + 4000)
    ok(register(server, "r", shm.key, 8000, offset=100))
    assert ok(status(server, "r")).json()[0]["offset"] == 100
    ok(http_infer(server, "id", [fp32_shm_input("INPUT0", [3], "r", offset=4000)],
                  [{"name": "OUTPUT0", "parameters": shm_params("r", 12, offset=7000)}]))
    assert np.frombuffer(shm.read(12, offset=100 + 7000), np.float32).tolist() == x.tolist()


def test_http_input_in_shm_output_as_json_and_binary(server, make_shm):
    shm = make_shm(16)
    shm.write(struct.pack("<4f", 1, 2, 3, 4))
    ok(register(server, "r", shm.key, 16))
    r = ok(http_infer(server, "id", [fp32_shm_input("INPUT0", [4], "r")]))
    assert r.json()["outputs"][0]["data"] == [1, 2, 3, 4]
    r = ok(http_infer(server, "id", [fp32_shm_input("INPUT0", [4], "r")],
                      [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]))
    assert r.content.endswith(struct.pack("<4f", 1, 2, 3, 4))


def test_http_bytes_tensor_in_shm(server, make_shm):
    items = [b"one", b"", b"three"]
    blob = b"".join(struct.pack("<I", len(v)) + v for v in items)
    shm_in, shm_out = make_shm(64), make_shm(64)
    shm_in.write(blob)
    ok(register(server, "in", shm_in.key, 64))
    ok(register(server, "out", shm_out.key, 64))
    inp = {"name": "INPUT0", "datatype": "BYTES", "shape": [3],
           "parameters": shm_params("in", len(blob))}
    ok(http_infer(server, "id_bytes", [inp],
                  [{"name": "OUTPUT0", "parameters": shm_params("out", 64)}]))
    assert shm_out.read(len(blob)) == blob
    inp["parameters"] = shm_params("in", len(blob) - 1)
    error(http_infer(server, "id_bytes", [inp]), 400, "INPUT0", "length-prefixed")


def test_grpc_register_status_infer_unregister(server, stub, make_shm):
    x = np.linspace(-1, 1, 8, dtype=np.float32)
    shm_in, shm_out = make_shm(32), make_shm(4096)
    shm_in.write(x.tobytes())
    grpc_register(stub, "gin", shm_in.key, 32)
    grpc_register(stub, "gout", shm_out.key, 64, offset=1000)
    st = stub.SystemSharedMemoryStatus(pb2.SystemSharedMemoryStatusRequest(), timeout=10)
    assert set(st.regions) == {"gin", "gout"}
    g = st.regions["gout"]
    assert (g.name, g.key, g.offset, g.byte_size) == ("gout", shm_out.key, 1000, 64)
    one = stub.SystemSharedMemoryStatus(pb2.SystemSharedMemoryStatusRequest(name="gin"))
    assert list(one.regions) == ["gin"] and one.regions["gin"].byte_size == 32

    resp = stub.ModelInfer(grpc_request("id", [("INPUT0", [8], "gin", None)],
                                        [("OUTPUT0", "gout", 32, 16)]), timeout=10)
    assert list(resp.outputs[0].shape) == [8] and resp.outputs[0].datatype == "FP32"
    assert len(resp.raw_output_contents) == 0  # every output went to shared memory
    assert np.array_equal(np.frombuffer(shm_out.read(32, offset=1016), np.float32), x)

    # Input in shm, output inline.
    resp = stub.ModelInfer(grpc_request("id", [("INPUT0", [8], "gin", None)]), timeout=10)
    assert np.array_equal(np.frombuffer(resp.raw_output_contents[0], np.float32), x)

    stub.SystemSharedMemoryUnregister(pb2.SystemSharedMemoryUnregisterRequest(name="gin"))
    st = stub.SystemSharedMemoryStatus(pb2.SystemSharedMemoryStatusRequest(), timeout=10)
    assert set(st.regions) == {"gout"}
    stub.SystemSharedMemoryUnregister(pb2.SystemSharedMemoryUnregisterRequest())
    assert not stub.SystemSharedMemoryStatus(pb2.SystemSharedMemoryStatusRequest()).regions


def test_grpc_stream_infer_with_shm(server, stub, make_shm):
    shm_in, shm_out = make_shm(16), make_shm(16)
    shm_in.write(struct.pack("<4f", 9, 8, 7, 6))
    grpc_register(stub, "sin", shm_in.key, 16)
    grpc_register(stub, "sout", shm_out.key, 16)
    req = grpc_request("id", [("INPUT0", [4], "sin", None)], [("OUTPUT0", "sout", 16, None)])
    bad = grpc_request("id", [("INPUT0", [4], "sin", None)], [("OUTPUT0", "sout", 8, None)])
    req.id, bad.id = "good", "bad"
    # A stream answers each request when it is done, so the rejected one may come first.
    got = list(stub.ModelStreamInfer(iter([req, bad]), timeout=10))
    assert len(got) == 2
    good = [g for g in got if g.error_message == ""]
    assert len(good) == 1 and good[0].infer_response.id == "good"
    assert len(good[0].infer_response.raw_output_contents) == 0
    assert ["too small" in g.error_message for g in got].count(True) == 1
    assert shm_out.read(16) == struct.pack("<4f", 9, 8, 7, 6)


def test_real_model_over_http_and_grpc(env, server, stub, make_shm):
    _, paths = env
    module = torch.jit.load(str(paths["affine"]))
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    want = module(torch.from_numpy(x)).detach().numpy()
    shm_in, shm_out = make_shm(32), make_shm(24)
    shm_in.write(x.tobytes())
    ok(register(server, "ain", shm_in.key, 32))
    ok(register(server, "aout", shm_out.key, 24))
    r = ok(http_infer(server, "affine", [fp32_shm_input("INPUT__0", [2, 4], "ain")],
                      [{"name": "OUTPUT__0", "parameters": shm_params("aout", 24)}]))
    assert r.json()["outputs"][0]["shape"] == [2, 3]
    np.testing.assert_allclose(np.frombuffer(shm_out.read(24), np.float32).reshape(2, 3), want,
                               rtol=1e-5, atol=1e-6)

    shm_out.write(bytes(24))
    stub.ModelInfer(grpc_request("affine", [("INPUT__0", [2, 4], "ain", None)],
                                 [("OUTPUT__0", "aout", 24, None)]), timeout=10)
    np.testing.assert_allclose(np.frombuffer(shm_out.read(24), np.float32).reshape(2, 3), want,
                               rtol=1e-5, atol=1e-6)


def test_grpc_mixed_outputs_keep_raw_contents_aligned(env, server, stub, make_shm):
    a = np.array([[1, 2, 3]], np.float32)
    b = np.array([[4, 5, 6]], np.float32)
    shm = make_shm(64)
    shm.write(a.tobytes() + b.tobytes())
    grpc_register(stub, "mio", shm.key, 64)
    req = grpc_request("multi_io", [("INPUT__0", [1, 3], "mio", 0), ("INPUT__1", [1, 3], "mio", 12)],
                       [("OUTPUT__0", None, 0, None), ("OUTPUT__1", "mio", 12, 32),
                        ("OUTPUT__2", None, 0, None)])
    resp = stub.ModelInfer(req, timeout=10)
    names = [o.name for o in resp.outputs]
    raw = dict(zip(names, resp.raw_output_contents))
    assert len(resp.raw_output_contents) == 3 and raw["OUTPUT__1"] == b""
    assert np.frombuffer(raw["OUTPUT__0"], np.float32).tolist() == (a + b).ravel().tolist()
    assert np.frombuffer(raw["OUTPUT__2"], np.float32).tolist() == [(a - b).sum()]
    assert np.frombuffer(shm.read(12, offset=32), np.float32).tolist() == (a * b).ravel().tolist()


def test_extension_advertised(server, stub):
    assert "system_shared_memory" in ok(requests.get(f"{server.url}/v2")).json()["extensions"]
    md = stub.ServerMetadata(pb2.ServerMetadataRequest(), timeout=10)
    assert "system_shared_memory" in md.extensions


# ---- misuse --------------------------------------------------------------------------------

def test_register_misuse_http(server, make_shm):
    shm = make_shm(64)
    error(register(server, "r", "/flowserve-no-such-key", 64), 400, "'r'",
          "/flowserve-no-such-key", "No such file")
    error(register(server, "r", shm.key, 65), 400, "past the end", "64 bytes")
    error(register(server, "r", shm.key, 8, offset=60), 400, "past the end")
    error(register(server, "r", shm.key, 0), 400, "byte_size")
    error(register(server, "r", shm.key, 2**64 - 1, offset=2), 400, "overflows")
    r = requests.post(f"{server.url}/v2/systemsharedmemory/region/r/register",
                      json={"byte_size": 8}, timeout=10)
    error(r, 400, "'key'")
    r = requests.post(f"{server.url}/v2/systemsharedmemory/region/r/register",
                      json={"key": shm.key, "byte_size": -1}, timeout=10)
    error(r, 400, "'byte_size'")
    r = requests.post(f"{server.url}/v2/systemsharedmemory/region/r/register", data="{",
                      timeout=10)
    error(r, 400, "parse")
    assert ok(status(server)).json() == []  # nothing half-registered

    ok(register(server, "r", shm.key, 64))
    error(register(server, "r", shm.key, 32), 409, "'r'", "already registered")
    error(unregister(server, "ghost"), 404, "ghost")
    error(status(server, "ghost"), 404, "ghost")
    assert requests.get(f"{server.url}/v2/systemsharedmemory/region/r/register",
                        timeout=10).status_code == 405
    assert requests.post(f"{server.url}/v2/systemsharedmemory/status",
                         timeout=10).status_code == 405
    assert requests.post(f"{server.url}/v2/systemsharedmemory/register", json={},
                         timeout=10).status_code == 404
    assert requests.get(f"{server.url}/v2/systemsharedmemory/region/r/bogus",
                        timeout=10).status_code == 404


def test_register_misuse_grpc(server, stub, make_shm):
    shm = make_shm(64)
    code = grpc.StatusCode
    grpc_error(lambda: grpc_register(stub, "r", "/flowserve-no-such-key", 64),
               code.INVALID_ARGUMENT, "No such file")
    grpc_error(lambda: grpc_register(stub, "r", shm.key, 128), code.INVALID_ARGUMENT,
               "past the end")
    grpc_error(lambda: grpc_register(stub, "", shm.key, 8), code.INVALID_ARGUMENT, "name")
    grpc_register(stub, "r", shm.key, 64)
    grpc_error(lambda: grpc_register(stub, "r", shm.key, 64), code.ALREADY_EXISTS, "'r'")
    grpc_error(lambda: stub.SystemSharedMemoryUnregister(
        pb2.SystemSharedMemoryUnregisterRequest(name="ghost")), code.NOT_FOUND, "ghost")
    grpc_error(lambda: stub.SystemSharedMemoryStatus(
        pb2.SystemSharedMemoryStatusRequest(name="ghost")), code.NOT_FOUND, "ghost")


def test_infer_misuse_http(server, make_shm):
    shm = make_shm(64)
    ok(register(server, "r", shm.key, 64))
    out_small = make_shm(64)
    ok(register(server, "small", out_small.key, 8))

    def infer(inp_params, out_params=None, data=None, shape=(4,)):
        inp = {"name": "INPUT0", "datatype": "FP32", "shape": list(shape),
               "parameters": inp_params}
        if data is not None:
            inp["data"] = data
        outs = None if out_params is None else [{"name": "OUTPUT0", "parameters": out_params}]
        return http_infer(server, "id", [inp], outs)

    error(infer(shm_params("ghost", 16)), 404, "INPUT0", "ghost")
    error(infer(shm_params("r", 16, offset=64)), 400, "INPUT0", "shared_memory_offset 64")
    error(infer(shm_params("r", 16, offset=56)), 400, "INPUT0", "past the end")
    error(infer(shm_params("r", 12)), 400, "INPUT0", "does not match shape", "16 bytes")
    error(infer(shm_params("r", 16), data=[1, 2, 3, 4]), 400, "INPUT0", "send one")
    error(infer({"shared_memory_region": "r"}), 400, "shared_memory_byte_size")
    error(infer({"shared_memory_byte_size": 16}), 400, "without shared_memory_region")
    error(infer({"shared_memory_region": 5, "shared_memory_byte_size": 16}), 400, "string")
    error(infer(shm_params("r", 16), shm_params("ghost", 16)), 404, "OUTPUT0", "ghost")
    error(infer(shm_params("r", 16), shm_params("r", 16, offset=60)), 400, "OUTPUT0",
          "past the end")
    error(infer(shm_params("r", 16), shm_params("small", 8)), 400, "OUTPUT0", "too small",
          "16 bytes")
    error(infer(shm_params("r", 16), {**shm_params("r", 16), "classification": 1}), 400,
          "classification")
    # The server still serves after every refusal.
    ok(infer(shm_params("r", 16), shm_params("r", 16, offset=32)))


def test_infer_misuse_grpc(server, stub, make_shm):
    shm = make_shm(64)
    grpc_register(stub, "r", shm.key, 64)
    code = grpc.StatusCode
    grpc_error(lambda: stub.ModelInfer(grpc_request("id", [("INPUT0", [4], "ghost", None)])),
               code.NOT_FOUND, "ghost")
    grpc_error(lambda: stub.ModelInfer(grpc_request("id", [("INPUT0", [4], "r", 56)])),
               code.INVALID_ARGUMENT, "past the end")
    grpc_error(lambda: stub.ModelInfer(grpc_request("id", [("INPUT0", [4], "r", None)],
                                                    [("OUTPUT0", "r", 8, None)])),
               code.INVALID_ARGUMENT, "too small")
    req = grpc_request("id", [("INPUT0", [4], "r", None)])
    req.inputs[0].parameters["shared_memory_byte_size"].int64_param = 12
    grpc_error(lambda: stub.ModelInfer(req), code.INVALID_ARGUMENT, "does not match shape")
    req.inputs[0].parameters["shared_memory_byte_size"].int64_param = -16
    grpc_error(lambda: stub.ModelInfer(req), code.INVALID_ARGUMENT, "negative")
    req = grpc_request("id", [("INPUT0", [4], "r", None)])
    req.raw_input_contents.append(bytes(16))
    grpc_error(lambda: stub.ModelInfer(req), code.INVALID_ARGUMENT, "send one")


def test_cuda_shared_memory_answers_no_gpu(server, stub):
    r = requests.post(f"{server.url}/v2/cudasharedmemory/region/c/register",
                      json={"raw_handle": {"b64": ""}, "device_id": 0, "byte_size": 8}, timeout=10)
    error(r, 400, "GPUs not supported")
    assert ok(requests.get(f"{server.url}/v2/cudasharedmemory/status", timeout=10)).json() == []
    error(requests.get(f"{server.url}/v2/cudasharedmemory/region/c/status", timeout=10), 404, "'c'")
    ok(requests.post(f"{server.url}/v2/cudasharedmemory/unregister", timeout=10))
    error(requests.post(f"{server.url}/v2/cudasharedmemory/region/c/unregister", timeout=10), 400,
          "GPUs not supported")
    code = grpc.StatusCode
    grpc_error(lambda: stub.CudaSharedMemoryRegister(pb2.CudaSharedMemoryRegisterRequest(
        name="c", byte_size=8)), code.INVALID_ARGUMENT, "GPUs not supported")
    assert not stub.CudaSharedMemoryStatus(pb2.CudaSharedMemoryStatusRequest()).regions
    stub.CudaSharedMemoryUnregister(pb2.CudaSharedMemoryUnregisterRequest())


# ---- lifetime ------------------------------------------------------------------------------

def test_unregister_while_a_request_uses_the_region(server, make_shm):
    """Unregister answers at once; the request in flight (1.5 s model) still reads its input
    and writes its output through the mapping it holds; the name is gone for new requests."""
    x = np.arange(4, dtype=np.float32) + 0.5
    shm_in, shm_out = make_shm(16), make_shm(16)
    shm_in.write(x.tobytes())
    ok(register(server, "in", shm_in.key, 16))
    ok(register(server, "out", shm_out.key, 16))
    result = {}

    def run():
        result["r"] = http_infer(server, "slow", [fp32_shm_input("INPUT0", [4], "in")],
                                 [{"name": "OUTPUT0", "parameters": shm_params("out", 16)}],
                                 timeout=30)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.4)  # the request is executing
    start = time.time()
    ok(unregister(server, "in"))
    ok(unregister(server))
    assert time.time() - start < 1.0, "unregister must not wait for the request"
    assert t.is_alive()
    assert ok(status(server)).json() == []
    error(http_infer(server, "id", [fp32_shm_input("INPUT0", [4], "in")]), 404, "'in'")
    # The name can be registered again at once, to another object.
    other = make_shm(16)
    ok(register(server, "in", other.key, 16))
    t.join(30)
    ok(result["r"])
    assert np.frombuffer(shm_out.read(16), np.float32).tolist() == x.tolist()
    assert server.proc.poll() is None


# ---- access control ------------------------------------------------------------------------

def test_shared_memory_group_is_restricted(tmp_path, make_shm):
    write_model(tmp_path, "id", identity_config("id"))
    shm = make_shm(16)
    args = ["--http-restricted-api=shared-memory:shm-key=open", 
            "--grpc-restricted-protocol=shared-memory:shm-key=open"]
    with Server(tmp_path, args, wait="ready") as s:
        h = {"shm-key": "open"}
        url = f"{s.url}/v2/systemsharedmemory"
        body = {"key": shm.key, "byte_size": 16}
        assert requests.post(f"{url}/region/r/register", json=body).status_code == 403
        assert requests.get(f"{url}/status").status_code == 403
        assert requests.post(f"{s.url}/v2/cudasharedmemory/unregister").status_code == 403
        ok(requests.post(f"{url}/region/r/register", json=body, headers=h))
        assert ok(requests.get(f"{url}/status", headers=h)).json()[0]["name"] == "r"
        with grpc.insecure_channel(s.grpc_url) as channel:
            stub = pb2_grpc.GRPCInferenceServiceStub(channel)
            grpc_error(lambda: stub.SystemSharedMemoryStatus(
                pb2.SystemSharedMemoryStatusRequest(), timeout=10), grpc.StatusCode.PERMISSION_DENIED)
            st = stub.SystemSharedMemoryStatus(pb2.SystemSharedMemoryStatusRequest(), timeout=10,
                                               metadata=[("shm-key", "open")])
            assert list(st.regions) == ["r"]


# ---- the real tritonclient ---------------------------------------------------------------

def _tritonclient():
    path = os.environ.get("TRITON_CLIENT_PYTHONPATH")
    if not path:
        pytest.skip("TRITON_CLIENT_PYTHONPATH is not set: no tritonclient package to test with")
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient
        import tritonclient.utils.shared_memory as shm
        from tritonclient import utils
    except ImportError as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"tritonclient from {path} cannot be imported: {e}")
    return httpclient, grpcclient, shm, utils


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient_shm_example_flow(server, protocol):
    """What Triton's simple_http_shm_client / simple_grpc_shm_client do, against 'id'."""
    httpclient, grpcclient, shm, utils = _tritonclient()
    module = httpclient if protocol == "http" else grpcclient
    url = f"127.0.0.1:{server.http_port if protocol == 'http' else server.grpc_port}"
    client = module.InferenceServerClient(url=url)
    client.unregister_system_shared_memory()
    data = np.arange(16, dtype=np.float32) * 2
    byte_size = data.nbytes
    tag = f"{os.getpid()}_{protocol}"
    in_handle = shm.create_shared_memory_region("input_data", f"/input_{tag}", byte_size)
    out_handle = shm.create_shared_memory_region("output_data", f"/output_{tag}", byte_size)
    try:
        shm.set_shared_memory_region(in_handle, [data])
        client.register_system_shared_memory("input_data", f"/input_{tag}", byte_size)
        client.register_system_shared_memory("output_data", f"/output_{tag}", byte_size)
        st = client.get_system_shared_memory_status()
        names = [r["name"] for r in st] if protocol == "http" else sorted(st.regions)
        assert sorted(names) == ["input_data", "output_data"]

        inp = module.InferInput("INPUT0", [16], "FP32")
        inp.set_shared_memory("input_data", byte_size)
        out = module.InferRequestedOutput("OUTPUT0", **({"binary_data": True}
                                                        if protocol == "http" else {}))
        out.set_shared_memory("output_data", byte_size)
        results = client.infer("id", [inp], outputs=[out])
        output = results.get_output("OUTPUT0")
        if protocol == "http":
            dtype, shape = output["datatype"], output["shape"]
        else:
            dtype, shape = output.datatype, output.shape
        got = shm.get_contents_as_numpy(out_handle, utils.triton_to_np_dtype(dtype), shape)
        assert np.array_equal(got, data)

        # Errors surface as the client's exception with the server's message.
        bad = module.InferInput("INPUT0", [16], "FP32")
        bad.set_shared_memory("nowhere", byte_size)
        with pytest.raises(utils.InferenceServerException) as e:
            client.infer("id", [bad])
        assert "nowhere" in e.value.message()
        with pytest.raises(utils.InferenceServerException) as e:
            client.register_system_shared_memory("input_data", f"/input_{tag}", byte_size)
        assert "already registered" in e.value.message()

        client.unregister_system_shared_memory("input_data")
        client.unregister_system_shared_memory()
        st = client.get_system_shared_memory_status()
        assert (st == [] if protocol == "http" else not st.regions)
    finally:
        shm.destroy_shared_memory_region(in_handle)
        shm.destroy_shared_memory_region(out_handle)
        client.close()
