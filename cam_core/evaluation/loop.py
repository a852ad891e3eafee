"""The dataset loop: samples in class-stratified order, batch by batch, rows kept as they come."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cam_core.data import Sample, load_dataset
from cam_core.evaluation.config import EvalConfig
from cam_core.evaluation.result import Coverage, EvalResult, _Acc, accumulate
from cam_core.evaluation.rows import evaluate_batch, public, resolve_layers
from cam_core.evaluation.sanity import run_sanity
from cam_core.evaluation.store import RowStore, identity_key, run_identity
from cam_core.explain import Explainer

__all__ = ["Progress", "evaluate", "run_folder", "stratified_order"]

Progress = Callable[[int, int, str], None]
"""progress(done_samples, total_samples, message), called after each batch."""


def stratified_order(samples: Iterable[Sample]) -> list[Sample]:
    """``samples`` with the file classes taken in turn (round-robin over sorted class names,
    no class last; each class in stem order): every prefix covers the classes evenly, so an
    image limit, a stop or a time budget never leaves a class out.
    """
    by_label: dict[str | None, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: s.stem):
        by_label.setdefault(s.label, []).append(s)
    queues = [by_label[k] for k in sorted(by_label, key=lambda k: (k is None, k or ""))]
    depth = max(map(len, queues), default=0)
    return [q[d] for d in range(depth) for q in queues if d < len(q)]


def run_folder(root: str | Path, cfg: EvalConfig, explainer: Explainer) -> Path:
    """A store folder under ``root`` named by the run's identity: the same settings, model and
    data always give the same folder, so ``evaluate(replace(cfg, out=str(run_folder(...))))``
    resumes a stopped run and never mixes runs (``cfg.out``, ``limit``, ``batch_size`` aside).
    """
    layers = resolve_layers(explainer, cfg.layers)
    return Path(root) / identity_key(run_identity(cfg, explainer.card, layers))[:16]


def evaluate(
    cfg: EvalConfig,
    *,
    explainer: Explainer | None = None,
    samples: Sequence[Sample] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EvalResult:
    """Score every (sample, target class, method, layer) and the baselines over a dataset.

    Without ``explainer`` the checkpoint (and the card beside it) is loaded on the CPU; without
    ``samples`` ``cfg.data``/``cfg.split`` are read. Samples are processed in
    :func:`stratified_order` (the first ``cfg.limit`` of it), ``batch_size`` at a time;
    ``should_stop()`` is asked before each batch (True: a partial result, state "stopped",
    covering every class evenly) and ``progress`` is called after each. With ``cfg.out`` rows
    are stored per batch and a rerun computes only the missing samples. A sample that cannot be
    read, or a map that cannot be computed, becomes a row with ``error`` set. With
    ``cfg.sanity`` a complete run ends with the sanity checks (``EvalResult.sanity``,
    :mod:`~cam_core.evaluation.sanity`). Raises ValueError
    when ``cfg.out`` holds another configuration, KeyError for an unknown layer.
    """
    if not isinstance(cfg, EvalConfig):
        raise TypeError(f"evaluate() takes an EvalConfig, got {type(cfg).__name__}")
    if explainer is None:
        from cam_core.models import load_model

        loaded = load_model(cfg.checkpoint)
        explainer = Explainer(loaded.model, loaded.card, batch_size=cfg.batch_size)
    if samples is None:
        samples = load_dataset(cfg.data, split=cfg.split).samples
    todo = stratified_order(samples)[: cfg.limit]
    layers = resolve_layers(explainer, cfg.layers)
    identity = run_identity(cfg, explainer.card, layers)
    store = RowStore(Path(cfg.out), identity) if cfg.out else None
    by_stem: dict[str, list[dict[str, Any]]] = {}
    accs: dict[tuple[str, str, str], _Acc] = {}
    wanted = {s.stem for s in todo}
    for stem, rows in (store.done if store else {}).items():
        if stem in wanted:
            for r in rows:
                accumulate(accs, r)
            by_stem[stem] = [public(r) for r in rows]
    pending = [s for s in todo if s.stem not in by_stem]
    finished = set(by_stem)
    n_done = len(finished)
    if progress is not None and n_done:
        progress(n_done, len(todo), f"resumed {n_done} finished samples from {cfg.out}")
    complete = True
    for start in range(0, len(pending), cfg.batch_size):
        if should_stop is not None and should_stop():
            complete = False
            break
        batch = pending[start : start + cfg.batch_size]
        rows = evaluate_batch(explainer, batch, cfg, layers)
        if store is not None:
            store.append(rows)
        for r in rows:
            accumulate(accs, r)
            by_stem.setdefault(r["stem"], []).append(public(r))
        finished.update(s.stem for s in batch)
        n_done = len(finished)
        if progress is not None:
            progress(n_done, len(todo), f"{n_done}/{len(todo)} images")
    sanity = None
    if cfg.sanity and complete:  # the first evaluated samples, in stratified order
        done_samples = [s for s in todo if s.stem in finished]
        report = None if progress is None else (lambda msg: progress(n_done, len(todo), msg))
        sanity = run_sanity(cfg, explainer, done_samples, layers, report)
    in_stem_order = sorted(todo, key=lambda s: s.stem)
    return EvalResult(
        config=cfg,
        classes=explainer.card.classes,
        layers=layers,
        rows=[r for s in in_stem_order for r in by_stem.get(s.stem, [])],
        n_samples=len(todo),
        n_done=n_done,
        complete=complete,
        accumulators=accs,
        model=explainer.card.name,
        coverage=Coverage.count(
            [s.label for s in todo], [s.label for s in todo if s.stem in finished]
        ),
        sanity=sanity,
    )
