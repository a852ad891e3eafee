"""Evaluation as a Ray Data job: the same rows and summary as :func:`cam_core.evaluation.evaluate`,
computed by a pool of Ray actors, each holding one model and engine.

The driver loads the model (a checkpoint that cannot load fails here, before Ray starts), lists
the images (:func:`~cam_core.scale.manifest.load_items`: a dataset folder or a Parquet
manifest), cuts them into batches of ``cfg.batch_size`` in the local run's order and hands Ray
Data one row per batch. ``map_batches`` runs :class:`BatchWorker` over an actor pool — one GPU
per actor when the cluster has GPUs, else one actor per ``threads`` CPUs — and each actor reads
and decodes its images, computes the rows with :func:`~cam_core.evaluation.rows.evaluate_batch`
and writes them as one Parquet file keyed by the batch (:class:`~cam_core.scale.parts.PartStore`).
Ray restarts a killed actor and retries its batch (Ray Data's actor defaults ``max_restarts=-1``,
``max_task_retries=-1``); the batch's file name is fixed by its content, so a retry rewrites the
same file and a worker skips a batch already written. The driver then reads one version of every
sample's rows back and reduces them with the local run's code (:func:`accumulate`,
:class:`~cam_core.evaluation.EvalResult`), so summary, CSV and HTML report are the local run's.

Ray is imported inside the functions that need it: importing this module does not import Ray.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cam_core.data import MAX_XML_BYTES, DataError, Sample, file_class, parse_voc
from cam_core.data.images import MAX_IMAGE_BYTES
from cam_core.evaluation.config import BASELINE_LAYER, EvalConfig
from cam_core.evaluation.loop import stratified_order
from cam_core.evaluation.result import Coverage, EvalResult, _Acc, accumulate, row_columns
from cam_core.evaluation.rows import evaluate_batch, public, resolve_layers
from cam_core.evaluation.sanity import run_sanity
from cam_core.evaluation.store import run_identity
from cam_core.scale.manifest import Item, dumps, load_items, loads, read_uri
from cam_core.scale.parts import PartStore, batch_key, is_finished

if TYPE_CHECKING:
    from cam_core.explain import Explainer
    from cam_core.models import ModelCard

__all__ = ["BatchWorker", "RayRun", "connect", "evaluate_items", "evaluate_on_ray"]

Progress = Callable[[int, int, str], None]


def connect(address: str | None = None, **init: Any) -> None:
    """Join the Ray cluster at ``address`` (``"auto"``, ``"ray://host:10001"``), or start a
    local one without the dashboard when None; nothing when Ray is already initialised.

    A remote cluster gets this package through ``runtime_env={"py_modules": [cam_core]}`` (its
    nodes need the same Python packages as this machine). ``init`` is passed to ``ray.init``.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = {"logging_level": "warning"}
    if address:
        import cam_core

        kwargs.update(address=address)
        kwargs["runtime_env"] = {"py_modules": [str(Path(cam_core.__file__).parent)]}
    else:
        kwargs.update(include_dashboard=False)
    try:
        ray.init(**{**kwargs, **init})
    except ConnectionError as exc:
        raise ValueError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None


def _error_row(cfg: EvalConfig, sample: Sample, message: str) -> dict[str, Any]:
    """The row of a sample that could not be evaluated (as ``evaluate_batch`` writes one)."""
    row: dict[str, Any] = dict.fromkeys(row_columns(cfg))
    row.update(stem=sample.stem, label=sample.label, **{"class": sample.label})
    row.update(method="-", layer=BASELINE_LAYER, n_boxes=0, error=message, _n=1)
    row.update(_best_ious=None, _pos=None, _neg=None)
    return row


def evaluate_items(
    ex: Explainer, items: Sequence[Item], cfg: EvalConfig, layers: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows of one batch: VOC XML named by the manifest is read here, images behind a URI are
    fetched to a temporary folder, then :func:`evaluate_batch` decodes and scores. An XML or
    image that cannot be read becomes an error row, as in the local run.
    """
    rows: list[dict[str, Any]] = []
    ready: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="cam-batch-") as tmp:
        for it in items:
            s = it.sample
            try:
                if it.annotation:
                    what = "bad annotation"
                    name = Path(it.annotation).name
                    ann = parse_voc(read_uri(it.annotation, MAX_XML_BYTES), name=name)
                    s = replace(s, boxes=ann.boxes, size=ann.size)
                if "://" in it.image:
                    what = "unreadable image"
                    local = Path(tmp) / f"{len(ready)}-{Path(it.image).name}"
                    local.write_bytes(read_uri(it.image, MAX_IMAGE_BYTES))
                    s = replace(s, path=local)
            except DataError as exc:
                rows.append(_error_row(cfg, s, f"{what}: {exc}"))
                continue
            ready.append(s)
        if ready:
            rows += evaluate_batch(ex, ready, cfg, layers)
    return rows


class BatchWorker:
    """A Ray Data actor: one model and engine, called with batches of ``{key, items}``.

    Returns one output row per batch: its key, rows written, error rows, and whether it was
    computed here (False: its file was already there).
    """

    def __init__(
        self,
        model: list[Any],
        card: ModelCard,
        cfg: EvalConfig,
        layers: tuple[str, ...],
        out: str,
        run: str,
        threads: int,
        device: str,
    ) -> None:
        import ray
        import torch

        from cam_core.explain import Explainer

        torch.set_num_threads(threads)
        net = ray.get(model[0]) if isinstance(model[0], ray.ObjectRef) else model[0]
        self.explainer = Explainer(net.to(device).eval(), card, batch_size=cfg.batch_size)
        self.cfg, self.layers = cfg, layers
        self.store = PartStore(out, run)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Compute and write every batch of ``batch`` whose file is not there yet."""
        keys, n_rows, n_errors, computed = [], [], [], []
        for key, payload in zip(batch["key"], batch["items"], strict=True):
            keys.append(str(key))
            if self.store.has(str(key)):
                n_rows.append(0)
                n_errors.append(0)
                computed.append(False)
                continue
            rows = evaluate_items(self.explainer, loads(str(payload)), self.cfg, self.layers)
            self.store.write(str(key), rows)
            n_rows.append(len(rows))
            n_errors.append(sum(1 for r in rows if r["error"]))
            computed.append(True)
        return {
            "key": np.array(keys),
            "rows": np.array(n_rows),
            "errors": np.array(n_errors),
            "computed": np.array(computed),
        }


@dataclass(frozen=True)
class RayRun:
    """A distributed run: its :class:`EvalResult`, where its rows are, and what it did —
    batches computed by this run, batches found already written, actors and device.
    """

    result: EvalResult
    out: str
    batches: int
    computed: int
    reused: int
    workers: int
    device: str


def _pool(
    cfg: EvalConfig,
    explainer: Explainer,
    layers: tuple[str, ...],
    store: PartStore,
    batches: list[tuple[str, list[Item]]],
    workers: int | None,
    threads: int,
    progress: Progress | None,
    n_total: int,
    n_before: int,
) -> tuple[int, int, int, str]:
    """Run the batches over the actor pool; (computed, reused, actors, device)."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        size, device, resources = gpus, "cuda", {"num_gpus": 1, "num_cpus": threads}
    else:
        size = max(1, int(res.get("CPU", 1)) // threads)
        device, resources = "cpu", {"num_cpus": threads}
    size = max(1, min(workers or size, len(batches)))
    rows = [{"key": k, "items": dumps(items)} for k, items in batches]
    sizes = {k: len(items) for k, items in batches}
    ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        BatchWorker,
        batch_size=1,
        compute=ActorPoolStrategy(size=size),
        fn_constructor_kwargs={
            "model": [ray.put(explainer.model)],
            "card": explainer.card,
            "cfg": cfg,
            "layers": layers,
            "out": store.out,
            "run": store.run,
            "threads": threads,
            "device": device,
        },
        **resources,
    )
    seen: set[str] = set()
    computed = reused = 0
    for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for key, was_computed in zip(out["key"], out["computed"], strict=True):
            if key in seen:
                continue
            seen.add(str(key))
            computed += bool(was_computed)
            reused += not was_computed
            if progress is not None:
                done = n_before + sum(sizes[k] for k in seen)
                progress(done, n_total, f"{done}/{n_total} images ({size} {device} workers)")
    return computed, reused, size, device


def evaluate_on_ray(
    cfg: EvalConfig,
    explainer: Explainer,
    *,
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    progress: Progress | None = None,
    init: Mapping[str, Any] | None = None,
) -> RayRun:
    """Score ``cfg`` on a Ray cluster; the result equals :func:`~cam_core.evaluation.evaluate`'s.

    ``cfg.data`` is a dataset folder or a Parquet manifest (:mod:`~cam_core.scale.manifest`);
    ``cfg.out`` the folder or URI of the rows (every worker must reach it; default: a new
    temporary folder, for a single-machine cluster). A rerun with the same ``out`` computes
    only the samples without finished rows. ``workers`` caps the actor pool (default: one per
    GPU, else one per ``threads`` CPUs). ``explainer`` is the driver's loaded model, shipped to
    the actors. Files the loader cannot use (bad XML, duplicate stems, bad manifest rows)
    become error rows. ``address``/``init``: see :func:`connect`.
    """
    if not isinstance(cfg, EvalConfig):
        raise TypeError(f"evaluate_on_ray() takes an EvalConfig, got {type(cfg).__name__}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    layers = resolve_layers(explainer, cfg.layers)  # KeyError before any work
    identity = run_identity(cfg, explainer.card, layers)
    items, load_errors = load_items(cfg.data, cfg.split)
    by_stem = {it.sample.stem: it for it in items}
    todo = [by_stem[s.stem] for s in stratified_order([it.sample for it in items])][: cfg.limit]
    out = cfg.out or tempfile.mkdtemp(prefix="cam-ray-")
    store = PartStore.create(out, identity)
    wanted = [it.sample.stem for it in todo]
    finished = {k for k, rows in store.read(wanted).items() if is_finished(rows)}
    pending = [it for it in todo if it.sample.stem not in finished]
    attempt, batches = uuid.uuid4().hex, []
    for start in range(0, len(pending), cfg.batch_size):
        chunk = pending[start : start + cfg.batch_size]
        batches.append((batch_key(store.run, attempt, [it.sample.stem for it in chunk]), chunk))
    if progress is not None and finished:
        progress(len(finished), len(todo), f"resumed {len(finished)} finished samples from {out}")
    computed = reused = n_workers = 0
    device = "-"
    if batches:
        connect(address, **(init or {}))
        computed, reused, n_workers, device = _pool(
            cfg,
            explainer,
            layers,
            store,
            batches,
            workers,
            threads,
            progress,
            len(todo),
            len(finished),
        )
    stored = store.read(wanted)
    accs: dict[tuple[str, str, str], _Acc] = {}
    rows: list[dict[str, Any]] = []
    for err in load_errors:
        stem = Path(err.path).stem
        sample = Sample(Path(err.path), stem, file_class(stem))
        rows.append(_error_row(cfg, sample, f"not evaluated: {err}"))
    for it in todo:
        for r in stored.get(it.sample.stem, []):
            accumulate(accs, r)
            rows.append(public(r))
    rows.sort(key=lambda r: r["stem"])  # stable: each sample's rows keep their order
    done = [it.sample.label for it in todo if it.sample.stem in stored]
    complete = len(done) == len(todo)
    sanity = None
    if cfg.sanity and complete:  # as the local run: on the driver, first samples in order
        sanity = run_sanity(cfg, explainer, [it.sample for it in todo], layers, None)
    result = EvalResult(
        config=cfg,
        classes=explainer.card.classes,
        layers=layers,
        rows=rows,
        n_samples=len(todo),
        n_done=len(done),
        complete=complete,
        accumulators=accs,
        model=explainer.card.name,
        coverage=Coverage.count([it.sample.label for it in todo], done),
        sanity=sanity,
    )
    return RayRun(result, out, len(batches), computed, reused, n_workers, device)
