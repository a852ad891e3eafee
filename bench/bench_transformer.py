"""Side-by-side benchmark on a vision transformer: cam_core's engine vs plain pytorch-grad-cam,
and Grad-CAM throughput vs plain inference, same inputs, one run.

    nice -n 10 python bench/bench_transformer.py [--arch vit_small_patch16_224] [--threads 2]
        [--checkpoint models/<name>/model.pt] [--repeats 5] [--json F]

1. Six class maps of one image: one engine call (one forward, one batched backward that stops
   at the target layer) vs six pytorch-grad-cam ``GradCAM`` calls with its documented
   ``vit_reshape_transform``, as its tutorial writes them. Target: ≥ 10×.
2. Batch of 32: Grad-CAM maps of the predicted class (engine, images → maps at image size)
   vs plain inference of the same batch (the model's forward alone, and the engine's
   ``predict``: preprocessing + forward). Target: ≥ 0.9× plain inference throughput.

Default: timm's ViT-S/16 at 224 px with random weights (nothing downloaded). Timings are
interleaved (A B A B …) and medians reported; read the ratios, absolute times are noisy on a
shared CPU. The maps of part 1 are checked against pytorch-grad-cam's (max abs difference).
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

from cam_core.explain import Explainer
from cam_core.models import ModelCard, load_model, preprocess, resolve_layer
from cam_core.models.timm_models import arch_name


def interleaved(fns: dict[str, callable], repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds of each function, run A B A B … after one warm-up each
    (CPU time: this process's, less disturbed by other jobs on a shared machine).
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[k].append((time.perf_counter() - t, time.process_time() - c))
    return {
        k: {
            "wall": statistics.median(w for w, _ in v),
            "cpu": statistics.median(c for _, c in v),
        }
        for k, v in times.items()
    }


def ratio(times: dict[str, dict[str, float]], num: str, den: str) -> dict[str, float]:
    """``times[num] / times[den]`` by wall and by CPU time."""
    return {kind: times[num][kind] / times[den][kind] for kind in ("wall", "cpu")}


def random_vit(arch: str, classes: int) -> tuple[torch.nn.Module, ModelCard]:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=classes).eval()
    with torch.no_grad():  # a random head with some spread (timm may zero-init it)
        model.get_classifier().weight.normal_(0, 0.05)
    size = model.patch_embed.img_size
    card = ModelCard(
        name=f"{arch} (random weights)",
        arch=arch_name("timm", arch),
        classes=tuple(f"class_{i}" for i in range(classes)),
        multilabel=False,
        input_size=size[0] if size[0] == size[1] else size,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    return model, card


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="vit_small_patch16_224")
    ap.add_argument("--checkpoint", default=None, help="a model with its card instead")
    ap.add_argument("--layer", default=None, help="default: the last block's norm1 (timm ViT)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

    if args.checkpoint:
        loaded = load_model(args.checkpoint)
        model, card = loaded.model, loaded.card
    else:
        model, card = random_vit(args.arch, 6)
    blocks = [n for n, _ in model.named_children() if n == "blocks"]
    layer = args.layer or (
        f"blocks.{len(model.blocks) - 1}.norm1" if blocks else card.default_layer
    )
    h, w = card.input_hw
    patch = model.patch_embed.patch_size[0] if hasattr(model, "patch_embed") else None
    prefix = getattr(model, "num_prefix_tokens", 1)
    grid = (h // patch, w // patch) if patch else None
    rng = np.random.default_rng(0)
    images = [(rng.random((200, 200)) * 255).astype(np.uint8) for _ in range(args.batch)]
    explainer = Explainer(model, card, batch_size=args.batch)
    k = len(card.classes)

    # 1. six class maps of one image
    x1 = preprocess(images[:1], card)

    def transform(t: torch.Tensor) -> torch.Tensor:  # the tutorial's, for our prefix count
        return vit_reshape_transform(t[:, prefix - 1 :], height=grid[0], width=grid[1])

    def ours_six():
        return explainer.explain(images[:1], ["gradcam"], targets=[list(range(k))], layers=layer)

    def theirs_six():
        cam = pgc.GradCAM(
            model=model, target_layers=[resolve_layer(model, layer)], reshape_transform=transform
        )
        try:
            return [cam(input_tensor=x1, targets=[ClassifierOutputTarget(c)])[0] for c in range(k)]
        finally:
            cam.activations_and_grads.release()

    # agreement, on an image already at the input size (no resize on either side)
    same = (rng.random((h, w)) * 255).astype(np.uint8)
    ours_maps = explainer.explain([same], ["gradcam"], targets=[list(range(k))], layers=layer)
    cam = pgc.GradCAM(
        model=model, target_layers=[resolve_layer(model, layer)], reshape_transform=transform
    )
    try:
        x_same = preprocess([same], card)
        ref = [cam(input_tensor=x_same, targets=[ClassifierOutputTarget(c)])[0] for c in range(k)]
    finally:
        cam.activations_and_grads.release()
    diff = max(float(np.abs(ours_maps.get(0, c, "gradcam").cam - ref[c]).max()) for c in range(k))

    six = interleaved({"ours": ours_six, "pytorch-grad-cam": theirs_six}, args.repeats)

    # 2. batch of 32: Grad-CAM vs plain inference
    xb = preprocess(images, card)

    def forward():
        with torch.no_grad():
            return model(xb)

    batch = interleaved(
        {
            "gradcam": lambda: explainer.explain(images, ["gradcam"], layers=layer),
            "forward": forward,
            "predict": lambda: explainer.predict(images),
        },
        args.repeats,
    )
    out = {
        "model": card.name,
        "arch": card.arch,
        "layer": layer,
        "threads": args.threads,
        "repeats": args.repeats,
        "six_maps_s": six,
        "six_maps_speedup": ratio(six, "pytorch-grad-cam", "ours"),
        "six_maps_max_abs_diff": diff,
        "batch": args.batch,
        "batch_s": batch,
        "gradcam_vs_forward_throughput": ratio(batch, "forward", "gradcam"),
        "gradcam_vs_predict_throughput": ratio(batch, "predict", "gradcam"),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
