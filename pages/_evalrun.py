"""The Evaluate page's run: computed in the page script with our own Stop button, its rows in a
per-session row store so that a stop, a page switch or a time budget keeps them, and its result
shown with its state (running / stopped at N of M / done) and its own settings.

How a run ends: Streamlit interrupts a page script at its next update when the user clicks
any widget (our Stop included) or leaves the page; the loop updates the page after each batch,
so a run stops between batches, and every finished batch is already in the store. The next run
of the page finds the run still marked active, loads its result from the store (computing
nothing) and offers Resume, which computes only the images left.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import streamlit as st

from cam_core.data import Sample
from cam_core.evaluation import EvalConfig, EvalResult, evaluate, run_folder
from cam_core.evaluation.pdf import build_pdf
from cam_core.evaluation.store import prune_stores
from cam_core.explain import Explainer
from cam_core.vocabulary import method_name, target_rule_name

_RUNNING = ":material/progress_activity:"


@dataclass
class EvalRun:
    """The evaluation a browser session asked for: its settings (``cfg.out`` is its row store),
    its images, the engine of its model (kept: the sidebar may switch models meanwhile), and
    ``active`` while a page script is (or was, until interrupted) computing it.
    """

    cfg: EvalConfig
    samples: tuple[Sample, ...]
    explainer: Explainer
    active: bool = True


STORES = Path(tempfile.gettempdir()) / "cam-core-eval"
"""Every browser session's row stores; a session's folder is deleted 7 days after its last run."""
STORE_DAYS = 7


def run_root() -> Path:
    """This browser session's folder of row stores (one sub-folder per run identity)."""
    if "_eval_session" not in st.session_state:
        st.session_state["_eval_session"] = uuid.uuid4().hex
        prune_stores(STORES, STORE_DAYS * 86_400, keep=st.session_state["_eval_session"])
    return STORES / st.session_state["_eval_session"]


def start(cfg: EvalConfig, samples: tuple[Sample, ...], explainer: Explainer) -> None:
    """Make ``cfg`` over ``samples`` this session's run (its row store chosen by its identity,
    so the same settings resume the rows of an earlier run); its earlier result is dropped."""
    out = run_folder(run_root(), cfg, explainer)
    st.session_state["eval_run"] = EvalRun(replace(cfg, out=str(out)), samples, explainer)
    st.session_state.pop("eval_result", None)


def advance(budget_s: float, *, start: bool) -> EvalRun | None:
    """This session's run after this page run: computed now when just started (``start``) or
    resumed; loaded from its store when its computing script was interrupted (our Stop,
    Streamlit's, a page switch, another widget). Its result is ``st.session_state["eval_result"]``.
    """
    run: EvalRun | None = st.session_state.get("eval_run")
    if run is None or not run.active:
        return run
    if start or st.session_state.pop("eval_resume", False):
        execute(run, budget_s)
        return run
    st.session_state["eval_why"] = (
        "you stopped it"
        if st.session_state.get("eval_stop")
        else "interrupted: the page was left or a setting changed during the run"
    )
    run.active = False
    try:
        st.session_state["eval_result"] = load(run)
    except (ValueError, KeyError, OSError) as exc:  # its store was deleted or rewritten
        st.session_state.pop("eval_run", None)
        st.error(f"The stopped evaluation could not be read back: {exc}")
        return None
    st.session_state["eval_samples"] = {s.stem: s for s in run.samples}
    return run


def execute(run: EvalRun, budget_s: float) -> None:
    """Compute ``run`` (resuming from its store) with our Stop button and a progress bar.

    A click on Stop reruns the page: Streamlit then interrupts this script at its next
    progress update, i.e. between batches, and every finished batch is already stored.
    """
    n = len(run.samples) if run.cfg.limit is None else min(run.cfg.limit, len(run.samples))
    status = st.empty()
    status.info(f"**Running** — 0 of {n} images …", icon=_RUNNING)
    stop = st.empty()  # gone once the run ends
    stop.button(
        "Stop",
        key="eval_stop",
        icon=":material/stop:",
        help="Stop after this batch; the images done so far are kept and shown.",
    )
    bar = st.progress(0.0, text="Starting…")
    deadline = time.monotonic() + budget_s

    def _progress(done: int, total: int, message: str) -> None:
        status.info(f"**Running** — {done} of {total} images …", icon=_RUNNING)
        bar.progress(done / max(total, 1), text=message)

    try:
        result = evaluate(
            run.cfg,
            explainer=run.explainer,
            samples=run.samples,
            progress=_progress,
            should_stop=lambda: time.monotonic() > deadline,
        )
    except (ValueError, KeyError, OSError) as exc:
        run.active = False
        st.error(f"The evaluation could not run: {exc}")
        st.stop()
    run.active = False
    if not result.complete:
        st.session_state["eval_why"] = f"time budget of {budget_s:g} s reached"
    status.empty()
    bar.empty()
    stop.empty()
    st.session_state["eval_result"] = result
    st.session_state["eval_samples"] = {s.stem: s for s in run.samples}


def load(run: EvalRun) -> EvalResult:
    """``run``'s result from its row store alone (computes nothing)."""
    return evaluate(run.cfg, explainer=run.explainer, samples=run.samples, should_stop=lambda: True)


def show_state(result: EvalResult, run: EvalRun) -> None:
    """Done, or stopped at N of M with the classes it covers and a Resume button."""
    if result.complete:
        st.success(
            f"**Done** — {result.status().removeprefix('done: ')}.", icon=":material/check_circle:"
        )
        return
    why = st.session_state.get("eval_why", "stopped")
    st.warning(
        f"**Partial result** ({why}) — {result.status()}. Every figure below, the "
        '"all" row included, covers only these images.',
        icon=":material/pause_circle:",
    )
    st.button(
        f"Resume ({result.n_samples - result.n_done} images left)",
        key="eval_resume_button",
        on_click=_resume,
        args=(run,),
        icon=":material/play_arrow:",
    )


def _resume(run: EvalRun) -> None:
    run.active = True
    st.session_state["eval_resume"] = True


FORM_FIELDS = {
    "data": "data",
    "checkpoint": "model",
    "split": "split",
    "methods": "methods",
    "layers": "layers",
    "target_rule": "target rule",
    "tau": "τ",
    "flip_smooth": "flip averaging",
    "limit": "images",
}


def show_settings(result: EvalResult, form: EvalConfig | None) -> None:
    """The settings that produced ``result``, and a note when the form now says otherwise."""
    shown = dict(result.settings())
    shown["methods"] = ", ".join(method_name(m) for m in result.config.methods)
    shown["target rule"] = target_rule_name(result.config.target_rule)
    st.markdown(
        "**These results:** "
        + " · ".join(f"{k} **{v}**" for k, v in shown.items() if k not in ("checkpoint", "state"))
    )
    pdf_button(result)
    if form is None:
        return
    differ = [
        label
        for name, label in FORM_FIELDS.items()
        if getattr(form, name) != getattr(result.config, name)
    ]
    if differ:
        st.info(
            f"The form above now differs from these results in: {', '.join(differ)}. The "
            "results are those of the settings listed here; press **Run evaluation** for the "
            "form's.",
            icon=":material/info:",
        )


def _review_diff(result: EvalResult) -> object | None:
    """The release diff the Review page ran on ``result`` (``review_diff``: (result A,
    ReleaseDiff, …)), else None."""
    from cam_core.review.diff import ReleaseDiff

    saved = st.session_state.get("review_diff")
    ok = isinstance(saved, tuple) and len(saved) > 1 and saved[0] is result
    return saved[1] if ok and isinstance(saved[1], ReleaseDiff) else None


def _pdf(result: EvalResult, diff: object | None) -> bytes:
    """The PDF of ``result`` with its verdicts (bootstrap: computed only when asked)."""
    from cam_core.verdict import verdict_table

    verdicts = None
    with contextlib.suppress(KeyError, ValueError):  # rows of an older store: no intervals
        verdicts = verdict_table(result)
    return build_pdf(result, verdicts=verdicts, diff=diff)  # type: ignore[arg-type]


def pdf_button(result: EvalResult) -> None:
    """Download the report of ``result`` as a PDF (:func:`cam_core.evaluation.pdf.build_pdf`),
    built when clicked, with the verdicts and the Review page's diff when there are some."""
    diff = _review_diff(result)
    st.download_button(
        "PDF report",
        lambda: _pdf(result, diff),
        "cam_report.pdf",
        "application/pdf",
        on_click="ignore",
        icon=":material/picture_as_pdf:",
        key="eval_pdf",
        help="The report to hand over: settings, per-class tables, bars, quadrants, bias maps, "
        "verdicts and the release diff when run.",
    )
