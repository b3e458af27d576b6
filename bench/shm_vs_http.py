#!/usr/bin/python3
"""A 4 MB FP32 tensor through the identity model at concurrency 1: HTTP binary tensors
against system shared memory (input and output in registered regions), in one run.

Both clients are the same keep-alive http.client loop, and both do what a real client
does with the data: the HTTP one sends the array's bytes and reads the output's bytes
from the reply; the shared memory one copies the array into its input region, sends a
small JSON request, and copies the output out of its output region. Prints requests/s,
p50 and p90 latency of each and the speed-up of shared memory over HTTP binary.
(perf_analyzer, whose --shared-memory system mode this mirrors, is not available here.)

  FLOWSERVE_BIN=build/flowserve /usr/bin/python3 bench/shm_vs_http.py [--n 300] [--mb 4]
"""
import argparse
import http.client
import json
import pathlib
import statistics
import sys
import tempfile
import time
from multiprocessing import shared_memory

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from harness import Server, identity_config, write_model  # noqa: E402


def post(conn, path, body, headers=None):
    conn.request("POST", path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"{path}: {r.status} {data[:300]!r}")
    return r, data


def http_binary_call(conn, arr):
    header = json.dumps({
        "inputs": [{"name": "INPUT0", "shape": [arr.size], "datatype": "FP32",
                    "parameters": {"binary_data_size": arr.nbytes}}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}).encode()
    r, data = post(conn, "/v2/models/id/infer", header + arr.tobytes(),
                   {"Inference-Header-Content-Length": str(len(header))})
    json_len = int(r.getheader("Inference-Header-Content-Length"))
    return np.frombuffer(data, np.float32, offset=json_len)


def shm_call(conn, arr, shm_in, shm_out, body):
    np.frombuffer(shm_in.buf, np.float32, count=arr.size)[:] = arr
    post(conn, "/v2/models/id/infer", body)
    return np.frombuffer(shm_out.buf, np.float32, count=arr.size).copy()


def measure(fn, n):
    for _ in range(10):
        fn()
    times = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    times.sort()
    return n / wall, statistics.median(times) * 1e3, times[int(0.9 * len(times))] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300, help="timed requests per mode")
    ap.add_argument("--mb", type=float, default=4.0, help="tensor size in MiB")
    args = ap.parse_args()
    arr = np.random.default_rng(0).standard_normal(int(args.mb * (1 << 20)) // 4).astype(
        np.float32)

    with tempfile.TemporaryDirectory(prefix="flowserve-shm-bench-") as repo:
        write_model(repo, "id", identity_config("id"))
        shm_in = shared_memory.SharedMemory(create=True, size=arr.nbytes)
        shm_out = shared_memory.SharedMemory(create=True, size=arr.nbytes)
        try:
            with Server(repo, wait="ready") as s:
                conn = http.client.HTTPConnection("127.0.0.1", s.http_port)
                for name, region in (("in", shm_in), ("out", shm_out)):
                    post(conn, f"/v2/systemsharedmemory/region/{name}/register",
                         json.dumps({"key": "/" + region.name, "byte_size": arr.nbytes}))
                shm_body = json.dumps({
                    "inputs": [{"name": "INPUT0", "shape": [arr.size], "datatype": "FP32",
                                "parameters": {"shared_memory_region": "in",
                                               "shared_memory_byte_size": arr.nbytes}}],
                    "outputs": [{"name": "OUTPUT0",
                                 "parameters": {"shared_memory_region": "out",
                                                "shared_memory_byte_size": arr.nbytes}}]})
                # Both paths must return the input, or the figures mean nothing.
                assert np.array_equal(http_binary_call(conn, arr), arr)
                assert np.array_equal(shm_call(conn, arr, shm_in, shm_out, shm_body), arr)

                http_fig = measure(lambda: http_binary_call(conn, arr), args.n)
                shm_fig = measure(lambda: shm_call(conn, arr, shm_in, shm_out, shm_body), args.n)
                conn.close()
        finally:
            for region in (shm_in, shm_out):
                region.close()
                region.unlink()

    print(f"identity, {arr.nbytes / (1 << 20):.1f} MiB FP32, concurrency 1, {args.n} requests each")
    print(f"{'mode':<28}{'req/s':>10}{'p50 ms':>10}{'p90 ms':>10}")
    for name, (rps, p50, p90) in (("HTTP binary tensors", http_fig),
                                  ("system shared memory", shm_fig)):
        print(f"{name:<28}{rps:>10.1f}{p50:>10.2f}{p90:>10.2f}")
    print(f"speed-up (shm / HTTP binary): {shm_fig[0] / http_fig[0]:.2f}x requests/s, "
          f"{http_fig[1] / shm_fig[1]:.2f}x lower p50")


if __name__ == "__main__":
    main()
