"""CI-sized load test: 8 concurrent browser sessions × 3 uploads on one server (bench/load_test.py
does the full 8 × 25 run). Every upload must draw its own image's panels, with no error, no panel
of another session's image, and the server must be healthy afterwards.
"""

import importlib.util
import sys

import pytest
from _server import CHROMIUM, ROOT

pytestmark = pytest.mark.e2e

SESSIONS, ITERATIONS = 8, 3


def _load_test_module():
    path = ROOT / "bench" / "load_test.py"
    spec = importlib.util.spec_from_file_location("load_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: run `make browser` (Debian's chromium)")
    pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    bench = _load_test_module()
    cfg = bench.LoadConfig(
        sessions=SESSIONS,
        iterations=ITERATIONS,
        time_limit_s=300,
        request_timeout_s=120,
        shots_dir=ROOT / "artifacts" / "screenshots" / "load-failures",
        work_dir=tmp_path_factory.mktemp("load"),
    )
    result = bench.run_load(cfg)
    print(result.table())
    return result


def test_every_concurrent_upload_draws_its_panels(report):
    failed = [(r.session, r.iteration, r.image, r.error) for r in report.requests if not r.ok]
    assert not failed, f"{failed}\n{report.server_log_tail}"
    assert len(report.requests) == SESSIONS * ITERATIONS, report.table()
    assert not report.stopped_early
    assert report.latency(1.0) is not None and report.latency(1.0) < 120


def test_each_session_sees_only_its_own_images(report):
    names = {r.image for r in report.requests}
    assert len(names) == SESSIONS * ITERATIONS  # a different image every request
    per_session: dict[int, list[str]] = {}
    for r in report.requests:
        assert r.seen == (r.image,), (r.session, r.iteration, r.image, r.seen)
        per_session.setdefault(r.session, []).append(r.image)
    assert sorted(per_session) == list(range(SESSIONS))
    assert all(len(v) == ITERATIONS for v in per_session.values())
    assert not report.cross_talk


def test_server_is_healthy_afterwards(report):
    assert report.server_healthy_after, report.server_log_tail
    assert "Traceback" not in report.server_log_tail, report.server_log_tail
    assert report.rss_end_mb is not None and report.rss_start_mb is not None


def test_sidebar_keeps_its_defaults_after_the_first_rerun(report):
    assert report.sidebar_reset_sessions == 0
