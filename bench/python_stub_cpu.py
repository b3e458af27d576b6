"""CPU time stub.py spends per execute() round of a model returning its input, without
the server: decode the execute message, build the requests, run execute(), encode and
send the reply (a thread drains the socket's other end). The stub's own Python cost per
request, which bench/python_vs_identity.sh shows only mixed with everything else.

    /usr/bin/python3 bench/python_stub_cpu.py [elements per request, default 16] [batch, default 1]

Prints the best and the median of 10 runs of ROUNDS (env, default 20000) rounds (the
thread's CPU time, so other work on the machine inflates it less than the wall clock).
STUB_DIR (env) points at another stub.py to compare with."""
import json
import os
import socket
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("STUB_DIR", os.path.join(ROOT, "src/backends/python")))

import stub  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    ours, theirs = socket.socketpair()
    st = stub.Stub(os.dup(ours.fileno()))
    st._setup_ipc({"inline_max": 65536})
    st.model = TritonPythonModel()

    def drain():
        while theirs.recv(1 << 20):
            pass
    threading.Thread(target=drain, daemon=True).start()
    arena_size = 1 << 24
    fd = os.memfd_create("arena")
    os.ftruncate(fd, arena_size)
    stride = (4 * n + 63) // 64 * 64
    msg = {"op": "execute", "sp": 200, "m": "pyidentity", "ai": 1,
           "r": [[["OUTPUT0"], [["INPUT0", "FP32", [1, n], "a", k * stride, 4 * n]]]
                 for k in range(batch)]}
    frame = json.dumps(msg, separators=(",", ":")).encode()
    st.execute({**msg, "arena": [0, arena_size, 1]}, [fd])
    rounds = int(os.environ.get("ROUNDS", "20000"))
    runs = []
    for _ in range(10):
        t = time.thread_time_ns()
        for _ in range(rounds):
            st.execute(stub._decode(frame.decode()), [])
        runs.append((time.thread_time_ns() - t) / rounds / 1000)
    runs.sort()
    print(f"{n} FP32 x batch {batch}: {runs[0]:.2f} us best, {runs[len(runs) // 2]:.2f} us median "
          "per execute() round")


if __name__ == "__main__":
    main()
