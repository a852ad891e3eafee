"""The sanity check in a dataset evaluation: ``EvalConfig(sanity=True)`` → ``EvalResult.sanity``.

After the main loop (and only when it was not stopped), :func:`evaluate` runs
:func:`cam_core.sanity.sanity_check` for every (method, layer) of the run on the first
``cfg.sanity_images`` evaluated samples in the run's class-stratified order (so the images
cover the classes evenly), each explained for the class the target rule picks first: the
file's class (``"file-class"``), its first box class (``"box-classes"``), the predicted class
(``"predicted"``, or when the file's class is not one of the model's). Flip averaging follows
``cfg.flip_smooth``. The result is :func:`cam_core.sanity.sanity_frame`'s DataFrame; with
``cfg.out`` it is saved there as ``sanity.csv`` with ``sanity.json`` (what it was computed
on), and a resumed run with the same images reads it instead of computing it again. A check
that cannot run leaves an empty frame with ``frame.attrs["error"]`` (never an exception).

For a page or the CLI::

    res = evaluate(replace(cfg, sanity=True))
    verdict = res.sanity.groupby(["method", "layer"])[["passed", "random_logit_passed"]].first()
    figs = cam_core.sanity_figures.sanity_figures(res.sanity)  # (method, layer) → plotly figure
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cam_core.data import DataError, Sample, read_image
from cam_core.evaluation.config import EvalConfig
from cam_core.explain import CamError, Explainer
from cam_core.sanity import DEFAULT_SEED, FRAME_COLUMNS, THRESHOLD, sanity_check, sanity_frame

__all__ = ["SANITY_CSV", "SANITY_JSON", "run_sanity"]

SANITY_CSV = "sanity.csv"
SANITY_JSON = "sanity.json"


def _target(sample: Sample, rule: str, classes: Sequence[str]) -> int | None:
    if rule == "file-class" and sample.label in classes:
        return classes.index(sample.label)
    if rule == "box-classes":
        for b in sample.boxes:
            if b.cls in classes:
                return classes.index(b.cls)
    return None  # the predicted class


def _settings(
    cfg: EvalConfig, layers: Sequence[str], stems: Sequence[str], targets: Sequence[int | None]
) -> dict[str, Any]:
    return {
        "stems": list(stems),
        "targets": list(targets),
        "methods": list(cfg.methods),
        "layers": list(layers),
        "flip_smooth": cfg.flip_smooth,
        "seed": DEFAULT_SEED,
        "threshold": THRESHOLD,
    }


def run_sanity(
    cfg: EvalConfig,
    explainer: Explainer,
    samples: Sequence[Sample],
    layers: Sequence[str],
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """The sanity frame of ``cfg``'s methods × ``layers`` on the first ``cfg.sanity_images``
    readable ``samples`` (read from / saved to ``cfg.out`` when set). Unreadable images are
    skipped. A check that cannot run (no readable image, a map that is not finite on a
    randomised copy, a model that cannot be copied) gives an empty frame whose
    ``frame.attrs["error"]`` says why — the evaluation's rows stand. ``progress(message)`` is
    called per map set.
    """
    images, stems, targets = [], [], []
    for s in samples:
        if len(images) == cfg.sanity_images:
            break
        try:
            images.append(read_image(s.path))
        except (DataError, OSError):
            continue
        stems.append(s.stem)
        targets.append(_target(s, cfg.target_rule, explainer.card.classes))
    if not images:
        frame = pd.DataFrame(columns=list(FRAME_COLUMNS))
        frame.attrs["error"] = "sanity check: none of the evaluated images could be read"
        return frame
    settings = _settings(cfg, layers, stems, targets)
    out = Path(cfg.out) if cfg.out else None
    if out is not None and (out / SANITY_CSV).is_file() and (out / SANITY_JSON).is_file():
        try:
            saved = json.loads((out / SANITY_JSON).read_text(encoding="utf-8"))
            frame = pd.read_csv(out / SANITY_CSV)
            if saved == settings and list(frame.columns) == list(FRAME_COLUMNS):
                return frame
        except (OSError, ValueError):
            pass  # unreadable: computed again and rewritten
    try:
        results = sanity_check(
            explainer,
            images,
            cfg.methods,
            layers=layers,
            targets=targets,
            flip_smooth=cfg.flip_smooth,
            progress=None if progress is None else (lambda d, t, msg: progress(msg)),
        )
    except (CamError, ValueError, TypeError) as exc:  # the rows stand; say why there is none
        frame = pd.DataFrame(columns=list(FRAME_COLUMNS))
        frame.attrs["error"] = f"sanity check failed: {exc}"
        return frame
    frame = sanity_frame(results)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / SANITY_CSV, index=False, float_format="%.6g")
        (out / SANITY_JSON).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return frame
