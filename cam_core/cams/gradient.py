"""The gradient family: a formula on the target layer's activations A and gradients G, and the
methods that need more than one formula (Smooth Grad-CAM++, the original CAM).

Formulas themselves are one line each in :mod:`cam_core.methods`; :func:`formula_map` applies
any of them to the batch's shared capture.
"""

from __future__ import annotations

import torch

from cam_core.cams.capture import CamError, MapOut, gradients
from cam_core.cams.context import Batch, Spec
from cam_core.models import get_arch, resolve_layer


def gradcam_plusplus_weights(
    a: torch.Tensor, g: torch.Tensor, g2: torch.Tensor, g3: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM++ channel weights (Chattopadhay et al. 2018) from the gradient moments; (T, C)."""
    aij = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3 + 1e-6)
    aij = torch.where(g != 0, aij, torch.zeros_like(aij))
    return (torch.relu(g) * aij).sum(dim=(2, 3))


def projection_2d(x: torch.Tensor) -> torch.Tensor:
    """First principal component of each (C, h, w) item → (T, h, w).

    Delegates to pytorch-grad-cam's ``get_2d_projection`` (numpy SVD on the host): a component's
    sign is arbitrary, and only the library's own SVD call reproduces the library's choice (a
    batched torch SVD flips some items). The (h·w, C) matrices are small; this is the one
    host round trip the Eigen methods make.
    """
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    proj = get_2d_projection(x.detach().float().cpu().numpy())
    return torch.from_numpy(proj).to(x.device)


def formula_map(ctx: Batch, spec: Spec) -> MapOut:
    """Kinds "gradient" and "activation": ``spec.formula(A, G)`` per target, summed over
    channels (or projected: ``spec.project`` or ``eigen_smooth``). Activation formulas get
    ``(A, A)`` and need no backward.
    """
    if spec.formula is None:  # register_method refuses it; a spec built by hand may not be
        raise CamError(f"{spec.label}: kind {spec.kind!r} needs a formula")
    need_grad = spec.kind == "gradient"
    cap = ctx.capture(need_grad)
    grads = ctx.gradients() if need_grad else [None] * len(cap.acts)
    raw = []
    for a, g in zip(cap.acts, grads, strict=True):
        a_t = a.detach()[ctx.img_idx]
        weighted = spec.formula(a_t, a_t if g is None else g)
        raw.append(projection_2d(weighted) if spec.project or ctx.eigen_smooth else weighted.sum(1))
    return ctx.finish(raw, spec)


def smooth_gradcampp(ctx: Batch, spec: Spec, n_samples: int = 8, sigma: float = 0.15) -> MapOut:
    """Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ weights from the first, second and
    third gradient moments averaged over ``n_samples`` noisy copies (σ = ``sigma`` × the input's
    range; a fixed seed makes it deterministic), applied to the clean activations.
    """
    x = ctx.x
    clean = ctx.capture(need_grad=False)
    gen = torch.Generator(device="cpu").manual_seed(0)
    noise_scale = sigma * float(x.max() - x.min())
    moments: list[list[torch.Tensor]] | None = None
    for _ in range(n_samples):
        noise = torch.randn(x.shape, generator=gen).to(x.device) * noise_scale
        cap = ctx.capture_of(x + noise, need_grad=True)
        step = [[g, g * g, g * g * g] for g in gradients(cap, ctx.img_idx, ctx.cls_idx)]
        moments = (
            step
            if moments is None
            else [
                [m + s for m, s in zip(ms, ss, strict=True)]
                for ms, ss in zip(moments, step, strict=True)
            ]
        )
    raw = []
    for a, (g1, g2, g3) in zip(clean.acts, moments or [], strict=True):
        a_t = a.detach()[ctx.img_idx]
        w = gradcam_plusplus_weights(a_t, g1 / n_samples, g2 / n_samples, g3 / n_samples)
        raw.append((w[:, :, None, None] * a_t).sum(1))
    return ctx.finish(raw, spec)


def cam(ctx: Batch, spec: Spec) -> MapOut:
    """Original CAM (Zhou et al. 2016): the head's weights of the class × the last layer's
    activations; needs a global-average-pool + linear head fed by the one target layer.
    """
    arch = get_arch(ctx.card.arch)
    head = resolve_layer(ctx.model, arch.head)
    if not arch.gap_linear or len(ctx.modules) != 1:
        raise CamError(
            f"CAM needs a global-average-pool + linear head fed by one target layer; "
            f"{ctx.card.arch!r} with layers {list(ctx.layers.names)} is not that (use Grad-CAM)"
        )
    a = ctx.capture(need_grad=False).acts[0].detach()[ctx.img_idx]
    weight = head.weight.detach()
    if weight.shape[1] != a.shape[1]:
        raise CamError(
            f"CAM: head {arch.head!r} takes {weight.shape[1]} features but layer "
            f"{ctx.layers.names[0]!r} has {a.shape[1]} channels; use the last feature layer"
        )
    return ctx.finish([(weight[ctx.cls_idx][:, :, None, None] * a).sum(1)], spec)
