"""Limits on what a client can make the server hold or do: body and header size, JSON depth,
tensor counts and rank, slow and idle connections, the number of open connections, the
gRPC message size, and the metrics port bound to loopback only.

Timeouts are set small through flags so the whole file stays fast.
"""
import json
import socket
import time

import grpc
import pytest
import requests

import grpc_stubs
from harness import Server, identity_config, write_model

pb2, pb2_grpc = grpc_stubs.load()

MAX_INPUT = 1 << 20
ARGS = [f"--http-max-input-size={MAX_INPUT}", "--http-max-header-size=8192",
        "--http-idle-timeout-secs=1", "--http-request-timeout-secs=2",
        f"--grpc-max-message-size={MAX_INPUT}"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("limits_repo")
    write_model(repo, "m", identity_config("m"))
    return repo


@pytest.fixture(scope="module")
def server(repo):
    with Server(repo, ARGS, wait="ready") as s:
        channel = grpc.insecure_channel(s.grpc_url, options=[
            ("grpc.max_send_message_length", 16 << 20)])
        s.stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        yield s
        channel.close()


def connect(server):
    return socket.create_connection(("127.0.0.1", server.http_port), timeout=10)


def read_until_closed(sock, limit=10.0):
    """Everything the server sends until it closes; raises on timeout."""
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def infer(server, body, headers=None):
    return requests.post(f"{server.url}/v2/models/m/infer", data=body, headers=headers or {},
                         timeout=10)


def ok_request(server):
    r = infer(server, json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32",
                                              "shape": [1], "data": [1.0]}]}))
    return r.status_code == 200


def tensor(name, shape, data):
    return {"name": name, "datatype": "FP32", "shape": shape, "data": data}


def grpc_input(name="INPUT0", shape=(1,)):
    return pb2.ModelInferRequest.InferInputTensor(name=name, datatype="FP32", shape=list(shape))


def grpc_error(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


# ---- sizes --------------------------------------------------------------------------------

def test_oversized_body_is_413_before_it_is_read(server):
    with connect(server) as s:
        t0 = time.time()
        s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n" % (MAX_INPUT + 1))
        reply = read_until_closed(s, 5)  # no body sent: the answer cannot wait for it
        assert reply.startswith(b"HTTP/1.1 413"), reply
        assert time.time() - t0 < 1.5
        assert b"exceeds the limit" in reply
    # At the limit is fine (the body is then refused for what it is, not for its size).
    assert infer(server, b" " * MAX_INPUT).status_code == 400
    assert ok_request(server)


def test_oversized_header_is_431(server):
    with connect(server) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 +
                  b"\r\n\r\n")
        reply = read_until_closed(s, 5)
        assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    # grpc refuses metadata over its limit (8 KiB by default); the refused client's own
    # channel may break, so it gets one of its own.
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        code, details = grpc_error(lambda: stub.ServerLive(
            pb2.ServerLiveRequest(), metadata=(("x-big", "a" * 20000),), timeout=5))
    assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL,
                    grpc.StatusCode.UNAVAILABLE), (code, details)
    assert ok_request(server)
    assert server.stub.ServerLive(pb2.ServerLiveRequest(), timeout=5).live


def test_grpc_message_over_limit_is_resource_exhausted(server):
    req = pb2.ModelInferRequest(model_name="m")
    n = MAX_INPUT // 4 + 16
    req.inputs.append(grpc_input(shape=(n,)))
    req.raw_input_contents.append(b"\0" * (4 * n))
    code, details = grpc_error(lambda: server.stub.ModelInfer(req, timeout=10))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert server.stub.ServerLive(pb2.ServerLiveRequest()).live


# ---- request shape ---------------------------------------------------------------------

def test_json_nested_too_deep_is_400(server):
    deep = "[" * 150 + "]" * 150
    body = '{"inputs": [], "x": ' + deep + "}"
    r = infer(server, body)
    assert r.status_code == 400 and "levels deep" in r.json()["error"], r.text
    # Deep nesting inside strings is just text.
    body = json.dumps({"inputs": [tensor("INPUT0", [1], [1.0])], "id": "[" * 500})
    assert infer(server, body).status_code == 200
    # The other JSON endpoints are bounded the same way.
    r = requests.post(f"{server.url}/v2/repository/index", data='{"a":' + deep + "}",
                      timeout=10)
    assert r.status_code == 400 and "levels deep" in r.json()["error"]
    # A very deep body (1 MiB of '[') costs neither a crash nor a stack.
    r = infer(server, "[" * (MAX_INPUT - 1))
    assert r.status_code == 400
    assert ok_request(server)


def test_too_many_inputs_and_outputs_are_400(server):
    inputs = [tensor(f"I{i}", [1], [1.0]) for i in range(1025)]
    r = infer(server, json.dumps({"inputs": inputs}))
    assert r.status_code == 400 and "at most 1024" in r.json()["error"], r.text
    body = {"inputs": [tensor("INPUT0", [1], [1.0])],
            "outputs": [{"name": f"O{i}"} for i in range(1025)]}
    r = infer(server, json.dumps(body))
    assert r.status_code == 400 and "at most 1024" in r.json()["error"], r.text

    req = pb2.ModelInferRequest(model_name="m")
    for i in range(1025):
        req.inputs.append(grpc_input(f"I{i}"))
    code, details = grpc_error(lambda: server.stub.ModelInfer(req, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 1024" in details
    req = pb2.ModelInferRequest(model_name="m")
    req.inputs.append(grpc_input())
    req.raw_input_contents.append(b"\0" * 4)
    for i in range(1025):
        req.outputs.append(pb2.ModelInferRequest.InferRequestedOutputTensor(name=f"O{i}"))
    code, details = grpc_error(lambda: server.stub.ModelInfer(req, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 1024" in details


def test_rank_over_limit_is_400(server):
    r = infer(server, json.dumps({"inputs": [tensor("INPUT0", [1] * 65, [1.0])]}))
    assert r.status_code == 400 and "dimensions" in r.json()["error"], r.text
    req = pb2.ModelInferRequest(model_name="m")
    req.inputs.append(grpc_input(shape=[1] * 65))
    req.raw_input_contents.append(b"\0" * 4)
    code, details = grpc_error(lambda: server.stub.ModelInfer(req, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "dimensions" in details


def test_element_count_overflow_is_400(server):
    shape = [2 ** 32, 2 ** 32, 2 ** 32]
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": shape,
                        "parameters": {"binary_data_size": 4}}]}
    header = json.dumps(body).encode()
    r = infer(server, header + b"\0" * 4,
              {"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400, r.text
    req = pb2.ModelInferRequest(model_name="m")
    req.inputs.append(grpc_input(shape=shape))
    req.raw_input_contents.append(b"\0" * 4)
    code, _ = grpc_error(lambda: server.stub.ModelInfer(req, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert ok_request(server)


# ---- slow and idle connections -------------------------------------------------------------

def test_idle_connection_is_closed(server):
    with connect(server) as s:
        t0 = time.time()
        assert read_until_closed(s, 5) == b""  # closed silently: nothing was asked
        assert 0.8 < time.time() - t0 < 3
    # A keep-alive connection idle after a request is closed the same way.
    with connect(server) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.time()
        reply = read_until_closed(s, 5)
        assert reply.startswith(b"HTTP/1.1 200")
        assert time.time() - t0 < 3


def test_slowloris_is_cut_off_and_others_are_served(server):
    """Clients trickling a header a byte at a time get 408 and lose their connection."""
    request = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
    slow = [connect(server) for _ in range(20)]
    t0 = time.time()
    closed_at = {}
    i = 0
    while len(closed_at) < len(slow) and time.time() - t0 < 6:
        for k, s in enumerate(slow):
            if k in closed_at:
                continue
            try:
                s.sendall(request[i % len(request):i % len(request) + 1])
            except OSError:
                closed_at[k] = time.time() - t0
        i += 1
        assert ok_request(server)  # the server keeps answering others meanwhile
        time.sleep(0.25)
    assert len(closed_at) == len(slow), closed_at
    assert max(closed_at.values()) < 4.5, closed_at
    replies = [read_until_closed(s, 2) for s in slow]
    assert any(r.startswith(b"HTTP/1.1 408") for r in replies), replies[:3]
    for s in slow:
        s.close()


def test_slow_body_is_cut_off(server):
    with connect(server) as s:
        s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        t0 = time.time()
        reply = b""
        try:
            for _ in range(20):
                s.sendall(b"x")
                time.sleep(0.25)
        except OSError:
            pass
        reply = read_until_closed(s, 5)
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert time.time() - t0 < 4


# ---- connection limit --------------------------------------------------------------------

def test_max_connections_refuses_new_and_keeps_existing(repo):
    with Server(repo, ["--http-max-connections=4"], wait="ready") as srv:
        get = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"

        def held_connection():
            s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=5)
            s.sendall(get)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            return s

        # The harness's readiness probe may still be counted for a moment.
        time.sleep(0.2)
        held = [held_connection() for _ in range(4)]
        with socket.create_connection(("127.0.0.1", srv.http_port), timeout=5) as extra:
            extra.sendall(get)
            reply = read_until_closed(extra, 5)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 503"), reply
        for s in held:  # existing connections are unharmed
            s.sendall(get)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        held.pop().close()
        deadline = time.time() + 5
        while True:  # a freed slot is usable again
            try:
                if requests.get(srv.url + "/v2/health/live", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.time() < deadline
            time.sleep(0.05)
        for s in held:
            s.close()
        assert "connection limit (4) reached" in srv.log()


# ---- metrics address ---------------------------------------------------------------------

def listen_address(port):
    """The address a local TCP port listens on, from /proc/net/tcp{,6}."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                addr, hexport = cols[1].split(":")
                if int(hexport, 16) == port and cols[3] == "0A":  # LISTEN
                    return addr
    return None


def test_metrics_address_binds_loopback_only(repo, server):
    assert listen_address(server.metrics_port) == "00000000"  # default: every interface
    with Server(repo, ["--metrics-address=127.0.0.1"], wait="ready") as s:
        assert listen_address(s.metrics_port) == "0100007F"
        r = requests.get(s.metrics_url + "/metrics", timeout=5)
        assert r.status_code == 200 and "nv_inference_count" in r.text
