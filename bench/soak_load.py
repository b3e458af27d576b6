"""Load generator for bench/soak.sh: asyncio HTTP/1.1 and grpc.aio workers against a running
flowserve, mixing good and bad requests, model reloads and connection churn. Every request is
accounted for: answered (by status) or lost (no answer: reset, timeout, protocol error).

Usage: soak_load.py --http HOST:PORT --grpc HOST:PORT --pid PID --seconds N --concurrency C
"""
import argparse
import asyncio
import collections
import json
import pathlib
import random
import sys
import time

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "e2e"))
import grpc_stubs  # noqa: E402

pb2, pb2_grpc = grpc_stubs.load()

GOOD = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "FP32",
                               "data": [float(i) for i in range(16)]}]}).encode()
# Bad requests: each must get a 4xx naming the problem, never a crash or a hang.
BAD = [
    ("bad_json", "/v2/models/good/infer", b'{"inputs": [ {"name": '),
    ("bad_dtype", "/v2/models/good/infer",
     json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT8",
                             "data": list(range(16))}]}).encode()),
    ("bad_shape", "/v2/models/good/infer",
     json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "FP32",
                             "data": [1, 2]}]}).encode()),
    ("unknown_model", "/v2/models/nope/infer", GOOD),
]


class Stats:
    def __init__(self):
        self.outcomes = collections.Counter()  # (protocol, kind) -> count
        self.lost = collections.Counter()      # (protocol, why) -> count
        self.sent = 0
        self.answered = 0

    def answer(self, proto, kind):
        self.answered += 1
        self.outcomes[(proto, kind)] += 1


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


async def http_request(reader, writer, host, path, body, close):
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n")
    writer.write(head.encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed before the status line")
    status = int(status_line.split()[1])
    length, keep = 0, not close
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.lower() == "content-length":
            length = int(v)
        elif k.lower() == "connection" and v.strip().lower() == "close":
            keep = False
    await reader.readexactly(length)
    return status, keep


def http_kind(name, status):
    return "ok" if name == "good" and status == 200 else f"{name}:{status}"


async def http_worker(args, stats, stop, churn):
    host, port = args.http.split(":")
    conn = None
    rng = random.Random()
    while not stop.is_set():
        r = rng.random()
        if r < 0.15:
            name, path, body = rng.choice(BAD)
        elif r < 0.30:
            name, path, body = "reload_model", "/v2/models/flaky/infer", GOOD
        else:
            name, path, body = "good", "/v2/models/good/infer", GOOD
        close = churn and rng.random() < 0.5
        stats.sent += 1
        try:
            if conn is None:
                conn = await asyncio.open_connection(host, int(port))
            status, keep = await asyncio.wait_for(
                http_request(*conn, host, path, body, close), timeout=30)
            stats.answer("http", http_kind(name, status))
            if not keep:
                conn[1].close()
                conn = None
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                ValueError, IndexError) as e:
            stats.lost[("http", type(e).__name__)] += 1
            if conn:
                conn[1].close()
            conn = None
    if conn:
        conn[1].close()


# What grpc itself reports when no answer came back (as opposed to a status the server sent).
TRANSPORT = ("Socket closed", "Connection reset", "failed to connect", "Broken pipe", "GOAWAY",
             "Stream removed", "RST_STREAM", "Connection refused")


def lost_in_transport(e):
    if e.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.UNKNOWN):
        return True
    return any(t in (e.details() or "") for t in TRANSPORT)


def grpc_good():
    req = pb2.ModelInferRequest(model_name="good")
    t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 16])
    t.contents.fp32_contents.extend(float(i) for i in range(16))
    return req


async def grpc_worker(args, stats, stop, churn):
    rng = random.Random()
    channel, calls = None, 0
    while not stop.is_set():
        if channel is None:
            channel = grpc.aio.insecure_channel(args.grpc)
            stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        r = rng.random()
        req = grpc_good()
        name = "good"
        if r < 0.10:
            name = "bad_shape"
            req.inputs[0].shape[:] = [1, 3]
        elif r < 0.15:
            name = "unknown_model"
            req.model_name = "nope"
        elif r < 0.30:
            name = "reload_model"
            req.model_name = "flaky"
        stats.sent += 1
        try:
            await stub.ModelInfer(req, timeout=30)
            stats.answer("grpc", "ok" if name == "good" else f"{name}:OK")
        except grpc.aio.AioRpcError as e:
            if lost_in_transport(e):
                stats.lost[("grpc", f"{e.code().name}: {e.details()[:60]}")] += 1
            else:
                stats.answer("grpc", f"{name}:{e.code().name}")
        calls += 1
        if churn and calls % 20 == 0:
            await channel.close()
            channel = None
    if channel is not None:
        await channel.close()


async def reloader(args, stats, stop):
    """Explicit model control: unloads and (re)loads `flaky` with a changed config, and
    reloads `good` in place (a new config version while it serves)."""
    host, port = args.http.split(":")
    n = 0
    while not stop.is_set():
        await asyncio.sleep(1.0)
        n += 1
        ops = [("/v2/repository/models/flaky/unload", b"{}"),
               ("/v2/repository/models/flaky/load", b"{}")]
        if n % 3 == 0:
            cfg = {"name": "good", "backend": "identity", "max_batch_size": 8,
                   "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [16]}],
                   "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [16]}],
                   "dynamic_batching": {"max_queue_delay_microseconds": 100 + n % 7}}
            ops.append(("/v2/repository/models/good/load",
                        json.dumps({"parameters": {"config": json.dumps(cfg)}}).encode()))
        for path, body in ops:
            try:
                conn = await asyncio.open_connection(host, int(port))
                status, _ = await asyncio.wait_for(
                    http_request(*conn, host, path, body, True), timeout=60)
                conn[1].close()
                stats.outcomes[("control", "ok" if status == 200 else f"status_{status}")] += 1
            except (OSError, ConnectionError, asyncio.IncompleteReadError,
                    asyncio.TimeoutError) as e:
                stats.lost[("control", type(e).__name__)] += 1
            await asyncio.sleep(0.3)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()

    stats = Stats()
    stop = asyncio.Event()
    half = args.concurrency // 2
    # A quarter of each protocol's workers churn connections (new TCP connection or
    # channel every few requests); the rest keep theirs alive.
    tasks = [asyncio.create_task(http_worker(args, stats, stop, churn=i < half // 4))
             for i in range(half)]
    tasks += [asyncio.create_task(grpc_worker(args, stats, stop, churn=i < half // 4))
              for i in range(args.concurrency - half)]
    tasks.append(asyncio.create_task(reloader(args, stats, stop)))

    await asyncio.sleep(min(5.0, args.seconds / 10))  # warm-up: allocators reach steady state
    rss = [("start", rss_kb(args.pid))]
    t0, served0 = time.monotonic(), stats.answered
    await asyncio.sleep(args.seconds / 2)
    rss.append(("middle", rss_kb(args.pid)))
    await asyncio.sleep(args.seconds / 2)
    rss.append(("end", rss_kb(args.pid)))
    elapsed = time.monotonic() - t0
    stop.set()
    await asyncio.gather(*tasks)

    print(f"duration          {elapsed:.0f} s at concurrency {args.concurrency} "
          f"({half} HTTP, {args.concurrency - half} gRPC)")
    print(f"requests sent     {stats.sent}")
    print(f"requests answered {stats.answered} ({(stats.answered - served0) / elapsed:.0f}/s "
          "after warm-up)")
    print("answers by kind:")
    for (proto, kind), n in sorted(stats.outcomes.items()):
        print(f"  {proto:8s} {kind:32s} {n}")
    lost = sum(stats.lost.values())
    print(f"lost requests     {lost}" + "".join(f"\n  {p} {w}: {n}"
                                                for (p, w), n in sorted(stats.lost.items())))
    print("RSS               " + ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in rss))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
