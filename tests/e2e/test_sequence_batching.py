"""Sequence batching (stateful models): control inputs, implicit state, direct and oldest
strategies, idle timeout, backlog, every misuse; over raw HTTP, gRPC (unary and the
stream) and the real tritonclient, with identity, a TorchScript and an ONNX accumulator
built at test time."""
import os
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import torch
from torch import nn

import grpc_stubs
from harness import Server, run_to_exit, write_model

pb2, pb2_grpc = grpc_stubs.load()

CONTROLS = """
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: %s } ] }
  ]"""

STATE = """
  state [ { input_name: "INPUT_STATE" output_name: "OUTPUT_STATE" data_type: TYPE_INT32
            dims: [ 1 ] %s } ]"""


def echo_config(name, max_batch_size=4, corrid="TYPE_UINT64", strategy="",
                idle_us=2000000, initial="", extra=""):
    """Identity that echoes what the batcher fed: INPUT, START, READY, END, CORRID, and
    the state (which, by identity_state_source, becomes the previous request's INPUT)."""
    corrid_out = "TYPE_STRING" if corrid == "TYPE_STRING" else corrid
    return f"""
name: "{name}"
backend: "identity"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [
  {{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "START_OUT" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "READY_OUT" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "END_OUT" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "CORRID_OUT" data_type: {corrid_out} dims: [ 1 ] }},
  {{ name: "STATE_OUT" data_type: TYPE_INT32 dims: [ 1 ] }}
]
sequence_batching {{
  max_sequence_idle_microseconds: {idle_us}
  {strategy}
  {CONTROLS % corrid}
  {STATE % initial}
}}
parameters {{ key: "identity_state_source" value: {{ string_value: "INPUT" }} }}
{extra}
"""


class Accumulator(nn.Module):
    """A running sum: START restarts it, READY says whether the row is a real request."""

    def forward(self, INPUT__0, START__1, READY__2, INPUT_STATE__3):
        state = torch.where(START__1 != 0, torch.zeros_like(INPUT_STATE__3), INPUT_STATE__3)
        total = state + INPUT__0 * READY__2
        return total, total


def accumulator_config(name, backend, names, strategy="", max_batch_size=4):
    i, s, r, st, o, os_ = names
    return f"""
name: "{name}"
backend: "{backend}"
max_batch_size: {max_batch_size}
input [ {{ name: "{i}" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "{o}" data_type: TYPE_INT32 dims: [ 1 ] }} ]
sequence_batching {{
  max_sequence_idle_microseconds: 5000000
  {strategy}
  control_input [
    {{ name: "{s}" control [ {{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "{r}" control [ {{ kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] }} ] }}
  ]
  state [ {{ input_name: "{st}" output_name: "{os_}" data_type: TYPE_INT32 dims: [ 1 ]
            initial_state {{ data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "zero" }} }} ]
}}
"""


class Probe(nn.Module):
    """Tells each row where it ran: its row index, the batch's rows, and how many rows
    were real requests (READY true)."""

    def forward(self, INPUT__0, START__1, READY__2, INPUT_STATE__3):
        zeros = torch.zeros_like(INPUT__0)
        rows = zeros + INPUT__0.size(0)
        row = torch.arange(INPUT__0.size(0), dtype=torch.int32).reshape(-1, 1)
        ready = zeros + READY__2.sum().to(torch.int32)
        return INPUT__0, INPUT_STATE__3, rows, ready, row


PROBE_CONFIG = """
name: "probe"
backend: "pytorch"
max_batch_size: 4
input [ { name: "INPUT__0" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_INT32 dims: [ 1 ] },
         { name: "ROWS__2" data_type: TYPE_INT32 dims: [ 1 ] },
         { name: "READY_ROWS__3" data_type: TYPE_INT32 dims: [ 1 ] },
         { name: "ROW__4" data_type: TYPE_INT32 dims: [ 1 ] } ]
sequence_batching {
  max_sequence_idle_microseconds: 30000000
  # Wait up to 1 s for every slot to have a request before running a batch.
  direct { max_queue_delay_microseconds: 1000000 minimum_slot_utilization: 1.0 }
  control_input [
    { name: "START__1" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "READY__2" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] }
  ]
  state [ { input_name: "INPUT_STATE__3" output_name: "OUTPUT_STATE__1" data_type: TYPE_INT32
            dims: [ 1 ] } ]
}
"""

PYTHON_ACCUMULATOR = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            start = pb_utils.get_input_tensor_by_name(request, "START").as_numpy()
            state = pb_utils.get_input_tensor_by_name(request, "INPUT_STATE").as_numpy()
            total = np.where(start != 0, 0, state) + x
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT", total.astype(np.int32)),
                pb_utils.Tensor("OUTPUT_STATE", total.astype(np.int32))]))
        return responses
"""

PT_NAMES = ("INPUT__0", "START__1", "READY__2", "INPUT_STATE__3", "OUTPUT__0", "OUTPUT_STATE__1")
ONNX_NAMES = ("INPUT", "START", "READY", "INPUT_STATE", "OUTPUT", "OUTPUT_STATE")
OLDEST = "oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2, 4 ] " \
         "max_queue_delay_microseconds: 2000 }"


def build_repo(repo):
    write_model(repo, "echo", echo_config("echo"))
    write_model(repo, "echo_str", echo_config("echo_str", corrid="TYPE_STRING"))
    write_model(repo, "echo_oldest", echo_config("echo_oldest", strategy=OLDEST))
    # One slot (max_batch_size 0, one instance): a second sequence waits for it.
    write_model(repo, "echo_one_slot", echo_config("echo_one_slot", max_batch_size=0,
                                                   idle_us=1000000))
    # Initial state from a file: 41.
    write_model(repo, "echo_file", echo_config(
        "echo_file", initial='initial_state { data_type: TYPE_INT32 dims: [ 1 ] '
                             'data_file: "forty_one" name: "file" }'),
        files={"initial_state/forty_one": np.array([41], np.int32).tobytes()})
    # Slow identity so that concurrent sequences share batches.
    write_model(repo, "echo_slow", echo_config(
        "echo_slow", extra='parameters { key: "execute_delay_ms" value: { string_value: "30" } }'))

    pt = write_model(repo, "acc_pt", accumulator_config("acc_pt", "pytorch", PT_NAMES))
    torch.jit.save(torch.jit.script(Accumulator()), str(pt / "1" / "model.pt"))
    # Warmup runs straight on the instance: the server adds the controls and the state.
    warm = write_model(repo, "acc_pt_warm", accumulator_config("acc_pt_warm", "pytorch", PT_NAMES)
                       + 'model_warmup [ { name: "w" batch_size: 2 inputs { key: "INPUT__0" '
                         'value: { data_type: TYPE_INT32 dims: [ 1 ] random_data: true } } } ]')
    torch.jit.save(torch.jit.script(Accumulator()), str(warm / "1" / "model.pt"))
    pt2 = write_model(repo, "acc_pt_oldest",
                      accumulator_config("acc_pt_oldest", "pytorch", PT_NAMES, strategy=OLDEST))
    torch.jit.save(torch.jit.script(Accumulator()), str(pt2 / "1" / "model.pt"))

    write_model(repo, "acc_python",
                accumulator_config("acc_python", "python", ONNX_NAMES),
                files={"1/model.py": PYTHON_ACCUMULATOR})

    probe = write_model(repo, "probe", PROBE_CONFIG)
    torch.jit.save(torch.jit.script(Probe()), str(probe / "1" / "model.pt"))
    # Two instances, no batch delay.
    two = PROBE_CONFIG.replace('name: "probe"', 'name: "probe_two"').replace(
        "direct { max_queue_delay_microseconds: 1000000 minimum_slot_utilization: 1.0 }",
        "") + "instance_group [ { count: 2 kind: KIND_CPU } ]"
    probe_two = write_model(repo, "probe_two", two)
    torch.jit.save(torch.jit.script(Probe()), str(probe_two / "1" / "model.pt"))

    onnx_dir = write_model(repo, "acc_onnx",
                           accumulator_config("acc_onnx", "onnxruntime", ONNX_NAMES))
    example = tuple(torch.zeros((1, 1), dtype=torch.int32) for _ in range(4))
    axes = {n: {0: "batch"} for n in ONNX_NAMES}
    with torch.no_grad():
        torch.onnx.export(Accumulator(), example, str(onnx_dir / "1" / "model.onnx"),
                          input_names=list(ONNX_NAMES[:4]), output_names=list(ONNX_NAMES[4:]),
                          opset_version=13, dynamic_axes=axes)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("seq_repo")
    build_repo(repo)
    with Server(repo, wait="ready") as s:
        yield s


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_url)
    yield pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


UNBATCHED = {"echo_one_slot"}
INDEXED = ("acc_pt", "probe")  # and probe_two  # also acc_pt_warm, acc_pt_oldest


def http_infer(server, model, value, seq_id=None, start=False, end=False, outputs=None,
               batch=1):
    params = {}
    if seq_id is not None:
        params["sequence_id"] = seq_id
    if start:
        params["sequence_start"] = True
    if end:
        params["sequence_end"] = True
    body = {"parameters": params,
            "inputs": [{"name": "INPUT__0" if model.startswith(INDEXED) else "INPUT",
                        "datatype": "INT32", "data": [value] * batch,
                        # echo_one_slot has max_batch_size 0: no batch dim
                        "shape": [1] if model in UNBATCHED else [batch, 1]}]}
    if outputs:
        body["outputs"] = [{"name": n} for n in outputs]
    return requests.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)


def outputs_of(resp):
    assert resp.status_code == 200, resp.text
    return {o["name"]: o["data"][0] for o in resp.json()["outputs"]}


def error_of(resp, status):
    assert resp.status_code == status, resp.text
    return resp.json()["error"]


# --- identity: what the model is fed ---------------------------------------------------


def test_controls_and_state_fed_to_the_model(server):
    o = outputs_of(http_infer(server, "echo", 5, seq_id=1001, start=True))
    assert o == {"OUTPUT": 5, "START_OUT": 1, "READY_OUT": 1, "END_OUT": 0, "CORRID_OUT": 1001,
                 "STATE_OUT": 0}  # zero initial state
    o = outputs_of(http_infer(server, "echo", 6, seq_id=1001))
    assert (o["START_OUT"], o["READY_OUT"], o["END_OUT"], o["STATE_OUT"]) == (0, 1, 0, 5)
    o = outputs_of(http_infer(server, "echo", 7, seq_id=1001, end=True))
    assert (o["START_OUT"], o["END_OUT"], o["STATE_OUT"]) == (0, 1, 6)
    # Ended: the id is free again, and only a START may use it.
    err = error_of(http_infer(server, "echo", 1, seq_id=1001), 400)
    assert "must specify the START flag" in err and "sequence 1001" in err
    o = outputs_of(http_infer(server, "echo", 9, seq_id=1001, start=True, end=True))
    assert (o["START_OUT"], o["END_OUT"], o["STATE_OUT"]) == (1, 1, 0)


def test_state_output_is_not_returned_to_the_client(server):
    r = http_infer(server, "echo", 3, seq_id=1002, start=True, end=True)
    names = [o["name"] for o in r.json()["outputs"]]
    assert "OUTPUT_STATE" not in names and "OUTPUT" in names
    # Asking for some outputs only still carries the state forward.
    r = http_infer(server, "echo", 4, seq_id=1003, start=True, outputs=["OUTPUT"])
    assert [o["name"] for o in r.json()["outputs"]] == ["OUTPUT"]
    o = outputs_of(http_infer(server, "echo", 8, seq_id=1003, end=True,
                              outputs=["STATE_OUT"]))
    assert o == {"STATE_OUT": 4}
    err = error_of(http_infer(server, "echo", 1, seq_id=1004, start=True,
                              outputs=["OUTPUT_STATE"]), 400)
    assert "OUTPUT_STATE" in err


def test_initial_state_from_data_file(server):
    o = outputs_of(http_infer(server, "echo_file", 1, seq_id=5, start=True))
    assert o["STATE_OUT"] == 41
    o = outputs_of(http_infer(server, "echo_file", 2, seq_id=5, end=True))
    assert o["STATE_OUT"] == 1


def test_warmup_of_a_stateful_model(server):
    # Without the controls and state the warmup fails the load (and the server's start).
    assert outputs_of(http_infer(server, "acc_pt_warm", 4, seq_id=1, start=True))["OUTPUT__0"] == 4
    assert outputs_of(http_infer(server, "acc_pt_warm", 5, seq_id=1, end=True))["OUTPUT__0"] == 9


def test_restart_of_a_live_sequence_resets_its_state(server):
    outputs_of(http_infer(server, "echo", 5, seq_id=1010, start=True))
    o = outputs_of(http_infer(server, "echo", 6, seq_id=1010, start=True))
    assert (o["START_OUT"], o["STATE_OUT"]) == (1, 0)
    outputs_of(http_infer(server, "echo", 0, seq_id=1010, end=True))


def test_string_sequence_ids(server):
    o = outputs_of(http_infer(server, "echo_str", 11, seq_id="session-a", start=True))
    assert o["CORRID_OUT"] == "session-a" and o["STATE_OUT"] == 0
    o = outputs_of(http_infer(server, "echo_str", 12, seq_id="session-b", start=True))
    assert o["CORRID_OUT"] == "session-b" and o["STATE_OUT"] == 0
    assert outputs_of(http_infer(server, "echo_str", 13, seq_id="session-a"))["STATE_OUT"] == 11
    assert outputs_of(http_infer(server, "echo_str", 14, seq_id="session-b",
                                 end=True))["STATE_OUT"] == 12
    outputs_of(http_infer(server, "echo_str", 0, seq_id="session-a", end=True))
    # A string id and the same-looking integer are different sequences.
    o = outputs_of(http_infer(server, "echo", 1, seq_id=77, start=True))
    err = error_of(http_infer(server, "echo", 1, seq_id="77"), 400)
    assert "is a string" in err and "TYPE_UINT64" in err
    outputs_of(http_infer(server, "echo", 1, seq_id=77, end=True))
    # The whole uint64 range.
    o = outputs_of(http_infer(server, "echo", 1, seq_id=2**64 - 1, start=True, end=True))
    assert o["CORRID_OUT"] == 2**64 - 1


# --- misuse ----------------------------------------------------------------------------


def test_errors(server):
    err = error_of(http_infer(server, "echo", 1), 400)
    assert "must specify a non-zero or non-empty correlation ID" in err and "'echo'" in err
    err = error_of(http_infer(server, "echo", 1, seq_id=0, start=True), 400)
    assert "correlation ID" in err
    err = error_of(http_infer(server, "echo", 1, seq_id=424242), 400)
    assert "sequence 424242 to model 'echo' must specify the START flag" in err
    err = error_of(http_infer(server, "echo_str", 1, seq_id=5, start=True), 400)
    assert "sequence_id 5" in err and "TYPE_STRING" in err
    err = error_of(http_infer(server, "echo", 1, seq_id="x", start=True), 400)
    assert "sequence_id 'x'" in err and "TYPE_UINT64" in err
    err = error_of(http_infer(server, "echo", 1, seq_id=9, start=True, batch=2), 400)
    assert "batch-size 1" in err
    err = error_of(requests.post(f"{server.url}/v2/models/echo/infer", json={
        "parameters": {"sequence_id": -3},
        "inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [1, 1], "data": [1]}]}), 400)
    assert "sequence_id" in err
    for bad, what in ((1.5, "sequence_id"), (True, "sequence_id"), ([3], "sequence_id")):
        err = error_of(requests.post(f"{server.url}/v2/models/echo/infer", json={
            "parameters": {"sequence_id": bad, "sequence_start": True},
            "inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [1, 1], "data": [1]}]}),
            400)
        assert what in err
    err = error_of(requests.post(f"{server.url}/v2/models/echo/infer", json={
        "parameters": {"sequence_id": 3, "sequence_start": "yes"},
        "inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [1, 1], "data": [1]}]}), 400)
    assert "sequence_start" in err and "bool" in err
    # Control inputs are the server's to feed, not the client's.
    err = error_of(requests.post(f"{server.url}/v2/models/echo/infer", json={
        "parameters": {"sequence_id": 9, "sequence_start": True},
        "inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [1, 1], "data": [1]},
                   {"name": "START", "datatype": "INT32", "shape": [1, 1], "data": [1]}]}), 400)
    assert "START" in err
    # The server is fine afterwards.
    outputs_of(http_infer(server, "echo", 1, seq_id=9, start=True, end=True))


def test_idle_sequence_times_out(server):
    outputs_of(http_infer(server, "echo_one_slot", 1, seq_id=50, start=True))
    assert outputs_of(http_infer(server, "echo_one_slot", 2, seq_id=50))["STATE_OUT"] == 1
    time.sleep(1.5)  # max_sequence_idle_microseconds is 1000000
    err = error_of(http_infer(server, "echo_one_slot", 3, seq_id=50), 400)
    assert "must specify the START flag" in err and "idle" in err


def test_new_sequence_waits_for_a_free_slot(server):
    # echo_one_slot has a single slot: sequence 61 waits in the backlog until 60 ends.
    outputs_of(http_infer(server, "echo_one_slot", 1, seq_id=60, start=True))
    got = {}

    def second():
        got["resp"] = http_infer(server, "echo_one_slot", 7, seq_id=61, start=True)
        got["at"] = time.monotonic()

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.3)
    assert "resp" not in got, "a second sequence ran while the only slot was taken"
    assert outputs_of(http_infer(server, "echo_one_slot", 2, seq_id=60))["STATE_OUT"] == 1
    ended = time.monotonic()
    outputs_of(http_infer(server, "echo_one_slot", 3, seq_id=60, end=True))
    t.join(10)
    o = outputs_of(got["resp"])
    assert o["START_OUT"] == 1 and o["STATE_OUT"] == 0 and o["CORRID_OUT"] == 61
    assert got["at"] >= ended
    outputs_of(http_infer(server, "echo_one_slot", 0, seq_id=61, end=True))


def test_waiting_sequence_gets_the_slot_of_an_idle_one(server):
    outputs_of(http_infer(server, "echo_one_slot", 1, seq_id=70, start=True))
    t0 = time.monotonic()
    o = outputs_of(http_infer(server, "echo_one_slot", 5, seq_id=71, start=True, end=True))
    assert o["CORRID_OUT"] == 71
    assert time.monotonic() - t0 >= 0.8  # waited for sequence 70 to idle out (1 s)


# --- real models: running sums -------------------------------------------------------


def run_sequences(send, n_seq, steps, base_id):
    """n_seq threads, each a sequence of `steps` values; returns {seq: [running sums]}."""
    results, errors = {}, []

    def one(k):
        try:
            sid = base_id + k
            sums = []
            for i in range(steps):
                v = (k + 1) * 10 + i
                sums.append(send(sid, v, i == 0, i == steps - 1))
            results[k] = sums
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n_seq)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for k in range(n_seq):
        vals = [(k + 1) * 10 + i for i in range(steps)]
        assert results[k] == list(np.cumsum(vals)), (k, results[k])
    return results


@pytest.mark.parametrize("model", ["acc_pt", "acc_pt_oldest", "acc_onnx", "acc_python"])
def test_interleaved_sequences_keep_independent_sums(server, model):
    out = "OUTPUT__0" if model.startswith("acc_pt") else "OUTPUT"

    def send(sid, v, start, end):
        return outputs_of(http_infer(server, model, v, seq_id=sid, start=start, end=end))[out]

    # 6 sequences over 4 slots: two wait in the backlog for a slot.
    run_sequences(send, 6, 5, 2000)
    stats = requests.get(f"{server.url}/v2/models/{model}/stats").json()["model_stats"][0]
    assert stats["inference_count"] == 30
    assert stats["inference_stats"]["success"]["count"] == 30
    assert 1 <= stats["execution_count"] <= 30


def test_concurrent_sequences_share_batches(server):
    errors = []
    # Each echo_slow response's STATE_OUT is the previous input of its own sequence.
    def one(k):
        try:
            prev = 0
            for i in range(4):
                o = outputs_of(http_infer(server, "echo_slow", k * 100 + i, seq_id=3000 + k,
                                          start=i == 0, end=i == 3))
                assert o["STATE_OUT"] == prev and o["CORRID_OUT"] == 3000 + k
                prev = k * 100 + i
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    stats = requests.get(f"{server.url}/v2/models/echo_slow/stats").json()["model_stats"][0]
    assert stats["inference_count"] == 16
    assert stats["execution_count"] < 16, "no two sequences ever shared a batch"
    # Batch stats count real requests only, never the filler rows of idle slots.
    total = sum(int(b["batch_size"]) * int(b["compute_infer"]["count"])
                for b in stats["batch_stats"])
    assert total == 16


def test_direct_fills_idle_slots_with_ready_false_rows(server):
    # Sequences 1, 2, 3 take slots 0, 1, 2 (each start runs alone after the delay).
    for sid in (1, 2, 3):
        o = outputs_of(http_infer(server, "probe", sid, seq_id=sid, start=True))
        assert (o["ROW__4"], o["ROWS__2"], o["READY_ROWS__3"]) == (sid - 1, sid, 1)
    # Sequences 1 and 3 send together: one batch, row i = slot i, slot 1 a filler row
    # with READY false; slot 3 (nothing bound after it) is not padded.
    got = {}

    def send(sid):
        got[sid] = outputs_of(http_infer(server, "probe", 10 * sid, seq_id=sid))

    threads = [threading.Thread(target=send, args=(sid,)) for sid in (1, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert (got[1]["ROW__4"], got[1]["ROWS__2"], got[1]["READY_ROWS__3"]) == (0, 3, 2)
    assert (got[3]["ROW__4"], got[3]["ROWS__2"], got[3]["READY_ROWS__3"]) == (2, 3, 2)
    assert got[1]["OUTPUT__0"] == 10 and got[3]["OUTPUT__0"] == 30
    for sid in (1, 2, 3):
        outputs_of(http_infer(server, "probe", 0, seq_id=sid, end=True))


def test_sequences_spread_over_instances_first(server):
    # Slot 0 of each instance before slot 1 of any: both run as row 0 of their own batch.
    for sid in (1, 2):
        o = outputs_of(http_infer(server, "probe_two", sid, seq_id=sid, start=True))
        assert (o["ROW__4"], o["ROWS__2"]) == (0, 1), (sid, o)
    o = outputs_of(http_infer(server, "probe_two", 3, seq_id=3, start=True))
    assert (o["ROW__4"], o["ROWS__2"], o["READY_ROWS__3"]) == (1, 2, 1)  # slot 1, a filler row 0
    for sid in (1, 2, 3):
        outputs_of(http_infer(server, "probe_two", 0, seq_id=sid, end=True))


def test_unload_releases_live_sequences(tmp_path):
    write_model(tmp_path, "echo", echo_config("echo", idle_us=60000000))
    with Server(tmp_path, ["--model-control-mode=explicit", "--load-model=echo"],
                wait="ready") as s:
        outputs_of(http_infer(s, "echo", 1, seq_id=1, start=True))
        t0 = time.monotonic()
        r = requests.post(f"{s.url}/v2/repository/models/echo/unload", timeout=30)
        assert r.status_code == 200, r.text
        # A live sequence does not hold the unload for its 60 s idle time.
        deadline = time.monotonic() + 10
        while requests.get(f"{s.url}/v2/models/echo/ready").status_code == 200:
            assert time.monotonic() < deadline, "unload waited for the live sequence"
            time.sleep(0.05)
        assert time.monotonic() - t0 < 10
        err = error_of(http_infer(s, "echo", 2, seq_id=1), 503)
        assert "unloaded" in err


def test_oldest_statistics_and_metrics(server):
    errors = []

    def one(k):
        try:
            prev = 0
            for i in range(5):
                o = outputs_of(http_infer(server, "echo_oldest", k * 10 + i, seq_id=6000 + k,
                                          start=i == 0, end=i == 4))
                assert o["STATE_OUT"] == prev and o["READY_OUT"] == 1
                prev = k * 10 + i
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    error_of(http_infer(server, "echo_oldest", 1, seq_id=6100), 400)  # no START
    error_of(http_infer(server, "echo_oldest", 1), 400)  # no sequence id
    stats = requests.get(f"{server.url}/v2/models/echo_oldest/stats").json()["model_stats"][0]
    assert stats["inference_count"] == 15
    assert stats["inference_stats"]["success"]["count"] == 15
    assert stats["inference_stats"]["fail"]["count"] == 2
    assert stats["inference_stats"]["queue"]["count"] == 15
    metrics = requests.get(f"{server.metrics_url}/metrics").text

    def metric(name):
        for line in metrics.splitlines():
            if line.startswith(name + "{") and 'model="echo_oldest"' in line:
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    assert metric("nv_inference_count") == 15
    assert metric("nv_inference_request_success") == 15
    assert metric("nv_inference_exec_count") == stats["execution_count"]
    assert metric("nv_inference_pending_request_count") == 0


# --- gRPC ------------------------------------------------------------------------------


def grpc_request(model, value, seq_id, start=False, end=False):
    req = pb2.ModelInferRequest(model_name=model)
    if isinstance(seq_id, str):
        req.parameters["sequence_id"].string_param = seq_id
    else:
        req.parameters["sequence_id"].uint64_param = seq_id
    if start:
        req.parameters["sequence_start"].bool_param = True
    if end:
        req.parameters["sequence_end"].bool_param = True
    t = req.inputs.add(name="INPUT__0" if model.startswith("acc_pt") else "INPUT",
                       datatype="INT32", shape=[1, 1])
    t.contents.int_contents.append(value)
    return req


def grpc_output(resp, name):
    for i, o in enumerate(resp.outputs):
        if o.name == name:
            return int(np.frombuffer(resp.raw_output_contents[i], np.int32)[0])
    raise KeyError(name)


def test_grpc_unary(server, stub):
    r = stub.ModelInfer(grpc_request("acc_pt", 3, 4000, start=True))
    assert grpc_output(r, "OUTPUT__0") == 3
    r = stub.ModelInfer(grpc_request("acc_pt", 4, 4000, end=True))
    assert grpc_output(r, "OUTPUT__0") == 7
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(grpc_request("acc_pt", 4, 4000))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must specify the START flag" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(grpc_request("echo_str", 4, 12, start=True))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "TYPE_STRING" in e.value.details()
    r = stub.ModelInfer(grpc_request("echo_str", 4, "grpc-seq", start=True, end=True))
    assert grpc_output(r, "OUTPUT") == 4


def test_grpc_stream_keeps_order(server, stub):
    values = list(range(1, 41))

    def requests_iter():
        for i, v in enumerate(values):
            yield grpc_request("acc_pt", v, 4100, start=i == 0, end=i == len(values) - 1)

    sums = []
    for resp in stub.ModelStreamInfer(requests_iter()):
        assert not resp.error_message, resp.error_message
        sums.append(grpc_output(resp.infer_response, "OUTPUT__0"))
    assert sums == list(np.cumsum(values))


def test_grpc_stream_interleaves_sequences(server, stub):
    a, b = [1, 2, 3, 4], [100, 200, 300, 400]

    def requests_iter():
        for i in range(4):
            for seq, values in ((4300, a), ("stream-b", b)):
                req = grpc_request("acc_onnx", values[i], seq, start=i == 0, end=i == 3)
                req.id = f"{seq}/{i}"
                yield req

    # Each sequence's responses come in its order; the two may interleave either way.
    got = {4300: [], "stream-b": []}
    for r in stub.ModelStreamInfer(requests_iter()):
        assert not r.error_message, r.error_message
        seq, i = r.infer_response.id.split("/")
        key = 4300 if seq == "4300" else seq
        assert int(i) == len(got[key])
        got[key].append(grpc_output(r.infer_response, "OUTPUT"))
    assert got == {4300: list(np.cumsum(a)), "stream-b": list(np.cumsum(b))}


def test_grpc_stream_reports_errors_in_band(server, stub):
    def requests_iter():
        yield grpc_request("acc_pt", 1, 4200)  # no START
        yield grpc_request("acc_pt", 2, 4200, start=True, end=True)

    got = list(stub.ModelStreamInfer(requests_iter()))
    assert "must specify the START flag" in got[0].error_message
    assert grpc_output(got[1].infer_response, "OUTPUT__0") == 2


# --- the real tritonclient -------------------------------------------------------------


def tritonclient_http():
    path = os.environ.get("TRITON_CLIENT_PYTHONPATH")
    if not path:
        pytest.skip("TRITON_CLIENT_PYTHONPATH is not set: no tritonclient package to test with")
    sys.path.insert(0, path)
    try:
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient
        from tritonclient.utils import InferenceServerException
    except ImportError as e:
        pytest.skip(f"tritonclient from {path} cannot be imported: {e}")
    return httpclient, grpcclient, InferenceServerException


def test_tritonclient_sequences(server):
    httpclient, grpcclient, InferenceServerException = tritonclient_http()
    for mod, url in ((httpclient, server.url[len("http://"):]), (grpcclient, server.grpc_url)):
        client = mod.InferenceServerClient(url)
        total = 0
        for i, v in enumerate([5, 6, 7]):
            res = client.infer("acc_pt", [_input(mod, "INPUT__0", v)], sequence_id=5000, sequence_start=i == 0,
                               sequence_end=i == 2)
            total += v
            assert res.as_numpy("OUTPUT__0")[0][0] == total
        res = client.infer("echo_str", [_input(mod, "INPUT", 3)], sequence_id="tc-seq", sequence_start=True,
                           sequence_end=True)
        assert res.as_numpy("CORRID_OUT")[0][0] in (b"tc-seq", "tc-seq")
        with pytest.raises(InferenceServerException) as e:
            client.infer("acc_pt", [_input(mod, "INPUT__0", 1)], sequence_id=5001)
        assert "must specify the START flag" in str(e.value)
        client.close()


def _input(mod, name, v):
    inp = mod.InferInput(name, [1, 1], "INT32")
    inp.set_data_from_numpy(np.array([[v]], np.int32))
    return inp


# --- bad configs fail the load clearly ---------------------------------------------------


@pytest.mark.parametrize("sb,fragment", [
    ('control_input [ { name: "S" control [ { kind: CONTROL_SEQUENCE_START '
     'int32_false_true: [ 1 ] } ] } ]', "int32_false_true must hold 2 values"),
    ('control_input [ { name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID '
     'data_type: TYPE_FP32 } ] } ]', "TYPE_UINT64"),
    ('state [ { input_name: "A" output_name: "B" data_type: TYPE_INT32 dims: [ 1 ] '
     'initial_state { data_type: TYPE_INT32 dims: [ 1 ] data_file: "missing" name: "x" } } ]',
     "cannot open initial_state data_file"),
    ('control_input [ { name: "INPUT" control [ { kind: CONTROL_SEQUENCE_READY '
     'int32_false_true: [ 0, 1 ] } ] } ]', "control_input 'INPUT' is also a model input"),
    ("iterative_sequence: true", "iterative_sequence is not supported"),
    ('state [ { input_name: "INPUT" output_name: "B" data_type: TYPE_INT32 dims: [ 1 ] } ]',
     "state input_name 'INPUT' is also a model input"),
])
def test_bad_sequence_configs_fail_the_load(tmp_path, sb, fragment):
    write_model(tmp_path, "bad", f"""
name: "bad"
backend: "identity"
max_batch_size: 2
input [ {{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
sequence_batching {{ {sb} }}
""")
    code, out = run_to_exit(tmp_path)
    assert code != 0
    assert "failed to load 'bad'" in out and fragment in out, out
