"""Starts a real `petrel serve` on loopback for the client conformance tests.

The server runs the repository that `petrel repo init` writes for a model (the tiny fixture
Llama by default: fast and deterministic; PETREL_CLIENT_MODEL overrides it)."""
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("PETREL_BIN", os.path.join(ROOT, ".build", "debug", "petrel"))
MODEL = os.environ.get("PETREL_CLIENT_MODEL", os.path.join(ROOT, "Tests", "Fixtures", "tiny-llama"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, repo, http, grpc, metrics, proc, log):
        self.repo, self.http_port, self.grpc_port, self.metrics_port = repo, http, grpc, metrics
        self.proc, self.log = proc, log
        self.url = f"127.0.0.1:{http}"
        self.base = f"http://127.0.0.1:{http}"

    def metrics(self):
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).read().decode()


def launch(repo, args=()):
    """Starts `petrel serve` on `repo` (free ports; output in <repo>/../server.log); returns a
    Server once it is ready. Stop it with `stop`."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    log = open(os.path.join(os.path.dirname(repo), "server.log"), "w")
    proc = subprocess.Popen([BIN, "serve", "--model-repository", repo, "--http-port", str(http),
                             "--grpc-port", str(grpc), "--metrics-port", str(metrics), *args],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("petrel serve exited early:\n" + open(log.name).read())
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2).status == 200:
                break
        except Exception:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("petrel serve did not become ready:\n" + open(log.name).read())
    return Server(repo, http, grpc, metrics, proc, log.name)


def stop(server):
    server.proc.terminate()
    try:
        assert server.proc.wait(timeout=30) == 0, "SIGTERM should shut down gracefully with exit status 0"
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def init_repo(*args):
    """`petrel repo init` for MODEL into a fresh folder; returns the repository path."""
    repo = os.path.join(tempfile.mkdtemp(prefix="petrel-clients-"), "repo")
    subprocess.run([BIN, "repo", "init", "--model", MODEL, "--output", repo, *args], check=True)
    return repo


@pytest.fixture(scope="session")
def server():
    s = launch(init_repo())
    yield s
    stop(s)
