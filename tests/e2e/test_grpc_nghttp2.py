"""The nghttp2 gRPC engine (--grpc-engine=nghttp2) at the HTTP/2 level: what grpc++ did for
us and this engine now does itself. A request that is not gRPC, an unknown method, a message
over the size limit, a client that resets a stream or closes its connection with calls in
flight, many streams on one connection, ping abuse and keepalive. The common suites cover
the RPCs themselves (run them with FLOWSERVE_GRPC_ENGINE=nghttp2).
"""
import socket
import struct
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
import requests

import grpc_stubs
from harness import Server, identity_config, run_to_exit, write_model

pb2, pb2_grpc = grpc_stubs.load()

ENGINE = "--grpc-engine=nghttp2"
MAX_MESSAGE = 64 * 1024
SLOW_MS = 300


def slow_config(name):
    return identity_config(name, extra=(
        f'parameters {{ key: "execute_delay_ms" value {{ string_value: "{SLOW_MS}" }} }}\n'
        'instance_group [ { count: 4 kind: KIND_CPU } ]'))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("h2_repo")
    write_model(repo, "m", identity_config("m"))
    write_model(repo, "slow", slow_config("slow"))
    return repo


@pytest.fixture(scope="module")
def server(repo):
    with Server(repo, [ENGINE, f"--grpc-max-message-size={MAX_MESSAGE}",
                       "--grpc-http2-max-ping-strikes=2"], wait="ready") as s:
        yield s
        assert s.proc.poll() is None, s.log()


def stub_for(server):
    channel = grpc.insecure_channel(server.grpc_url)
    return channel, pb2_grpc.GRPCInferenceServiceStub(channel)


def infer_request(model, values, request_id=""):
    req = pb2.ModelInferRequest(model_name=model, id=request_id)
    req.inputs.add(name="INPUT0", datatype="FP32", shape=[len(values)])
    req.raw_input_contents.append(np.asarray(values, dtype=np.float32).tobytes())
    return req


def output(resp):
    return np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).tolist()


def still_serving(server):
    channel, stub = stub_for(server)
    with channel:
        assert output(stub.ModelInfer(infer_request("m", [1.5]), timeout=10)) == [1.5]
    assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200


def test_unknown_engine_is_refused(tmp_path):
    code, out = run_to_exit(tmp_path, ["--grpc-engine=bogus"])
    assert code != 0 and "--grpc-engine" in out, out


def test_inference_and_forwarded_rpcs(server):
    channel, stub = stub_for(server)
    with channel:
        # Served by the engine itself.
        assert output(stub.ModelInfer(infer_request("m", [1, 2, 3]), timeout=10)) == [1, 2, 3]
        # Forwarded to the grpc++ service in process, answers and errors unchanged.
        assert stub.ServerLive(pb2.ServerLiveRequest(), timeout=10).live
        meta = stub.ModelMetadata(pb2.ModelMetadataRequest(name="m"), timeout=10)
        assert meta.name == "m" and meta.inputs[0].name == "INPUT0"
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelMetadata(pb2.ModelMetadataRequest(name="nope"), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in e.value.details()
        # A core error on the engine's own path keeps its code and message.
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(infer_request("nope", [1]), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in e.value.details()


def test_non_grpc_content_type_is_refused(server):
    # curl speaks HTTP/2 without TLS; a JSON body is not a gRPC request.
    out = subprocess.run(
        ["curl", "-s", "-i", "--http2-prior-knowledge", "-H", "content-type: application/json",
         "--data", "{}", f"http://{server.grpc_url}/inference.GRPCInferenceService/ModelInfer"],
        capture_output=True, text=True, timeout=20).stdout
    assert out.startswith("HTTP/2 415"), out
    assert "grpc-status: 3" in out and "content-type" in out.lower(), out
    still_serving(server)


def test_unknown_method_is_unimplemented(server):
    channel, _ = stub_for(server)
    with channel:
        for method in ["/inference.GRPCInferenceService/NoSuchRpc", "/other.Service/Call"]:
            call = channel.unary_unary(method)
            with pytest.raises(grpc.RpcError) as e:
                call(b"", timeout=10)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
    still_serving(server)


def test_message_over_the_limit_is_resource_exhausted(server):
    channel = grpc.insecure_channel(server.grpc_url,
                                    options=[("grpc.max_send_message_length", 16 << 20)])
    stub = pb2_grpc.GRPCInferenceServiceStub(channel)
    with channel:
        n = MAX_MESSAGE // 4 + 16
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(infer_request("m", [0.0] * n), timeout=10)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in e.value.details(), e.value.details()
        # Streams check every message; the stream ends with the same status.
        with pytest.raises(grpc.RpcError) as e:
            list(stub.ModelStreamInfer(iter([infer_request("m", [0.0] * n)]), timeout=10))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The connection is fine afterwards.
        assert output(stub.ModelInfer(infer_request("m", [2.0]), timeout=10)) == [2.0]


def test_client_resets_streams_mid_call(server):
    channel, stub = stub_for(server)
    with channel:
        futures = [stub.ModelInfer.future(infer_request("slow", [float(i)]), timeout=30)
                   for i in range(6)]
        stream = stub.ModelStreamInfer(iter([infer_request("slow", [7.0])] * 3), timeout=30)
        time.sleep(SLOW_MS / 3000)
        for f in futures[::2]:
            f.cancel()  # RST_STREAM(CANCEL) while the core runs the request
        stream.cancel()
        for i, f in enumerate(futures):
            if i % 2:
                assert output(f.result()) == [float(i)]
            else:
                assert f.cancelled()
        # The answers for the reset streams come back from the core and are dropped.
        time.sleep(2 * SLOW_MS / 1000)
        assert output(stub.ModelInfer(infer_request("m", [3.0]), timeout=10)) == [3.0]
    still_serving(server)


def test_many_concurrent_streams_on_one_connection(server):
    channel, stub = stub_for(server)
    with channel:
        futures = [stub.ModelInfer.future(infer_request("m", [float(i), -float(i)], str(i)),
                                          timeout=30) for i in range(300)]
        for i, f in enumerate(futures):
            r = f.result()
            assert r.id == str(i) and output(r) == [float(i), -float(i)]
        # And as many requests in flight on one bidirectional stream, answered by id.
        reqs = [infer_request("slow" if i % 3 == 0 else "m", [float(i)], str(i))
                for i in range(60)]
        answers = {r.infer_response.id: output(r.infer_response)
                   for r in stub.ModelStreamInfer(iter(reqs), timeout=30)}
        assert answers == {str(i): [float(i)] for i in range(60)}


def test_connection_closed_with_calls_in_flight(server):
    for _ in range(3):
        channel, stub = stub_for(server)
        futures = [stub.ModelInfer.future(infer_request("slow", [1.0]), timeout=30)
                   for _ in range(8)]
        stream = stub.ModelStreamInfer(iter([infer_request("slow", [1.0])] * 4), timeout=30)
        time.sleep(SLOW_MS / 3000)
        channel.close()  # the socket goes with every call on it
        assert all(f.cancelled() or f.exception() is not None for f in futures)
        with pytest.raises(grpc.RpcError):
            list(stream)
    time.sleep(2 * SLOW_MS / 1000)
    still_serving(server)
    stats = requests.get(f"{server.url}/v2/models/slow/stats", timeout=5).json()
    # Every request reached the core and was answered there, though nobody listened.
    assert stats["model_stats"][0]["inference_stats"]["success"]["count"] >= 36


# ---- raw HTTP/2 frames: pings and keepalive (no HPACK needed) ---------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7


def frame(ftype, flags=0, stream=0, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def read_frames(sock, until, limit=5.0):
    """Frames (type, flags, payload) the server sends until `until(frame)` or it closes."""
    sock.settimeout(limit)
    buf, frames = b"", []
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return frames, True
        if not chunk:
            return frames, True
        buf += chunk
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            f = (buf[3], buf[4], buf[9:9 + n])
            buf = buf[9 + n:]
            frames.append(f)
            if until(f):
                return frames, False
    return frames, False


def open_raw(server):
    sock = socket.create_connection(("127.0.0.1", server.grpc_port), timeout=5)
    sock.sendall(PREFACE + frame(SETTINGS))
    return sock


def test_ping_flood_gets_goaway_too_many_pings(server):
    sock = open_raw(server)
    with sock:
        # No call open: every ping after the first is a strike, the third strike is one
        # too many. Sent at once, so the server has read everything when it closes.
        sock.sendall(b"".join(frame(PING, payload=struct.pack(">Q", i)) for i in range(4)))
        frames, _ = read_frames(sock, lambda f: f[0] == GOAWAY)
        goaway = [f for f in frames if f[0] == GOAWAY]
        assert goaway, frames
        error = struct.unpack(">I", goaway[0][2][4:8])[0]
        assert error == 0xB and goaway[0][2][8:] == b"too_many_pings"  # ENHANCE_YOUR_CALM
        assert sum(1 for f in frames if f[0] == PING and f[1] & 1) >= 1  # acks before it
    still_serving(server)


def test_keepalive_pings_and_closes_a_silent_client(repo):
    with Server(repo, [ENGINE, "--grpc-keepalive-time=200", "--grpc-keepalive-timeout=300",
                       "--grpc-keepalive-permit-without-calls=true"], wait="ready") as s:
        sock = open_raw(s)
        with sock:
            frames, _ = read_frames(sock, lambda f: f[0] == PING and not f[1] & 1)
            assert any(f[0] == PING and not f[1] & 1 for f in frames), frames
            # Never acked: the server gives up after the timeout.
            _, closed = read_frames(sock, lambda f: False, limit=3.0)
            assert closed
        # A client that answers keeps its connection: grpcio acks while a call is open (an
        # idle grpcio channel reads nothing, so it would miss pings with no call open).
        channel = grpc.insecure_channel(s.grpc_url)
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        with channel:
            for i in range(4):  # 1.2 s of calls, pinged every 0.2 s
                assert output(stub.ModelInfer(infer_request("slow", [float(i)]), timeout=10)) \
                    == [float(i)]


def test_garbage_instead_of_a_preface_is_dropped(server):
    with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
        _, closed = read_frames(sock, lambda f: False, limit=3.0)
        assert closed
    still_serving(server)


def test_drain_finishes_open_calls_then_exits(repo):
    s = Server(repo, [ENGINE, "--exit-timeout-secs=5"], wait="ready")
    channel, stub = stub_for(s)
    with channel:
        futures = [stub.ModelInfer.future(infer_request("slow", [float(i)]), timeout=30)
                   for i in range(4)]
        time.sleep(SLOW_MS / 3000)
        s.stop()
        assert [output(f.result()) for f in futures] == [[float(i)] for i in range(4)]
    assert s.proc.returncode == 0, s.log()
