"""Side-by-side benchmark of the faithfulness metrics, one run, same maps and inputs.

    nice -n 10 python bench/bench_faithfulness.py [--model models/demo-synthetic/model.pt]
        [--images 32] [--road-images 4] [--steps 20] [--batch 64] [--threads 1] [--json F]

1. ROAD (combined, 9 percentiles): ours (cam_core.metrics.road) vs pytorch-grad-cam's
   ``ROADCombined`` on the same Grad-CAM maps (one per class of ``--road-images`` images), with
   the same torch seed: wall times, their ratio, the imputation alone (same masks, both
   imputers) and the largest difference of the scores.
2. Deletion + insertion, ``--steps`` steps, every class of ``--images`` images (Grad-CAM maps;
   blank maps are left out and counted): our whole computation (orders, perturbed copies,
   random-order reference) vs only the forward passes it needs, run on ready-made inputs in
   the same batch size. The ratio is the overhead (target <= 1.3).

Images: NEU-DET's test split when /work/shared/NEU-DET (or find_neu_det()) is there, else the
synthetic demo images. Absolute times are noisy on a shared CPU: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import cam_core.metrics.faithfulness as FM
from cam_core.cams.capture import class_probs
from cam_core.data import find_neu_det, load_dataset, read_image
from cam_core.explain import Explainer
from cam_core.metrics.imputation import impute, road_masks
from cam_core.models import load_model, preprocess
from cam_core.synth import synthetic_samples


def _images(n: int) -> tuple[list[np.ndarray], str]:
    root = find_neu_det()
    if root is not None:
        samples = load_dataset(root, split="test").samples
        by_class: dict[str, list] = {}
        for s in samples:
            by_class.setdefault(s.label or "", []).append(s)
        order = [
            q[d]
            for d in range(max(map(len, by_class.values())))
            for q in by_class.values()
            if d < len(q)
        ]
        return [read_image(s.path) for s in order[:n]], f"NEU-DET test split ({root})"
    samples = synthetic_samples(n_per_class=max(1, -(-n // 6)))
    return [read_image(s.path) for s in samples[:n]], "synthetic demo images"


class _Probs(torch.nn.Module):
    """The model with its card's probabilities as output (pytorch-grad-cam scores outputs)."""

    def __init__(self, model: torch.nn.Module, multilabel: bool) -> None:
        super().__init__()
        self.model, self.multilabel = model, multilabel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return class_probs(self.model(x), self.multilabel)


def _maps(ex: Explainer, images: list[np.ndarray], size: int) -> tuple[list, list, list]:
    """Grad-CAM maps of every class at the model's input size; blank ones left out."""
    k = len(ex.card.classes)
    exp = ex.explain(images, ["gradcam"], targets=[list(range(k))] * len(images))
    maps, imgs, classes = [], [], []
    for r in exp.results:
        cam = F.interpolate(
            torch.from_numpy(r.cam)[None, None], size=(size, size), mode="bilinear"
        )[0, 0].numpy()
        if cam.max() > cam.min():
            maps.append(cam.astype(np.float32))
            imgs.append(r.image)
            classes.append(r.class_index)
    return maps, imgs, classes


def _clock(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_road(model, scorer, x, maps, imgs, classes) -> dict:
    regular = [t for t, m in enumerate(maps) if road_masks(m).any(axis=(2, 3)).all()]
    torch.manual_seed(0)
    ours, t_ours = _clock(lambda: FM.road(scorer, x, maps, imgs, classes))
    # pytorch-grad-cam: one cam per batch item, so the images are repeated per map
    xs = x[imgs]
    targets = [ClassifierOutputTarget(c) for c in classes]
    torch.manual_seed(0)
    theirs, t_theirs = _clock(lambda: ROADCombined()(xs, np.stack(maps), targets, model))
    # the imputation alone, same masks (LeRF + MoRF, 9 percentiles) of the first map
    masks = road_masks(maps[0])
    host = x[imgs[0]].numpy()
    _, t_imp_ours = _clock(lambda: [impute(host, m) for m in masks.reshape(-1, *maps[0].shape)])
    imputer = NoisyLinearImputer()
    _, t_imp_theirs = _clock(
        lambda: [
            imputer(x[imgs[0]], torch.from_numpy(m.astype(np.float32)))
            for m in masks.reshape(-1, *maps[0].shape)
        ]
    )
    return {
        "maps": len(maps),
        "ours_s": t_ours,
        "pytorch_grad_cam_s": t_theirs,
        "speedup": t_theirs / t_ours,
        "imputation_18_solves_ours_s": t_imp_ours,
        "imputation_18_solves_pytorch_grad_cam_s": t_imp_theirs,
        "imputation_speedup": t_imp_theirs / t_imp_ours,
        "max_abs_diff": float(np.abs(ours - theirs).max()),
        # pytorch-grad-cam's rule keeps no pixel when ties (a ReLU'd map's zeros) fill the
        # percentile: its system is singular there and ours fills with the image mean
        "degenerate_maps": len(maps) - len(regular),
        "max_abs_diff_regular": float(np.abs(ours - theirs)[regular].max()) if regular else None,
    }


def bench_curves(scorer, x, maps, imgs, classes, steps: int, batch: int, repeats: int) -> dict:
    def ours():
        return FM.deletion_insertion(scorer, x, maps, imgs, classes, steps=steps, batch_size=batch)

    n_orders = len(maps) + len(set(imgs))  # distinct maps + one random order per image
    needed = n_orders * 2 * (steps - 1) + 2 * x.shape[0]  # + the image and its filled copy
    ready = x[torch.arange(batch) % x.shape[0]].clone()

    def plain() -> None:
        with torch.no_grad():
            for s in range(0, needed, batch):
                scorer(ready[: min(batch, needed - s)]).float()

    def no_model(t: torch.Tensor) -> torch.Tensor:  # the construction alone: a free "model"
        return t.mean(dim=(2, 3)).repeat(1, 2)

    t_ours, t_plain = [], []
    for _ in range(repeats):  # alternated (ABAB), the best of each: the machine is shared
        curves, dt = _clock(ours)
        t_ours.append(dt)
        t_plain.append(_clock(plain)[1])
    _, t_build = _clock(
        lambda: FM.deletion_insertion(
            no_model, x, maps, imgs, classes, steps=steps, batch_size=batch
        )
    )
    return {
        "maps": len(maps),
        "images": int(x.shape[0]),
        "forwards": needed,
        "ours_s": min(t_ours),
        "plain_forwards_s": min(t_plain),
        "ratio": min(t_ours) / min(t_plain),
        "all_ours_s": t_ours,
        "all_plain_s": t_plain,
        "construction_alone_s": t_build,
        "construction_share": t_build / min(t_plain),
        "mean_deletion_auc": float(curves.deletion_auc.mean()),
        "mean_deletion_auc_random": float(curves.deletion_auc_random.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/demo-synthetic/model.pt")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--road-images", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="ABAB rounds of the curves part")
    ap.add_argument("--skip-road", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    model = _Probs(loaded.model, loaded.card.multilabel).eval()
    ex = Explainer(loaded.model, loaded.card)
    size = loaded.card.input_size
    images, source = _images(max(args.images, args.road_images))
    print(f"model {args.model} ({loaded.card.arch}, {size} px), {source}, {args.threads} thread(s)")

    road = {}
    if not args.skip_road:
        x_road = preprocess(images[: args.road_images], loaded.card)
        road = bench_road(model, model, x_road, *_maps(ex, images[: args.road_images], size))
        print(
            f"ROAD, {road['maps']} maps: ours {road['ours_s']:.1f} s, pytorch-grad-cam "
            f"{road['pytorch_grad_cam_s']:.1f} s -> {road['speedup']:.2f}x faster "
            f"(imputation alone {road['imputation_speedup']:.2f}x: "
            f"{road['imputation_18_solves_ours_s']:.2f} vs "
            f"{road['imputation_18_solves_pytorch_grad_cam_s']:.2f} s for 18 masks); "
            f"max |diff| {road['max_abs_diff']:.1e}, {road['max_abs_diff_regular']} on the "
            f"{road['maps'] - road['degenerate_maps']} maps whose every removal keeps a pixel"
        )
    x = preprocess(images[: args.images], loaded.card)
    maps = _maps(ex, images[: args.images], size)
    curves = bench_curves(model, x, *maps, args.steps, args.batch, args.repeats)
    print(
        f"deletion+insertion, {args.steps} steps, {curves['maps']} maps of {curves['images']} "
        f"images ({curves['forwards']} forwards): ours {curves['ours_s']:.1f} s, the plain "
        f"forwards {curves['plain_forwards_s']:.1f} s -> ratio {curves['ratio']:.2f} (best of "
        f"{args.repeats}, alternated); building the copies alone "
        f"{curves['construction_alone_s']:.1f} s = {curves['construction_share']:.1%} of the "
        "plain forwards"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"road": road, "curves": curves}, indent=2))


if __name__ == "__main__":
    main()
