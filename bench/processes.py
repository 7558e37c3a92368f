"""The processes a benchmark starts (the sandbox, servers, management commands): start
them, wait until they answer, and stop every one however the run ends."""

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


class Broken(Exception):
    """The setup did not work: nothing was measured."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def run(cmd: list[str], env: dict, timeout: float = 300) -> None:
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise Broken(f"{' '.join(cmd[1:4])} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise Broken(f"{url} did not come up; log tail:\n{log.read_text(errors='replace')[-2000:]}")


def run_bench(bench: Callable[[object, Path, list], None], args) -> int:
    """`bench(args, tmp, procs)` in a temporary directory; every process it appends to
    `procs` is stopped afterwards. A broken setup prints why and returns 1."""
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="thena-bench-") as tmp:
        try:
            bench(args, Path(tmp), procs)
        except (Broken, httpx.HTTPError, subprocess.TimeoutExpired) as error:
            print(f"bench setup broken: {error}", file=sys.stderr)
            return 1
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in reversed(procs):
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
    return 0
