"""Faithfulness: does the model's score depend on the region a map shows?

Unlike the rest of :mod:`cam_core.metrics` these figures need the model: every function takes a
*scorer*, ``(N, C, S, S) model input → (N, K) class probabilities`` (softmax for single-label
models, sigmoid for multi-label ones, as the engine's ``Explanation.probs``), and the batch's model
input ``x`` (B, C, S, S) on the model's device. Maps stay numpy: (H, W) float arrays at any
resolution, resized (bilinear) to S×S once. Perturbed copies are built on ``x``'s device and go
through the scorer in chunks of ``batch_size``, with no host synchronisation between steps; the
probabilities cross to numpy once at the end.

- :func:`deletion_insertion` — Petsiuk et al., *RISE*, BMVC 2018. Pixels are removed from
  (deletion) or inserted into (insertion) the image in order of map value, most relevant first,
  in ``steps`` equal steps; the removed part is replaced by a blurred copy (``fill="blur"``) or
  the image's per-channel mean (``fill="mean"``). The curve is the explained class's probability
  after each step, its AUC the trapezoid over the removed fraction 0..1. Beside it the same curves
  for a seeded random pixel order (the "better than chance" reference; one order per image, shared
  by every class and method of the image). Lower deletion AUC and higher insertion AUC are better.
- :func:`road` — Rong et al., *A Consistent and Efficient Evaluation Strategy for Attribution
  Methods*, ICML 2022: pixels removed most-relevant-first (MoRF) and least-relevant-first (LeRF)
  at several percentiles, filled by noisy linear imputation; the combined score
  ``(mean LeRF change − mean MoRF change) / 2`` is pytorch-grad-cam's ``ROADCombined`` — **higher
  is better**. Oracle: ``pytorch_grad_cam.metrics.road`` (same numbers to 1e-4 on the same maps,
  inputs and random state).
- :func:`confidence_change` — Chattopadhay et al., *Grad-CAM++*, WACV 2018, as pytorch-grad-cam's
  ``DropInConfidence`` / ``IncreaseInConfidence``: the input multiplied by the map; drop
  ``max(0, p − p_masked)`` in probability (0..1, not the paper's per cent of ``p``; lower is
  better) and increase ``1.0`` when ``p_masked > p`` else ``0.0`` (its mean is the paper's
  "increase in confidence" rate; higher is better).
- :func:`score_faithfulness` — all of the above for a set of maps sharing perturbation batches.

A blank (constant) or non-finite map raises :class:`FaithfulnessError` (a ``ValueError``), never
a silently wrong AUC: a constant map has no order.

Example::

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    >>> scorer = lambda t: torch.softmax(model(t), dim=-1)
    >>> x = torch.randn(1, 3, 8, 8)
    >>> cam = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    >>> res = score_faithfulness(scorer, x, [cam], [0], [1], steps=4)
    >>> sorted(res.row(0))[:3]
    ['avg_drop', 'deletion_auc', 'deletion_auc_random']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cam_core.metrics.imputation import ROAD_PERCENTILES, impute, road_masks

__all__ = [
    "FAITH_COLUMNS",
    "FILLS",
    "ROAD_PERCENTILES",
    "Curves",
    "Faithfulness",
    "FaithfulnessError",
    "Scorer",
    "check_faith_map",
    "confidence_change",
    "curve_auc",
    "deletion_insertion",
    "impute",
    "road",
    "road_masks",
    "score_faithfulness",
]

Scorer = Callable[[torch.Tensor], torch.Tensor]
"""(N, C, S, S) model input → (N, K) class probabilities, on the input's device."""

Generators = torch.Generator | Sequence[torch.Generator] | None
"""ROAD's noise source: one generator, one per map, or None (torch's global generator)."""

FILLS: tuple[str, ...] = ("blur", "mean")
"""What replaces removed pixels in deletion / insertion."""


FAITH_COLUMNS: tuple[str, ...] = (
    "deletion_auc",
    "insertion_auc",
    "deletion_auc_random",
    "insertion_auc_random",
    "road",
    "avg_drop",
    "increase",
)
"""Per-row figures of :meth:`Faithfulness.row`, in table order."""

BLUR_KERNEL = 11
BLUR_SIGMA = 5.0
"""RISE's blur (an 11×11 Gaussian, σ = 5 px at 224 px); scaled with the input size."""

ROAD_NOISE = 0.01
"""Noise added to imputed values (pytorch-grad-cam's ``NoisyLinearImputer`` default)."""


class FaithfulnessError(ValueError):
    """A map that cannot be scored for faithfulness: blank (constant), non-finite or not 2-D."""


# ------------------------------------------------------------------------------ small helpers
def check_faith_map(cam: np.ndarray, what: str = "map") -> np.ndarray:
    """``cam`` as float32 (H, W); :class:`FaithfulnessError` naming ``what`` when it is not 2-D,
    holds NaN/inf, or is blank (every value equal: no order to remove pixels in).
    """
    a = np.asarray(cam)
    if a.ndim != 2 or a.size == 0:
        raise FaithfulnessError(f"{what} has shape {a.shape}; expected a non-empty (H, W) map")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise FaithfulnessError(f"{what} has {bad} non-finite values (NaN or inf)")
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        raise FaithfulnessError(
            f"{what} is blank (every value is {lo:g}): it orders no pixel before another"
        )
    return a


def curve_auc(curves: np.ndarray) -> np.ndarray:
    """Trapezoid area under curves sampled at ``steps + 1`` equally spaced fractions 0..1
    (last axis); (..., steps + 1) → (...).
    """
    c = np.asarray(curves, dtype=np.float64)
    steps = c.shape[-1] - 1
    if steps < 1:
        raise ValueError(f"a curve needs at least 2 points, got {c.shape[-1]}")
    return (c[..., 1:] + c[..., :-1]).sum(axis=-1) / (2 * steps)


def _input_maps(maps: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Checked maps resized (bilinear, half-pixel centres) to the input size: (T, S, S) float32."""
    out = np.empty((len(maps), *size), dtype=np.float32)
    for t, cam in enumerate(maps):
        a = check_faith_map(cam, f"map {t}")
        if a.shape != size:
            a = (
                F.interpolate(
                    torch.from_numpy(np.ascontiguousarray(a))[None, None],
                    size=size,
                    mode="bilinear",
                    align_corners=False,
                )[0, 0]
                .numpy()
                .astype(np.float32)
            )
            if float(a.max()) <= float(a.min()):
                raise FaithfulnessError(f"map {t} is blank at the model's input size {size}")
        out[t] = a
    return out


def _check_targets(
    x: torch.Tensor, n_maps: int, images: Sequence[int], classes: Sequence[int]
) -> None:
    if x.ndim != 4:
        raise ValueError(f"x has shape {tuple(x.shape)}; expected (B, C, S, S) model input")
    if len(images) != n_maps or len(classes) != n_maps:
        raise ValueError(
            f"{n_maps} maps but {len(images)} image indices and {len(classes)} class indices"
        )
    for i in images:
        if not 0 <= int(i) < x.shape[0]:
            raise ValueError(f"image index {i} is outside 0..{x.shape[0] - 1}")


def _blur(x: torch.Tensor) -> torch.Tensor:
    """RISE's Gaussian blur of every channel, reflect-padded, scaled to the input size."""
    scale = x.shape[-1] / 224
    sigma = max(BLUR_SIGMA * scale, 0.5)
    k = max(3, 2 * round(BLUR_KERNEL * scale / 2) + 1)
    r = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    pad = min(k // 2, x.shape[-1] - 1, x.shape[-2] - 1)
    y = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad > 0 else x
    y = F.conv2d(y, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    y = F.conv2d(y, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    if y.shape[-2:] != x.shape[-2:]:  # kernel wider than a tiny input: crop/pad back
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return y


def filled_copy(x: torch.Tensor, fill: str = "blur") -> torch.Tensor:
    """What removed pixels become: a blurred copy of ``x`` or its per-image, per-channel mean."""
    if fill == "blur":
        return _blur(x)
    if fill == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    raise ValueError(f"unknown fill {fill!r}; valid: {', '.join(FILLS)}")


def _score_chunks(
    scorer: Scorer, make: Callable[[slice], torch.Tensor], n: int, batch_size: int
) -> torch.Tensor:
    """(n, K) probabilities of the n perturbed inputs ``make(slice)`` builds, chunk by chunk,
    kept on the device (no host sync).
    """
    out = []
    with torch.no_grad():
        for s in range(0, n, batch_size):
            out.append(scorer(make(slice(s, min(n, s + batch_size)))).float())
    return torch.cat(out) if out else torch.zeros((0, 0))


# ------------------------------------------------------------------------ deletion, insertion
@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves of T maps: (T, steps + 1) probabilities of each map's class
    after removing / inserting the fraction ``fractions`` (0..1) of the pixels, in map order and
    in the image's seeded random order (``*_random``).
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_random: np.ndarray
    insertion_random: np.ndarray

    @property
    def deletion_auc(self) -> np.ndarray:
        """(T,) area under the deletion curve (lower is better)."""
        return curve_auc(self.deletion)

    @property
    def insertion_auc(self) -> np.ndarray:
        """(T,) area under the insertion curve (higher is better)."""
        return curve_auc(self.insertion)

    @property
    def deletion_auc_random(self) -> np.ndarray:
        """(T,) deletion AUC of the random pixel order."""
        return curve_auc(self.deletion_random)

    @property
    def insertion_auc_random(self) -> np.ndarray:
        """(T,) insertion AUC of the random pixel order."""
        return curve_auc(self.insertion_random)

    def is_flat(self, t: int = 0, span: float = 0.1) -> bool:
        """Whether map ``t``'s deletion and insertion curves each move by less than ``span`` in
        probability: the filled-in image still carries the class (e.g. a blurred texture), so
        neither curve can tell a good map from a bad one.
        """
        curves = (self.deletion[t], self.insertion[t])
        return all(float(np.ptp(c)) < span for c in curves)


def _ranks(orders: np.ndarray) -> np.ndarray:
    """(R, N) pixel orders (most relevant first) → (R, N) rank of every pixel in its order."""
    ranks = np.empty_like(orders)
    rows = np.arange(orders.shape[0])[:, None]
    ranks[rows, orders] = np.arange(orders.shape[1])[None, :]
    return ranks


def _random_orders(n_images: int, n_pixels: int, seeds: int | Sequence[int]) -> np.ndarray:
    seq = [seeds] * n_images if isinstance(seeds, int) else list(seeds)
    if len(seq) != n_images:
        raise ValueError(f"{len(seq)} seeds for {n_images} images")
    return np.stack([np.random.default_rng(int(s)).permutation(n_pixels) for s in seq])


def deletion_insertion(
    scorer: Scorer,
    x: torch.Tensor,
    maps: Sequence[np.ndarray],
    images: Sequence[int],
    classes: Sequence[int],
    *,
    steps: int = 20,
    fill: str = "blur",
    seeds: int | Sequence[int] = 0,
    batch_size: int = 64,
) -> Curves:
    """Deletion and insertion curves (RISE) of map t, which explains class ``classes[t]`` of
    image ``images[t]`` of ``x``.

    At step k (0..steps) the ``round(k / steps · S²)`` pixels of highest map value (ties: pixel
    order) are replaced by ``fill`` (deletion) or are the only pixels kept from the image, the
    rest filled (insertion). Identical maps of an image (e.g. a class-agnostic method) share one
    set of perturbed copies, and the random order of an image (``seeds``: one per image, or one
    for all) serves every class of it. Raises :class:`FaithfulnessError` on a blank or
    non-finite map, ValueError on a bad index, fill or ``steps < 1``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    _check_targets(x, len(maps), images, classes)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    n_pix = size[0] * size[1]
    cams = _input_maps(maps, size)
    fills = filled_copy(x, fill)
    dev = x.device
    # unique orders: one per distinct (image, map), then one random order per image
    key_of: dict[tuple[int, bytes], int] = {}
    order_img: list[int] = []
    map_order = np.empty(len(maps), dtype=np.int64)
    for t, (i, cam) in enumerate(zip(images, cams, strict=True)):
        key = (int(i), cam.tobytes())
        if key not in key_of:
            key_of[key] = len(order_img)
            order_img.append(int(i))
        map_order[t] = key_of[key]
    n_map_orders = len(order_img)
    used = sorted(set(int(i) for i in images))
    map_orders = np.stack(
        [np.argsort(-cams[t].ravel(), kind="stable") for t in _first_of_each(map_order)]
    )
    rand_orders = _random_orders(x.shape[0], n_pix, seeds)[used]
    ranks = torch.from_numpy(_ranks(np.concatenate([map_orders, rand_orders]))).to(dev)
    order_img += used
    n_orders = len(order_img)
    counts = torch.tensor(
        [round(k * n_pix / steps) for k in range(1, steps)], dtype=torch.long, device=dev
    )
    inner = steps - 1
    # job j: order j // (2 * inner), insertion when (j // inner) % 2, step 1 + j % inner
    n_jobs = n_orders * 2 * inner
    img_of = torch.tensor(order_img, dtype=torch.long, device=dev)

    def make(sl: slice) -> torch.Tensor:
        j = torch.arange(sl.start, sl.stop, device=dev)
        o, ins, k = j // (2 * inner), (j // inner) % 2, j % inner
        removed = ranks[o] < counts[k][:, None]  # (n, S*S)
        take_fill = (removed ^ ins.bool()[:, None]).view(-1, 1, *size)
        im = img_of[o]
        return torch.where(take_fill, fills[im], x[im])

    with torch.no_grad():
        p0 = scorer(x).float()
        pf = scorer(fills).float()
    probs = (
        _score_chunks(scorer, make, n_jobs, batch_size).view(n_orders, 2, inner, -1)
        if n_jobs
        else torch.zeros((n_orders, 2, 0, p0.shape[1]), device=dev)
    )
    p0n, pfn, pn = p0.cpu().numpy(), pf.cpu().numpy(), probs.cpu().numpy()  # the one crossing
    rand_slot = {i: n_map_orders + r for r, i in enumerate(used)}
    T = len(maps)
    dele, ins = np.empty((T, steps + 1)), np.empty((T, steps + 1))
    dele_r, ins_r = np.empty((T, steps + 1)), np.empty((T, steps + 1))
    for t in range(T):
        i, c = int(images[t]), int(classes[t])
        for o, d_out, i_out in ((map_order[t], dele, ins), (rand_slot[i], dele_r, ins_r)):
            d_out[t] = [p0n[i, c], *pn[o, 0, :, c], pfn[i, c]]
            i_out[t] = [pfn[i, c], *pn[o, 1, :, c], p0n[i, c]]
    return Curves(np.linspace(0.0, 1.0, steps + 1), dele, ins, dele_r, ins_r)


def _first_of_each(groups: np.ndarray) -> list[int]:
    """Index of the first member of each group 0..G-1."""
    first: dict[int, int] = {}
    for t, g in enumerate(groups.tolist()):
        first.setdefault(g, t)
    return [first[g] for g in range(len(first))]


# ---------------------------------------------------------------------------------- ROAD
def _road_inputs(
    x: torch.Tensor,
    cams: np.ndarray,
    images: Sequence[int],
    percentiles: Sequence[float],
    noise: float,
    generator: Generators,
) -> torch.Tensor:
    """(2·P·T, C, S, S) imputed copies, in pytorch-grad-cam's order (LeRF then MoRF; per
    percentile; per map), each with its noise drawn in that same order.
    """
    xc = x.detach().float().cpu()
    host = xc.numpy()
    masks = [road_masks(cam, percentiles) for cam in cams]
    gens = list(generator) if isinstance(generator, list | tuple) else [generator] * len(cams)
    if len(gens) != len(cams):
        raise ValueError(f"{len(gens)} generators for {len(cams)} maps")
    out = xc[list(images)].repeat(2 * len(percentiles), 1, 1, 1).clone()
    flat = out.view(out.shape[0], out.shape[1], -1)
    j = 0
    for d in range(2):
        for k in range(len(percentiles)):
            for t, i in enumerate(images):
                keep = masks[t][d, k]
                vals = torch.from_numpy(impute(host[int(i)], keep)).float()
                idx = torch.from_numpy(np.flatnonzero(~keep.ravel()))
                flat[j][:, idx] = vals + noise * torch.randn(vals.shape, generator=gens[t])
                j += 1
    return out.to(x.device)


def road(
    scorer: Scorer,
    x: torch.Tensor,
    maps: Sequence[np.ndarray],
    images: Sequence[int],
    classes: Sequence[int],
    *,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    noise: float = ROAD_NOISE,
    generator: Generators = None,
    batch_size: int = 64,
) -> np.ndarray:
    """(T,) combined ROAD score of each map, **higher is better**:
    ``(mean_p LeRF_p − mean_p MoRF_p) / 2`` where ``LeRF_p`` / ``MoRF_p`` is the explained
    class's probability change after the least / most relevant pixels are replaced by noisy
    linear imputation (:func:`road_masks`, :func:`impute`). The noise comes from ``generator``
    (None: torch's global generator, as pytorch-grad-cam), drawn in pytorch-grad-cam's order, so
    seeding both alike gives its ``ROADCombined`` numbers; a list gives each map its own
    generator (its figures then do not depend on the other maps of the call). Every perturbed
    copy of every map goes through the scorer in one stream of ``batch_size`` chunks.
    """
    _check_targets(x, len(maps), images, classes)
    cams = _input_maps(maps, (int(x.shape[-2]), int(x.shape[-1])))
    pert = _road_inputs(x, cams, images, percentiles, noise, generator)
    probs = _score_chunks(scorer, lambda sl: pert[sl], len(pert), batch_size)
    with torch.no_grad():
        p0 = scorer(x).float()
    t_n, p_n = len(maps), len(percentiles)
    img_t = torch.tensor([int(i) for i in images], device=x.device)
    cls_t = torch.tensor([int(c) for c in classes], device=x.device)
    idx = cls_t.view(1, 1, t_n, 1).expand(2, p_n, t_n, 1)
    after = probs.view(2, p_n, t_n, -1).gather(3, idx)[..., 0]  # (2, P, T)
    diff = (after - p0[img_t, cls_t]).cpu().numpy().astype(np.float32)
    lerf, morf = diff[0].mean(axis=0), diff[1].mean(axis=0)
    return ((lerf - morf) / 2).astype(np.float64)


# ------------------------------------------------------------------ drop / increase in confidence
def confidence_change(
    scorer: Scorer,
    x: torch.Tensor,
    maps: Sequence[np.ndarray],
    images: Sequence[int],
    classes: Sequence[int],
    *,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """(drop, increase), each (T,): the model input multiplied by the map (pytorch-grad-cam's
    ``multiply_tensor_with_cam``, on the normalised input); ``drop = max(0, p − p_masked)`` (lower
    is better), ``increase = 1.0 if p_masked > p else 0.0`` (its mean: higher is better).
    """
    _check_targets(x, len(maps), images, classes)
    cams = torch.from_numpy(_input_maps(maps, (int(x.shape[-2]), int(x.shape[-1])))).to(x.device)
    img_t = torch.tensor([int(i) for i in images], dtype=torch.long, device=x.device)
    cls_t = torch.tensor([int(c) for c in classes], dtype=torch.long, device=x.device)
    probs = _score_chunks(
        scorer, lambda sl: x[img_t[sl]] * cams[sl][:, None], len(maps), batch_size
    )
    with torch.no_grad():
        p0 = scorer(x).float()
    after = probs.gather(1, cls_t[:, None])[:, 0]
    diff = (after - p0[img_t, cls_t]).cpu().numpy().astype(np.float32)
    return np.maximum(-diff, 0).astype(np.float64), (diff > 0).astype(np.float64)


# ------------------------------------------------------------------------------- all at once
@dataclass(frozen=True)
class Faithfulness:
    """Every faithfulness figure of T maps: the curves, ROAD, drop and increase (each (T,))."""

    curves: Curves
    road: np.ndarray
    avg_drop: np.ndarray
    increase: np.ndarray

    def row(self, t: int) -> dict[str, float]:
        """The :data:`FAITH_COLUMNS` of map ``t`` as plain floats."""
        c = self.curves
        values = (
            c.deletion_auc[t],
            c.insertion_auc[t],
            c.deletion_auc_random[t],
            c.insertion_auc_random[t],
            self.road[t],
            self.avg_drop[t],
            self.increase[t],
        )
        return {k: float(v) for k, v in zip(FAITH_COLUMNS, values, strict=True)}


def score_faithfulness(
    scorer: Scorer,
    x: torch.Tensor,
    maps: Sequence[np.ndarray],
    images: Sequence[int],
    classes: Sequence[int],
    *,
    steps: int = 20,
    fill: str = "blur",
    seeds: int | Sequence[int] = 0,
    road_percentiles: Sequence[float] = ROAD_PERCENTILES,
    generator: Generators = None,
    batch_size: int = 64,
) -> Faithfulness:
    """:func:`deletion_insertion`, :func:`road` and :func:`confidence_change` of the same maps
    (see each). Raises :class:`FaithfulnessError` for a blank or non-finite map before any
    model call.
    """
    for t, cam in enumerate(maps):
        check_faith_map(cam, f"map {t}")
    curves = deletion_insertion(
        scorer, x, maps, images, classes, steps=steps, fill=fill, seeds=seeds, batch_size=batch_size
    )
    road_scores = road(
        scorer,
        x,
        maps,
        images,
        classes,
        percentiles=road_percentiles,
        generator=generator,
        batch_size=batch_size,
    )
    drop, inc = confidence_change(scorer, x, maps, images, classes, batch_size=batch_size)
    if not all(math.isfinite(v) for v in (*road_scores, *drop)):
        raise FaithfulnessError("a faithfulness figure is not finite (the model returned NaN)")
    return Faithfulness(curves, road_scores, drop, inc)
