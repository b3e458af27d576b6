#!/usr/bin/python3
"""Poll mode: time from a new version folder appearing to that version serving.

Starts flowserve with --model-control-mode=poll --repository-poll-secs=1 on an identity
model, then repeatedly adds version N+1 (atomically, by rename) and polls inference until
the response says version N+1. The expected mean is about half the poll interval plus
the load time.

  FLOWSERVE_BIN=build/flowserve /usr/bin/python3 bench/poll_reload_latency.py [--trials 6]
"""
import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from harness import Server, identity_config, write_model  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--poll-secs", type=int, default=1)
    args = p.parse_args()
    repo = pathlib.Path(tempfile.mkdtemp(prefix="poll-bench-"))
    model = write_model(repo, "m", identity_config("m"))
    body = {"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    with Server(repo, ["--model-control-mode=poll", f"--repository-poll-secs={args.poll_secs}"],
                wait="ready") as s:
        sess = requests.Session()
        seen = []
        for v in range(2, 2 + args.trials):
            time.sleep(0.37 * v % 1)  # land at different points of the poll cycle
            (repo / f".v{v}").mkdir()
            t0 = time.perf_counter()
            os.rename(repo / f".v{v}", model / str(v))
            while sess.post(f"{s.url}/v2/models/m/infer", json=body).json()["model_version"] != str(v):
                time.sleep(0.005)
            seen.append(time.perf_counter() - t0)
        print(f"poll interval {args.poll_secs}s: new version serving after "
              f"mean {statistics.mean(seen):.2f}s, min {min(seen):.2f}s, max {max(seen):.2f}s "
              f"({args.trials} trials)")


if __name__ == "__main__":
    main()
