"""Run-to-completion over HTTP: a cheap model may execute on the I/O thread that parsed
its request, a slow one never does. With one HTTP I/O thread, a slow model run there would
hold back every other connection until it finished; and requests executed there are
answered and counted like any other."""
import re
import threading
import time

import requests

from harness import Server, identity_config, write_model

SLOW_MS = 200
SLOW = identity_config("slow", extra=(
    f'parameters {{ key: "execute_delay_ms" value {{ string_value: "{SLOW_MS}" }} }}\n'
    'instance_group [ { count: 1 kind: KIND_CPU } ]'))


def body(values):
    return {"inputs": [{"name": "INPUT0", "shape": [len(values)], "datatype": "FP32",
                        "data": values}]}


def infer(server, model, values, session=requests):
    r = session.post(f"{server.url}/v2/models/{model}/infer", json=body(values), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["outputs"][0]["data"]


def stats(server, model):
    r = requests.get(f"{server.url}/v2/models/{model}/stats", timeout=10)
    return r.json()["model_stats"][0]


def pending(server, model):
    text = requests.get(f"{server.metrics_url}/metrics", timeout=10).text
    m = re.search(r'^nv_inference_pending_request_count\{model="%s",[^}]*\} (\d+)' % model,
                  text, re.M)
    return int(m.group(1)) if m else None


def test_slow_model_never_holds_the_io_thread(tmp_path):
    write_model(tmp_path, "slow", SLOW)
    write_model(tmp_path, "cheap", identity_config("cheap"))
    with Server(tmp_path, ["--http-thread-count=1"], wait="ready") as s:
        # Enough executions for both models' cost to be measured (a model's first ones
        # always go to its instance threads).
        for i in range(10):
            infer(s, "cheap", [float(i)])
            infer(s, "slow", [float(i)])

        # Two slow requests on two connections of the only I/O thread: the second can be
        # read, and queue behind the first, only if the first does not execute there.
        order = []
        slow = [threading.Thread(target=lambda v=v: order.append(("slow", infer(s, "slow", [v]))))
                for v in (1.0, 2.0)]
        for t in slow:
            t.start()
        deadline = time.time() + 10
        while pending(s, "slow") != 1:
            assert time.time() < deadline, "the second slow request was never read: the first " \
                "held the I/O thread"
            time.sleep(0.005)
        # The I/O thread answers cheap requests on other connections meanwhile.
        cheap = requests.Session()
        for i in range(5):
            order.append(("cheap", infer(s, "cheap", [float(i)], cheap)))
        for t in slow:
            t.join()
        assert [name for name, _ in order][-1] == "slow", order
        assert [name for name, _ in order].count("cheap") == 5
        assert sorted(v for name, v in order if name == "slow") == [[1.0], [2.0]]
        assert stats(s, "slow")["execution_count"] == 12


def test_inline_requests_are_answered_and_counted(tmp_path):
    write_model(tmp_path, "cheap", identity_config("cheap"))
    with Server(tmp_path, ["--http-thread-count=1"], wait="ready") as s:
        session = requests.Session()
        n = 60
        for i in range(n):
            assert infer(s, "cheap", [float(i), -float(i)], session) == [float(i), -float(i)]
        st = stats(s, "cheap")
        assert st["inference_count"] == n
        assert st["execution_count"] == n
        inference = st["inference_stats"]
        for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
            assert inference[key]["count"] == n, (key, inference[key])
        assert inference["fail"]["count"] == 0
