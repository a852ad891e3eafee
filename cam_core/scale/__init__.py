"""Evaluation beyond one machine: the same rows, summary and report from a Ray Data job.

Modules: :mod:`~.manifest` (what a run evaluates: a dataset folder or a Parquet manifest of
image paths or URIs, boxes and labels, read through pyarrow filesystems), :mod:`~.parts` (the
run's rows as one Parquet file per batch, keyed by run identity and batch: resumable,
idempotent), :mod:`~.ray_eval` (the Ray Data job: an actor pool, one model per actor). Ray is an
optional dependency (``ray[data]``), imported only when a job runs; the app never imports this
package. The plan for a plant's archive, with measured figures: ``docs/scale.md``.
"""

from cam_core.scale.manifest import Item, load_items, read_manifest, write_manifest
from cam_core.scale.ray_eval import RayRun, connect, evaluate_on_ray

__all__ = [
    "Item",
    "RayRun",
    "connect",
    "evaluate_on_ray",
    "load_items",
    "read_manifest",
    "write_manifest",
]
