"""Dynamic batching, queue policies, priorities and instances, proven with the identity
backend's execute_delay_ms.

Timing cannot be trusted on a loaded 2-core machine, so the tests never race a clock.
They make the single instance busy, then wait on nv_inference_pending_request_count
(requests accepted but not yet executing) until exactly the queue they want has formed.
Once a request is pending behind a busy instance, what happens next is decided by the
scheduler's rules alone.
"""
import concurrent.futures as cf
import math
import os
import re
import time

import numpy as np
import requests

from harness import Server, write_model

POOL = cf.ThreadPoolExecutor(max_workers=48)


def config(name, max_batch_size=8, dims="[ -1 ]", delay_ms=0, batching="", instances=1):
    params = ""
    if delay_ms:
        params = f'parameters {{ key: "execute_delay_ms" value {{ string_value: "{delay_ms}" }} }}'
    return f"""
name: "{name}"
backend: "identity"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: {dims} }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: {dims} }} ]
instance_group [ {{ kind: KIND_CPU count: {instances} }} ]
{params}
{batching}
"""


def infer(s, model, data, request_id="", **params):
    """POSTs `data` (batch dim first) and returns (status code, json body)."""
    data = np.asarray(data, dtype=np.float32)
    body = {"inputs": [{"name": "INPUT0", "shape": list(data.shape), "datatype": "FP32",
                        "data": data.flatten().tolist()}]}
    if request_id:
        body["id"] = request_id
    if params:
        body["parameters"] = params
    r = requests.post(f"{s.url}/v2/models/{model}/infer", json=body, timeout=120)
    return r.status_code, r.json()


def timed_infer(done, s, model, name, *args, **kw):
    """infer(), recording in done[name] when the answer came back (for ordering checks)."""
    code, body = infer(s, model, *args, **kw)
    done[name] = time.monotonic()
    return code, body


def send(s, model, data, **kw):
    """Starts an inference on the pool; returns the future."""
    return POOL.submit(infer, s, model, data, **kw)


def metric(s, name, model):
    text = requests.get(s.metrics_url + "/metrics", timeout=10).text
    m = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', text, re.M)
    assert m, f"{name} for {model} not in /metrics:\n{text}"
    return float(m.group(1))


def wait_pending(s, model, n, timeout=30):
    """Waits until exactly n requests of `model` are queued (accepted, not executing)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metric(s, "nv_inference_pending_request_count", model) == n:
            return
        time.sleep(0.01)
    raise AssertionError(f"{model}: pending never reached {n}")


def make_busy(s, model, queued=((0.0,),)):
    """Occupies the only instance and leaves `queued` waiting behind it.

    The plug's row has a width no test uses, so it can never share a batch with what
    follows. With one instance and no queue delay, one pending request then means the
    instance is executing the other. Returns both futures.
    """
    plug = send(s, model, [[-1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]])
    time.sleep(0.1)  # the plug must reach the server first
    futs = [plug, send(s, model, queued)]
    wait_pending(s, model, 1)
    return futs


def stats(s, model):
    r = requests.get(f"{s.url}/v2/models/{model}/versions/1/stats", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["model_stats"][0]


def batch_sizes(st):
    """{batch size: executions} from the statistics extension."""
    return {b["batch_size"]: b["compute_infer"]["count"] for b in st["batch_stats"]}


def test_concurrent_requests_make_ceil_n_over_m_executions(tmp_path):
    n, m = 24, 8
    # A queue delay far longer than the test: batches go only when full.
    write_model(tmp_path, "full", config(
        "full", max_batch_size=m,
        batching="dynamic_batching { max_queue_delay_microseconds: 60000000 }"))
    with Server(tmp_path, wait="ready") as s:
        futs = [send(s, "full", [[float(i)]]) for i in range(n)]
        results = [f.result() for f in futs]
        for i, (code, body) in enumerate(results):
            assert code == 200, body
            assert body["outputs"][0]["data"] == [float(i)]
        st = stats(s, "full")
        assert st["execution_count"] == math.ceil(n / m)
        assert st["inference_count"] == n
        assert batch_sizes(st) == {m: n // m}
        assert metric(s, "nv_inference_exec_count", "full") == math.ceil(n / m)
        assert metric(s, "nv_inference_count", "full") == n
        assert metric(s, "nv_inference_request_success", "full") == n
        inf = st["inference_stats"]
        # Triton counts queue and compute per request.
        for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
            assert inf[key]["count"] == n, key


def test_largest_preferred_size_goes_not_the_max(tmp_path):
    # max_batch_size would allow 16 at once, but while a preferred size can be formed
    # that is what goes; anything smaller would have to wait out the 60 s delay. So
    # however the 20 requests interleave with the executions, every batch is exactly 4.
    write_model(tmp_path, "pref", config(
        "pref", max_batch_size=16, delay_ms=300,
        batching="dynamic_batching { preferred_batch_size: [ 4 ] "
                 "max_queue_delay_microseconds: 60000000 }"))
    with Server(tmp_path, wait="ready") as s:
        futs = [send(s, "pref", [[float(i)]]) for i in range(20)]
        for i, f in enumerate(futs):
            code, body = f.result()
            assert code == 200 and body["outputs"][0]["data"] == [float(i)], body
        st = stats(s, "pref")
        assert batch_sizes(st) == {4: 5}
        assert st["execution_count"] == 5


def test_without_delay_whatever_is_queued_goes_when_an_instance_frees(tmp_path):
    write_model(tmp_path, "nodelay", config(
        "nodelay", max_batch_size=8, delay_ms=1000, batching="dynamic_batching { }"))
    with Server(tmp_path, wait="ready") as s:
        busy = make_busy(s, "nodelay")
        more = [send(s, "nodelay", [[float(i)]]) for i in range(4)]
        wait_pending(s, "nodelay", 5)
        for f in busy + more:
            assert f.result()[0] == 200
        # The one that was executing ran alone; the five queued behind it went as one.
        assert batch_sizes(stats(s, "nodelay")) == {1: 1, 5: 1}


def test_max_queue_delay_bounds_the_wait_for_a_fuller_batch(tmp_path):
    delay_s = 1.0
    write_model(tmp_path, "delay", config(
        "delay", max_batch_size=8,
        batching=f"dynamic_batching {{ max_queue_delay_microseconds: {int(delay_s * 1e6)} }}"))
    with Server(tmp_path, wait="ready") as s:
        t0 = time.time()
        code, body = infer(s, "delay", [[7.0]])
        waited = time.time() - t0
        assert code == 200, body
        # The batcher held the lone request for its delay (a lower bound, so no race),
        # then sent the partial batch rather than waiting for more.
        assert waited >= delay_s * 0.9
        assert batch_sizes(stats(s, "delay")) == {1: 1}
        assert stats(s, "delay")["inference_stats"]["queue"]["ns"] >= delay_s * 0.9e9


def test_batch_dims_merge_and_split_and_shapes_never_mix(tmp_path):
    write_model(tmp_path, "shapes", config(
        "shapes", max_batch_size=8, delay_ms=1000, batching="dynamic_batching { }"))
    with Server(tmp_path, wait="ready") as s:
        busy = make_busy(s, "shapes", [[0.0, 0.0, 0.0]])  # queued: [1,3]
        inputs = [
            np.arange(6, dtype=np.float32).reshape(2, 3) + 10,   # joins: 1+2
            np.arange(9, dtype=np.float32).reshape(3, 3) + 20,   # joins: 3+3 = 6
            np.arange(5, dtype=np.float32).reshape(1, 5) + 30,   # other shape: own batch
            np.arange(6, dtype=np.float32).reshape(2, 3) + 40,   # behind it: own batch
        ]
        futs = []
        for i, x in enumerate(inputs):
            futs.append(send(s, "shapes", x))
            wait_pending(s, "shapes", 2 + i)
        for f in busy:
            assert f.result()[0] == 200
        for x, f in zip(inputs, futs):
            code, body = f.result()
            assert code == 200, body
            out = body["outputs"][0]
            assert out["shape"] == list(x.shape)
            assert out["data"] == x.flatten().tolist()
        st = stats(s, "shapes")
        assert batch_sizes(st) == {1: 2, 6: 1, 2: 1}
        assert st["inference_count"] == 1 + 1 + 2 + 3 + 1 + 2


def test_responses_go_back_to_their_own_requests(tmp_path):
    write_model(tmp_path, "mix", config(
        "mix", max_batch_size=8, delay_ms=20,
        batching="dynamic_batching { max_queue_delay_microseconds: 20000 }"))
    with Server(tmp_path, wait="ready") as s:
        rng = np.random.default_rng(5)
        inputs = [rng.standard_normal((1 + i % 3, 4)).astype(np.float32) for i in range(60)]
        futs = [send(s, "mix", x, request_id=f"req-{i}") for i, x in enumerate(inputs)]
        for i, (x, f) in enumerate(zip(inputs, futs)):
            code, body = f.result()
            assert code == 200, body
            assert body["id"] == f"req-{i}"
            np.testing.assert_array_equal(
                np.array(body["outputs"][0]["data"], dtype=np.float32).reshape(x.shape), x)
        st = stats(s, "mix")
        assert st["inference_count"] == sum(x.shape[0] for x in inputs)
        assert st["execution_count"] < len(inputs)  # some requests did share a batch
        assert all(size <= 8 for size in batch_sizes(st))


def test_full_queue_rejects_at_once_with_503(tmp_path):
    write_model(tmp_path, "small", config(
        "small", max_batch_size=1, delay_ms=1500,
        batching="dynamic_batching { default_queue_policy { max_queue_size: 2 } }"))
    with Server(tmp_path, wait="ready") as s:
        busy = make_busy(s, "small")
        queued = send(s, "small", [[2.0]])
        wait_pending(s, "small", 2)
        t0 = time.time()
        code, body = infer(s, "small", [[3.0]])
        assert code == 503, body
        assert "small" in body["error"] and "2" in body["error"]
        assert "queue" in body["error"].lower()
        # Refused on arrival, not after the 1.5 s executions ahead of it.
        assert time.time() - t0 < 1.5
        for f in busy + [queued]:
            assert f.result()[0] == 200
        assert metric_failure(s, "small", "REJECTED") == 1


def metric_failure(s, model, reason):
    text = requests.get(s.metrics_url + "/metrics", timeout=10).text
    m = re.search(rf'^nv_inference_request_failure{{model="{model}",version="1",'
                  rf'reason="{reason}"}} (\S+)$', text, re.M)
    assert m, text
    return float(m.group(1))


QUEUE_POLICY = ("dynamic_batching {{ default_queue_policy {{ timeout_action: {action} "
                "default_timeout_microseconds: 60000000 allow_timeout_override: true }} }}")


def test_timed_out_request_fails_alone_with_its_own_error(tmp_path):
    write_model(tmp_path, "tmo", config(
        "tmo", max_batch_size=1, delay_ms=1000, batching=QUEUE_POLICY.format(action="REJECT")))
    with Server(tmp_path, wait="ready") as s:
        busy = make_busy(s, "tmo")
        # 1 us: certainly expired by the time the busy instance asks for more work.
        late = send(s, "tmo", [[5.0]], timeout=1)
        wait_pending(s, "tmo", 2)
        patient = send(s, "tmo", [[6.0]])
        code, body = late.result()
        assert code == 503, body
        assert "timeout" in body["error"].lower() and "tmo" in body["error"]
        for f in busy:
            assert f.result()[0] == 200
        code, body = patient.result()
        assert code == 200 and body["outputs"][0]["data"] == [6.0]
        assert metric_failure(s, "tmo", "REJECTED") == 1
        assert stats(s, "tmo")["inference_stats"]["fail"]["count"] == 1


def test_timeout_action_delay_serves_late_requests_last(tmp_path):
    write_model(tmp_path, "dly", config(
        "dly", max_batch_size=1, delay_ms=1000, batching=QUEUE_POLICY.format(action="DELAY")))
    with Server(tmp_path, wait="ready") as s:
        busy = make_busy(s, "dly")
        done = {}
        late = POOL.submit(timed_infer, done, s, "dly", "late", [[1.0]], timeout=1)
        wait_pending(s, "dly", 2)
        on_time = POOL.submit(timed_infer, done, s, "dly", "on_time", [[2.0]])
        wait_pending(s, "dly", 3)
        assert late.result()[0] == 200  # DELAY: still served...
        assert on_time.result()[0] == 200
        assert done["on_time"] < done["late"]  # ...but after the one that did not time out
        for f in busy:
            assert f.result()[0] == 200


def test_higher_priority_overtakes_lower(tmp_path):
    write_model(tmp_path, "prio", config(
        "prio", max_batch_size=1, delay_ms=1000,
        batching="dynamic_batching { priority_levels: 2 default_priority_level: 2 }"))
    with Server(tmp_path, wait="ready") as s:
        busy = make_busy(s, "prio")
        done = {}
        low = POOL.submit(timed_infer, done, s, "prio", "low", [[1.0]], priority=2)
        wait_pending(s, "prio", 2)
        default = POOL.submit(timed_infer, done, s, "prio", "default", [[2.0]])
        wait_pending(s, "prio", 3)
        high = POOL.submit(timed_infer, done, s, "prio", "high", [[3.0]], priority=1)
        wait_pending(s, "prio", 4)
        for f in busy + [low, default, high]:
            assert f.result()[0] == 200
        # Queued last, served first among the waiting ones.
        assert done["high"] < done["low"] < done["default"]


def test_instances_execute_in_parallel(tmp_path):
    delay_ms, n = 1500, 4
    write_model(tmp_path, "par", config(
        "par", max_batch_size=1, delay_ms=delay_ms, instances=2, batching="dynamic_batching { }"))
    with Server(tmp_path, wait="ready") as s:
        t0 = time.time()
        futs = [send(s, "par", [[float(i)]]) for i in range(n)]
        for i, f in enumerate(futs):
            code, body = f.result()
            assert code == 200 and body["outputs"][0]["data"] == [float(i)]
        wall = time.time() - t0
        # One instance would need n * delay = 6 s at the very least.
        assert wall < n * delay_ms / 1000 - 1.0, wall
        assert stats(s, "par")["execution_count"] == n


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_server_does_not_spin(tmp_path):
    write_model(tmp_path, "idle", config(
        "idle", max_batch_size=8, instances=2,
        batching="dynamic_batching { max_queue_delay_microseconds: 100 "
                 "default_queue_policy { default_timeout_microseconds: 1000000 } }"))
    with Server(tmp_path, wait="ready") as s:
        assert infer(s, "idle", [[1.0]])[0] == 200
        before = cpu_seconds(s.proc.pid)
        time.sleep(2.0)
        used = cpu_seconds(s.proc.pid) - before
        # A busy wait would burn ~2 s of CPU here.
        assert used < 0.2, used
