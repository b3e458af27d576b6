"""Prometheus metrics on --metrics-port: exposition format, Triton's names, histograms,
flags, and a real Prometheus server scraping us."""
import re
import subprocess
import time

import pytest
import requests

from harness import Server, free_port, identity_config, run_to_exit, write_model

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse(text):
    """Strict reader of text format 0.0.4. Returns ({family: type}, [(name, labels, value)])."""
    assert text.endswith("\n")
    types, helps, samples = {}, set(), []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps, f"second HELP for {name}"
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in types, f"second TYPE for {name}"
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, _, body, value = m.groups()
            labels = {}
            if body:
                pos = 0
                while pos < len(body):
                    lm = LABEL.match(body, pos)
                    assert lm, f"bad labels in {line!r}"
                    labels[lm.group(1)] = lm.group(2)
                    pos = lm.end()
            float(value)
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            family = name if name in types else family
            assert family in types, f"{name} has no TYPE line before it"
            assert family in helps, f"{name} has no HELP line"
            samples.append((name, labels, float(value)))
    return types, samples


def scrape(s):
    r = requests.get(s.metrics_url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


def value(samples, name, **labels):
    found = [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def infer(s, model, rows):
    body = {"inputs": [{"name": "INPUT0", "shape": [rows, 2], "datatype": "FP32",
                        "data": [1.0] * (2 * rows)}]}
    return requests.post(f"{s.url}/v2/models/{model}/infer", json=body, timeout=30)


@pytest.fixture
def repo(tmp_path):
    write_model(tmp_path, "m", identity_config("m", max_batch_size=8,
                                               extra="dynamic_batching { }"))
    return tmp_path


def test_exposition_parses_and_counters_move(repo):
    with Server(repo, wait="ready") as s:
        types, before = scrape(s)
        for name, kind in [("nv_inference_request_success", "counter"),
                           ("nv_inference_request_failure", "counter"),
                           ("nv_inference_count", "counter"),
                           ("nv_inference_exec_count", "counter"),
                           ("nv_inference_request_duration_us", "counter"),
                           ("nv_inference_queue_duration_us", "counter"),
                           ("nv_inference_compute_input_duration_us", "counter"),
                           ("nv_inference_compute_infer_duration_us", "counter"),
                           ("nv_inference_compute_output_duration_us", "counter"),
                           ("nv_inference_pending_request_count", "gauge"),
                           ("nv_inference_first_response_histogram_ms", "histogram"),
                           ("nv_cpu_utilization", "gauge"),
                           ("nv_cpu_memory_total_bytes", "gauge"),
                           ("nv_cpu_memory_used_bytes", "gauge"),
                           ("process_resident_memory_bytes", "gauge")]:
            assert types.get(name) == kind, name
        assert value(before, "nv_inference_request_success", model="m", version="1") == 0
        for rows in (1, 3, 2):
            assert infer(s, "m", rows).status_code == 200
        bad = requests.post(f"{s.url}/v2/models/m/infer", json={"inputs": [
            {"name": "NOPE", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})
        assert bad.status_code == 400
        _, after = scrape(s)
        lbl = {"model": "m", "version": "1"}
        assert value(after, "nv_inference_request_success", **lbl) == 3
        assert value(after, "nv_inference_count", **lbl) == 6
        assert 1 <= value(after, "nv_inference_exec_count", **lbl) <= 3
        assert value(after, "nv_inference_request_failure", reason="OTHER", **lbl) == 1
        for reason in ("REJECTED", "CANCELED", "BACKEND"):
            assert value(after, "nv_inference_request_failure", reason=reason, **lbl) == 0
        assert value(after, "nv_inference_request_duration_us", **lbl) > 0
        assert value(after, "nv_inference_compute_infer_duration_us", **lbl) > 0
        assert value(after, "nv_inference_pending_request_count", **lbl) == 0
        # The request histogram agrees with the success counter, buckets are cumulative
        # and +Inf holds every observation.
        h = "nv_inference_first_response_histogram_ms"
        buckets = [(l["le"], v) for n, l, v in after if n == h + "_bucket"]
        counts = [v for _, v in buckets]
        assert counts == sorted(counts) and buckets[-1] == ("+Inf", 3)
        assert value(after, h + "_count", **lbl) == 3
        assert value(after, h + "_sum", **lbl) > 0
        assert 0 <= value(after, "nv_cpu_utilization") <= 1
        assert value(after, "nv_cpu_memory_total_bytes") >= value(after, "nv_cpu_memory_used_bytes") > 0
        assert value(after, "process_resident_memory_bytes") > 1 << 20
        assert requests.get(s.metrics_url + "/other").status_code == 404


def test_metrics_config_histograms(repo):
    args = ["--metrics-config=histogram_queue_buckets=1,10,100",
            "--metrics-config", "histogram_compute_buckets=0.5,5",
            "--metrics-config=histogram_request_buckets=2,20"]
    with Server(repo, args, wait="ready") as s:
        assert infer(s, "m", 1).status_code == 200
        types, samples = scrape(s)
        les = lambda h: [l["le"] for n, l, _ in samples if n == h + "_bucket"]
        assert les("nv_inference_first_response_histogram_ms") == ["2", "20", "+Inf"]
        assert les("nv_inference_queue_histogram_ms") == ["1", "10", "100", "+Inf"]
        assert les("nv_inference_compute_infer_histogram_ms") == ["0.5", "5", "+Inf"]
        assert value(samples, "nv_inference_queue_histogram_ms_count", model="m") == 1
    with Server(repo, ["--metrics-config=histogram_latencies=false",
                       "--metrics-config=counter_latencies=false",
                       "--allow-cpu-metrics=false"], wait="ready") as s:
        types, _ = scrape(s)
        assert not [t for t in types if "histogram" in t or "duration" in t]
        assert "nv_cpu_utilization" not in types and "nv_inference_count" in types


def test_bad_metrics_config_fails_start_naming_it(repo):
    rc, out = run_to_exit(repo, ["--metrics-config=histogram_buckets=5,1"])
    assert rc != 0 and "histogram_buckets" in out and "ascending" in out
    rc, out = run_to_exit(repo, ["--metrics-config=no_such_thing=1"])
    assert rc != 0 and "no_such_thing" in out


def test_allow_metrics_false_serves_nothing(repo):
    with Server(repo, ["--allow-metrics=false"], wait="ready") as s:
        assert infer(s, "m", 1).status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.get(s.metrics_url + "/metrics", timeout=5)


def test_real_prometheus_scrapes_our_counters(repo, tmp_path):
    with Server(repo, wait="ready") as s:
        for rows in (1, 2, 4):
            assert infer(s, "m", rows).status_code == 200
        prom_port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: flowserve
    static_configs:
      - targets: ["127.0.0.1:{s.metrics_port}"]
""")
        log = open(tmp_path / "prometheus.log", "w")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{prom_port}/api/v1/query"
            deadline, result = time.time() + 60, []
            while time.time() < deadline:
                assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    r = requests.get(url, params={"query": 'nv_inference_count{model="m"}'},
                                     timeout=5)
                    if r.status_code == 200:
                        result = r.json()["data"]["result"]
                        if result:
                            break
                except requests.RequestException:
                    pass
                time.sleep(0.5)
            assert result, "Prometheus never stored nv_inference_count:\n" + (
                tmp_path / "prometheus.log").read_text()
            assert result[0]["metric"]["version"] == "1"
            assert float(result[0]["value"][1]) == 7
            # Prometheus judged the scrape healthy (our exposition parsed).
            r = requests.get(url, params={"query": "up"}, timeout=5).json()
            assert r["data"]["result"][0]["value"][1] == "1"
            r = requests.get(url, params={
                "query": "nv_inference_first_response_histogram_ms_count"}, timeout=5).json()
            assert float(r["data"]["result"][0]["value"][1]) == 3
        finally:
            prom.terminate()
            try:
                prom.wait(20)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
