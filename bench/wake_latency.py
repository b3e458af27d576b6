"""What one hand-off between two processes costs on this machine: a byte sent back and
forth over a socketpair, each side sleeping in recv() until the other's byte arrives
(two wake-ups per round trip), with the two processes free to run on different CPUs and
then both pinned to one. A Python model's request makes this trip to its process and
back, plus hand-offs between server threads; bench/python_vs_identity.sh shows the sum.

    /usr/bin/python3 bench/wake_latency.py [round trips, default 20000]

Prints the mean round trip in microseconds for each placement and their ratio."""
import os
import socket
import sys
import time


def round_trip_us(n, cpus):
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        if cpus:
            os.sched_setaffinity(0, cpus)
        a.close()
        for _ in range(n):
            b.recv(1)
            b.send(b"x")
        os._exit(0)
    b.close()
    old = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        start = time.perf_counter()
        for _ in range(n):
            a.send(b"x")
            a.recv(1)
        return (time.perf_counter() - start) / n * 1e6
    finally:
        os.sched_setaffinity(0, old)
        os.waitpid(pid, 0)
        a.close()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    cpus = sorted(os.sched_getaffinity(0))
    free = round_trip_us(n, None)
    pinned = round_trip_us(n, {cpus[0]})
    print(f"{'placement':<28} {'round trip us':>14}")
    print(f"{'any CPU (' + str(len(cpus)) + ' available)':<28} {free:>14.1f}")
    print(f"{'both on CPU ' + str(cpus[0]):<28} {pinned:>14.1f}")
    print(f"ratio any/one CPU: {free / pinned:.2f}")


if __name__ == "__main__":
    main()
