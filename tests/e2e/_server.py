"""Shared by the real-browser tests and bench/load_test.py: the app served on a free loopback
port, Debian's Chromium for Playwright, and "wait until Streamlit's run is over".

The server always binds 127.0.0.1 (never another address).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
APP_SELECTOR = "[data-testid=stApp]"
RUNNING = f"{APP_SELECTOR}:not([data-test-script-state=notRunning])"
"""Matches while a Streamlit script run is in progress."""
IDLE = f"{APP_SELECTOR}[data-test-script-state=notRunning]"
"""Matches once the script run is over."""


def neu_det() -> Path | None:
    """The NEU-DET root (``cam_core.data.find_neu_det``), or None when absent."""
    try:
        from cam_core.data import find_neu_det

        return find_neu_det()
    except ImportError:
        path = ROOT.parent / "shared" / "NEU-DET"
        return path if path.is_dir() else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str, timeout: float = 2) -> bool:
    """True when ``url``'s Streamlit health endpoint answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Block until the server at ``url`` is healthy; raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        if healthy(url):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s")


@dataclass(frozen=True)
class Server:
    """A running ``streamlit run app.py``: its URL, process and log file."""

    url: str
    proc: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        """The server's process id (the Python process itself, not a wrapper)."""
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's stdout + stderr."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextlib.contextmanager
def streamlit_server(log: Path, *, timeout: float = 90) -> Iterator[Server]:
    """Serve ``app.py`` on a free 127.0.0.1 port until the block ends (then terminate, kill
    after 10 s). ``log`` receives the server's output.
    """
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_healthy(server.url, proc, timeout)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (psutil if installed, else /proc), or None."""
    try:
        import psutil  # type: ignore[import-not-found]

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def launch_kwargs() -> dict:
    """Keyword arguments for ``playwright.chromium.launch`` (Debian's Chromium, headless)."""
    return {"executable_path": str(CHROMIUM), "headless": True, "args": list(CHROMIUM_ARGS)}


def idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit has finished the run the last action started (sync Playwright)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # the run may start a moment after the action
        page.wait_for_selector(
            f"{APP_SELECTOR}:not([data-test-script-state=notRunning])", timeout=1500
        )
    page.wait_for_selector(f"{APP_SELECTOR}[data-test-script-state=notRunning]", timeout=timeout_ms)
    page.wait_for_timeout(300)


def settled(page, timeout_ms: int = 120_000, quiet_ms: int = 700) -> None:
    """Wait until no script run is in progress and none starts for ``quiet_ms`` (sync
    Playwright): safer than :func:`idle` on a busy machine, where a run may start late.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(20):
        page.wait_for_selector(IDLE, timeout=timeout_ms)
        try:
            page.wait_for_selector(RUNNING, timeout=quiet_ms)
        except PlaywrightTimeout:
            return
    raise RuntimeError("the app kept rerunning (20 runs without a quiet moment)")
