"""Sanity checks (cam_core.sanity) of a model on the first N NEU-DET test images of an evaluation.

    nice -n 10 .venv/bin/python docs/tools/sanity_run.py [--checkpoint PT] [--images 8]
        [--methods gradcam,gradcam++,eigencam] [--layers head,layer2] [--out DIR]

Runs ``evaluate`` with ``sanity=True`` (the images are the run's first N in class-stratified
order) and prints, per (method, layer): mean |Spearman ρ| and SSIM to the intact model's map at
each randomization depth, the random-logit ρ and the verdicts. With ``--out`` the rows,
``sanity.csv`` and one chart per method (``sanity_<method>_<layer>.html``) are written there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cam_core.data import find_neu_det
from cam_core.evaluation import EvalConfig, evaluate
from cam_core.sanity_figures import sanity_figures

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    """Print the tables."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=str(ROOT / "models/neu-boxsup-patch-resnet18/model.pt"))
    ap.add_argument("--data", default=None)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--methods", default="gradcam,gradcam++,eigencam")
    ap.add_argument("--layers", default="")
    ap.add_argument("--flip-smooth", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data = args.data or str(find_neu_det())
    cfg = EvalConfig(
        data=data,
        checkpoint=args.checkpoint,
        split="test",
        methods=tuple(args.methods.split(",")),
        layers=tuple(args.layers.split(",")) if args.layers else (None,),
        limit=args.images,
        flip_smooth=args.flip_smooth,
        sanity=True,
        sanity_images=args.images,
        out=args.out,
    )
    t0 = time.perf_counter()
    res = evaluate(cfg)
    frame = res.sanity
    assert frame is not None
    if frame.empty:
        sys.exit(frame.attrs.get("error", "no sanity rows"))
    print(f"{res.model}: {res.status()}; {time.perf_counter() - t0:.0f} s")
    for (method, layer), rows in frame.groupby(["method", "layer"], sort=False):
        walk = rows[rows.check == "randomization"]
        logit = rows[rows.check == "random-logit"].iloc[0]
        print(
            f"\n{method} @ {layer}: randomization {'PASS' if rows.passed.iloc[0] else 'FAIL'}, "
            f"random logit {'PASS' if rows.random_logit_passed.iloc[0] else 'FAIL'} "
            f"(ρ {logit.spearman:.3f} [{logit.ci_low:.2f}, {logit.ci_high:.2f}], "
            f"SSIM {logit.ssim:.3f}, n {logit.n})"
        )
        for r in walk.itertuples():
            block = "intact" if r.depth == 0 else f"+{r.block}"
            print(
                f"  {block:<12} |ρ| {r.abs_spearman:.3f} [{r.ci_low:.2f}, {r.ci_high:.2f}]  "
                f"ρ {r.spearman:+.3f}  "
                f"SSIM {r.ssim:.3f}  n {r.n}"
            )
    if args.out:
        for (method, layer), fig in sanity_figures(frame).items():
            safe = method.replace("+", "p")
            fig.write_html(Path(args.out) / f"sanity_{safe}_{layer}.html", include_plotlyjs="cdn")


if __name__ == "__main__":
    main()
