"""What the review views cost an evaluation: the positional-bias grids (encoded per method row,
accumulated per class) plus the quadrant, confusion and bias tables, side by side with the same
evaluation without the grids, alternating A B A B in one process.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/review_overhead.py \
        --data ../shared/NEU-DET --images 300 --repeats 2

The default bundled model with its recommended map (Grad-CAM @ head, flip averaging), 300
images of the whole set (classes in turn), row store on (as the Evaluate page runs it). Prints
each run's wall and process-CPU seconds and the ratios (with review) / (without) of the medians
(CPU time is the steadier figure on a shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from cam_core.data import load_dataset
from cam_core.evaluation import EvalConfig, evaluate
from cam_core.explain import Explainer
from cam_core.models import load_model
from cam_core.review import bias, quadrants

ROOT = Path(__file__).resolve().parents[1]


def _run(
    cfg: EvalConfig, explainer: Explainer, samples: tuple, with_review: bool
) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one evaluation, with or without the review."""
    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = EvalConfig(**{**cfg.__dict__, "out": tmp})
        t0, c0 = time.perf_counter(), time.process_time()
        if with_review:
            result = evaluate(run_cfg, explainer=explainer, samples=samples)
            rows = result.rows_frame()
            method, layer = cfg.methods[0], result.layers[0]
            quadrants.quadrant_counts(rows, method, layer, classes=result.classes)
            quadrants.quadrant_rows(rows, method, layer)
            quadrants.confusion(rows, result.classes)
            bias.bias_table(result, method, layer)
        else:
            with (
                mock.patch("cam_core.evaluation.rows.encode_grid", lambda cam: None),
                mock.patch("cam_core.evaluation.rows.normalised_boxes", lambda b, s: None),
            ):
                evaluate(run_cfg, explainer=explainer, samples=samples)
        return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "NEU-DET"))
    p.add_argument("--checkpoint", default=str(ROOT / "models/neu-boxsup-patch-resnet18/model.pt"))
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reverse", action="store_true", help="run 'without' first in each pair")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.checkpoint)
    rec = loaded.card.recommended
    explainer = Explainer(loaded.model, loaded.card, batch_size=16)
    samples = load_dataset(args.data).samples
    cfg = EvalConfig(
        data=args.data,
        checkpoint=args.checkpoint,
        split=None,
        methods=(rec.method if rec else "gradcam",),
        layers=(rec.layer if rec else None,),
        flip_smooth=bool(rec.flips) if rec else False,
        limit=args.images,
        batch_size=16,
    )
    print(f"{args.images} images · {cfg.methods[0]} @ {cfg.layers[0]} · flips {cfg.flip_smooth}")
    _run(EvalConfig(**{**cfg.__dict__, "limit": 8}), explainer, samples, True)  # warm-up
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.repeats):
        for with_review in (False, True) if args.reverse else (True, False):
            t, cpu = _run(cfg, explainer, samples, with_review)
            times[with_review].append((t, cpu))
            what = "with   " if with_review else "without"
            print(f"{what}: {t:7.2f} s wall, {cpu:7.2f} s CPU", flush=True)
    for k, name in ((0, "wall"), (1, "CPU")):
        a = statistics.median(t[k] for t in times[True])
        b = statistics.median(t[k] for t in times[False])
        print(f"{name}: median with {a:.2f} s, without {b:.2f} s: ratio {a / b:.3f}")


if __name__ == "__main__":
    main()
