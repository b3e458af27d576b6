#!/usr/bin/python3
"""Cold start of a 100 MB model from a local S3 server (s3rver) against the same model from
a local folder, in one run; then a warm restart that finds the model in the cache.

Times are from process start to /v2/health/ready, for two 100 MB models:
  onnx      a real model: an ONNX MatMul whose weights make up the file (python3-torch
            exports it), loaded by the onnxruntime backend, which reads every byte;
  identity  the transfer alone: an identity model with a 100 MB file in its version
            folder that no backend reads. The local figure adds one timed read of the
            file (page cache warm), so this row is the worst case: s3rver's transfer
            against next to nothing.
The s3 runs list, stream the objects into the cache and rename them into place.

  FLOWSERVE_BIN=build/flowserve /usr/bin/python3 bench/s3_cold_start.py [--mb 100]
"""
import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from harness import Server, identity_config, write_model  # noqa: E402
import s3_harness  # noqa: E402


def time_to_ready(repo, args, env=None):
    t0 = time.perf_counter()
    s = Server(repo, args, wait="ready", timeout=300, env=env)
    dt = time.perf_counter() - t0
    log = s.log()
    s.stop()
    return dt, log


def fetched(log):
    return sum(int(b) for b in re.findall(r"fetched \d+ file\(s\), (\d+) bytes", log))


def fetch_secs(log):
    return sum(float(t) for t in re.findall(r"fetched \d+ file\(s\), \d+ bytes, in ([\d.]+) s", log))


def write_models(root, mb):
    """{kind: model folder}: the two 100 MB models described above."""
    identity = write_model(root / "identity", "big", identity_config("big"))
    with open(identity / "1" / "weights.bin", "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(mb):
            f.write(chunk)
    import torch
    onnx = write_model(root / "onnx", "big", None)
    side = int((mb * (1 << 20) / 4) ** 0.5)
    torch.onnx.export(torch.nn.Linear(side, side, bias=False), torch.rand(1, side),
                      str(onnx / "1" / "model.onnx"), input_names=["INPUT0"],
                      output_names=["OUTPUT0"],
                      dynamic_axes={"INPUT0": {0: "b"}, "OUTPUT0": {0: "b"}})
    return {"onnx": onnx, "identity": identity}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=100)
    args = p.parse_args()
    if not s3_harness.available():
        sys.exit("s3rver is not installed: run scripts/install-s3rver.sh")
    work = pathlib.Path(tempfile.mkdtemp(prefix="s3-bench-"))
    models = write_models(work, args.mb)
    rows = []
    s3 = s3_harness.S3rver()
    try:
        s3.create_bucket("bench")
        env = s3_harness.s3_env()
        for kind, model in models.items():
            s3.upload_tree(model, "bench", f"{kind}/big")
            read_s = 0.0
            if kind == "identity":  # a backend would read its weights once
                t0 = time.perf_counter()
                with open(model / "1" / "weights.bin", "rb") as f:
                    while f.read(1 << 22):
                        pass
                read_s = time.perf_counter() - t0
            local_s, _ = time_to_ready(model.parent, [])
            local_s += read_s
            cache = work / f"cache-{kind}"
            url = s3.url("bench", kind)
            cold_s, cold_log = time_to_ready(url, [f"--repository-cache-dir={cache}"], env)
            warm_s, warm_log = time_to_ready(url, [f"--repository-cache-dir={cache}"], env)
            rows.append((kind, local_s, cold_s, fetched(cold_log), fetch_secs(cold_log), warm_s,
                         fetched(warm_log)))
        # The transfer floor: curl alone fetching the identity file from the same server.
        t0 = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", str(work / "curl.bin"),
                        f"{s3.endpoint}/bench/identity/big/1/weights.bin"], check=True)
        curl_s = time.perf_counter() - t0
    finally:
        s3.close()
        shutil.rmtree(work, ignore_errors=True)

    print(f"| {args.mb} MB model | local s | s3 cold s | fetched MB in s | cold/local (goal <= 1.5) "
          "| s3 warm s | warm fetched bytes | warm/local |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, local_s, cold_s, cold_b, cold_t, warm_s, warm_b in rows:
        print(f"| {kind} | {local_s:.3f} | {cold_s:.3f} | {cold_b / (1 << 20):.0f} in {cold_t:.3f} "
              f"| {cold_s / local_s:.2f}x | {warm_s:.3f} | {warm_b} | {warm_s / local_s:.2f}x |")
    print(f"curl fetching the {args.mb} MB object from s3rver to disk (transfer floor): {curl_s:.3f} s")


if __name__ == "__main__":
    main()
