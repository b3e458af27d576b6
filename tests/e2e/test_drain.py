"""Graceful drain on SIGTERM with requests in flight over HTTP and gRPC: not ready at once,
live while draining, new inferences refused, the request executing at the exit timeout
answered with its result, the ones still queued answered with an error (never a reset
connection), exit code 0."""
import signal
import threading
import time

import grpc
import numpy as np
import requests

import grpc_stubs
from harness import Server, identity_config, write_model

pb2, pb2_grpc = grpc_stubs.load()

DELAY_S = 1.0
SLOW = identity_config("slow", extra=(
    f'parameters {{ key: "execute_delay_ms" value {{ string_value: "{int(DELAY_S * 1000)}" }} }}\n'
    'instance_group [ { count: 1 kind: KIND_CPU } ]'))


def http_infer(server, value):
    body = {"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [value]}]}
    r = requests.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=30)
    if r.status_code == 200:
        return ("ok", r.json()["outputs"][0]["data"][0])
    return (r.status_code, r.json()["error"])


def grpc_infer(stub, value):
    req = pb2.ModelInferRequest(model_name="slow")
    t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[1])
    t.contents.fp32_contents.append(value)
    try:
        resp = stub.ModelInfer(req, timeout=30)
    except grpc.RpcError as e:
        return (e.code(), e.details())
    return ("ok", float(np.frombuffer(resp.raw_output_contents[0], dtype=np.float32)[0]))


def test_drain_answers_queued_requests_at_exit_timeout(tmp_path):
    write_model(tmp_path, "slow", SLOW)
    s = Server(tmp_path, ["--exit-timeout-secs=1"], wait="ready")
    channel = grpc.insecure_channel(s.grpc_url)
    stub = pb2_grpc.GRPCInferenceServiceStub(channel)
    grpc.channel_ready_future(channel).result(timeout=10)

    # One instance: request 0 executes at once, the rest queue in arrival order.
    calls = [(http_infer, s), (grpc_infer, stub)] * 3
    results = [None] * len(calls)

    def run(i, fn, target):
        try:
            results[i] = fn(target, float(i + 1))
        except Exception as e:  # a reset connection lands here and fails the test
            results[i] = ("exception", repr(e))

    threads = []
    for i, (fn, target) in enumerate(calls):
        threads.append(threading.Thread(target=run, args=(i, fn, target)))
        threads[-1].start()
        time.sleep(0.05)

    s.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.1)
    assert requests.get(s.url + "/v2/health/ready", timeout=5).status_code == 503
    assert requests.get(s.url + "/v2/health/live", timeout=5).status_code == 200
    assert http_infer(s, 9.0)[0] == 503
    assert grpc_infer(stub, 9.0)[0] == grpc.StatusCode.UNAVAILABLE
    time.sleep(0.5)  # still draining: request 0 or 1 is executing
    assert requests.get(s.url + "/v2/health/live", timeout=5).status_code == 200

    for t in threads:
        t.join(30)
    assert s.proc.wait(30) == 0, s.log()
    exit_secs = time.monotonic() - signalled
    channel.close()

    # Request 0 finished before the deadline, request 1 was executing at it; 4 and 5 were
    # surely still queued (they would need four executions to start).
    assert results[0] == ("ok", 1.0), results
    assert results[1] == ("ok", 2.0), results
    for i in (4, 5):
        assert results[i][0] in (503, grpc.StatusCode.UNAVAILABLE), results
    for r in results:
        assert r[0] == "ok" or "exiting" in r[1], results
    assert any(r[0] == 503 for r in results) and \
        any(r[0] == grpc.StatusCode.UNAVAILABLE for r in results), results
    # Exit timeout plus the one execution that was under way, not a wait for the queue.
    assert exit_secs < 1 + 2 * DELAY_S + 1.5, exit_secs
    assert "exit timeout" in s.log()


def test_drain_within_timeout_answers_everything(tmp_path):
    write_model(tmp_path, "slow", SLOW.replace(str(int(DELAY_S * 1000)), "200"))
    s = Server(tmp_path, ["--exit-timeout-secs=10"], wait="ready")
    channel = grpc.insecure_channel(s.grpc_url)
    stub = pb2_grpc.GRPCInferenceServiceStub(channel)
    grpc.channel_ready_future(channel).result(timeout=10)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(
        i, (http_infer(s, float(i)) if i % 2 else grpc_infer(stub, float(i))))) for i in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.03)
    time.sleep(0.1)  # all four accepted before the signal
    s.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert s.proc.wait(30) == 0
    channel.close()
    assert results == {i: ("ok", float(i)) for i in range(4)}, results
    assert "exit timeout" not in s.log()
