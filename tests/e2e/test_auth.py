"""Access control end to end: restricted API groups (Triton's --http-restricted-api and
--grpc-restricted-protocol) and bearer tokens from --auth-token-file, on both protocols.

Decisions under test: a missing or wrong restricted header is 403 / PERMISSION_DENIED; a
missing or unknown token is 401 / UNAUTHENTICATED (with WWW-Authenticate); a known token
that does not open the group is 403 / PERMISSION_DENIED. Health stays open unless restricted.
"""
import os
import signal
import time

import grpc
import pytest
import requests

import grpc_stubs
from harness import Server, identity_config, run_to_exit, write_model

pb2, pb2_grpc = grpc_stubs.load()

GROUPS = ["health", "metadata", "inference", "shared-memory", "model-config",
          "model-repository", "statistics", "trace", "logging"]
INFER_BODY = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}
DENIED = (401, 403)
GRPC_DENIED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)

# One or more HTTP endpoints per group, as Triton files them: (method, path, json body).
HTTP_ENDPOINTS = {
    "health": [("GET", "/v2/health/live", None), ("GET", "/v2/health/ready", None),
               ("GET", "/v2/models/m/ready", None)],
    "metadata": [("GET", "/v2", None), ("GET", "/v2/models/m", None),
                 ("GET", "/v2/models/m/versions/1", None)],
    "inference": [("POST", "/v2/models/m/infer", INFER_BODY),
                  ("POST", "/v2/models/m/versions/1/infer", INFER_BODY)],
    "shared-memory": [("GET", "/v2/systemsharedmemory/status", None),
                      ("GET", "/v2/cudasharedmemory/status", None)],
    "model-config": [("GET", "/v2/models/m/config", None)],
    "model-repository": [("POST", "/v2/repository/index", {}),
                         ("POST", "/v2/repository/models/m/load", {})],
    "statistics": [("GET", "/v2/models/stats", None), ("GET", "/v2/models/m/stats", None)],
    "trace": [("GET", "/v2/trace/setting", None), ("GET", "/v2/models/m/trace/setting", None)],
    "logging": [("GET", "/v2/logging", None)],
}


def _stream_infer(stub, metadata):
    req = pb2.ModelInferRequest(model_name="m")
    req.inputs.append(pb2.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32",
                                                             shape=[1]))
    req.raw_input_contents.append(b"\0\0\0\0")
    for _ in stub.ModelStreamInfer(iter([req]), metadata=metadata, timeout=10):
        pass


def _infer(stub, metadata):
    req = pb2.ModelInferRequest(model_name="m")
    req.inputs.append(pb2.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32",
                                                             shape=[1]))
    req.raw_input_contents.append(b"\0\0\0\0")
    return stub.ModelInfer(req, metadata=metadata, timeout=10)


GRPC_CALLS = {
    "health": [lambda s, md: s.ServerLive(pb2.ServerLiveRequest(), metadata=md),
               lambda s, md: s.ServerReady(pb2.ServerReadyRequest(), metadata=md),
               lambda s, md: s.ModelReady(pb2.ModelReadyRequest(name="m"), metadata=md)],
    "metadata": [lambda s, md: s.ServerMetadata(pb2.ServerMetadataRequest(), metadata=md),
                 lambda s, md: s.ModelMetadata(pb2.ModelMetadataRequest(name="m"), metadata=md)],
    "inference": [_infer, _stream_infer],
    "shared-memory": [
        lambda s, md: s.SystemSharedMemoryStatus(pb2.SystemSharedMemoryStatusRequest(),
                                                 metadata=md),
        lambda s, md: s.CudaSharedMemoryRegister(pb2.CudaSharedMemoryRegisterRequest(),
                                                 metadata=md)],
    "model-config": [lambda s, md: s.ModelConfig(pb2.ModelConfigRequest(name="m"), metadata=md)],
    "model-repository": [
        lambda s, md: s.RepositoryIndex(pb2.RepositoryIndexRequest(), metadata=md),
        lambda s, md: s.RepositoryModelUnload(pb2.RepositoryModelUnloadRequest(model_name="zz"),
                                              metadata=md)],
    "statistics": [lambda s, md: s.ModelStatistics(pb2.ModelStatisticsRequest(), metadata=md)],
    "trace": [lambda s, md: s.TraceSetting(pb2.TraceSettingRequest(), metadata=md)],
    "logging": [lambda s, md: s.LogSettings(pb2.LogSettingsRequest(), metadata=md)],
}


def http_call(server, method, path, body, headers=None):
    return requests.request(method, server.url + path, json=body, headers=headers or {},
                            timeout=10)


def grpc_code(fn, stub, metadata):
    try:
        fn(stub, metadata)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def make_repo(path):
    write_model(path, "m", identity_config("m"))
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("auth_repo"))


def key(group):
    return f"k-{group}"


def secret(group):
    return f"secret-value-of-{group}"


@pytest.fixture(scope="module")
def restricted(repo):
    """Every group restricted, each by its own header and value."""
    args = []
    for g in GROUPS:
        args.append(f"--http-restricted-api={g}:{key(g)}={secret(g)}")
        args.append(f"--grpc-restricted-protocol={g}:{key(g)}={secret(g)}")
    with Server(repo, args, wait=None) as s:
        # Health itself is restricted: wait with its header.
        deadline = time.time() + 30
        while True:
            try:
                r = requests.get(s.url + "/v2/health/ready",
                                 headers={key("health"): secret("health")}, timeout=1)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.time() < deadline, s.log()
            time.sleep(0.05)
        channel = grpc.insecure_channel(s.grpc_url)
        s.stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        yield s
        channel.close()


@pytest.mark.parametrize("group", GROUPS)
def test_http_each_group_needs_its_own_header(restricted, group):
    other = GROUPS[(GROUPS.index(group) + 1) % len(GROUPS)]
    for method, path, body in HTTP_ENDPOINTS[group]:
        r = http_call(restricted, method, path, body)
        assert r.status_code == 403, (path, r.status_code, r.text)
        msg = r.json()["error"]
        assert group in msg and key(group) in msg, msg
        assert secret(group) not in r.text
        r = http_call(restricted, method, path, body, {key(group): "wrong"})
        assert r.status_code == 403, path
        r = http_call(restricted, method, path, body, {key(other): secret(other)})
        assert r.status_code == 403, path
        # Header names are case-insensitive in HTTP; values are not.
        r = http_call(restricted, method, path, body, {key(group).upper(): secret(group)})
        assert r.status_code not in DENIED, (path, r.status_code, r.text)
        r = http_call(restricted, method, path, body, {key(group): secret(group).upper()})
        assert r.status_code == 403, path


@pytest.mark.parametrize("group", GROUPS)
def test_grpc_each_group_needs_its_own_metadata(restricted, group):
    other = GROUPS[(GROUPS.index(group) + 1) % len(GROUPS)]
    prefixed = f"triton-grpc-protocol-{key(group)}"
    for call in GRPC_CALLS[group]:
        code, details = grpc_code(call, restricted.stub, ())
        assert code == grpc.StatusCode.PERMISSION_DENIED, (group, code, details)
        assert group in details and prefixed in details, details
        assert secret(group) not in details
        code, _ = grpc_code(call, restricted.stub, ((prefixed, "wrong"),))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code, _ = grpc_code(call, restricted.stub,
                            ((f"triton-grpc-protocol-{key(other)}", secret(other)),))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        # Triton's prefixed key, and the bare key, both open the group.
        code, details = grpc_code(call, restricted.stub, ((prefixed, secret(group)),))
        assert code not in GRPC_DENIED, (group, code, details)
        code, details = grpc_code(call, restricted.stub, ((key(group), secret(group)),))
        assert code not in GRPC_DENIED, (group, code, details)


def test_unrestricted_groups_stay_open(repo):
    args = ["--http-restricted-api=model-repository:admin-key=adm1n",
            "--grpc-restricted-protocol=model-repository:admin-key=adm1n"]
    with Server(repo, args, wait="ready") as s:
        channel = grpc.insecure_channel(s.grpc_url)
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        for group in GROUPS:
            for method, path, body in HTTP_ENDPOINTS[group]:
                r = http_call(s, method, path, body)
                expect_denied = group == "model-repository"
                assert (r.status_code == 403) == expect_denied, (path, r.status_code, r.text)
            for call in GRPC_CALLS[group]:
                code, details = grpc_code(call, stub, ())
                if group == "model-repository":
                    assert code == grpc.StatusCode.PERMISSION_DENIED, details
                else:
                    assert code not in GRPC_DENIED, (group, code, details)
        channel.close()
        assert "adm1n" not in s.log()


def test_bad_restriction_flags_fail_start(repo):
    for bad in [["--http-restricted-api=bogus:k=hunter2"], ["--http-restricted-api=inference"],
                ["--grpc-restricted-protocol=inference:k="],
                ["--http-restricted-api=inference,health:k=hunter2",
                 "--http-restricted-api=inference:j=hunter2"]]:
        rc, out = run_to_exit(repo, bad, timeout=30)
        assert rc == 2, out
        assert "restricted" in out, out
        assert "hunter2" not in out, out


# ---- tokens ----------------------------------------------------------------------------

TOKEN_ALL = "tok-all-7f3a9c1d"
TOKEN_INFER = "tok-infer-2b8e4f60"


@pytest.fixture(scope="module")
def tokens(repo, tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    path.write_text(f"# service tokens\n{TOKEN_ALL}\n{TOKEN_INFER} inference, metadata\n")
    args = [f"--auth-token-file={path}",
            "--http-restricted-api=statistics:stats-key=st4ts-s3cret",
            "--grpc-restricted-protocol=statistics:stats-key=st4ts-s3cret"]
    with Server(repo, args, wait="ready") as s:
        channel = grpc.insecure_channel(s.grpc_url)
        s.stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        yield s
        channel.close()


def test_token_health_open_rest_needs_token(tokens):
    for group in GROUPS:
        for method, path, body in HTTP_ENDPOINTS[group]:
            r = http_call(tokens, method, path, body)
            if group == "health":
                assert r.status_code not in DENIED, path
            elif group == "statistics":
                assert r.status_code == 403, path  # its own header rule, not tokens
            else:
                assert r.status_code == 401, (path, r.status_code)
                assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), path
                assert group in r.json()["error"]
        for call in GRPC_CALLS[group]:
            code, _ = grpc_code(call, tokens.stub, ())
            if group == "health":
                assert code not in GRPC_DENIED
            elif group == "statistics":
                assert code == grpc.StatusCode.PERMISSION_DENIED
            else:
                assert code == grpc.StatusCode.UNAUTHENTICATED, (group, code)


@pytest.mark.parametrize("value", [TOKEN_ALL, f"Bearer {TOKEN_ALL}", f"bearer   {TOKEN_ALL} "])
def test_token_forms_accepted(tokens, value):
    for group in ["inference", "model-config", "model-repository", "logging"]:
        for method, path, body in HTTP_ENDPOINTS[group]:
            r = http_call(tokens, method, path, body, {"Authorization": value})
            assert r.status_code not in DENIED, (path, r.status_code, r.text)
        for call in GRPC_CALLS[group]:
            code, details = grpc_code(call, tokens.stub, (("authorization", value),))
            assert code not in GRPC_DENIED, (group, code, details)


@pytest.mark.parametrize("value", ["Bearer nope", "nope", "Bearer", TOKEN_ALL[:-1],
                                   TOKEN_ALL + "x", f"Basic {TOKEN_ALL}"])
def test_wrong_tokens_are_401(tokens, value):
    r = http_call(tokens, "POST", "/v2/models/m/infer", INFER_BODY, {"Authorization": value})
    assert r.status_code == 401, value
    assert TOKEN_ALL not in r.text and "nope" not in r.text
    code, details = grpc_code(_infer, tokens.stub, (("authorization", value),))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert TOKEN_ALL not in details


def test_token_limited_to_its_groups(tokens):
    auth = {"Authorization": f"Bearer {TOKEN_INFER}"}
    assert http_call(tokens, "POST", "/v2/models/m/infer", INFER_BODY, auth).status_code == 200
    assert http_call(tokens, "GET", "/v2/models/m", None, auth).status_code == 200
    r = http_call(tokens, "GET", "/v2/models/m/config", None, auth)
    assert r.status_code == 403
    assert "model-config" in r.json()["error"] and TOKEN_INFER not in r.text
    md = (("authorization", f"Bearer {TOKEN_INFER}"),)
    assert grpc_code(_infer, tokens.stub, md)[0] == grpc.StatusCode.OK
    code, details = grpc_code(GRPC_CALLS["model-config"][0], tokens.stub, md)
    assert code == grpc.StatusCode.PERMISSION_DENIED and TOKEN_INFER not in details
    # A header rule wins over tokens: statistics wants its header, not a token.
    r = http_call(tokens, "GET", "/v2/models/stats", None, {"Authorization": TOKEN_ALL})
    assert r.status_code == 403
    r = http_call(tokens, "GET", "/v2/models/stats", None, {"stats-key": "st4ts-s3cret"})
    assert r.status_code == 200


def test_refused_before_the_body_is_read(tokens):
    """An unauthenticated client cannot make the server take a large body."""
    import socket
    with socket.create_connection(("127.0.0.1", tokens.http_port), timeout=5) as s:
        s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 50000000\r\n\r\n")
        t0 = time.time()
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 401"), head
        assert time.time() - t0 < 2


def test_no_secret_in_logs(tokens):
    log = tokens.log()
    assert "token(s) loaded" in log
    for s in [TOKEN_ALL, TOKEN_INFER, "st4ts-s3cret", "nope"]:
        assert s not in log


def test_bad_token_file_fails_start(repo, tmp_path):
    rc, out = run_to_exit(repo, [f"--auth-token-file={tmp_path / 'missing.txt'}"], timeout=30)
    assert rc != 0 and "missing.txt" in out
    bad = tmp_path / "bad.txt"
    bad.write_text("good-one\nsecret-xyz not-a-group\n")
    rc, out = run_to_exit(repo, [f"--auth-token-file={bad}"], timeout=30)
    assert rc != 0 and "line 2" in out and "not-a-group" in out
    assert "secret-xyz" not in out


def _wait_until(fn, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(0.05)
    return False


def _status(server, token):
    return http_call(server, "GET", "/v2/models/m/config", None,
                     {"Authorization": f"Bearer {token}"}).status_code


def test_token_file_rotation_without_restart(repo, tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("old-token-1111\n")
    with Server(repo, [f"--auth-token-file={path}"], wait="ready") as s:
        channel = grpc.insecure_channel(s.grpc_url)
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        assert _status(s, "old-token-1111") == 200
        assert _status(s, "new-token-2222") == 401
        # Rotate as a secret manager does: write a new file and rename it into place.
        tmp = tmp_path / "tokens.new"
        tmp.write_text("new-token-2222\n")
        os.replace(tmp, path)
        assert _wait_until(lambda: _status(s, "new-token-2222") == 200), s.log()
        assert _status(s, "old-token-1111") == 401
        md = (("authorization", "Bearer new-token-2222"),)
        assert grpc_code(GRPC_CALLS["model-config"][0], stub, md)[0] == grpc.StatusCode.OK
        md = (("authorization", "Bearer old-token-1111"),)
        assert grpc_code(GRPC_CALLS["model-config"][0], stub, md)[0] == \
            grpc.StatusCode.UNAUTHENTICATED
        # A broken file keeps the tokens in force (and says so without naming a token).
        path.write_text("new-token-2222 no-such-group\n")
        # The file is looked at (at most once a second) when a request needs a token.
        assert _wait_until(lambda: _status(s, "new-token-2222") == 200 and
                           "keeping the tokens loaded before" in s.log()), s.log()
        assert _status(s, "new-token-2222") == 200
        channel.close()
        assert "old-token-1111" not in s.log() and "new-token-2222" not in s.log()
        assert s.stop() == 0


def test_sighup_reloads_token_file(repo, tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("aaaa-token\n")
    with Server(repo, [f"--auth-token-file={path}"], wait="ready") as s:
        assert _status(s, "aaaa-token") == 200
        # Same size, same inode, same mtime: the change check cannot see it; SIGHUP must.
        st = os.stat(path)
        with open(path, "r+") as f:
            f.write("bbbb-token\n")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        time.sleep(1.3)
        assert _status(s, "bbbb-token") == 401
        s.proc.send_signal(signal.SIGHUP)
        assert _wait_until(lambda: _status(s, "bbbb-token") == 200), s.log()
        assert _status(s, "aaaa-token") == 401
        assert s.proc.poll() is None
        assert "received SIGHUP" in s.log()
        assert s.stop() == 0


def test_sighup_without_token_file_is_harmless(repo):
    with Server(repo, [], wait="ready") as s:
        s.proc.send_signal(signal.SIGHUP)
        assert _wait_until(lambda: "received SIGHUP" in s.log()), s.log()
        assert requests.get(s.url + "/v2/health/ready", timeout=5).status_code == 200
        assert s.stop() == 0
