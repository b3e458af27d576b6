"""Python stubs for flowserve's gRPC API, generated at test time from proto/*.proto.

Generating from our own .proto (not a client package's copy) is the point: the tests
then check that what we publish is what we serve.
"""
import functools
import importlib
import pathlib
import subprocess
import sys
import tempfile

PROTO_DIR = pathlib.Path(__file__).resolve().parents[2] / "proto"


def _protoc(out):
    protos = [str(PROTO_DIR / "model_config.proto"), str(PROTO_DIR / "grpc_service.proto")]
    base = [f"-I{PROTO_DIR}", f"--python_out={out}"]
    try:
        cmd = [sys.executable, "-m", "grpc_tools.protoc", *base, f"--grpc_python_out={out}"]
        subprocess.run(cmd + protos, check=True, capture_output=True)
        return
    except subprocess.CalledProcessError:
        pass
    cmd = ["protoc", *base, f"--grpc_out={out}",
           "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin"]
    subprocess.run(cmd + protos, check=True, capture_output=True)


@functools.lru_cache(maxsize=None)
def load():
    """Returns (pb2, pb2_grpc) modules for grpc_service.proto."""
    out = tempfile.mkdtemp(prefix="flowserve-stubs-")
    _protoc(out)
    sys.path.insert(0, out)
    pb2 = importlib.import_module("grpc_service_pb2")
    pb2_grpc = importlib.import_module("grpc_service_pb2_grpc")
    return pb2, pb2_grpc
