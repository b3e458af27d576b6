"""Custom metrics from model.py (pb_utils.MetricFamily / Metric) on /metrics."""
import numpy as np
import requests

from harness import Server
from test_python_backend import cfg, infer, io, ok, python_model, wait_until

# Every request: the counter grows by X, the gauge is set to X, the histogram observes X.
# initialize() also tries each misuse and exports how many raised, as a gauge.
METRICS = """
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        name = json.loads(args["model_config"])["name"]
        labels = {"model": name, "quote": 'say "hi"'}
        self.counter = pb_utils.MetricFamily(
            "test_requests_total", "X summed", pb_utils.MetricFamily.COUNTER).Metric(labels)
        self.gauge = pb_utils.MetricFamily(
            name="test_last_x", description="The last X", kind=pb_utils.GAUGE).Metric(labels)
        self.hist = pb_utils.MetricFamily("test_x_hist", "X", pb_utils.HISTOGRAM).Metric(
            labels=labels, buckets=[1.0, 5.0])
        misuses = [
            lambda: pb_utils.MetricFamily("test_requests_total", "again", pb_utils.GAUGE),
            lambda: pb_utils.MetricFamily("bad name!", "x", pb_utils.COUNTER),
            lambda: pb_utils.MetricFamily("nv_mine", "x", pb_utils.COUNTER),
            lambda: pb_utils.MetricFamily("test_kind", "x", 7),
            lambda: pb_utils.MetricFamily("test_h2", "x", pb_utils.HISTOGRAM).Metric(),
            lambda: pb_utils.MetricFamily("test_h3", "x", pb_utils.HISTOGRAM).Metric(
                buckets=[2.0, 1.0]),
            lambda: self.counter.increment(-1),
            lambda: self.counter.set(3),
            lambda: self.counter.observe(3),
            lambda: self.gauge.observe(3),
            lambda: self.hist.increment(1),
        ]
        raised = []
        for m in misuses:
            try:
                m()
            except pb_utils.TritonModelException as e:
                raised.append(str(e))
        pb_utils.Logger.log_info("metric misuses: " + " | ".join(raised))
        pb_utils.MetricFamily("test_misuses", "How many misuses raised",
                              pb_utils.GAUGE).Metric({"model": name}).set(len(raised))

    def execute(self, requests):
        out = []
        for r in requests:
            x = float(pb_utils.get_input_tensor_by_name(r, "X").as_numpy()[0])
            self.counter.increment(x)
            self.gauge.set(x)
            self.hist.observe(x)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(
                "Y", np.array([self.counter.value(), self.hist.value()], np.float64))]))
        return out
"""


def metrics_text(s):
    return requests.get(f"http://127.0.0.1:{s.metrics_port}/metrics", timeout=10).text


def test_custom_metrics_on_metrics_endpoint_and_gone_after_unload(tmp_path):
    for name in ("m1", "m2"):
        python_model(tmp_path, name, METRICS,
                     cfg(name, [io("X", "TYPE_FP32", [1])], [io("Y", "TYPE_FP64", [2])]))
    with Server(tmp_path, wait="ready", args=["--model-control-mode=explicit",
                                              "--load-model=m1", "--load-model=m2"]) as s:
        for x in (0.5, 3, 10):
            y = ok(infer(s, "m1", {"X": (np.array([x], np.float32), "FP32")}))["Y"]
        assert y.tolist() == [13.5, 13.5]  # value() reads the server's numbers
        ok(infer(s, "m2", {"X": (np.array([2], np.float32), "FP32")}))
        text = metrics_text(s)
        lab = 'model="m1",quote="say \\"hi\\""'
        assert "# HELP test_requests_total X summed\n# TYPE test_requests_total counter\n" in text
        assert f"test_requests_total{{{lab}}} 13.5\n" in text
        assert 'test_requests_total{model="m2",quote="say \\"hi\\""} 2\n' in text
        assert "# TYPE test_last_x gauge\n" in text and f"test_last_x{{{lab}}} 10\n" in text
        assert "# TYPE test_x_hist histogram\n" in text
        for le, n in (("1", 1), ("5", 2), ("+Inf", 3)):
            assert f'test_x_hist_bucket{{{lab},le="{le}"}} {n}\n' in text
        assert f"test_x_hist_sum{{{lab}}} 13.5\n" in text
        assert f"test_x_hist_count{{{lab}}} 3\n" in text
        assert 'test_misuses{model="m1"} 11\n' in text, s.log()
        assert "already exists as a counter, not a gauge" in s.log()
        assert "nv_inference_count" in text  # the server's own are still there
        r = requests.post(f"{s.url}/v2/repository/models/m1/unload", timeout=30)
        assert r.status_code == 200
        text = wait_until(lambda: (lambda t: t if 'model="m1"' not in t else None)(metrics_text(s)))
        assert text and 'model="m2"' in text  # m2's stay, with the families they share
        requests.post(f"{s.url}/v2/repository/models/m2/unload", timeout=30)
        text = wait_until(lambda: (lambda t: t if "test_" not in t else None)(metrics_text(s)))
        assert text is not None and "test_requests_total" not in text
