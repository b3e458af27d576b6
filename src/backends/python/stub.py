"""The process one Python model instance runs in (started by libflowserve_python.so).

    /usr/bin/python3 stub.py <control fd>

The control fd is a Unix stream socket to the server. Every message is a frame:
u32 payload length, u32 JSON length, the JSON, then a tail of raw bytes; file
descriptors (shared memory) ride along as SCM_RIGHTS. Tensor bytes never go through the
JSON: inputs sit in the instance's arena (a memfd the server writes and this process
maps), outputs are written once into a memfd the server maps and hands to the response
(small ones travel in the frame's tail, which is cheaper than mapping a segment).
The process exits when the socket closes (and the kernel kills it with SIGKILL when the
server thread that started it exits: PR_SET_PDEATHSIG, set before exec).
"""
import array
import asyncio
import collections
import importlib.util
import json
import mmap
import os
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback

import numpy as np

import triton_python_backend_utils as pb_utils

_HDR = struct.Struct("<II")
_ALIGN = 64
_MAX_FDS = 64
_ANC_SPACE = socket.CMSG_SPACE(_MAX_FDS * 4)
_MAX_IOV = 512  # buffers per sendmsg (the kernel takes up to 1024)
_PADS = [bytes(n) for n in range(_ALIGN)]


def _bytes_of(buf):
    """Any buffer's bytes in order (a numpy array of any shape and dtype too)."""
    return memoryview(buf).cast("B")


def _frame_encoder():
    """dict -> compact JSON text. JSONEncoder.encode sets up a circular-reference check
    and helper closures on every call: for a small frame that took as long as the encoding
    (about 2 us of a batch's reply). Frames hold plain data, so the C encoder is called
    directly when this Python has it (the fallback gives the same text)."""
    public = json.JSONEncoder(separators=(",", ":"))
    try:
        from json.encoder import c_make_encoder, encode_basestring_ascii
        fast = c_make_encoder(None, public.default, encode_basestring_ascii, None, ":", ",",
                              False, False, True)
        if "".join(fast({"k": [1, "\u00e9", None, True]}, 0)) != public.encode(
                {"k": [1, "\u00e9", None, True]}):
            return public.encode
    except (ImportError, TypeError):
        return public.encode
    join = "".join
    return lambda obj: join(fast(obj, 0))


# One encoder and decoder for every frame: json.dumps(..., separators=...) builds a new
# encoder per call, and json.loads of bytes first guesses their encoding.
_encode = _frame_encoder()
_decode = json.JSONDecoder().decode


def _align(n):
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


class Spin:
    """Polls the socket for a while before a blocking read. A process sleeping in recv()
    costs the server a wake-up per request (a system call, a context switch and, on a
    VM, often an idle virtual CPU's exit): more than this process's whole Python work for
    a small request. The poll yields the CPU at every turn, so a runnable thread never
    waits behind it, and backs off (skips its next polls, more each time) when the kernel
    gave its core to another thread meanwhile: then the machine is busy and polling only
    adds switches. The server says when one client sends request after request ("lone"):
    that client taking the core between requests is no sign of load, unless the kernel
    reports threads waiting for a CPU much of the time (other work on the machine)."""

    MAX_BACKOFF = 4096
    BUSY_PRESSURE = 50.0  # % of the last 10 s some runnable thread waited for a CPU
    PRESSURE_EVERY = 0.1  # s between readings

    def __init__(self, poller):
        self.poller = poller  # the channel's, registered for input
        self.budget = 0.0  # seconds; set by the server in every execute message
        self.lone = False
        self.backoff = 0
        self.skip = 0
        self.pressure_read = 0.0
        self.busy = False

    def wait(self):
        if self.budget <= 0:
            return
        now = time.monotonic()
        if now >= self.pressure_read + self.PRESSURE_EVERY:
            self.pressure_read = now
            self.busy = _cpu_pressure() > self.BUSY_PRESSURE
        lone = self.lone and not self.busy
        if self.skip and not lone:
            self.skip -= 1
            return
        poll = self.poller.poll
        yield_cpu = os.sched_yield
        switches = _involuntary_switches()
        until = now + self.budget
        while not poll(0):
            if time.monotonic() >= until:
                break
            yield_cpu()
        if lone:
            self.backoff = self.skip = 0
        elif _involuntary_switches() != switches:
            self.backoff = min(self.backoff * 2 or 1, self.MAX_BACKOFF)
            self.skip = self.backoff
        else:
            self.backoff //= 2


def _involuntary_switches():
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw


def _cpu_pressure():
    """The kernel's CPU pressure (PSI "some avg10", 0-100); 0 where it is not exposed."""
    try:
        with open("/proc/pressure/cpu", "rb") as f:
            return float(f.readline().split()[1][6:])
    except (OSError, ValueError, IndexError):
        return 0.0


class Channel:
    def __init__(self, fd):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd)
        self.send_lock = threading.Lock()
        self.waiter = select.poll()
        self.waiter.register(self.sock, select.POLLIN)
        self.spin = Spin(self.waiter)
        # Received bytes not handed out yet: rbuf[rstart:rend], the first at stream
        # offset rpos; fd_marks: (stream offset of a read's last byte, its descriptors).
        self.rbuf = bytearray(1 << 16)
        self.rview = memoryview(self.rbuf)
        self.rstart = self.rend = 0
        self.rpos = 0
        self.fd_marks = collections.deque()

    def send(self, msg, tail=(), fds=(), tail_len=0):
        """`tail`: buffers (numpy arrays too) sent as they are, `tail_len` bytes in all."""
        js = _encode(msg).encode()
        bufs = [_HDR.pack(len(js) + tail_len, len(js)), js, *tail]
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        total = _HDR.size + len(js) + tail_len
        if len(bufs) > _MAX_IOV:
            bufs = [b"".join(_bytes_of(b) for b in bufs)]
        with self.send_lock:
            sent = self.sock.sendmsg(bufs, anc)
            if sent < total:
                # The rest goes without the fds: they belong to the frame's first bytes.
                rest = b"".join(_bytes_of(b) for b in bufs)[sent:]
                self.sock.sendall(rest)

    def recv(self, spin=False):
        """One frame: (message dict, tail memoryview, received fds). `spin`: poll for it
        first (the main loop waiting for the next request).

        A small frame comes in one read (the header and the rest used to take two): reads
        go into a buffer and may bring the start of the next frame too, which waits there.
        Descriptors belong to the frame holding the last byte of the read they came with:
        the kernel ends a read after the message carrying them, whose first byte is that
        frame's first."""
        buf = self.rbuf
        while True:
            have = self.rend - self.rstart
            if have >= _HDR.size:
                total, json_len = _HDR.unpack_from(buf, self.rstart)
                size = _HDR.size + total
                if have >= size:
                    first = self.rstart + _HDR.size
                    payload = bytearray(self.rview[first:first + total])
                    self._consume(size)
                    return self._frame(payload, json_len)
                if self.rstart + size > len(buf):
                    return self._recv_large(total, json_len)
            if spin:
                spin = False
                if self.rend == self.rstart:
                    self.spin.wait()
            if self.rstart and self.rstart == self.rend:
                self.rstart = self.rend = 0
            elif len(buf) - self.rend < _HDR.size:  # keep the header contiguous
                have = self.rend - self.rstart
                buf[:have] = self.rview[self.rstart:self.rend]
                self.rstart, self.rend = 0, have
            self._read_into(self.rview[self.rend:])

    def _read_into(self, view):
        try:
            n, anc, _flags, _addr = self.sock.recvmsg_into([view], _ANC_SPACE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            # Nothing there: sleep in poll(), not in recvmsg(). A reader sleeping in
            # recvmsg() is woken whenever the server reads what this process sent (the
            # socket gains write space), once per batch for nothing; poll() sleeps for
            # input only.
            self.waiter.poll()
            n, anc, _flags, _addr = self.sock.recvmsg_into([view], _ANC_SPACE)
        if n == 0:
            raise EOFError
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i", cdata[:len(cdata) - len(cdata) % 4])
                # stream offset of the read's last byte
                self.fd_marks.append((self.rpos + self.rend - self.rstart + n - 1, list(fds)))
        self.rend += n
        return n

    def _consume(self, size):
        """Drops a frame of `size` bytes from the buffer's front."""
        self.rstart += size
        self.rpos += size
        if self.rstart == self.rend:
            self.rstart = self.rend = 0

    def _frame(self, payload, json_len):
        # Descriptors that came with reads ending inside this frame (before self.rpos).
        fds = []
        marks = self.fd_marks
        while marks and marks[0][0] < self.rpos:
            fds.extend(marks.popleft()[1])
        view = memoryview(payload)
        return _decode(payload[:json_len].decode()), view[json_len:], fds

    def _recv_large(self, total, json_len):
        """A frame larger than the buffer: the rest is read straight into its own."""
        payload = bytearray(total)
        view = memoryview(payload)
        have = self.rend - self.rstart - _HDR.size
        first = self.rstart + _HDR.size
        view[:have] = self.rview[first:self.rend]
        pos = have
        base = self.rpos + _HDR.size  # stream offset of payload[0]
        while pos < total:
            # Reads sized to this frame's end: none reaches into the next frame.
            n, anc, _flags, _addr = self.sock.recvmsg_into([view[pos:]], _ANC_SPACE)
            if n == 0:
                raise EOFError
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i", cdata[:len(cdata) - len(cdata) % 4])
                    self.fd_marks.append((base + pos + n - 1, list(fds)))
            pos += n
        self.rstart = self.rend = 0
        self.rpos += _HDR.size + total
        return self._frame(payload, json_len)


_DTYPES = {wire: np.dtype(t) for wire, t in pb_utils._WIRE_TO_NUMPY.items() if wire != "BYTES"}
_ndarray = np.ndarray


def _decode_tensors(descs, tail, maps, arena, regions=None):
    """Tensor descriptions -> pb_utils.Tensors viewing the shared buffers. A description is
    [name, type, shape, kind, place...]: a list, not an object, so that a request costs no
    dict to build or read (docs/python.md measures it)."""
    out = []
    for d in descs:
        kind = d[3]
        if kind == "a":
            buf, off, size = arena, d[4], d[5]
        elif kind == "r":
            buf, off, size = regions[d[4]].mm, d[5], d[6]
        elif kind == "f":
            buf, off, size = maps[d[4]], d[5], d[6]
        else:
            buf, off, size = tail, d[4], d[5]
        shape = d[2]
        wire = d[1]
        if wire == "BYTES":
            count = 1
            for s in shape:
                count *= s
            arr = pb_utils.deserialize_bytes_tensor(memoryview(buf)[off:off + size], count)
            arr = arr.reshape(shape)
        else:
            dtype = _DTYPES.get(wire)
            if dtype is None:
                raise pb_utils.TritonModelException(f"input '{d[0]}': {wire} tensors are not "
                                                    "supported by the Python backend")
            if size == 0:
                arr = np.empty(shape, dtype=dtype)
            else:
                # One call instead of frombuffer + reshape; the server sent a size that
                # matches the shape, and numpy still refuses a view past the buffer's end.
                arr = _ndarray(shape, dtype, buf, off)
        out.append(_tensor(d[0], arr, wire))
    return out


def _tensor(name, arr, wire):
    """A pb_utils.Tensor without the constructor's checks: the server described it."""
    t = _new_tensor(pb_utils.Tensor)
    t._name = name
    t._data = arr
    t._wire = wire
    return t


_new_tensor = object.__new__


def _request(model_name, r, inputs):
    """A pb_utils.InferenceRequest of an execute message's [outputs, inputs, extras]
    (extras, when there are any: id, correlation "c", flags "f", parameters "p", stream
    token "q"), without the constructor's conversions: the server sent every field in its
    final form."""
    req = _new_tensor(pb_utils.InferenceRequest)
    req._model_name = model_name
    req._model_version = -1
    req._outputs = r[0]
    req._inputs = inputs
    req._timeout = 0
    if len(r) > 2:
        x = r[2]
        req._request_id = x.get("id", "")
        req._correlation_id = x.get("c", 0)
        req._flags = x.get("f", 0)
        req._parameters = x.get("p", "{}")
    else:
        req._request_id = ""
        req._correlation_id = 0
        req._flags = 0
        req._parameters = "{}"
    return req


def _map_fds(fds):
    maps = []
    for fd in fds:
        size = os.fstat(fd).st_size
        maps.append(mmap.mmap(fd, size) if size else b"")
        os.close(fd)
    return maps


class Segment:
    __slots__ = ("id", "fd", "mm", "size", "busy")

    def __init__(self, sid, size):
        self.id = sid
        self.size = size
        self.fd = os.memfd_create("flowserve-py-out", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.mm = mmap.mmap(self.fd, size)
        self.busy = False


class OutputPool:
    """Shared memory segments execute() results are written into, reused: a fresh segment
    costs a page fault per page on both sides, which dwarfs the copy itself. A segment is
    busy from the reply that uses it until the server says its responses were written
    out (the "free" list of a later execute message); the server maps each one once."""

    # Idle segments kept beyond that are unmapped (and dropped by the server). Under
    # concurrency a few are busy at once (responses still being written out); dropping and
    # re-creating them would pay the page faults again.
    KEEP_FREE = 4
    STEP = 1 << 20

    def __init__(self):
        self.segments = {}
        self.next_id = 1
        self.dropped = []

    def acquire(self, size):
        best = None
        for seg in self.segments.values():
            if not seg.busy and seg.size >= size and (best is None or seg.size < best.size):
                best = seg
        if best is None:
            best = Segment(self.next_id, (size + self.STEP - 1) // self.STEP * self.STEP)
            self.next_id += 1
            self.segments[best.id] = best
        best.busy = True
        return best

    def release(self, ids):
        for sid in ids:
            seg = self.segments.get(sid)
            if seg is not None:
                seg.busy = False
        idle = [seg for seg in self.segments.values() if not seg.busy]
        for seg in sorted(idle, key=lambda x: x.size)[:max(0, len(idle) - self.KEEP_FREE)]:
            del self.segments[seg.id]
            seg.mm.close()
            self.dropped.append(seg.id)

    def take_dropped(self):
        dropped, self.dropped = self.dropped, []
        return dropped


class ArenaMap:
    """An input arena, or a region of the server's (a large request body), as mapped
    here: outputs found inside it go back by reference."""
    __slots__ = ("id", "mm", "base", "size")

    def __init__(self, aid, fd, size):
        self.id = aid
        self.size = size
        self.mm = mmap.mmap(fd, size)
        probe = np.frombuffer(self.mm, dtype=np.uint8)
        self.base = probe.__array_interface__["data"][0]
        del probe  # an exported buffer would keep mm.close() from working


class Encoder:
    """Lays tensors of several responses out in one buffer: the frame tail when small
    (sent straight from the arrays, no copy here), else a shared memory segment the server
    maps (the only copy of an output on its way out). With a pool, the segment is a reused
    one; without (BLS), a new memfd. With the batch's arena, an output viewing the inputs
    (the model returned input.as_numpy() or a slice of it) is described by its place in
    the arena instead: no copy at all. Small batches still travel inline: the arena would
    then stay held while the responses are written out, to save a copy cheaper than
    that."""

    def __init__(self, inline_max, pool=None, arena=None, regions=()):
        self.inline_max = inline_max
        self.pool = pool
        self.arena = arena
        self.regions = regions  # the batch's regions (ArenaMap), referable like the arena
        self.items = []  # (desc, buffer: a C-contiguous little-endian array or bytes, bytes)
        self.total = 0  # bytes if every tensor were laid out one after another
        self.tail_len = 0
        self.segment = None

    def add(self, tensor):
        if not isinstance(tensor, pb_utils.Tensor):
            raise pb_utils.TritonModelException(
                f"output_tensors must hold pb_utils.Tensor objects, got {type(tensor).__name__}")
        arr = tensor._data
        wire = tensor._wire
        shape = list(arr.shape)
        if wire == "BYTES":
            raw = pb_utils.serialize_byte_tensor(arr)
            n = len(raw)
        else:
            dt = arr.dtype
            if dt.hasobject:
                raise pb_utils.TritonModelException(
                    f"output '{tensor._name}': an object array is not a {wire} tensor")
            if dt.byteorder == ">":  # the wire is little-endian
                arr = arr.astype(dt.newbyteorder("<"))
            if not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr)
            raw = arr
            n = arr.nbytes
        desc = [tensor._name, wire, shape]  # finish() appends the place
        self.items.append((desc, raw, n))
        self.total = (self.total + _ALIGN - 1) // _ALIGN * _ALIGN + n
        return desc

    def finish(self):
        """-> (tail buffers, fds, message fields); fills in every desc's location and
        tail_len."""
        items = self.items
        if self.total <= self.inline_max:
            return self._inline(items), [], {}
        if self.arena is not None:
            items = self._refer_to_arena(items, "a", self.arena)
        for region in self.regions:
            items = self._refer_to_arena(items, "r", region)
        total = 0
        for _desc, _raw, n in items:
            total = _align(total) + n
        if total <= self.inline_max:
            return self._inline(items), [], {}
        if self.pool is None:
            fd = os.memfd_create("flowserve-py-out", os.MFD_CLOEXEC)
            os.ftruncate(fd, total)
            with mmap.mmap(fd, total) as mm:
                self._copy(mm, items, lambda off, n: ("f", 0, off, n))
            return [], [fd], {}
        seg = self.segment = self.pool.acquire(total)
        self._copy(seg.mm, items, lambda off, n: ("s", seg.id, off, n))
        if seg.fd is None:
            return [], [], {}
        fd, seg.fd = seg.fd, None  # the server keeps it mapped from now on
        return [], [fd], {"new": [[seg.id, 0]]}

    def _inline(self, items):
        tail = []
        pos = 0
        for desc, raw, n in items:
            off = (pos + _ALIGN - 1) // _ALIGN * _ALIGN
            if off > pos:
                tail.append(_PADS[off - pos])
            if n:
                tail.append(raw)
            desc += ("i", off, n)
            pos = off + n
        self.tail_len = pos
        return tail

    @staticmethod
    def _refer_to_arena(items, kind, arena):
        """Locates the outputs lying inside `arena` (an ArenaMap); -> the other items."""
        rest = []
        for item in items:
            desc, raw, n = item
            if n and not isinstance(raw, bytes):
                off = raw.__array_interface__["data"][0] - arena.base
                if 0 <= off and off + n <= arena.size:
                    desc += (kind, arena.id, off, n)
                    continue
            rest.append(item)
        return rest

    @staticmethod
    def _copy(buf, items, location):
        dst = np.frombuffer(buf, dtype=np.uint8)
        off = 0
        for desc, raw, n in items:
            off = _align(off)
            if n:
                dst[off:off + n] = np.frombuffer(raw, dtype=np.uint8)
            desc += location(off, n)
            off += n
        del dst


class Ipc:
    """What pb_utils reaches the server through: logging and BLS."""

    def __init__(self, channel, inline_max):
        self.ch = channel
        self.inline_max = inline_max
        self.arena = None
        self.next_id = 1
        self.cond = threading.Condition()
        self.results = {}  # BLS id -> deque of (msg, tail, fds)
        self.inbox = collections.deque()  # frames for the main loop a BLS waiter read
        self.reading = False
        self.executor = None

    def log(self, level, message):
        self.ch.send({"op": "log", "l": level, "m": message})

    def recv_main(self):
        """The main loop's next frame. The socket has one reader at a time: the main
        loop while idle, a BLS waiter while it waits (possibly on a model.py thread while
        the main loop is idle too); each hands the other's frames over."""
        with self.cond:
            while True:
                if self.inbox:
                    return self.inbox.popleft()
                if not self.reading:
                    break
                self.cond.wait()
            self.reading = True
        while True:
            try:
                frame = self.ch.recv(spin=True)
            except (EOFError, ConnectionError):
                os._exit(0)
            if frame[0].get("op") != "bls_response":
                with self.cond:
                    self.reading = False
                    self.cond.notify_all()
                return frame
            with self.cond:
                self.results.setdefault(frame[0]["id"], collections.deque()).append(frame)
                self.cond.notify_all()

    def send_response(self, token, response, final):
        """A decoupled model's response (None: the final flag alone)."""
        msg = {"op": "response", "q": token, "final": bool(final)}
        tail, fds, tail_len = (), [], 0
        if response is None:
            msg["null"] = True
        elif response.has_error():
            msg["e"] = response.error().message()
            msg["c"] = response.error().code()
        else:
            enc = Encoder(self.inline_max)
            msg["o"] = [enc.add(t) for t in response.output_tensors()]
            tail, fds, _ = enc.finish()
            tail_len = enc.tail_len
            if response.parameters() not in ("{}", ""):
                msg["p"] = response.parameters()
        try:
            self.ch.send(msg, tail, fds, tail_len)
        finally:
            for fd in fds:
                os.close(fd)

    def metric_send(self, msg):
        self.ch.send({"op": "metric", **msg})

    def metric_call(self, msg):
        """A custom metric request the server answers (a number)."""
        with self.cond:
            rid = self.next_id
            self.next_id += 1
        self.ch.send({"op": "metric", "rid": rid, **msg})
        reply, _tail, fds = self._wait_frame(rid)
        for fd in fds:
            os.close(fd)
        if reply.get("error") is not None:
            raise pb_utils.TritonModelException(reply["error"])
        return reply["v"]

    def _send_bls(self, req, decoupled=False):
        if not isinstance(req.model_name(), str) or not req.model_name():
            raise pb_utils.TritonModelException("InferenceRequest needs a model_name for exec()")
        enc = Encoder(self.inline_max)
        descs = [enc.add(t) for t in req.inputs()]
        tail, fds, _ = enc.finish()
        with self.cond:
            rid = self.next_id
            self.next_id += 1
        msg = {"op": "bls", "id": rid, "m": req.model_name(), "v": int(req.model_version()),
               "o": list(req.requested_output_names()), "i": descs, "rid": req.request_id(),
               "c": req.correlation_id(), "t": int(req.timeout()), "p": req.parameters(),
               "f": int(req.flags())}
        if decoupled:
            msg["d"] = True
        try:
            self.ch.send(msg, tail, fds, enc.tail_len)
        finally:
            for fd in fds:
                os.close(fd)
        return rid

    def _wait(self, rid):
        """Waits for the next response to BLS request `rid` -> (InferenceResponse, final)."""
        msg, tail, fds = self._wait_frame(rid)
        final = msg.get("final", True)
        maps = _map_fds(fds)
        if msg.get("error") is not None:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(msg["error"])), final
        if msg.get("null"):
            return pb_utils.InferenceResponse(), final
        outputs = _decode_tensors(msg.get("o", []), tail, maps, None)
        return pb_utils.InferenceResponse(output_tensors=outputs,
                                          parameters=msg.get("p") or "{}"), final

    def _wait_frame(self, rid):
        """The next reply frame to request `rid`. One thread at a time reads the socket
        and hands what it read to its owner."""
        with self.cond:
            while not self.results.get(rid):
                if self.reading:
                    self.cond.wait()
                    continue
                self.reading = True
                self.cond.release()
                try:
                    frame = self.ch.recv()
                except (EOFError, ConnectionError):
                    os._exit(0)
                finally:
                    self.cond.acquire()
                    self.reading = False
                if frame[0].get("op") == "bls_response":
                    self.results.setdefault(frame[0]["id"], collections.deque()).append(frame)
                else:
                    self.inbox.append(frame)  # the main loop's
                self.cond.notify_all()
            queue = self.results[rid]
            frame = queue.popleft()
            if frame[0].get("final", True):
                del self.results[rid]
        return frame

    def bls(self, req):
        return self._wait(self._send_bls(req))[0]

    def bls_stream(self, req):
        """exec(decoupled=True): an iterator over every response, the final one last
        (an empty response when the model sent the final flag alone)."""
        rid = self._send_bls(req, decoupled=True)

        def responses():
            while True:
                resp, final = self._wait(rid)
                yield resp
                if final:
                    return
        return responses()

    def bls_stream_async(self, req):
        rid = self._send_bls(req, decoupled=True)

        def collect():
            out = []
            while True:
                resp, final = self._wait(rid)
                out.append(resp)
                if final:
                    return iter(out)
        return self._executor_run(collect)

    def _executor_run(self, fn, *args):
        loop = asyncio.get_event_loop()
        if self.executor is None:
            import concurrent.futures
            self.executor = concurrent.futures.ThreadPoolExecutor(8, "flowserve-bls")
        return loop.run_in_executor(self.executor, fn, *args)

    def bls_async(self, req):
        rid = self._send_bls(req)
        return self._executor_run(lambda: self._wait(rid)[0])


def _error_text(exc):
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_model_class(model_file, version_dir, env_path):
    if env_path:
        for p in reversed(_site_dirs(env_path)):
            sys.path.insert(0, p)
    sys.path.insert(0, version_dir)
    spec = importlib.util.spec_from_file_location("model", model_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["model"] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "TritonPythonModel"):
        raise AttributeError(f"{model_file} defines no class TritonPythonModel")
    return module.TritonPythonModel


def _site_dirs(env_path):
    """EXECUTION_ENV_PATH: a folder (a venv/conda env, or a bare package folder); its
    site-packages go first on sys.path."""
    found = []
    lib = os.path.join(env_path, "lib")
    if os.path.isdir(lib):
        for name in sorted(os.listdir(lib)):
            sp = os.path.join(lib, name, "site-packages")
            if name.startswith("python3") and os.path.isdir(sp):
                found.append(sp)
    sp = os.path.join(env_path, "site-packages")
    if os.path.isdir(sp):
        found.append(sp)
    return found or [env_path]


class Stub:
    def __init__(self, fd):
        self.ch = Channel(fd)
        self.model = None
        self.arenas = {}  # id -> ArenaMap
        self.regions = {}  # id -> ArenaMap of a server region (sent once, kept until dropped)
        self.loop = None
        self.async_execute = False
        self.ipc = None
        self.pool = OutputPool()
        self.decoupled = False

    def run(self):
        while True:
            if self.ipc is not None:
                msg, tail, fds = self.ipc.recv_main()
            else:
                try:
                    msg, tail, fds = self.ch.recv()
                except (EOFError, ConnectionError):
                    os._exit(0)
            op = msg.get("op")
            if op == "execute":
                self.execute(msg, fds)
            elif op == "init":
                self.initialize(msg)
            elif op == "autocomplete":
                self.autocomplete(msg)
            elif op == "finalize":
                self.finalize()
                os._exit(0)
            else:
                for fd in fds:
                    os.close(fd)

    def _setup_ipc(self, msg):
        self.ipc = Ipc(self.ch, int(msg.get("inline_max", 65536)))
        pb_utils._ipc = self.ipc

    def initialize(self, msg):
        self._setup_ipc(msg)
        try:
            cls = _load_model_class(msg["model_file"], msg["version_dir"], msg.get("env_path"))
            policy = json.loads(msg["args"]["model_config"]).get("model_transaction_policy", {})
            self.decoupled = bool(policy.get("decoupled", False))
            self.model = cls()
            if hasattr(self.model, "initialize"):
                self.model.initialize(msg["args"])
            self.async_execute = asyncio.iscoroutinefunction(self.model.execute)
            if self.async_execute:
                self.loop = asyncio.new_event_loop()
                asyncio.set_event_loop(self.loop)
        except BaseException as e:  # noqa: BLE001 - reported to the server, which fails the load
            self.ch.send({"op": "init_done", "error": _error_text(e),
                          "tb": traceback.format_exc()})
            return
        self.ch.send({"op": "init_done", "error": None})

    def autocomplete(self, msg):
        self._setup_ipc(msg)
        try:
            cls = _load_model_class(msg["model_file"], msg["version_dir"], msg.get("env_path"))
            config = pb_utils.ModelConfig(msg["config"])
            if hasattr(cls, "auto_complete_config"):
                ret = cls.auto_complete_config(config)
                if isinstance(ret, pb_utils.ModelConfig):
                    config = ret
            self.ch.send({"op": "autocomplete_done", "error": None, "config": config.as_dict()})
        except BaseException as e:  # noqa: BLE001
            self.ch.send({"op": "autocomplete_done", "error": _error_text(e),
                          "tb": traceback.format_exc()})

    def finalize(self):
        try:
            if self.model is not None and hasattr(self.model, "finalize"):
                self.model.finalize()
        except BaseException:  # noqa: BLE001
            pb_utils.Logger.log_error("finalize() raised:\n" + traceback.format_exc())
        self.ch.send({"op": "finalize_done"})

    def execute(self, msg, fds):
        spin = self.ch.spin
        spin.budget = msg.get("sp", 0) * 1e-6
        spin.lone = "lo" in msg
        if "adrop" in msg:
            for aid in msg["adrop"]:
                # Unmapped once no array views it (a model may have kept one).
                self.arenas.pop(aid, None)
        if "arena" in msg:
            idx, size, aid = msg["arena"]
            self.arenas[aid] = ArenaMap(aid, fds[idx], size)
            os.close(fds[idx])
        arena = self.arenas[msg["ai"]]
        regions = self.regions
        if "rdrop" in msg:
            for rid in msg["rdrop"]:
                regions.pop(rid, None)
        if "regions" in msg:
            for idx, rid, size in msg["regions"]:
                regions[rid] = ArenaMap(rid, fds[idx], size)
                os.close(fds[idx])
        used = msg.get("ru")
        batch_regions = [regions[rid] for rid in used] if used else ()
        if "free" in msg:
            self.pool.release(msg["free"])
        enc = None
        try:
            requests = []
            model_name = msg.get("m", "")
            for r in msg["r"]:
                inputs = _decode_tensors(r[1], None, None, arena.mm, regions)
                request = _request(model_name, r, inputs)
                if self.decoupled:
                    # Threads of model.py may read the inputs after execute() returned,
                    # when the arena already holds the next batch: they get their own copy.
                    for t in inputs:
                        t._data = t._data.copy()
                    request._sender = pb_utils.InferenceResponseSender(self.ipc, r[2]["q"])
                requests.append(request)
            if self.async_execute:
                responses = self.loop.run_until_complete(self.model.execute(requests))
            else:
                responses = self.model.execute(requests)
            if self.decoupled:
                if responses is not None:
                    raise pb_utils.TritonModelException(
                        "execute() of a decoupled model must return None (it answers through "
                        "request.get_response_sender())")
                self.ch.send({"op": "done"})
                return
            if not isinstance(responses, (list, tuple)) or len(responses) != len(requests):
                got = len(responses) if isinstance(responses, (list, tuple)) else type(responses).__name__
                raise pb_utils.TritonModelException(
                    f"execute() must return a list of {len(requests)} InferenceResponse "
                    f"(one per request), got {got}")
            enc = Encoder(self.ipc.inline_max, self.pool, arena, batch_regions)
            add = enc.add
            out = []
            response_type = pb_utils.InferenceResponse
            for resp in responses:
                if not isinstance(resp, response_type):
                    raise pb_utils.TritonModelException(
                        "execute() must return InferenceResponse objects, got "
                        f"{type(resp).__name__}")
                error = resp._error
                if error is not None:
                    out.append({"e": error.message(), "c": error.code()})
                    continue
                # [outputs] or [outputs, parameters]; an error is an object
                item = [[add(t) for t in resp._outputs]]
                params = resp._parameters
                if params != "{}" and params != "":
                    item.append(params)
                out.append(item)
            tail, out_fds, extra = enc.finish()
        except BaseException as e:  # noqa: BLE001 - answers the batch, the model keeps serving
            if enc is not None and enc.segment is not None:
                enc.segment.busy = False
            reply = {"op": "done", "error": _error_text(e), "tb": traceback.format_exc()}
            dropped = self.pool.take_dropped()
            if dropped:
                reply["drop"] = dropped
            self.ch.send(reply)
            return
        reply = {"op": "done", "r": out, **extra} if extra else {"op": "done", "r": out}
        if self.pool.dropped:
            reply["drop"] = self.pool.take_dropped()
        try:
            self.ch.send(reply, tail, out_fds, enc.tail_len)
        finally:
            for fd in out_fds:
                os.close(fd)


def main():
    # Ctrl-C in a terminal reaches the whole process group; the server decides when this
    # process ends (finalize, or the socket closing).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Stub(int(sys.argv[1])).run()


if __name__ == "__main__":
    main()
