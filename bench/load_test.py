"""Load test: one app server, N concurrent browser sessions, each uploading R images on Explore.

    python bench/load_test.py [--sessions 8] [--iterations 25] [--time-limit 900] [--json F]

One ``streamlit run app.py`` on a free 127.0.0.1 port; one headless Chromium (Debian's, driven by
Playwright) with one browser context per session, so every session is its own Streamlit session
sharing the server's one cached model. Each request uploads a NEU-DET image with its XML (a
different image every time, so no cache answers; synthetic ones from cam_core.synth when the data
is absent) and waits until the GT panel of that image and one heatmap per method are drawn.

Reports latency (upload → panels visible) p50/p95/max, failures (error elements, timeouts, a
panel of another image), and the server's resident memory: at start, end, max, and the
least-squares slope over the last 3/4 of requests (MB per 100 requests; ~0 means no growth).
Stops at --time-limit and reports what it has.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import _server  # noqa: E402  (tests/e2e/_server.py: the server and browser set-up)
from playwright.async_api import TimeoutError as PlaywrightTimeout  # noqa: E402

METHODS = ("Grad-CAM", "Grad-CAM++")
"""Sidebar labels of the methods each request draws (the app's defaults)."""
RUNNING, IDLE = _server.RUNNING, _server.IDLE
ERRORS = "[data-testid=stException], [data-testid=stAlertContentError]"
MAIN_CAPTIONS = "[data-testid=stMain] [data-testid=stCaptionContainer]"
UPLOADER = "[data-testid=stMain] [data-testid=stFileUploader] input[type=file]"
"""Explore's image uploader (the sidebar has the dataset uploader too)."""
NOTHING_TO_DRAW = "Pick at least one CAM method in the sidebar."


@dataclass(frozen=True)
class LoadConfig:
    """What to run: ``sessions`` browser sessions × ``iterations`` uploads each, within
    ``time_limit_s`` seconds in all; a request fails after ``request_timeout_s`` seconds.
    """

    sessions: int = 8
    iterations: int = 25
    time_limit_s: float = 900.0
    request_timeout_s: float = 120.0
    methods: tuple[str, ...] = METHODS
    data_root: Path | None = None
    """NEU-DET root; None: :func:`cam_core.data.find_neu_det`, then synthetic images."""
    shots_dir: Path | None = None
    """Where a screenshot of each failed request goes; None: none taken."""
    work_dir: Path | None = None
    """Where the server log (and synthetic images) go; None: a temporary folder."""


@dataclass(frozen=True)
class Request:
    """One upload: who sent it, what, whether it worked, and the server's RSS (MiB) after it."""

    session: int
    iteration: int
    image: str
    ok: bool
    latency_s: float
    error: str | None
    seen: tuple[str, ...]
    """Image names in the GT-panel captions the session saw for this request."""
    index: int
    """Order of completion over all sessions (0-based)."""
    rss_mb: float | None


@dataclass
class LoadReport:
    """Everything a run measured; figures derived from it by the properties."""

    sessions: int
    iterations: int
    data: str
    requests: list[Request] = field(default_factory=list)
    rss_boot_mb: float | None = None
    rss_start_mb: float | None = None
    rss_end_mb: float | None = None
    wall_s: float = 0.0
    stopped_early: bool = False
    server_healthy_after: bool = False
    sidebar_reset_sessions: int = 0
    """Sessions whose sidebar had lost its default methods after the first rerun."""
    server_log_tail: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def successes(self) -> int:
        """Requests whose panels appeared, with no error element and no foreign image."""
        return sum(r.ok for r in self.requests)

    @property
    def cross_talk(self) -> list[Request]:
        """Requests whose page showed a GT panel of an image this session did not upload."""
        mine: dict[int, set[str]] = {}
        for r in self.requests:
            mine.setdefault(r.session, set()).add(r.image)
        return [r for r in self.requests if set(r.seen) - mine[r.session]]

    def latency(self, q: float) -> float | None:
        """Latency quantile ``q`` (0..1, nearest rank) of the successful requests, seconds."""
        values = sorted(r.latency_s for r in self.requests if r.ok)
        if not values:
            return None
        return values[min(len(values) - 1, max(0, round(q * len(values) + 0.5) - 1))]

    @property
    def rss_max_mb(self) -> float | None:
        """Largest RSS sampled (boot, start, after every request, end)."""
        values = [r.rss_mb for r in self.requests if r.rss_mb is not None]
        values += [v for v in (self.rss_boot_mb, self.rss_start_mb, self.rss_end_mb) if v]
        return max(values) if values else None

    @property
    def rss_slope_mb_per_100(self) -> float | None:
        """Least-squares slope of RSS over request index, last 3/4 of requests, MB per 100."""
        points = sorted((r.index, r.rss_mb) for r in self.requests if r.rss_mb is not None)
        points = points[len(points) // 4 :]
        if len(points) < 3:
            return None
        n = len(points)
        mx = sum(x for x, _ in points) / n
        my = sum(y for _, y in points) / n
        sxx = sum((x - mx) ** 2 for x, _ in points)
        if sxx == 0:
            return None
        return 100 * sum((x - mx) * (y - my) for x, y in points) / sxx

    def summary(self) -> dict[str, object]:
        """The headline figures (what the table prints)."""
        return {
            "sessions": self.sessions,
            "iterations": self.iterations,
            "data": self.data,
            "requests": len(self.requests),
            "successes": self.successes,
            "failures": len(self.requests) - self.successes,
            "cross_talk": len(self.cross_talk),
            "latency_p50_s": self.latency(0.5),
            "latency_p95_s": self.latency(0.95),
            "latency_max_s": self.latency(1.0),
            "rss_boot_mb": self.rss_boot_mb,
            "rss_start_mb": self.rss_start_mb,
            "rss_end_mb": self.rss_end_mb,
            "rss_max_mb": self.rss_max_mb,
            "rss_slope_mb_per_100_requests": self.rss_slope_mb_per_100,
            "wall_s": self.wall_s,
            "stopped_early": self.stopped_early,
            "server_healthy_after": self.server_healthy_after,
            "sidebar_reset_sessions": self.sidebar_reset_sessions,
        }

    def to_json(self) -> dict[str, object]:
        """Summary, every request, and the end of the server log."""
        return {
            "summary": self.summary(),
            "requests": [asdict(r) for r in self.requests],
            "notes": self.notes,
            "server_log_tail": self.server_log_tail,
        }

    def table(self) -> str:
        """The summary as an aligned two-column text table."""
        rows = []
        for key, value in self.summary().items():
            if isinstance(value, float):
                value = f"{value:.2f}"
            rows.append((key, "—" if value is None else str(value)))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# --------------------------------------------------------------------------- inputs


def image_pairs(
    n: int, data_root: Path | None, scratch: Path
) -> tuple[list[tuple[Path, Path]], str]:
    """``n`` distinct (image, XML) pairs, classes interleaved, and where they came from.

    NEU-DET when found (pairs with an XML only); else synthetic images written to ``scratch``.
    Raises ValueError when the source holds fewer than ``n`` pairs.
    """
    from cam_core.data import NEU_CLASSES, find_neu_det

    root = data_root if data_root is not None else find_neu_det()
    if root is not None and (root / "IMAGES").is_dir():
        source = f"NEU-DET ({root})"
    else:
        from cam_core.synth import write_voc_folder

        per_class = -(-n // len(NEU_CLASSES))
        root = write_voc_folder(scratch / "synthetic", per_class, seed=11)
        source = f"synthetic ({per_class} per class, cam_core.synth)"
    by_class: dict[str, list[tuple[Path, Path]]] = {}
    for image in sorted((root / "IMAGES").iterdir()):
        xml = root / "ANNOTATIONS" / f"{image.stem}.xml"
        if xml.is_file():
            by_class.setdefault(image.stem.rsplit("_", 1)[0], []).append((image, xml))
    pairs = [p for group in _interleave(list(by_class.values())) for p in group]
    if len(pairs) < n:
        raise ValueError(f"{root}: {len(pairs)} image/XML pairs, the run needs {n}")
    return pairs[:n], source


def _interleave(groups: list[list[tuple[Path, Path]]]) -> list[list[tuple[Path, Path]]]:
    out = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.append([g[i] for g in groups if i < len(g)])
    return out


# --------------------------------------------------------------------------- one session


async def _idle(page, timeout_ms: float) -> None:
    """Wait until Streamlit's run started by the last action is over."""
    with contextlib.suppress(PlaywrightTimeout):  # the run was over already, or never started
        await page.wait_for_selector(RUNNING, timeout=1500)
    await page.wait_for_selector(IDLE, timeout=timeout_ms)


async def _settled(page, timeout_ms: float, quiet_ms: int = 700) -> None:
    """Wait until no script run is in progress and none starts for ``quiet_ms``."""
    for _ in range(20):
        await page.wait_for_selector(IDLE, timeout=timeout_ms)
        try:
            await page.wait_for_selector(RUNNING, timeout=quiet_ms)
        except PlaywrightTimeout:
            return
    raise RuntimeError("the app kept rerunning (20 runs without a quiet moment)")


async def _set_methods(page, wanted: tuple[str, ...], timeout_ms: float) -> bool:
    """Make the sidebar's methods exactly ``wanted``; True when it had lost the defaults."""
    box = page.locator("[data-testid=stSidebar] [data-testid=stMultiSelect]").first
    tags = box.locator("[data-tag] [title]")
    had = await tags.all_inner_texts()
    for label in had:
        if label not in wanted:
            await box.get_by_role("button", name=f"Remove {label}", exact=True).click()
            await _settled(page, timeout_ms)
    for label in wanted:
        if label not in await tags.all_inner_texts():
            await box.locator("input").click()
            await page.get_by_role("option", name=label, exact=True).click()
            await page.keyboard.press("Escape")
            await _settled(page, timeout_ms)
    now = await tags.all_inner_texts()
    if now != list(wanted):
        raise RuntimeError(f"sidebar methods are {now}, wanted {list(wanted)}")
    return not had


async def _open(browser, url: str, methods: tuple[str, ...], timeout_ms: float):
    """A new browser context on Explore with the upload source chosen and ``methods`` set."""
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    await page.goto(url)
    await page.get_by_role("heading", name="Explore").wait_for()
    await _idle(page, timeout_ms)
    await page.locator("[data-testid=stButtonGroup] button", has_text="Upload").click()
    # the uploader is drawn by the run the click starts: after it, the sidebar is settled
    await page.locator(UPLOADER).wait_for(state="attached")
    await _settled(page, timeout_ms)
    reset = await _set_methods(page, methods, timeout_ms)
    return context, page, reset


async def _clear_uploads(page, timeout_ms: float) -> None:
    """Remove the files already in the uploader, images first (so no panel is redrawn)."""
    chips = page.locator("[data-testid=stFileChip] [data-testid=stFileChipName]")
    for _ in range(50):
        names = [await chips.nth(i).get_attribute("title") for i in range(await chips.count())]
        if not names:
            return
        name = next((n for n in names if n and not n.endswith(".xml")), names[0])
        await page.get_by_role("button", name=f"Remove {name}", exact=True).click()
        await page.wait_for_function(
            "n => document.querySelectorAll('[data-testid=stFileChip]').length < n",
            arg=len(names),
        )
        await _idle(page, timeout_ms)
    raise RuntimeError("the uploader still holds files after 50 removals")


async def _upload(page, image: Path, xml: Path, methods: tuple[str, ...], timeout_ms: float):
    """Upload one pair; (latency s, error or None, GT-panel names seen). Timed: upload → the
    GT panel of ``image`` and one heatmap caption per method visible, with their charts drawn.
    """
    await _clear_uploads(page, timeout_ms)
    await _settled(page, timeout_ms)
    t0 = time.monotonic()
    await page.locator(UPLOADER).set_input_files([str(image), str(xml)])
    # the drop zone empties itself once a batch is read (the session keeps the list), so the
    # upload is seen by its GT panel, not by a file chip
    gt = page.locator(MAIN_CAPTIONS, has_text=f"GT panel: {image.name} ·")
    failed = page.locator(ERRORS)
    nothing = page.get_by_text(NOTHING_TO_DRAW)
    await gt.or_(failed).or_(nothing).first.wait_for(timeout=timeout_ms)
    if await nothing.count():
        return time.monotonic() - t0, f"the page says {NOTHING_TO_DRAW!r}", ()
    await page.wait_for_function(
        """([n, m, errors]) => {
            const caps = [...document.querySelectorAll(
                '[data-testid=stMain] [data-testid=stCaptionContainer]')];
            const heat = caps.filter(c => c.innerText.includes(' — ')).length;
            const plots = document.querySelectorAll('.js-plotly-plot .main-svg').length;
            return document.querySelectorAll(errors).length > 0 || (heat >= m && plots >= n);
        }""",
        arg=[2 + len(methods), len(methods), ERRORS],
        timeout=timeout_ms,
    )
    latency = time.monotonic() - t0
    await _idle(page, timeout_ms)
    captions = await page.locator(MAIN_CAPTIONS).all_inner_texts()
    # one GT panel per explained class (predicted + GT classes), all of the same image
    seen = tuple(
        dict.fromkeys(
            c.removeprefix("GT panel: ").split(" · ")[0]
            for c in captions
            if c.startswith("GT panel: ")
        )
    )
    errors = await failed.all_inner_texts()
    heat = [c.split(" · ")[0] for c in captions if " — " in c]
    if errors:
        return latency, f"error element: {errors[0][:200]}", seen
    if seen != (image.name,):
        return latency, f"GT panels show {seen}, expected ({image.name!r},)", seen
    rows = len(heat) // max(len(methods), 1)
    if not heat or heat != list(methods) * rows:
        return latency, f"heatmap captions {heat}, expected {list(methods)} per class", seen
    return latency, None, seen


# --------------------------------------------------------------------------- the run


async def _drive(cfg: LoadConfig, url: str, pid: int, pairs, report: LoadReport) -> None:
    """Open every session (model loaded, methods set), sample the RSS, then run the uploads."""
    from playwright.async_api import async_playwright

    timeout_ms = cfg.request_timeout_s * 1000
    counter = iter(range(10**9))

    async def loop(s: int, browser, context, page, deadline: float) -> None:
        try:
            for i in range(cfg.iterations):
                if time.monotonic() > deadline:
                    report.stopped_early = True
                    return
                image, xml = pairs[i * cfg.sessions + s]
                t0 = time.monotonic()
                try:
                    latency, error, seen = await _upload(page, image, xml, cfg.methods, timeout_ms)
                except Exception as exc:  # a timeout or a closed page is a failure
                    latency, error, seen = time.monotonic() - t0, f"{type(exc).__name__}: {exc}", ()
                if error is not None and cfg.shots_dir is not None:
                    cfg.shots_dir.mkdir(parents=True, exist_ok=True)
                    shot = cfg.shots_dir / f"failed_s{s}_i{i}_{image.stem}.png"
                    try:
                        await page.screenshot(path=str(shot), timeout=30_000)
                    except Exception as exc:  # the page may be gone
                        report.notes.append(f"no screenshot of {shot.name}: {exc}")
                rss = _server.rss_mb(pid)
                first_line = error.splitlines()[0] if error else None
                report.requests.append(
                    Request(
                        s,
                        i,
                        image.name,
                        error is None,
                        latency,
                        first_line,
                        seen,
                        next(counter),
                        rss,
                    )
                )
                if error is not None:  # go on in a fresh context (a new Streamlit session)
                    await context.close()
                    context, page, _ = await _open(browser, url, cfg.methods, timeout_ms)
        finally:
            await context.close()

    async with async_playwright() as p:
        browser = await p.chromium.launch(**_server.launch_kwargs())
        try:
            opened = await asyncio.gather(
                *(_open(browser, url, cfg.methods, timeout_ms) for _ in range(cfg.sessions))
            )
            report.sidebar_reset_sessions = sum(reset for _, _, reset in opened)
            report.rss_start_mb = _server.rss_mb(pid)
            deadline = time.monotonic() + cfg.time_limit_s
            tasks = [
                asyncio.create_task(loop(s, browser, context, page, deadline))
                for s, (context, page, _) in enumerate(opened)
            ]
            done, pending = await asyncio.wait(
                tasks, timeout=cfg.time_limit_s + 2 * cfg.request_timeout_s
            )
            for task in pending:
                task.cancel()
                report.stopped_early = True
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() is not None:
                    exc = task.exception()
                    report.notes.append(f"session task failed: {type(exc).__name__}: {exc}")
        finally:
            await browser.close()


def run_load(cfg: LoadConfig) -> LoadReport:
    """Serve the app, run the sessions, stop everything; the measured :class:`LoadReport`."""
    with tempfile.TemporaryDirectory(prefix="cam-load-") as tmp:
        work = cfg.work_dir or Path(tmp)
        pairs, source = image_pairs(cfg.sessions * cfg.iterations, cfg.data_root, work)
        report = LoadReport(cfg.sessions, cfg.iterations, source)
        t0 = time.monotonic()
        with _server.streamlit_server(work / "server.log") as server:
            report.rss_boot_mb = _server.rss_mb(server.pid)
            try:
                asyncio.run(_drive(cfg, server.url, server.pid, pairs, report))
            finally:
                report.rss_end_mb = _server.rss_mb(server.pid)
                report.server_healthy_after = server.proc.poll() is None and _server.healthy(
                    server.url
                )
                report.wall_s = time.monotonic() - t0
                report.server_log_tail = server.log_tail()
        report.requests.sort(key=lambda r: r.index)
        return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=25)
    ap.add_argument("--time-limit", type=float, default=900.0, help="seconds in all (default 900)")
    ap.add_argument("--request-timeout", type=float, default=120.0)
    ap.add_argument("--data", type=Path, default=None, help="NEU-DET root (default: found)")
    ap.add_argument("--json", type=Path, default=None, help="write the full report here")
    ap.add_argument("--shots", type=Path, default=None, help="screenshot failed requests here")
    args = ap.parse_args(argv)
    if not _server.CHROMIUM.exists():
        print(f"{_server.CHROMIUM} missing: run `make browser`", file=sys.stderr)
        return 2
    cfg = LoadConfig(
        sessions=args.sessions,
        iterations=args.iterations,
        time_limit_s=args.time_limit,
        request_timeout_s=args.request_timeout,
        data_root=args.data,
        shots_dir=args.shots,
    )
    report = run_load(cfg)
    print(report.table())
    failures = [r for r in report.requests if not r.ok]
    for r in failures[:10]:
        print(f"  failed: session {r.session} #{r.iteration} {r.image}: {r.error}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=1, default=str))
        print(f"wrote {args.json}")
    return 0 if report.requests and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
