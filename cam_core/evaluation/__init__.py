"""Evaluation: localization metrics of methods × layers over a dataset, beside trivial baselines.

For every (sample, target class, method, layer) one *row* of figures is computed from the map and
the boxes of that class (``Sample.boxes_for``), then the map is dropped: memory holds rows and the
dataset accumulators (MaxBoxAccV2, PxAP) only. Target classes follow ``target_rule``:

- ``"file-class"``: the file's class (NEU-DET's file-name prefix), scored against its boxes;
- ``"box-classes"``: every class with boxes in the image, each against its own boxes;
- ``"predicted"``: the model's predicted class(es) against that class's boxes.

A row whose class has no boxes in the image is kept, with metrics None (not scoreable). The
baselines ``baseline:centre`` (a single peak at the centre pixel), ``baseline:gaussian`` and
``baseline:uniform`` are scored on the same (sample, class) pairs, as methods with layer ``"-"``.

Modules: :mod:`~.config` (what a run is), :mod:`~.rows` (a batch → rows), :mod:`~.store` (the
resumable row store), :mod:`~.loop` (the dataset loop), :mod:`~.result` (rows → summary,
coverage, state), :mod:`~.autoconfig` (pick method/layer/threshold, write the card),
:mod:`~.report` (HTML), :mod:`~.files` (explain image files into a folder), :mod:`~.worst`
(the rows a person should look at first). The command line lives in :mod:`cam_core.cli`.
"""

from cam_core.evaluation.autoconfig import auto_configure, write_recommended
from cam_core.evaluation.config import (
    BASELINE_LAYER,
    BASELINES,
    METRICS,
    PXAP_BINS,
    TARGET_RULES,
    EvalConfig,
)
from cam_core.evaluation.files import ExplainedFiles, explain_files
from cam_core.evaluation.loop import Progress, evaluate, run_folder, stratified_order
from cam_core.evaluation.report import build_report, report_figures, write_report
from cam_core.evaluation.result import Coverage, EvalResult

__all__ = [
    "BASELINES",
    "BASELINE_LAYER",
    "METRICS",
    "PXAP_BINS",
    "TARGET_RULES",
    "Coverage",
    "EvalConfig",
    "EvalResult",
    "ExplainedFiles",
    "Progress",
    "auto_configure",
    "build_report",
    "evaluate",
    "explain_files",
    "report_figures",
    "run_folder",
    "stratified_order",
    "write_recommended",
    "write_report",
]
