#!/usr/bin/python3
"""Added latency of a 2-step ensemble over calling its model directly (concurrency 1).

Builds a throwaway repository: `id` (identity backend) and `pipe2`, an ensemble running
`id` twice in a row. Prints median/p90 latency of: one direct call to `id`, one call to
`pipe2`, and two direct calls back to back (what a client does without an ensemble),
for a small and a 1 MiB binary tensor, plus the ratios.

  FLOWSERVE_BIN=build/flowserve /usr/bin/python3 bench/ensemble_overhead.py [--n 400]
"""
import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np
import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from harness import Server, identity_config, write_model  # noqa: E402

PIPE2 = """name: "pipe2"
platform: "ensemble"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
ensemble_scheduling { step [
  { model_name: "id" model_version: -1 input_map { key: "INPUT0" value: "X" }
    output_map { key: "OUTPUT0" value: "mid" } },
  { model_name: "id" model_version: -1 input_map { key: "INPUT0" value: "mid" }
    output_map { key: "OUTPUT0" value: "Y" } } ] }
"""


def request(sess, url, model, name, arr):
    header = json.dumps({"inputs": [{"name": name, "shape": list(arr.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": arr.nbytes}}],
                         "outputs": [{"name": "Y" if model == "pipe2" else "OUTPUT0",
                                      "parameters": {"binary_data": True}}]}).encode()
    r = sess.post(f"{url}/v2/models/{model}/infer", data=header + arr.tobytes(),
                  headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text
    return r


def measure(fn, n):
    for _ in range(20):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    times.sort()
    return statistics.median(times), times[int(0.9 * len(times))]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=400)
    args = p.parse_args()
    repo = pathlib.Path(tempfile.mkdtemp(prefix="ens-bench-"))
    write_model(repo, "id", identity_config("id", max_batch_size=8, extra="dynamic_batching { }"))
    write_model(repo, "pipe2", PIPE2)
    with Server(repo, wait="ready") as s:
        sess = requests.Session()
        for label, arr in (("16 B", np.ones((1, 4), np.float32)),
                           ("1 MiB", np.ones((1, 262144), np.float32))):
            direct = measure(lambda: request(sess, s.url, "id", "INPUT0", arr), args.n)
            ens = measure(lambda: request(sess, s.url, "pipe2", "X", arr), args.n)
            by_hand = measure(lambda: [request(sess, s.url, "id", "INPUT0", arr) for _ in (0, 1)],
                              args.n)
            print(f"{label:>6}: direct id p50 {direct[0]:7.0f} us p90 {direct[1]:7.0f} | "
                  f"2-step ensemble p50 {ens[0]:7.0f} us p90 {ens[1]:7.0f} | "
                  f"2 calls by hand p50 {by_hand[0]:7.0f} us")
            print(f"{'':>6}  ensemble adds {ens[0] - direct[0]:6.0f} us over one direct call "
                  f"({ens[0] / direct[0]:.2f}x); vs two calls by hand {ens[0] / by_hand[0]:.2f}x")


if __name__ == "__main__":
    main()
