"""pytorch-grad-cam, called correctly: the reference our maps are tested against, and the
implementation of the methods we do not re-derive (kind "library": FullGrad, ShapleyCAM, …).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cam_core.cams.capture import CamError, MapOut, guarded, model_lock
from cam_core.cams.context import Batch, Spec
from cam_core.models.reshape import reshape_transform

ABLATION_BATCH = 64
"""Ablated copies pytorch-grad-cam's AblationCAM scores per forward."""


def library_cam(
    model: nn.Module,
    spec: Spec,
    input_tensor: torch.Tensor,
    classes: Sequence[int],
    layers: Sequence[nn.Module],
    *,
    eigen_smooth: bool = False,
    aug_smooth: bool = False,
) -> np.ndarray:
    """pytorch-grad-cam's class ``spec.library_class`` on (T, 3, S, S) ``input_tensor`` with
    one target class per item: (T, S, S) float32 maps at input size.

    Guards the library's pitfalls: exactly one target per batch item (it silently returns empty
    maps otherwise), hooks released in ``finally`` (its ``__exit__`` swallows IndexError, so no
    ``with``), AblationCAM's layer swap undone even when it raises, and the model's per-module
    train/eval modes, ``requires_grad`` flags and ``.grad`` restored.
    """
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.find_layers import replace_layer_recursive
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget

    if len(classes) != input_tensor.shape[0]:
        raise ValueError(
            f"one target per batch item: got {len(classes)} targets for "
            f"{input_tensor.shape[0]} images"
        )
    if spec.library_class is None:
        raise ValueError(f"{spec.label} has no pytorch-grad-cam implementation")
    cls = getattr(pgc, spec.library_class)
    finer = spec.library_class == "FinerCAM"
    with model_lock(model), guarded(model):
        size = (int(input_tensor.shape[-2]), int(input_tensor.shape[-1]))
        cam = cls(  # token / channels-last layers read as maps (our layout; CNNs: unchanged)
            model=model,
            target_layers=list(layers),
            reshape_transform=reshape_transform(model, size),
        )
        if spec.library_class == "AblationCAM":
            cam.batch_size = ABLATION_BATCH
        targets: list[object] = [ClassifierOutputTarget(int(c)) for c in classes]
        try:
            if finer:  # the target minus its three most similar classes
                with torch.no_grad():
                    logits = model(input_tensor.to(next(model.parameters()).device)).cpu().numpy()
                targets = []
                for row, c in zip(logits, classes, strict=True):
                    order = np.argsort(np.abs(row - row[c]))
                    others = [int(k) for k in order if k != c][:3]
                    targets.append(FinerWeightedTarget(int(c), others, 1.0))
            maps = cam(
                input_tensor=input_tensor,
                targets=targets,
                eigen_smooth=eigen_smooth,
                **({} if finer else {"aug_smooth": aug_smooth}),
            )
        finally:
            getattr(cam, "base_cam", cam).activations_and_grads.release()
            if spec.library_class == "AblationCAM":
                for layer in layers:
                    replace_layer_recursive(model, cam.ablation_layer, layer)
    return np.asarray(maps, dtype=np.float32)


def library(ctx: Batch, spec: Spec) -> MapOut:
    """Kind "library": the batch's targets through :func:`library_cam`; no strengths."""
    maps = library_cam(
        ctx.model,
        spec,
        ctx.x[ctx.img_idx],
        ctx.cls_idx.tolist(),
        ctx.modules,
        eigen_smooth=ctx.eigen_smooth,
    )
    cams = torch.from_numpy(maps).to(ctx.x.device)
    if not torch.isfinite(cams).all():
        raise CamError(f"{spec.label} map is not finite (NaN/inf)")
    return cams, None
