"""The four defects found when flowserve was tried as a new user would (issue 15), each
through raw HTTP and gRPC:

- server metadata names the server by --id (default "triton"), as tritonserver does;
- every extension advertised in server metadata answers, on both protocols;
- in explicit mode the repository index lists every model folder (name only for models
  never loaded) and honours {"ready": true};
- a body over --http-max-input-size is always answered 413 (lingering close), never a
  connection reset, even when the client writes the whole body before reading.
"""
import json
import socket
import struct
import time
from multiprocessing import shared_memory

import grpc
import numpy as np
import pytest
import requests

import grpc_stubs
from harness import Server, identity_config, labelled_config, write_model

pb2, pb2_grpc = grpc_stubs.load()

EXPLICIT = ["--model-control-mode=explicit"]


def grpc_stub(server):
    channel = grpc.insecure_channel(server.grpc_url)
    grpc.channel_ready_future(channel).result(timeout=10)
    return channel, pb2_grpc.GRPCInferenceServiceStub(channel)


# ---- 1. the server's name is --id ------------------------------------------------------------

@pytest.mark.parametrize("args,name", [([], "triton"), (["--id=edge-7"], "edge-7")],
                         ids=["default", "flag"])
def test_server_metadata_name_is_the_id_flag(tmp_path, args, name):
    write_model(tmp_path, "m", identity_config("m"))
    with Server(tmp_path, args, wait="ready") as s:
        meta = requests.get(s.url + "/v2", timeout=10).json()
        assert meta["name"] == name
        assert meta["version"]  # unchanged: flowserve's own version
        channel, stub = grpc_stub(s)
        with channel:
            md = stub.ServerMetadata(pb2.ServerMetadataRequest(), timeout=10)
        assert md.name == name
        assert md.version == meta["version"]


# ---- 2. advertised extensions answer ------------------------------------------------------

BATCHED = identity_config("b", dims="[ 4 ]", max_batch_size=4,
                          extra="dynamic_batching { priority_levels: 2 default_priority_level: 2 }")
ENSEMBLE = """
name: "ens"
platform: "ensemble"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
ensemble_scheduling { step [ { model_name: "m" model_version: -1
  input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "OUT" } } ] }
"""


def http_infer(s, model, header, binary=b"", params=None):
    if params:
        header = {**header, "parameters": params}
    body = json.dumps(header).encode()
    headers = {"Content-Type": "application/json"}
    if binary:
        headers["Inference-Header-Content-Length"] = str(len(body))
        body += binary
    return requests.post(f"{s.url}/v2/models/{model}/infer", data=body, headers=headers,
                         timeout=10)


def fp32_input(name, values, shape=None, binary=False):
    t = {"name": name, "datatype": "FP32", "shape": shape or [len(values)]}
    if binary:
        t["parameters"] = {"binary_data_size": 4 * len(values)}
    else:
        t["data"] = values
    return t


def grpc_infer_request(model, values, shape=None):
    req = pb2.ModelInferRequest(model_name=model)
    req.inputs.append(pb2.ModelInferRequest.InferInputTensor(
        name="INPUT0", datatype="FP32", shape=shape or [len(values)]))
    req.raw_input_contents.append(np.array(values, np.float32).tobytes())
    return req


def http_probes(s):
    """Per advertised extension: a call that only answers if the extension is served."""
    def ok(r):
        assert r.status_code == 200, (r.status_code, r.text)
        return r

    def classification():
        header = {"inputs": [fp32_input("INPUT0", [0.1, 0.9, 0.3, 0.5])],
                  "outputs": [{"name": "OUTPUT0", "parameters": {"classification": 1}}]}
        out = ok(http_infer(s, "labelled", header)).json()["outputs"][0]
        assert out["data"][0].endswith(":1:dog"), out

    def repository():
        ok(requests.post(s.url + "/v2/repository/index", json={}, timeout=10))
        ok(requests.post(s.url + "/v2/repository/models/m/load", timeout=30))

    def unload_dependents():
        ok(requests.post(s.url + "/v2/repository/models/ens/unload",
                         json={"parameters": {"unload_dependents": True}}, timeout=30))
        assert requests.get(s.url + "/v2/models/m/ready", timeout=10).status_code != 200
        ok(requests.post(s.url + "/v2/repository/models/ens/load", timeout=30))
        ok(requests.get(s.url + "/v2/models/m/ready", timeout=10))

    def schedule_policy():
        header = {"inputs": [fp32_input("INPUT0", [1, 2, 3, 4], shape=[1, 4])]}
        ok(http_infer(s, "b", header, params={"priority": 1, "timeout": 5_000_000}))

    def model_configuration():
        assert ok(requests.get(s.url + "/v2/models/m/config", timeout=10)).json()["name"] == "m"

    def binary_tensor_data():
        header = {"inputs": [fp32_input("INPUT0", [1.0, 2.0], binary=True)],
                  "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}
        r = ok(http_infer(s, "m", header, binary=struct.pack("<2f", 1.0, 2.0)))
        assert r.content.endswith(struct.pack("<2f", 1.0, 2.0))

    def parameters():
        header = {"id": "p", "inputs": [fp32_input("INPUT0", [1.0])]}
        ok(http_infer(s, "m", header, params={"custom": "x", "flag": True}))

    def statistics():
        ok(requests.get(s.url + "/v2/models/stats", timeout=10))
        ok(requests.get(s.url + "/v2/models/m/stats", timeout=10))

    def logging():
        ok(requests.get(s.url + "/v2/logging", timeout=10))

    def system_shared_memory():
        region = shared_memory.SharedMemory(create=True, size=8)
        try:
            region.buf[:8] = struct.pack("<2f", 1.0, 2.0)
            ok(requests.post(s.url + "/v2/systemsharedmemory/region/probe/register",
                             json={"key": "/" + region.name, "byte_size": 8}, timeout=10))
            header = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2],
                                  "parameters": {"shared_memory_region": "probe",
                                                 "shared_memory_byte_size": 8}}]}
            assert ok(http_infer(s, "m", header)).json()["outputs"][0]["data"] == [1.0, 2.0]
            ok(requests.post(s.url + "/v2/systemsharedmemory/region/probe/unregister",
                             timeout=10))
        finally:
            region.close()
            region.unlink()

    return {"classification": classification, "model_repository": repository,
            "model_repository(unload_dependents)": unload_dependents,
            "schedule_policy": schedule_policy, "model_configuration": model_configuration,
            "binary_tensor_data": binary_tensor_data, "parameters": parameters,
            "statistics": statistics, "logging": logging,
            "system_shared_memory": system_shared_memory}


def grpc_probes(stub):
    def classification():
        req = grpc_infer_request("labelled", [0.1, 0.9, 0.3, 0.5])
        out = pb2.ModelInferRequest.InferRequestedOutputTensor(name="OUTPUT0")
        out.parameters["classification"].int64_param = 1
        req.outputs.append(out)
        resp = stub.ModelInfer(req, timeout=10)
        assert resp.raw_output_contents[0].endswith(b":1:dog")

    def repository():
        stub.RepositoryIndex(pb2.RepositoryIndexRequest(), timeout=10)
        stub.RepositoryModelLoad(pb2.RepositoryModelLoadRequest(model_name="m"), timeout=30)

    def unload_dependents():
        req = pb2.RepositoryModelUnloadRequest(model_name="ens")
        req.parameters["unload_dependents"].bool_param = True
        stub.RepositoryModelUnload(req, timeout=30)
        assert not stub.ModelReady(pb2.ModelReadyRequest(name="m"), timeout=10).ready
        stub.RepositoryModelLoad(pb2.RepositoryModelLoadRequest(model_name="ens"), timeout=30)
        assert stub.ModelReady(pb2.ModelReadyRequest(name="m"), timeout=10).ready

    def schedule_policy():
        req = grpc_infer_request("b", [1, 2, 3, 4], shape=[1, 4])
        req.parameters["priority"].int64_param = 1
        stub.ModelInfer(req, timeout=10)

    def model_configuration():
        assert stub.ModelConfig(pb2.ModelConfigRequest(name="m"), timeout=10).config.name == "m"

    def binary_tensor_data():  # raw contents are gRPC's binary tensors
        resp = stub.ModelInfer(grpc_infer_request("m", [1.0, 2.0]), timeout=10)
        assert resp.raw_output_contents[0] == struct.pack("<2f", 1.0, 2.0)

    def parameters():
        req = grpc_infer_request("m", [1.0])
        req.parameters["custom"].string_param = "x"
        stub.ModelInfer(req, timeout=10)

    def statistics():
        stub.ModelStatistics(pb2.ModelStatisticsRequest(name="m"), timeout=10)

    def logging():
        stub.LogSettings(pb2.LogSettingsRequest(), timeout=10)

    def system_shared_memory():
        region = shared_memory.SharedMemory(create=True, size=8)
        try:
            region.buf[:8] = struct.pack("<2f", 1.0, 2.0)
            stub.SystemSharedMemoryRegister(pb2.SystemSharedMemoryRegisterRequest(
                name="probe", key="/" + region.name, byte_size=8), timeout=10)
            req = pb2.ModelInferRequest(model_name="m")
            t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[2])
            t.parameters["shared_memory_region"].string_param = "probe"
            t.parameters["shared_memory_byte_size"].int64_param = 8
            resp = stub.ModelInfer(req, timeout=10)
            assert resp.raw_output_contents[0] == struct.pack("<2f", 1.0, 2.0)
            stub.SystemSharedMemoryUnregister(
                pb2.SystemSharedMemoryUnregisterRequest(name="probe"), timeout=10)
        finally:
            region.close()
            region.unlink()

    return {"classification": classification, "model_repository": repository,
            "model_repository(unload_dependents)": unload_dependents,
            "schedule_policy": schedule_policy, "model_configuration": model_configuration,
            "binary_tensor_data": binary_tensor_data, "parameters": parameters,
            "statistics": statistics, "logging": logging,
            "system_shared_memory": system_shared_memory}


def test_every_advertised_extension_answers(tmp_path):
    write_model(tmp_path, "m", identity_config("m"))
    write_model(tmp_path, "b", BATCHED)
    write_model(tmp_path, "ens", ENSEMBLE)
    write_model(tmp_path, "labelled", labelled_config("labelled"),
                files={"labels.txt": "cat\ndog\nbird\nfish\n"})
    with Server(tmp_path, EXPLICIT + ["--load-model=*"], wait="ready") as s:
        extensions = requests.get(s.url + "/v2", timeout=10).json()["extensions"]
        assert "trace" in extensions  # /v2/trace/setting answers (test_tracing.py)
        probes = http_probes(s)
        probes["trace"] = lambda: requests.get(s.url + "/v2/trace/setting",
                                               timeout=10).raise_for_status()
        # An extension advertised without a probe here is one nobody checked answers.
        assert set(extensions) <= set(probes), set(extensions) - set(probes)
        for ext in extensions:
            probes[ext]()
        channel, stub = grpc_stub(s)
        with channel:
            md = stub.ServerMetadata(pb2.ServerMetadataRequest(), timeout=10)
            assert list(md.extensions) == extensions
            probes = grpc_probes(stub)
            probes["trace"] = lambda: stub.TraceSetting(pb2.TraceSettingRequest(), timeout=10)
            for ext in md.extensions:
                try:
                    probes[ext]()
                except grpc.RpcError as e:
                    pytest.fail(f"extension {ext}: {e.code()} {e.details()}")


# ---- 3. the repository index lists every model --------------------------------------------

def http_index(s, ready=None):
    body = {} if ready is None else {"ready": ready}
    r = requests.post(s.url + "/v2/repository/index", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def grpc_index(stub, ready=False):
    resp = stub.RepositoryIndex(pb2.RepositoryIndexRequest(ready=ready), timeout=10)
    return [(m.name, m.version, m.state, m.reason) for m in resp.models]


def test_explicit_index_lists_models_never_loaded(tmp_path):
    write_model(tmp_path, "a", identity_config("a"))
    write_model(tmp_path, "b", identity_config("b"), versions=(1, 2))
    write_model(tmp_path, "broken", "this is not a config")
    with Server(tmp_path, EXPLICIT + ["--load-model=a"], wait="ready") as s:
        channel, stub = grpc_stub(s)
        with channel:
            # Never loaded: the name alone, as Triton answers (no version, state or reason).
            assert http_index(s) == [{"name": "a", "version": "1", "state": "READY"},
                                     {"name": "b"}, {"name": "broken"}]
            assert grpc_index(stub) == [("a", "1", "READY", ""), ("b", "", "", ""),
                                        ("broken", "", "", "")]
            assert http_index(s, ready=True) == [{"name": "a", "version": "1", "state": "READY"}]
            assert http_index(s, ready=False) == http_index(s)
            assert grpc_index(stub, ready=True) == [("a", "1", "READY", "")]

            # Once tried, models carry their state and reason.
            assert requests.post(s.url + "/v2/repository/models/b/load",
                                 timeout=30).status_code == 200
            assert requests.post(s.url + "/v2/repository/models/broken/load",
                                 timeout=30).status_code == 400
            assert requests.post(s.url + "/v2/repository/models/a/unload",
                                 timeout=30).status_code == 200
            full = {(e["name"], e.get("version", "")): e for e in http_index(s)}
            assert full[("a", "1")] == {"name": "a", "version": "1", "state": "UNAVAILABLE",
                                        "reason": "unloaded"}
            # The default version policy (latest 1) serves version 2 only.
            assert full[("b", "2")] == {"name": "b", "version": "2", "state": "READY"}
            assert ("b", "1") not in full and ("b", "") not in full
            broken = [e for e in full.values() if e["name"] == "broken"]
            assert len(broken) == 1 and broken[0]["state"] == "UNAVAILABLE", broken
            assert "config.pbtxt" in broken[0]["reason"], broken
            assert http_index(s, ready=True) == [{"name": "b", "version": "2", "state": "READY"}]
            assert grpc_index(stub, ready=True) == [("b", "2", "READY", "")]
            states = {(n, v): (st, why) for n, v, st, why in grpc_index(stub)}
            assert states[("a", "1")] == ("UNAVAILABLE", "unloaded")
            assert states[("broken", "")][0] == "UNAVAILABLE"

            # A folder added while serving is listed (by name) without a load.
            write_model(tmp_path, "c", identity_config("c"))
            assert {"name": "c"} in http_index(s)
            assert ("c", "", "", "") in grpc_index(stub)


def test_explicit_index_honours_ready_with_nothing_loaded(tmp_path):
    write_model(tmp_path, "a", identity_config("a"))
    with Server(tmp_path, EXPLICIT, wait="ready") as s:
        assert http_index(s) == [{"name": "a"}]
        assert http_index(s, ready=True) == []
        # An empty body means the defaults, as for Triton.
        r = requests.post(s.url + "/v2/repository/index", timeout=10)
        assert r.status_code == 200 and r.json() == [{"name": "a"}]


# ---- 4. an oversized body is always answered 413 ------------------------------------------

MAX_INPUT = 1 << 20
BIG_BODY = b"x" * (2 << 20)
RUNS = 20


def send_whole_then_read(port, head, body=b"", timeout=10, sndbuf=None):
    """Like a simple client: writes the whole request, only then reads the answer.

    sndbuf: a small send buffer keeps most of the body from being parked in the kernel at
    once, as over a real network, so the client is surely still sending when the server
    answers. Returns the bytes read, or the exception that broke the exchange.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            if sndbuf:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            s.sendall(head + body)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data
                data += chunk
    except OSError as e:
        return e


def post_head(path, length, extra=b""):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
            extra + b"Content-Length: %d\r\n\r\n" % length)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    repo = tmp_path_factory.mktemp("linger_repo")
    write_model(repo, "m", identity_config("m"))
    args = [f"--http-max-input-size={MAX_INPUT}", "--http-max-header-size=8192",
            "--http-restricted-api=inference:infer-key=open-sesame"]
    with Server(repo, args, wait="ready") as s:
        yield s


def assert_always(port, head, body, status):
    failures = []
    for i in range(RUNS):
        # Every other run with a small send buffer: on loopback the kernel can otherwise
        # swallow the whole body, and whether the old abrupt close reset the connection
        # then depended on the machine's load.
        got = send_whole_then_read(port, head, body, sndbuf=64 << 10 if i % 2 else None)
        if isinstance(got, Exception) or not got.startswith(b"HTTP/1.1 %d " % status):
            failures.append((i, got if isinstance(got, Exception) else got[:120]))
    assert not failures, f"{len(failures)} of {RUNS} runs did not read {status}: {failures[:3]}"


def test_oversized_body_sent_whole_always_reads_413(limited):
    head = post_head(b"/v2/models/m/infer", len(BIG_BODY),
                     b"infer-key: open-sesame\r\n")
    assert_always(limited.http_port, head, BIG_BODY, 413)
    # The same through requests (urllib3), which also writes the body before reading.
    for _ in range(5):
        r = requests.post(f"{limited.url}/v2/models/m/infer", data=BIG_BODY,
                          headers={"infer-key": "open-sesame"}, timeout=10)
        assert r.status_code == 413 and "limit" in r.json()["error"]
    assert requests.get(limited.url + "/v2/health/live", timeout=10).status_code == 200


def test_other_early_refusals_sent_whole_are_read(limited):
    # Refused on the header alone (access), the body (within the limit) never read: 403,
    # not a reset.
    body = b"x" * (MAX_INPUT - 1024)
    assert_always(limited.http_port, post_head(b"/v2/models/m/infer", len(body)), body, 403)
    # A header over the limit, followed by a body.
    head = post_head(b"/v2/models/m/infer", len(BIG_BODY), b"X-Big: " + b"a" * 20000 + b"\r\n")
    assert_always(limited.http_port, head, BIG_BODY, 431)


def test_lingering_is_bounded_for_a_client_that_never_stops(limited):
    # A client that keeps sending (and never reads) is cut off once the linger's time or
    # byte budget is spent, rather than holding the connection as long as it likes.
    with socket.create_connection(("127.0.0.1", limited.http_port), timeout=10) as s:
        s.sendall(post_head(b"/v2/models/m/infer", 1 << 40, b"infer-key: open-sesame\r\n"))
        chunk = b"y" * 65536
        t0 = time.time()
        with pytest.raises(OSError):
            while time.time() - t0 < 20:
                s.sendall(chunk)
        assert time.time() - t0 < 10
    # A client that stops sending but never closes is closed on after the linger time.
    with socket.create_connection(("127.0.0.1", limited.http_port), timeout=10) as s:
        s.sendall(post_head(b"/v2/models/m/infer", 1 << 40, b"infer-key: open-sesame\r\n"))
        reply = b""
        while chunk := s.recv(65536):  # the answer, then end of stream (write side shut)
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 413"), reply
        t0 = time.time()
        with pytest.raises(OSError):  # once the server has closed, a send is reset
            while time.time() - t0 < 20:
                s.sendall(b"z")
                time.sleep(0.1)
        assert 1.5 < time.time() - t0 < 6
    assert requests.get(limited.url + "/v2/health/live", timeout=10).status_code == 200
