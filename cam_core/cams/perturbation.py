"""The perturbation family: maps from the scores of many altered forwards (Score-CAM,
Ablation-CAM, LIME). Slow by nature; each calls ``ctx.let_others_in()`` between chunks, where
no hook is attached, so another thread's quick call on the same model runs in between.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cam_core.cams.capture import CamError, MapOut, class_probs, normalise
from cam_core.cams.context import Batch, Spec

CHUNK = 64
"""Masked or ablated copies scored per forward."""


@torch.no_grad()
def scorecam(ctx: Batch, spec: Spec) -> MapOut:
    """Score-CAM (Wang et al. 2020): each channel, upsampled and min-max scaled, masks the input;
    channel weights = softmax over channels of the masked inputs' class scores.

    Batched on device: each image's masked copies are scored once for all its target classes,
    in chunks, with no host sync per score. Two exact savings: a channel that is constant over
    the image (a dead ReLU channel, 9–20 % of them in the bundled NEU model's layers) normalises
    to an all-zero mask, so all such channels share the score of one all-zero input; and the
    masked copies are fed channels-last, which CPU convolutions run ≈ 1.3× faster.
    """
    x, img_idx, cls_idx = ctx.x, ctx.img_idx, ctx.cls_idx
    raw_per_layer = []
    for a in ctx.capture(need_grad=False).acts:
        a = a.detach()
        up = F.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=True)
        lo = up.amin(dim=(2, 3), keepdim=True)
        hi = up.amax(dim=(2, 3), keepdim=True)
        up = (up - lo) / (hi - lo + 1e-8)
        live_all = (hi != lo).flatten(1)  # (B, C); constant channels give an all-zero mask
        raw = torch.empty(len(img_idx), *a.shape[-2:], device=x.device)
        for i in img_idx.unique().tolist():
            rows = (img_idx == i).nonzero().flatten()
            live = live_all[i].nonzero().flatten()
            masks = up[i, live]
            if len(live) < up.shape[1]:  # one all-zero copy stands for every dead channel
                masks = torch.cat([masks, torch.zeros_like(up[i, :1])])
            parts = []
            for k in range(0, masks.shape[0], CHUNK):
                ctx.let_others_in()
                xs = x[i : i + 1] * masks[k : k + CHUNK, None]
                parts.append(ctx.model(xs.contiguous(memory_format=torch.channels_last)))
            scored = torch.cat(parts)
            scores = scored[-1:].expand(up.shape[1], -1).clone()  # (C, K)
            scores[live] = scored[: len(live)]
            weights = torch.softmax(scores[:, cls_idx[rows]].T, dim=-1)  # (targets, C)
            raw[rows] = (weights[:, :, None, None] * a[i]).sum(1)
        raw_per_layer.append(raw)
    return ctx.finish(raw_per_layer, spec)


@torch.no_grad()
def ablationcam(ctx: Batch, spec: Spec) -> MapOut:
    """Ablation-CAM (Desai & Ramaswamy 2020): weight = relative drop of the class score when one
    channel is ablated. Batched: the layer's cached output, one channel ablated per copy, is fed
    to the rest of the network in chunks. Ablation value as pytorch-grad-cam: 0 when the
    activations' minimum is 0, else min − 1e7.
    """
    if len(ctx.modules) != 1:
        raise CamError(f"Ablation-CAM takes one target layer, not {str(ctx.layers)!r}")
    x, img_idx, cls_idx = ctx.x, ctx.img_idx, ctx.cls_idx
    module = ctx.modules[0]
    cap = ctx.capture(need_grad=False)
    a_all, logits, layout = cap.acts[0].detach(), cap.logits.detach(), cap.layouts[0]
    raw = torch.empty(len(img_idx), *a_all.shape[-2:], device=x.device)
    for i in img_idx.unique().tolist():
        rows = (img_idx == i).nonzero().flatten()
        a = a_all[i]
        value = 0.0 if float(a.min()) == 0 else float(a.min()) - 1e7
        original = logits[i, cls_idx[rows]]  # (targets,)
        n_ch = a.shape[0]
        scores = []
        for k in range(0, n_ch, CHUNK):
            ctx.let_others_in()
            ks = torch.arange(k, min(k + CHUNK, n_ch), device=x.device)
            batch = a.expand(len(ks), *a.shape).clone()
            batch[torch.arange(len(ks)), ks] = value
            # the ablated maps go on in the layer's own layout (tokens, channels-last …)
            handle = module.register_forward_hook(
                lambda _m, _i, o, b=batch: b if layout.kind == "nchw" else layout.to_output(b, o)
            )
            try:
                scores.append(ctx.model(x[i : i + 1]))
            finally:
                handle.remove()
        ablated = torch.cat(scores)[:, cls_idx[rows]].T  # (targets, C)
        weights = (original[:, None] - ablated) / original[:, None]
        raw[rows] = (weights[:, :, None, None] * a).sum(1)
    return ctx.finish([raw], spec)


def lime(ctx: Batch, spec: Spec, num_samples: int = 256) -> MapOut:
    """LIME (Ribeiro et al. 2016) on the model input: SLIC superpixels switched off at random
    (fixed seed), a local linear fit per class; map = the positive superpixel weights.
    """
    from lime import lime_image  # imported lazily: heavy, and only this method needs it
    from skimage.segmentation import slic

    x, card = ctx.x, ctx.card
    mean = torch.tensor(card.mean, device=x.device)[:, None, None]
    std = torch.tensor(card.std, device=x.device)[:, None, None]

    def classify(batch: np.ndarray) -> np.ndarray:
        ctx.let_others_in()
        t = torch.from_numpy(batch).permute(0, 3, 1, 2).float().to(x.device)
        with torch.no_grad():
            return class_probs(ctx.model((t - mean) / std), card.multilabel).cpu().numpy()

    explainer = lime_image.LimeImageExplainer(random_state=0)
    out = []
    for i, c in zip(ctx.img_idx.tolist(), ctx.cls_idx.tolist(), strict=True):
        rgb = (x[i] * std + mean).permute(1, 2, 0).cpu().double().numpy()
        exp = explainer.explain_instance(
            rgb,
            classify,
            labels=(c,),
            top_labels=None,
            hide_color=0,
            num_samples=num_samples,
            batch_size=32,
            random_seed=0,
            # Gray superpixels: SLIC on one channel, compactness for a [0, 1] range (the
            # default Lab/compactness 10 merges a gray texture into a single segment).
            segmentation_fn=lambda im: slic(
                im[..., 0], n_segments=60, compactness=1.0, channel_axis=None, start_label=0
            ),
        )
        weights = dict(exp.local_exp[c])
        seg = torch.from_numpy(exp.segments).long()
        lut = torch.zeros(int(seg.max()) + 1)
        for s, w in weights.items():
            lut[s] = max(w, 0.0)
        out.append(lut[seg])
    return normalise(torch.stack(out)).to(x.device), None
