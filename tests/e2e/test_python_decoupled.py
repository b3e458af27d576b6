"""Decoupled Python models (model_transaction_policy { decoupled: true }): any number of
responses per request through request.get_response_sender(), over gRPC ModelStreamInfer,
to BLS exec(decoupled=True), and the errors of every other way to call them."""
import json
import os
import queue
import sys
import threading
import time

import numpy as np
import pytest
import requests

from harness import Server
from test_python_backend import cfg, infer, io, python_model, wait_until

# One response per element of IN (OUT = the element, IDX = its position), each after
# DELAY ms, sent from a thread of the model after execute() returned; then the final
# flag alone. Element -1 sends an error response instead; -2 sends the last response
# with the final flag; -3 makes the process exit. After the final flag it tries once
# more and logs what send() said.
REPEAT = """
import os
import threading
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            delay = pb_utils.get_input_tensor_by_name(request, "DELAY").as_numpy()[0]
            t = threading.Thread(target=self.respond,
                                 args=(request.get_response_sender(), values, delay))
            t.start()
            self.threads.append(t)
        return None

    def respond(self, sender, values, delay):
        for i, v in enumerate(values):
            time.sleep(delay / 1000.0)
            if v == -1:
                sender.send(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"element {i} is -1")))
                continue
            if v == -3:
                os._exit(3)
            out = [pb_utils.Tensor("OUT", np.array([v], np.int32)),
                   pb_utils.Tensor("IDX", np.array([i], np.int32))]
            if v == -2:
                sender.send(pb_utils.InferenceResponse(out),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                break
            sender.send(pb_utils.InferenceResponse(out))
        else:
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        try:
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except pb_utils.TritonModelException as e:
            pb_utils.Logger.log_info(f"second final: {e}")

    def finalize(self):
        for t in self.threads:
            t.join()
"""

DECOUPLED = "model_transaction_policy { decoupled: true }"


def repeat_config(name="repeat", extra=""):
    return cfg(name, [io("IN", "TYPE_INT32", [-1]), io("DELAY", "TYPE_INT32", [1])],
               [io("OUT", "TYPE_INT32", [1]), io("IDX", "TYPE_INT32", [1])],
               extra=DECOUPLED + "\n" + extra)


# Misuse inside execute(): what each request's "MODE" asks for.
MISUSE = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        mode = int(pb_utils.get_input_tensor_by_name(requests[0], "MODE").as_numpy()[0])
        if mode == 0:
            raise ValueError("execute failed on purpose")
        if mode == 1:
            return [pb_utils.InferenceResponse([]) for _ in requests]
        if mode == 2:
            # Half-answered, then execute() raises: the rest of the request gets the error.
            s = requests[0].get_response_sender()
            s.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([7], np.int32))]))
            raise RuntimeError("after one response")
        if mode == 3:
            s = requests[0].get_response_sender()
            for bad in ((None, 0), ("text", 0), (None, 5)):
                try:
                    s.send(*bad)
                except pb_utils.TritonModelException as e:
                    s.send(pb_utils.InferenceResponse(
                        [pb_utils.Tensor("OUT", np.array([len(str(e))], np.int32))]))
            s.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if mode == 4:
            # The sender is dropped without the final flag... until the process ends.
            pass
        return None
"""


def misuse_config():
    return cfg("misuse", [io("MODE", "TYPE_INT32", [1])], [io("OUT", "TYPE_INT32", [1])],
               extra=DECOUPLED)


# Not decoupled: calls `repeat` through BLS exec(decoupled=True) (and async_exec), and
# reports the sum of OUT, the number of responses, and whether the last was empty.
BLS = """
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.async_mode = json.loads(args["model_config"])["name"] == "bls_async"

    def _request(self, request):
        return pb_utils.InferenceRequest(
            model_name="repeat", requested_output_names=["OUT"],
            inputs=[pb_utils.get_input_tensor_by_name(request, "IN"),
                    pb_utils.Tensor("DELAY", np.array([0], np.int32))])

    def _summary(self, responses):
        total, count, last_empty = 0, 0, False
        for r in responses:
            if r.has_error():
                raise pb_utils.TritonModelException(r.error().message())
            count += 1
            last_empty = len(r.output_tensors()) == 0
            if not last_empty:
                total += int(pb_utils.get_output_tensor_by_name(r, "OUT").as_numpy()[0])
        return pb_utils.InferenceResponse([pb_utils.Tensor(
            "SUMMARY", np.array([total, count, int(last_empty)], np.int64))])

    def _unary_error(self, request):
        r = self._request(request).exec()
        return r.error().message() if r.has_error() else "no error"

    def execute(self, requests):
        if self.async_mode:
            return self._run_async(requests)
        out = []
        for request in requests:
            if 99 in pb_utils.get_input_tensor_by_name(request, "IN").as_numpy():
                raise pb_utils.TritonModelException(self._unary_error(request))
            out.append(self._summary(self._request(request).exec(decoupled=True)))
        return out

    def _run_async(self, requests):
        import asyncio

        async def run():
            return [self._summary(await self._request(r).async_exec(decoupled=True))
                    for r in requests]
        return asyncio.new_event_loop().run_until_complete(run())
"""


def bls_config(name):
    return cfg(name, [io("IN", "TYPE_INT32", [-1])], [io("SUMMARY", "TYPE_INT64", [3])])


class Stream:
    """A ModelStreamInfer call fed from a queue; every response collected in order."""

    def __init__(self, s):
        import grpc
        import grpc_stubs
        self.pb2, pb2_grpc = grpc_stubs.load()
        self.stub = pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(s.grpc_url))
        self.requests = queue.Queue()
        self.responses = queue.Queue()
        self.call = self.stub.ModelStreamInfer(iter(self.requests.get, None), timeout=60)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        try:
            for r in self.call:
                self.responses.put(r)
        finally:
            self.responses.put(None)

    def send(self, model, rid, inputs, empty_final=False):
        req = self.pb2.ModelInferRequest(model_name=model, id=rid)
        for name, arr in inputs.items():
            req.inputs.append(self.pb2.ModelInferRequest.InferInputTensor(
                name=name, datatype="INT32", shape=list(arr.shape)))
            req.raw_input_contents.append(np.ascontiguousarray(arr, np.int32).tobytes())
        if empty_final:
            req.parameters["triton_enable_empty_final_response"].bool_param = True
        self.requests.put(req)

    def close(self):
        """Half-closes and returns every response until the server ended the call."""
        self.requests.put(None)
        out = []
        while True:
            r = self.responses.get(timeout=60)
            if r is None:
                return out
            out.append(r)

    def take(self, n):
        return [self.responses.get(timeout=60) for _ in range(n)]


def out_of(r, name="OUT"):
    resp = r.infer_response
    for i, o in enumerate(resp.outputs):
        if o.name == name:
            return int(np.frombuffer(resp.raw_output_contents[i], np.int32)[0])
    return None


def final_param(r):
    p = r.infer_response.parameters
    return p["triton_final_response"].bool_param if "triton_final_response" in p else None


def repeat_inputs(values, delay=0):
    return {"IN": np.array(values, np.int32), "DELAY": np.array([delay], np.int32)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("decoupled_repo")
    python_model(repo, "repeat", REPEAT, repeat_config())
    python_model(repo, "misuse", MISUSE, misuse_config())
    python_model(repo, "bls", BLS, bls_config("bls"))
    python_model(repo, "bls_async", BLS, bls_config("bls_async"))
    with Server(repo, wait="ready") as s:
        yield s


def test_zero_one_many_responses(server):
    st = Stream(server)
    st.send("repeat", "many", repeat_inputs([5, 6, 7]))
    many = st.take(3)
    assert [out_of(r) for r in many] == [5, 6, 7]
    assert [out_of(r, "IDX") for r in many] == [0, 1, 2]
    assert all(r.error_message == "" and r.infer_response.id == "many" for r in many)
    assert all(final_param(r) is None for r in many)  # not asked for
    st.send("repeat", "zero", repeat_inputs([]))  # the final flag alone: nothing is sent
    st.send("repeat", "one", repeat_inputs([9, -2, 4]))  # data and final flag together
    rest = st.close()
    assert [(r.infer_response.id, out_of(r)) for r in rest] == [("one", 9), ("one", -2)]


def test_empty_final_response_when_asked(server):
    st = Stream(server)
    st.send("repeat", "a", repeat_inputs([1, 2]), empty_final=True)
    st.send("repeat", "b", repeat_inputs([]), empty_final=True)
    st.send("repeat", "c", repeat_inputs([3, -2]), empty_final=True)
    got = st.close()
    by_id = {}
    for r in got:
        by_id.setdefault(r.infer_response.id, []).append(r)
    assert [(out_of(r), final_param(r)) for r in by_id["a"]] == [(1, False), (2, False),
                                                                  (None, True)]
    assert len(by_id["a"][-1].infer_response.outputs) == 0
    assert [(out_of(r), final_param(r)) for r in by_id["b"]] == [(None, True)]
    assert by_id["b"][0].infer_response.model_name == "repeat"
    assert [(out_of(r), final_param(r)) for r in by_id["c"]] == [(3, False), (-2, True)]


def test_concurrent_requests_answer_out_of_order(server):
    st = Stream(server)
    st.send("repeat", "slow", repeat_inputs([1, 2, 3], delay=300))
    st.send("repeat", "fast", repeat_inputs([10, 20, 30], delay=0))
    got = st.close()
    ids = [r.infer_response.id for r in got]
    assert sorted(ids) == ["fast"] * 3 + ["slow"] * 3
    assert ids[:3] == ["fast"] * 3, ids  # the later request finished first
    assert [out_of(r) for r in got if r.infer_response.id == "slow"] == [1, 2, 3]


def test_error_mid_stream_and_send_after_final(server):
    st = Stream(server)
    st.send("repeat", "e", repeat_inputs([1, -1, 3]))
    got = st.close()
    assert out_of(got[0]) == 1 and got[0].error_message == ""
    assert got[1].error_message == "element 1 is -1" and got[1].infer_response.id == "e"
    assert out_of(got[2]) == 3 and len(got) == 3
    assert wait_until(lambda: "second final: Unable to send response. Response sender has been "
                      "closed." in server.log())


def test_misuse_of_execute_and_sender(server):
    st = Stream(server)
    st.send("misuse", "raise", {"MODE": np.array([0], np.int32)})
    got = st.take(1)[0]
    assert "ValueError: execute failed on purpose" in got.error_message
    assert got.infer_response.id == "raise"
    st.send("misuse", "list", {"MODE": np.array([1], np.int32)})
    got = st.take(1)[0]
    assert "decoupled model must return None" in got.error_message
    st.send("misuse", "half", {"MODE": np.array([2], np.int32)})
    first, second = st.take(2)
    assert out_of(first) == 7 and "RuntimeError: after one response" in second.error_message
    st.send("misuse", "bad", {"MODE": np.array([3], np.int32)})
    lengths = [out_of(r) for r in st.take(3)]
    assert all(n and n > 10 for n in lengths), lengths  # each misuse raised with a message
    st.close()


def test_request_left_open_ends_at_unload(tmp_path):
    python_model(tmp_path, "misuse", MISUSE, misuse_config())
    with Server(tmp_path, wait="ready", args=["--model-control-mode=explicit",
                                              "--load-model=misuse"]) as s:
        st = Stream(s)
        st.send("misuse", "dropped", {"MODE": np.array([4], np.int32)})
        # Still open after execute() returned: the model may answer later. Nothing arrives.
        with pytest.raises(queue.Empty):
            st.responses.get(timeout=0.5)
        r = requests.post(f"{s.url}/v2/repository/models/misuse/unload", timeout=30)
        assert r.status_code == 200, r.text
        ends = st.close()
        assert len(ends) == 1 and ends[0].infer_response.id == "dropped"
        assert "ended before sending the request's final response" in ends[0].error_message


def test_unary_calls_are_refused(server):
    code, text = infer(server, "repeat", {"IN": (np.array([1], np.int32), "INT32"),
                                          "DELAY": (np.array([0], np.int32), "INT32")})
    assert code == 501
    assert "HTTP end point doesn't support models with decoupled transaction policy" in text
    import grpc
    st = Stream(server)
    req = st.pb2.ModelInferRequest(model_name="repeat")
    for name in ("IN", "DELAY"):
        req.inputs.append(st.pb2.ModelInferRequest.InferInputTensor(name=name, datatype="INT32",
                                                                    shape=[1]))
        req.raw_input_contents.append(np.array([1], np.int32).tobytes())
    with pytest.raises(grpc.RpcError) as e:
        st.stub.ModelInfer(req, timeout=30)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "ModelInfer RPC doesn't support models with decoupled transaction policy" in \
        e.value.details()
    st.close()


def test_statistics_count_one_inference_per_request(server):
    def stats():
        r = requests.get(f"{server.url}/v2/models/repeat/stats", timeout=10).json()
        return r["model_stats"][0]
    before = stats()
    st = Stream(server)
    for i in range(4):
        st.send("repeat", f"s{i}", repeat_inputs([1, 2, 3]))
    assert len(st.close()) == 12
    after = stats()
    assert int(after["inference_count"]) - int(before["inference_count"]) == 4
    succ = after["inference_stats"]["success"]
    assert int(succ["count"]) - int(before["inference_stats"]["success"]["count"]) == 4


def test_bls_exec_decoupled(server):
    for model in ("bls", "bls_async"):
        for values, want in (([1, 2, 3], [6, 4, 1]), ([], [0, 1, 1]), ([4, -2, 9], [2, 2, 0])):
            code, out = infer(server, model, {"IN": (np.array(values, np.int32), "INT32")})
            assert code == 200, out
            assert out["SUMMARY"].tolist() == want, (model, values)
    code, text = infer(server, "bls", {"IN": (np.array([99], np.int32), "INT32")})
    assert code == 500
    assert "doesn't support models with decoupled transaction policy" in text


def test_process_exit_mid_stream_fails_open_requests_and_restarts(server):
    st = Stream(server)
    st.send("repeat", "dies", repeat_inputs([1, -3], delay=50))
    first, second = st.take(2)
    assert out_of(first) == 1
    assert "ended before sending the request's final response" in second.error_message
    # Restarted: the next request is served.
    st.send("repeat", "after", repeat_inputs([8]))
    got = st.close()
    assert [out_of(r) for r in got] == [8]


def test_finalize_waits_for_open_streams(tmp_path):
    python_model(tmp_path, "repeat", REPEAT, repeat_config())
    with Server(tmp_path, wait="ready", args=["--model-control-mode=explicit",
                                              "--load-model=repeat"]) as s:
        st = Stream(s)
        st.send("repeat", "long", repeat_inputs([1, 2, 3], delay=200))
        assert out_of(st.take(1)[0]) == 1
        r = requests.post(f"{s.url}/v2/repository/models/repeat/unload", timeout=30)
        assert r.status_code == 200
        # finalize() joins the model's threads: the stream still gets the rest.
        got = st.close()
        assert [out_of(r) for r in got] == [2, 3]


def test_tritonclient_stream(server):
    path = os.environ.get("TRITON_CLIENT_PYTHONPATH")
    if not path:
        pytest.skip("TRITON_CLIENT_PYTHONPATH is not set: no tritonclient package to test with")
    sys.path.insert(0, path)
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(server.grpc_url)
    got = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    for rid, values in (("x", [4, 5]), ("y", [])):
        inputs = [grpcclient.InferInput("IN", [len(values)], "INT32"),
                  grpcclient.InferInput("DELAY", [1], "INT32")]
        inputs[0].set_data_from_numpy(np.array(values, np.int32))
        inputs[1].set_data_from_numpy(np.array([0], np.int32))
        client.async_stream_infer("repeat", inputs, request_id=rid,
                                  enable_empty_final_response=True)
    results = [got.get(timeout=30) for _ in range(4)]
    client.stop_stream()
    assert all(e is None for _, e in results)
    seen = [(r.get_response().id, None if r.as_numpy("OUT") is None else int(r.as_numpy("OUT")[0]),
             r.get_response().parameters["triton_final_response"].bool_param)
            for r, _ in results]
    assert sorted(seen, key=lambda x: (x[0], x[2])) == [("x", 4, False), ("x", 5, False),
                                                         ("x", None, True), ("y", None, True)]
    inputs = [grpcclient.InferInput("IN", [1], "INT32"), grpcclient.InferInput("DELAY", [1], "INT32")]
    inputs[0].set_data_from_numpy(np.array([1], np.int32))
    inputs[1].set_data_from_numpy(np.array([0], np.int32))
    with pytest.raises(InferenceServerException, match="doesn't support models with decoupled"):
        client.infer("repeat", inputs)


# Ensemble steps around `repeat`: DOUBLE before it (B = 2 * A; negative values, which
# tell `repeat` what to do, pass as they are), SHIFT after it (Y = X + 100).
ARITH = """
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.name = json.loads(args["model_config"])["name"]

    def execute(self, requests):
        out = []
        for r in requests:
            if self.name == "double":
                a = pb_utils.get_input_tensor_by_name(r, "A").as_numpy()
                b = np.where(a >= 0, a * 2, a).astype(a.dtype)
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("B", b)]))
            else:
                x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x + 100)]))
        return out
"""


def ensemble_config(name, side_step=False):
    side = """
  { model_name: "shift" model_version: -1
    input_map { key: "X" value: "DELAY" } output_map { key: "Y" value: "side" } }""" \
        if side_step else ""
    return f"""
name: "{name}"
platform: "ensemble"
input [ {io("IN", "TYPE_INT32", [-1])}, {io("DELAY", "TYPE_INT32", [1])} ]
output [ {io("Y", "TYPE_INT32", [1])}, {io("IDX", "TYPE_INT32", [1])} ]
ensemble_scheduling {{ step [
  {{ model_name: "double" model_version: -1
    input_map {{ key: "A" value: "IN" }} output_map {{ key: "B" value: "doubled" }} }},
  {{ model_name: "repeat" model_version: -1
    input_map {{ key: "IN" value: "doubled" }} input_map {{ key: "DELAY" value: "DELAY" }}
    output_map {{ key: "OUT" value: "one" }} output_map {{ key: "IDX" value: "IDX" }} }},
  {{ model_name: "shift" model_version: -1
    input_map {{ key: "X" value: "one" }} output_map {{ key: "Y" value: "Y" }} }}{"," if side_step else ""}{side}
] }}
"""


def test_decoupled_model_as_ensemble_step(tmp_path):
    """Each response of the decoupled step flows on through the steps after it; the
    ensemble answers once per response, then the final flag, and refuses unary calls."""
    python_model(tmp_path, "repeat", REPEAT, repeat_config())
    python_model(tmp_path, "double", ARITH,
                 cfg("double", [io("A", "TYPE_INT32", [-1])], [io("B", "TYPE_INT32", [-1])]))
    python_model(tmp_path, "shift", ARITH,
                 cfg("shift", [io("X", "TYPE_INT32", [1])], [io("Y", "TYPE_INT32", [1])]))
    for name, side in (("pipeline", False), ("beside", True)):
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "config.pbtxt").write_text(ensemble_config(name, side_step=side))
    with Server(tmp_path, args=["--exit-on-error=false"], wait="live") as s:
        assert wait_until(
            lambda: requests.get(f"{s.url}/v2/models/pipeline/ready").status_code == 200)
        st = Stream(s)
        st.send("pipeline", "p", repeat_inputs([1, 2, 3], delay=20), empty_final=True)
        st.send("pipeline", "none", repeat_inputs([]), empty_final=True)
        st.send("pipeline", "bad", repeat_inputs([4, -1, 5], delay=300))
        got = st.close()
        by_id = {}
        for r in got:
            by_id.setdefault(r.infer_response.id, []).append(r)
        p = by_id["p"]
        assert [(out_of(r, "Y"), out_of(r, "IDX")) for r in p if out_of(r, "Y") is not None] \
            == [(102, 0), (104, 1), (106, 2)]
        # The last response is final: the last data one when its branch finished after
        # `repeat` sent its final flag, else an empty one.
        assert [final_param(r) for r in p] == [False] * (len(p) - 1) + [True]
        assert len(p) == 3 or out_of(p[3], "Y") is None
        assert all(r.error_message == "" and r.infer_response.model_name == "pipeline" for r in p)
        assert [(out_of(r, "Y"), final_param(r)) for r in by_id["none"]] == [(None, True)]
        # An error response of the step ends the ensemble's request with it.
        bad = by_id["bad"]
        assert out_of(bad[0], "Y") == 108
        assert "element 1 is -1" in bad[1].error_message and "repeat" in bad[1].error_message
        assert len(bad) == 2

        code, err = infer(s, "pipeline", {"IN": (np.array([1], np.int32), "INT32"),
                                          "DELAY": (np.array([0], np.int32), "INT32")})
        assert code == 501 and "doesn't support models with decoupled transaction policy" in err

        index = {m["name"]: m for m in requests.post(f"{s.url}/v2/repository/index",
                                                      json={}).json()}
        assert index["beside"]["state"] == "UNAVAILABLE"
        assert ("step 3 (model 'shift') runs beside decoupled step 1 (model 'repeat')"
                in index["beside"]["reason"]), index["beside"]["reason"]
