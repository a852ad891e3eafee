"""Side-by-side benchmark: cam_core's engine vs plain pytorch-grad-cam, same inputs, one run.

    python bench/bench_engine.py [--device cpu|cuda] [--arch resnet18] [--repeats 5] [--json F]

Prints ratios (ours / theirs, and ours / the forward+backward floor) and checks that the maps
agree (max abs diff). Absolute times are noisy on a shared CPU: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cam_core.data import find_neu_det, load_dataset, read_image
from cam_core.explain import Explainer, reference_cam
from cam_core.models import ModelCard, build_model, get_arch, load_model, preprocess


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds after one warm-up call."""
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--skip-scorecam", action="store_true")
    ap.add_argument(
        "--scorecam-only", action="store_true", help="only the Score-CAM comparison (slow part)"
    )
    ap.add_argument(
        "--checkpoint",
        default=None,
        help="a trained model (card beside it) instead of a random-init --arch: trained ReLU "
        "layers have dead channels, which our Score-CAM scores once",
    )
    ap.add_argument("--layer", default=None, help="target layer (default: the arch's first)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    torch.manual_seed(0)
    if args.checkpoint:
        loaded = load_model(args.checkpoint, device=args.device)
        model, card = loaded.model.eval(), loaded.card
        args.arch = card.arch
        spec = get_arch(card.arch)
    else:
        spec = get_arch(args.arch)
        model = build_model(args.arch, 6).to(args.device).eval()
        card = ModelCard(
            name="bench",
            arch=args.arch,
            classes=tuple(f"c{i}" for i in range(6)),
            multilabel=False,
            input_size=spec.input_size,
            mean=spec.mean,
            std=spec.std,
        )
    layer = args.layer or spec.target_layers[0]
    n_cls = len(card.classes)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (200, 200), np.uint8) for _ in range(args.batch)]
    neu = find_neu_det() if args.checkpoint else None
    if neu is not None:  # a trained model sees the data it was trained for (test split)
        test = load_dataset(neu, split="test").samples[: args.batch]
        images = [read_image(sample.path) for sample in test]
    x1 = preprocess(images[:1], card).to(args.device)
    xb = preprocess(images, card).to(args.device)
    ex = Explainer(model, card, batch_size=args.batch)
    r = args.repeats
    out: dict[str, float] = {}

    def fwd():
        with torch.no_grad():
            model(x1)

    def fwd_bwd(x=x1):
        xi = x.clone().requires_grad_(True)
        model(xi)[:, 0].sum().backward()
        model.zero_grad(set_to_none=True)

    if not args.scorecam_only:
        out["forward_1"] = timed(fwd, r)
        out["forward_backward_1"] = timed(fwd_bwd, r)
        out["forward_backward_batch"] = timed(lambda: fwd_bwd(xb), max(2, r // 2))

        # All 6 class maps of one image.
        out["ours_gradcam_6classes_1img"] = timed(
            lambda: ex.explain(images[:1], ["gradcam"], targets=[list(range(6))]), r
        )
        out["lib_gradcam_6calls_1img"] = timed(
            lambda: [reference_cam(model, "gradcam", x1, [c], [layer]) for c in range(6)], r
        )
        out["lib_gradcam_batch6_1img"] = timed(
            lambda: reference_cam(model, "gradcam", x1.repeat(6, 1, 1, 1), list(range(6)), [layer]),
            r,
        )

        # Agreement on the all-classes case.
        ours = ex.explain(images[:1], ["gradcam"], targets=[list(range(6))])
        ref = reference_cam(model, "gradcam", x1.repeat(6, 1, 1, 1), list(range(6)), [layer])
        ours_in = np.stack(
            [
                torch.nn.functional.interpolate(
                    torch.from_numpy(ref[c])[None, None],
                    size=(200, 200),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )[0, 0].numpy()
                for c in range(6)
            ]
        )
        diff = float(
            np.abs(np.stack([ours.get(0, c, "gradcam").cam for c in range(6)]) - ours_in).max()
        )
        out["maxdiff_gradcam_vs_lib_at_image_res"] = diff

        # Per method, one image (predicted class) and a batch.
        for m in ("gradcam", "gradcam++", "layercam", "eigencam"):
            out[f"ours_{m}_1img"] = timed(lambda m=m: ex.explain(images[:1], [m], targets=[[0]]), r)
            out[f"lib_{m}_1img"] = timed(lambda m=m: reference_cam(model, m, x1, [0], [layer]), r)
            out[f"ours_{m}_batch"] = timed(
                lambda m=m: ex.explain(images, [m], targets=[[0]] * len(images)), max(2, r // 2)
            )
            out[f"lib_{m}_batch"] = timed(
                lambda m=m: reference_cam(model, m, xb, [0] * len(images), [layer]), max(2, r // 2)
            )

        # App latency: upload → 3 gradient methods × 6 classes, warm.
        out["ours_app_3methods_6classes"] = timed(
            lambda: ex.explain(
                images[:1], ["gradcam", "gradcam++", "layercam"], targets=[list(range(6))]
            ),
            r,
        )

    if not args.skip_scorecam:
        out["ours_scorecam_1img"] = timed(
            lambda: ex.explain(images[:1], ["scorecam"], targets=[[0]]), 1
        )
        out["lib_scorecam_1img"] = timed(
            lambda: reference_cam(model, "scorecam", x1, [0], [layer]), 1
        )
        a = ex.explain(images[:1], ["scorecam"], targets=[[0]]).get(0, 0, "scorecam").cam
        b = reference_cam(model, "scorecam", x1, [0], [layer])[0]
        b = torch.nn.functional.interpolate(
            torch.from_numpy(b)[None, None],
            size=(200, 200),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0, 0].numpy()
        out["maxdiff_scorecam_vs_lib_at_image_res"] = float(np.abs(a - b).max())
        every = list(range(n_cls))
        out["ours_scorecam_allclasses_1img"] = timed(
            lambda: ex.explain(images[:1], ["scorecam"], targets=[every]), 1
        )
        out["lib_scorecam_allclasses_1img"] = timed(
            lambda: reference_cam(model, "scorecam", x1.repeat(n_cls, 1, 1, 1), every, [layer]), 1
        )

    n = len(images)
    ratios: dict[str, float] = {}
    if not args.scorecam_only:
        fb = out["forward_backward_1"]
        ratios = {
            "6 classes: ours / (fwd+bwd)": out["ours_gradcam_6classes_1img"] / fb,
            "6 classes: lib 6 calls / ours": out["lib_gradcam_6calls_1img"]
            / out["ours_gradcam_6classes_1img"],
            "6 classes: lib batch-of-6 / ours": out["lib_gradcam_batch6_1img"]
            / out["ours_gradcam_6classes_1img"],
            "gradcam batch throughput: (fwd+bwd floor) / ours": out["forward_backward_batch"]
            / out["ours_gradcam_batch"],
            "app 3 methods x 6 classes (s)": out["ours_app_3methods_6classes"],
        }
        for m in ("gradcam", "gradcam++", "layercam", "eigencam"):
            ratios[f"{m} 1 img: lib / ours"] = out[f"lib_{m}_1img"] / out[f"ours_{m}_1img"]
            ratios[f"{m} batch {n}: lib / ours"] = out[f"lib_{m}_batch"] / out[f"ours_{m}_batch"]
    if "ours_scorecam_1img" in out:
        ratios["scorecam 1 img: lib / ours"] = out["lib_scorecam_1img"] / out["ours_scorecam_1img"]
        ratios[f"scorecam all {n_cls} classes 1 img: lib / ours"] = (
            out["lib_scorecam_allclasses_1img"] / out["ours_scorecam_allclasses_1img"]
        )

    dev = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU x{torch.get_num_threads()} threads"
    )
    print(f"# {args.arch} @ {card.input_size}px, layer {layer}, on {dev}, batch {n}, median of {r}")
    for k, v in out.items():
        print(
            f"{k:45s} {v * 1000:10.1f} ms" if not k.startswith("maxdiff") else f"{k:45s} {v:10.2e}"
        )
    print()
    for k, v in ratios.items():
        print(f"{k:55s} {v:8.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": dev, "times_s": out, "ratios": ratios}, indent=2)
        )


if __name__ == "__main__":
    main()
