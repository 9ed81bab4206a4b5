"""A real OpenAI-compatible server for the remote judge's tests: llama.cpp's ``llama-server``, built
from the llama-cpp-python sdist with the tiny Qwen2.5-VL (depth-3 vision tower) as GGUF and mmproj by
tools/build_llama_server.sh (cached under build/llama-server; ``make test`` runs it first). Each
server listens on a free loopback port; the fixtures stop it. A build that fails fails the tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="session")
def llama_build() -> dict[str, Path]:
    """Build (or find) the server and the GGUF; ``EDGE_INSPECTOR_LLAMA_SERVER_DIR`` picks the cache."""
    args = [str(REPO / "tools/build_llama_server.sh")]
    if cache := os.environ.get("EDGE_INSPECTOR_LLAMA_SERVER_DIR"):
        args.append(cache)
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", str(REPO / ".venv/bin/python"))}
    if not Path(env["PYTHON"]).exists():
        import sys

        env["PYTHON"] = sys.executable
    out = subprocess.run(args, capture_output=True, text=True, timeout=3000, env=env)
    if out.returncode != 0:
        pytest.fail(f"tools/build_llama_server.sh failed ({out.returncode}):\n{out.stderr[-3000:]}")
    paths = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return {k: Path(paths[k]) for k in ("server", "model", "mmproj")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """One llama-server process on a free loopback port."""

    def __init__(self, build: dict[str, Path], log_dir: Path, *extra: str, ctx: int = 16384, slots: int = 8,
                 vision: bool = True):
        # the n answers of one request each take a slot (llama-server waits for n free slots)
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log_dir / f"llama-server-{self.port}.log"
        cmd = [str(build["server"]), "-m", str(build["model"]), "--host", "127.0.0.1", "--port", str(self.port),
               "-c", str(ctx), "-np", str(slots), "-t", "2", *extra]
        if vision:  # the tiny vision tower: images reach the model
            cmd += ["--mmproj", str(build["mmproj"])]
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT)
        self._wait_healthy(60.0)

    def _wait_healthy(self, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1.0) as r:
                    if r.status == 200 and json.loads(r.read()).get("status") == "ok":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"llama-server not healthy within {timeout_s} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_file.close()


@pytest.fixture(scope="module")
def llama_server(llama_build, tmp_path_factory):
    server = LlamaServer(llama_build, tmp_path_factory.mktemp("llama-server"))
    yield server
    server.stop()


@pytest.fixture
def start_server(llama_build, tmp_path_factory):
    """Start a server of one's own (stopped at the end of the test): for the tests that load or kill it."""
    started: list[LlamaServer] = []

    def start(*extra: str, **kw) -> LlamaServer:
        started.append(LlamaServer(llama_build, tmp_path_factory.mktemp("llama-server"), *extra, **kw))
        return started[-1]

    yield start
    for s in started:
        s.stop()
