"""flowserve's triton_python_backend_utils: the module a Triton model.py imports as pb_utils.

Written from the public description of Triton's Python backend API so model.py files run
unchanged. The process plumbing (control socket, shared memory) lives in stub.py, which
sets _ipc before the model is imported.
"""
import json
import threading

import numpy as np

# Set by stub.py: the connection to the server (logging and BLS go through it).
_ipc = None

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2

# TRITONSERVER_DataType values; flowserve's DataType enum uses the same numbers.
TRITONSERVER_TYPE_INVALID = 0
TRITONSERVER_TYPE_BOOL = 1
TRITONSERVER_TYPE_UINT8 = 2
TRITONSERVER_TYPE_UINT16 = 3
TRITONSERVER_TYPE_UINT32 = 4
TRITONSERVER_TYPE_UINT64 = 5
TRITONSERVER_TYPE_INT8 = 6
TRITONSERVER_TYPE_INT16 = 7
TRITONSERVER_TYPE_INT32 = 8
TRITONSERVER_TYPE_INT64 = 9
TRITONSERVER_TYPE_FP16 = 10
TRITONSERVER_TYPE_FP32 = 11
TRITONSERVER_TYPE_FP64 = 12
TRITONSERVER_TYPE_BYTES = 13
TRITONSERVER_TYPE_BF16 = 14

# wire name (KServe v2) <-> numpy dtype
_WIRE_TO_NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_,
}
_WIRE_NAMES = ["", "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
               "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16"]
_NUMPY_TO_WIRE = {np.dtype(v).str if v is not np.object_ else "|O": k
                  for k, v in _WIRE_TO_NUMPY.items()}


_WIRE_OF_DTYPE = {}  # numeric dtypes seen so far -> wire name (the lookup below is slow)


def _wire_type_of(array):
    """KServe wire name of a numpy array's dtype ("FP32", "BYTES", ...)."""
    dt = array.dtype
    name = _WIRE_OF_DTYPE.get(dt)
    if name is not None:
        return name
    name = _wire_type_of_dtype(dt)
    if dt.kind in "biuf":
        _WIRE_OF_DTYPE[dt] = name
    return name


def _wire_type_of_dtype(dt):
    if dt == np.object_ or dt.kind in ("S", "U"):
        return "BYTES"
    name = _NUMPY_TO_WIRE.get(dt.newbyteorder("=").str if dt.byteorder == ">" else dt.str)
    if name is None:
        raise TritonModelException(f"numpy dtype {dt} has no Triton data type")
    return name


def triton_to_numpy_type(data_type):
    """TRITONSERVER_DataType number -> numpy type."""
    if 0 < data_type < len(_WIRE_NAMES):
        return _WIRE_TO_NUMPY.get(_WIRE_NAMES[data_type])
    return None


def numpy_to_triton_type(data_type):
    """numpy type -> TRITONSERVER_DataType number (None when there is none)."""
    if data_type in (np.object_, np.bytes_, bytes, str) or np.dtype(data_type).kind in ("S", "U", "O"):
        return TRITONSERVER_TYPE_BYTES
    name = _NUMPY_TO_WIRE.get(np.dtype(data_type).str)
    return _WIRE_NAMES.index(name) if name else None


def triton_string_to_numpy(triton_type_string):
    """Config type name ("TYPE_FP32", "TYPE_STRING") -> numpy type."""
    name = triton_type_string[5:] if triton_type_string.startswith("TYPE_") else triton_type_string
    if name == "STRING":
        name = "BYTES"
    return _WIRE_TO_NUMPY.get(name)


def serialize_byte_tensor(array):
    """An object/bytes array -> the BYTES wire layout (4-byte LE length + bytes each)."""
    parts = []
    for item in np.asarray(array, dtype=np.object_).reshape(-1):
        if isinstance(item, str):
            item = item.encode("utf-8")
        elif not isinstance(item, (bytes, bytearray, memoryview)):
            item = str(item).encode("utf-8")
        parts.append(len(item).to_bytes(4, "little"))
        parts.append(bytes(item))
    return b"".join(parts)


def deserialize_bytes_tensor(buffer, count=None):
    """The BYTES wire layout -> a 1-D numpy object array of bytes."""
    mv = memoryview(buffer)
    out = []
    pos, end = 0, len(mv)
    while pos < end and (count is None or len(out) < count):
        n = int.from_bytes(mv[pos:pos + 4], "little")
        out.append(bytes(mv[pos + 4:pos + 4 + n]))
        pos += 4 + n
    result = np.empty(len(out), dtype=np.object_)
    result[:] = out
    return result


class TritonError:
    """An error a response (or a BLS response) carries."""
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message, code=INTERNAL):
        self._message = str(message)
        self._code = code

    def message(self):
        return self._message

    def code(self):
        return self._code

    def __str__(self):
        return self._message

    def __repr__(self):
        return f"TritonError({self._message!r})"


class TritonModelException(Exception):
    """Raised by pb_utils calls that fail (a BLS call to a missing model, ...)."""

    def message(self):
        return str(self.args[0]) if self.args else ""


class Tensor:
    """A named numpy array. Inputs view the server's shared memory without a copy."""

    def __init__(self, name, data, dtype=None):
        if not isinstance(data, np.ndarray):
            data = np.asarray(data)
        if data.dtype.kind in ("S", "U"):
            converted = np.empty(data.shape, dtype=np.object_)
            converted.reshape(-1)[:] = [x.encode() if isinstance(x, str) else bytes(x)
                                        for x in data.reshape(-1)]
            data = converted
        self._name = name
        self._data = data
        self._wire = _wire_type_of(data)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._data

    def shape(self):
        return list(self._data.shape)

    def type(self):
        return _WIRE_NAMES.index(self._wire)

    def triton_dtype(self):
        return _WIRE_NAMES.index(self._wire)

    def is_cpu(self):
        return True

    def to_dlpack(self):
        return self._data.__dlpack__()

    @staticmethod
    def from_dlpack(name, capsule):
        holder = capsule
        if not hasattr(holder, "__dlpack__"):
            # A bare capsule: numpy wants an object exposing __dlpack__.
            class _Holder:
                def __dlpack__(self, stream=None):
                    return capsule

                def __dlpack_device__(self):
                    return (1, 0)  # kDLCPU

            holder = _Holder()
        return Tensor(name, np.from_dlpack(holder))

    def __repr__(self):
        return f"Tensor({self._name!r}, {self._wire}, {list(self._data.shape)})"


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None, parameters=None):
        self._outputs = list(output_tensors or [])
        if error is not None and not isinstance(error, TritonError):
            error = TritonError(str(error))
        self._error = error
        if parameters is None:
            parameters = "{}"
        elif not isinstance(parameters, str):
            parameters = json.dumps(parameters)
        self._parameters = parameters

    def output_tensors(self):
        return self._outputs

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error

    def parameters(self):
        return self._parameters


class InferenceRequest:
    """A request execute() receives, or one model.py builds to call another model (BLS)."""

    def __init__(self, model_name="", requested_output_names=None, inputs=None, request_id="",
                 correlation_id=0, trace=None, flags=0, timeout=0, preferred_memory=None,
                 model_version=-1, parameters=None):
        # Triton's binding takes a std::string, so the bytes a BYTES input holds (what
        # its BLS example passes: MODEL_NAME.as_numpy()[0]) name a model as well.
        if isinstance(model_name, (bytes, bytearray)):
            model_name = bytes(model_name).decode("utf-8")
        self._model_name = model_name
        self._model_version = model_version
        self._outputs = list(requested_output_names or [])
        self._inputs = list(inputs or [])
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._flags = flags
        self._timeout = timeout
        if parameters is None:
            parameters = "{}"
        elif not isinstance(parameters, str):
            parameters = json.dumps(parameters)
        self._parameters = parameters

    def inputs(self):
        return self._inputs

    def request_id(self):
        return self._request_id

    def correlation_id(self):
        return self._correlation_id

    def requested_output_names(self):
        return self._outputs

    def parameters(self):
        return self._parameters

    def flags(self):
        return self._flags

    def model_name(self):
        return self._model_name

    def model_version(self):
        return self._model_version

    def timeout(self):
        return self._timeout

    def is_cancelled(self):
        return False

    def get_response_sender(self):
        """The sender of a decoupled model's responses to this request."""
        sender = getattr(self, "_sender", None)
        if sender is None:
            raise TritonModelException(
                "get_response_sender() is only available in decoupled models "
                "(model_transaction_policy { decoupled: true })")
        return sender

    def exec(self, decoupled=False):
        """Runs this request on model_name in the server and waits for its response; with
        decoupled=True, returns an iterator over all of a decoupled model's responses."""
        if _ipc is None:
            raise TritonModelException("BLS is only available inside the server")
        return _ipc.bls_stream(self) if decoupled else _ipc.bls(self)

    def async_exec(self, decoupled=False):
        """Like exec(), but returns an awaitable; await it inside an async execute()."""
        if _ipc is None:
            raise TritonModelException("BLS is only available inside the server")
        return _ipc.bls_stream_async(self) if decoupled else _ipc.bls_async(self)


class InferenceResponseSender:
    """Sends a decoupled model's responses to one request, from any thread, at any time:
    any number of them, then TRITONSERVER_RESPONSE_COMPLETE_FINAL (with the last one,
    or alone with response=None)."""

    def __init__(self, ipc, token):
        self._ipc = ipc
        self._token = token
        self._closed = False
        self._lock = threading.Lock()

    def send(self, response=None, flags=0):
        if flags not in (0, TRITONSERVER_RESPONSE_COMPLETE_FINAL):
            raise TritonModelException(f"send(): unknown flags {flags}")
        final = flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL
        if response is None and not final:
            raise TritonModelException(
                "send(): a response is required unless flags is "
                "TRITONSERVER_RESPONSE_COMPLETE_FINAL")
        if response is not None and not isinstance(response, InferenceResponse):
            raise TritonModelException(
                f"send(): expected an InferenceResponse, got {type(response).__name__}")
        with self._lock:
            if self._closed:
                raise TritonModelException(
                    "Unable to send response. Response sender has been closed.")
            self._ipc.send_response(self._token, response, final)
            if final:
                self._closed = True

    def is_cancelled(self):
        return False


def get_input_tensor_by_name(inference_request, name):
    for t in inference_request.inputs():
        if t.name() == name:
            return t
    return None


def get_output_tensor_by_name(inference_response, name):
    for t in inference_response.output_tensors():
        if t.name() == name:
            return t
    return None


def get_input_config_by_name(model_config, name):
    for c in model_config.get("input", []):
        if c["name"] == name:
            return c
    return None


def get_output_config_by_name(model_config, name):
    for c in model_config.get("output", []):
        if c["name"] == name:
            return c
    return None


def using_decoupled_model_transaction_policy(model_config):
    """Whether a model config (the parsed model_config dict) makes the model decoupled."""
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


class LogLevel:
    """The levels of Logger.log(message, level)."""
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


class Logger:
    """Writes into the server's log (log_verbose only when --log-verbose is on).
    Triton's model.py files write `logger.log(msg, logger.WARNING)`: the levels are
    attributes of the class as well as of LogLevel."""

    LogLevel = LogLevel
    INFO = LogLevel.INFO
    WARNING = LogLevel.WARNING
    ERROR = LogLevel.ERROR
    VERBOSE = LogLevel.VERBOSE

    @staticmethod
    def log(message, level=LogLevel.INFO):
        names = {0: "info", 1: "warn", 2: "error", 3: "verbose"}
        Logger._send(names.get(int(level), "info"), message)

    @staticmethod
    def log_info(message):
        Logger._send("info", message)

    @staticmethod
    def log_warn(message):
        Logger._send("warn", message)

    @staticmethod
    def log_error(message):
        Logger._send("error", message)

    @staticmethod
    def log_verbose(message):
        Logger._send("verbose", message)

    @staticmethod
    def _send(level, message):
        if _ipc is None:
            print(f"[{level}] {message}", flush=True)
        else:
            _ipc.log(level, str(message))


class ModelConfig:
    """What auto_complete_config(auto_complete_model_config) receives."""

    def __init__(self, config):
        self._config = config

    def as_dict(self):
        return self._config

    def set_max_batch_size(self, max_batch_size):
        current = self._config.get("max_batch_size", 0)
        if current not in (0, max_batch_size):
            raise ValueError(f"configuration specified max_batch_size {current}, but in "
                             f"auto-complete-config function for model "
                             f"'{self._config.get('name')}' specified max_batch_size "
                             f"{max_batch_size}")
        self._config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self):
        if "sequence_batching" in self._config:
            raise ValueError(f"configuration of model '{self._config.get('name')}' specifies "
                             "sequence batching; dynamic batching cannot be set")
        self._config.setdefault("dynamic_batching", {})

    def _add(self, kind, entry):
        if not isinstance(entry, dict):
            raise ValueError(f"{kind} for model '{self._config.get('name')}' must be a dict")
        for key in ("name", "data_type", "dims"):
            if key not in entry:
                raise ValueError(f"{kind} '{entry.get('name')}' for model "
                                 f"'{self._config.get('name')}' is missing '{key}'")
        entries = self._config.setdefault(kind, [])
        for existing in entries:
            if existing.get("name") == entry["name"]:
                raise ValueError(f"{kind} '{entry['name']}' in auto-complete-config function "
                                 f"for model '{self._config.get('name')}' already exists")
        entries.append(dict(entry))

    def add_input(self, input):
        self._add("input", input)

    def add_output(self, output):
        self._add("output", output)

    def set_model_transaction_policy(self, transaction_policy_dict):
        self._config["model_transaction_policy"] = dict(transaction_policy_dict)

    def add_instance_group(self, instance_group):
        self._config.setdefault("instance_group", []).append(dict(instance_group))


COUNTER = 0
GAUGE = 1
HISTOGRAM = 2


class MetricFamily:
    """A family of custom metrics shown on the server's /metrics endpoint (Prometheus
    text format). The same name in several models or instances is one family (the first
    description wins; another kind is an error). Gone when the model unloads."""
    COUNTER = COUNTER
    GAUGE = GAUGE
    HISTOGRAM = HISTOGRAM

    def __init__(self, name, description, kind=COUNTER):
        if kind not in (COUNTER, GAUGE, HISTOGRAM):
            raise TritonModelException(
                f"MetricFamily('{name}'): kind must be COUNTER, GAUGE or HISTOGRAM")
        if _ipc is None:
            raise TritonModelException("MetricFamily is only available inside the server")
        self._name = name
        self._kind = kind
        self._id = int(_ipc.metric_call({"a": "family", "n": str(name), "d": str(description),
                                         "k": int(kind)}))

    def Metric(self, labels=None, buckets=None):
        return Metric(self, labels, buckets)


class Metric:
    """One label set of a MetricFamily: increment() (counters, gauges), set() (gauges),
    observe() (histograms, which need buckets), value()."""

    def __init__(self, family, labels=None, buckets=None):
        if not isinstance(family, MetricFamily):
            raise TritonModelException("Metric needs a MetricFamily")
        labels = dict(labels or {})
        for k, v in labels.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TritonModelException("Metric labels must map str to str")
        if family._kind == HISTOGRAM and not buckets:
            raise TritonModelException(
                f"Metric of histogram '{family._name}' needs buckets (upper bounds)")
        self._family = family
        msg = {"a": "metric", "f": family._id, "l": labels}
        if buckets:
            msg["b"] = [float(b) for b in buckets]
        self._id = int(_ipc.metric_call(msg))

    def increment(self, value):
        if self._family._kind == HISTOGRAM:
            raise TritonModelException("increment() is not supported by histograms")
        if self._family._kind == COUNTER and value < 0:
            raise TritonModelException("a counter cannot be incremented by a negative value")
        _ipc.metric_send({"a": "inc", "m": self._id, "v": float(value)})

    def set(self, value):
        if self._family._kind != GAUGE:
            raise TritonModelException("set() is only supported by gauges")
        _ipc.metric_send({"a": "set", "m": self._id, "v": float(value)})

    def observe(self, value):
        if self._family._kind != HISTOGRAM:
            raise TritonModelException("observe() is only supported by histograms")
        _ipc.metric_send({"a": "observe", "m": self._id, "v": float(value)})

    def value(self):
        """The current value (a histogram's: the sum of its observations)."""
        return _ipc.metric_call({"a": "value", "m": self._id})
