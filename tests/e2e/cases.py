"""Shared test tables for the KServe v2 frontends (HTTP and gRPC use the same ones).

DATATYPES: one row per KServe datatype, with sample values that hit each type's edges.
MODEL_ERROR_CASES: requests that are well-formed on the wire but wrong for the model;
each names the tensor problem and the fragments the error message must contain.
HTTP_BODY_ERROR_CASES: malformed HTTP/JSON/binary bodies (HTTP framing only).
"""
import struct

import numpy as np


class DType:
    def __init__(self, wire, config, np_dtype, values, json_ok=True):
        self.wire = wire          # KServe name: "FP32"
        self.config = config      # config.pbtxt name: "TYPE_FP32"
        self.np_dtype = np_dtype  # numpy dtype of the array a client holds
        self.values = values      # sample elements, shape [len(values)]
        self.json_ok = json_ok    # False: binary tensor data only (FP16, BF16)

    @property
    def model(self):
        """Name of the identity model the tests create for this datatype."""
        return "id_" + self.wire.lower()

    def array(self):
        if self.wire == "BYTES":
            return np.array(self.values, dtype=np.object_)
        if self.wire == "BF16":
            # numpy has no bfloat16: hold the raw 16-bit patterns.
            return np.array(self.values, dtype=np.uint16)
        return np.array(self.values, dtype=self.np_dtype)

    def __repr__(self):
        return self.wire


def bf16_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0] >> 16


DATATYPES = [
    DType("BOOL", "TYPE_BOOL", np.bool_, [True, False, False, True]),
    DType("UINT8", "TYPE_UINT8", np.uint8, [0, 1, 128, 255]),
    DType("UINT16", "TYPE_UINT16", np.uint16, [0, 1, 40000, 65535]),
    DType("UINT32", "TYPE_UINT32", np.uint32, [0, 1, 3000000000, 4294967295]),
    DType("UINT64", "TYPE_UINT64", np.uint64, [0, 1, 2**63, 2**64 - 1]),
    DType("INT8", "TYPE_INT8", np.int8, [-128, -1, 0, 127]),
    DType("INT16", "TYPE_INT16", np.int16, [-32768, -1, 0, 32767]),
    DType("INT32", "TYPE_INT32", np.int32, [-2**31, -1, 0, 2**31 - 1]),
    DType("INT64", "TYPE_INT64", np.int64, [-2**63, -1, 0, 2**63 - 1]),
    DType("FP16", "TYPE_FP16", np.float16, [0.5, -2.0, 65504.0, 0.0009765625], json_ok=False),
    DType("FP32", "TYPE_FP32", np.float32, [0.1, -3.5, 3.4028234663852886e38, 1e-30]),
    DType("FP64", "TYPE_FP64", np.float64, [0.1, -3.5, 1.7976931348623157e308, 5e-324]),
    DType("BF16", "TYPE_BF16", None, [bf16_bits(1.0), bf16_bits(-2.5), bf16_bits(3e38), 0],
          json_ok=False),
    DType("BYTES", "TYPE_STRING", np.object_,
          [b"hello", b"", "\u00fcn\u00efc\u00f6de".encode(), b"with \"quotes\" and \\"]),
]


def dtype(wire):
    return next(d for d in DATATYPES if d.wire == wire)


# Requests against model "id_fp32" (one FP32 input INPUT0 of dims [-1], no batching) or
# "batched" (INPUT0 FP32 dims [4], max_batch_size 8). `inputs` are (name, datatype,
# shape, flat data); `contains` are fragments the error message must hold.
MODEL_ERROR_CASES = [
    dict(id="unknown_model", model="no_such_model",
         inputs=[("INPUT0", "FP32", [1], [1.0])], status=(400, 404),
         contains=["no_such_model"]),
    dict(id="wrong_datatype", model="id_fp32",
         inputs=[("INPUT0", "INT32", [2], [1, 2])], status=(400,),
         contains=["INPUT0", "INT32", "FP32"]),
    dict(id="unknown_input", model="id_fp32",
         inputs=[("NOPE", "FP32", [1], [1.0])], status=(400,),
         contains=["NOPE"]),
    dict(id="missing_input", model="id_fp32", inputs=[], status=(400,),
         contains=["INPUT0"]),
    dict(id="wrong_rank", model="batched",
         inputs=[("INPUT0", "FP32", [2, 4, 1], [0.0] * 8)], status=(400,),
         contains=["INPUT0", "[2,4,1]"]),
    dict(id="wrong_dim", model="batched",
         inputs=[("INPUT0", "FP32", [1, 5], [0.0] * 5)], status=(400,),
         contains=["INPUT0", "[1,5]"]),
    dict(id="batch_too_large", model="batched",
         inputs=[("INPUT0", "FP32", [9, 4], [0.0] * 36)], status=(400,),
         contains=["9"]),
    dict(id="unknown_output", model="id_fp32",
         inputs=[("INPUT0", "FP32", [1], [1.0])], outputs=["NOPE"], status=(400,),
         contains=["NOPE"]),
]

# Malformed bodies for POST /v2/models/id_fp32/infer. `json` is the header text;
# `binary` raw bytes appended after it; `header_length` the Inference-Header-Content-Length
# value ("auto" = len(json) when binary is present, None = no header).
_IN = '{"name":"INPUT0","shape":%s,"datatype":"%s",%s}'


def _inputs(*items):
    return '{"inputs":[' + ",".join(items) + "]}"


HTTP_BODY_ERROR_CASES = [
    dict(id="malformed_json", json='{"inputs": [', contains=["failed to parse"]),
    dict(id="empty_body", json="", contains=["failed to parse"]),
    dict(id="json_not_object", json="[1, 2]", contains=["object"]),
    dict(id="no_inputs", json='{"id": "x"}', contains=["inputs"]),
    dict(id="missing_name", json='{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}',
         contains=["name"]),
    dict(id="missing_shape", json='{"inputs":[{"name":"INPUT0","datatype":"FP32","data":[1]}]}',
         contains=["INPUT0", "shape"]),
    dict(id="missing_datatype", json='{"inputs":[{"name":"INPUT0","shape":[1],"data":[1]}]}',
         contains=["INPUT0", "datatype"]),
    dict(id="missing_data", json=_inputs('{"name":"INPUT0","shape":[1],"datatype":"FP32"}'),
         contains=["INPUT0", "data"]),
    dict(id="unknown_datatype", json=_inputs(_IN % ("[1]", "FP8", '"data":[1]')),
         contains=["INPUT0", "FP8"]),
    dict(id="too_few_elements", json=_inputs(_IN % ("[4]", "FP32", '"data":[1,2,3]')),
         contains=["INPUT0", "[4]", "4", "3"]),
    dict(id="too_many_elements", json=_inputs(_IN % ("[2,2]", "FP32", '"data":[[1,2],[3,4],[5,6]]')),
         contains=["INPUT0", "[2,2]", "4", "6"]),
    dict(id="negative_dim", json=_inputs(_IN % ("[-3]", "FP32", '"data":[1]')),
         contains=["INPUT0", "negative"]),
    dict(id="overflowing_shape",
         json=_inputs(_IN % ("[4294967296,4294967296,4]", "FP32", '"data":[1]')),
         contains=["INPUT0"]),
    dict(id="non_integer_dim", json=_inputs(_IN % ("[1.5]", "FP32", '"data":[1]')),
         contains=["INPUT0", "shape"]),
    dict(id="string_in_fp32", json=_inputs(_IN % ("[1]", "FP32", '"data":["x"]')),
         contains=["INPUT0", "FP32"]),
    dict(id="fp16_as_json", json=_inputs(_IN % ("[1]", "FP16", '"data":[1.0]')),
         contains=["INPUT0", "FP16", "binary"]),
    dict(id="binary_shorter_than_announced",
         json=_inputs(_IN % ("[4]", "FP32", '"parameters":{"binary_data_size":16}')),
         binary=b"\0" * 8, header_length="auto", contains=["INPUT0", "16"]),
    dict(id="binary_size_mismatch_shape",
         json=_inputs(_IN % ("[4]", "FP32", '"parameters":{"binary_data_size":8}')),
         binary=b"\0" * 8, header_length="auto", contains=["INPUT0", "8", "16"]),
    dict(id="header_length_beyond_body",
         json=_inputs(_IN % ("[1]", "FP32", '"parameters":{"binary_data_size":4}')),
         binary=b"\0" * 4, header_length=100000, contains=["Inference-Header-Content-Length"]),
    dict(id="header_length_not_a_number",
         json=_inputs(_IN % ("[1]", "FP32", '"parameters":{"binary_data_size":4}')),
         binary=b"\0" * 4, header_length="ten", contains=["Inference-Header-Content-Length"]),
    dict(id="unclaimed_binary_bytes",
         json=_inputs(_IN % ("[1]", "FP32", '"parameters":{"binary_data_size":4}')),
         binary=b"\0" * 12, header_length="auto", contains=["8 bytes"]),
    dict(id="bad_bytes_framing",
         json=_inputs(_IN % ("[2]", "BYTES", '"parameters":{"binary_data_size":9}')),
         binary=struct.pack("<I", 1) + b"a" + struct.pack("<I", 7), header_length="auto",
         contains=["INPUT0"]),
    dict(id="bad_parameter_type",
         json='{"parameters":{"priority":"high"},' + _inputs(_IN % ("[1]", "FP32", '"data":[1]'))[1:],
         contains=["priority"]),
    dict(id="classification_zero",
         json=_inputs(_IN % ("[1]", "FP32", '"data":[1]'))[:-1] +
         ',"outputs":[{"name":"OUTPUT0","parameters":{"classification":0}}]}',
         contains=["OUTPUT0", "classification"]),
]
