"""Fixtures of the real-browser tests: one Streamlit server per test module."""

import pytest
from _server import CHROMIUM, streamlit_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A fresh Streamlit server of app.py for the module's tests; its URL."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: run `make browser` (Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    with streamlit_server(log) as running:
        yield running.url
    if running.proc.returncode not in (0, -15, 143):
        print(running.log_tail())
