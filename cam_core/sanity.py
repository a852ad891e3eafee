"""Sanity checks for saliency maps (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

Two questions, per (method, layer), on a few images:

- **Cascading model-parameter randomization.** On a deep *copy* of the model (the caller's model
  and its :class:`~cam_core.explain.Explainer` are never run, changed or re-moded — the copy is
  taken under the model's lock), the parameters are re-initialised from the head down, one
  *block* at a time (:func:`model_blocks`), and after each block every method's map is computed
  again by the engine and compared with the map of the intact model: Spearman rank correlation
  of the pixel values (``scipy.stats.spearmanr``) and SSIM
  (``skimage.metrics.structural_similarity`` with ``data_range=1.0``: the engine's maps are
  min-max normalised to [0, 1]). A map that explains the *model* must change when the weights
  it was computed from are destroyed; a map that stays the same (an edge detector) explains the
  input, not the model.
- **Random logit.** The map of the intact model for a random *other* class, against the map of
  the explained class: a class-specific method should draw another map.

**The rule** (:data:`THRESHOLD`): a method *passes* when the mean over images of |Spearman ρ|
between its original map and its map on the fully randomised model is below 0.5. Why 0.5:
ρ² < 0.25, so at most a quarter of the original map's rank variance survives when none of the
trained weights do. A map independent of the weights stays at ρ = 1 (a Sobel edge map:
measured 1.0 in ``tests/test_sanity.py``), whereas Grad-CAM on a random network falls to
|ρ| ≈ 0–0.3 (Adebayo et al. Fig. 2; our figures in docs/faithfulness.md), so the line sits
in a wide gap and a method near it is reported, not rounded. The random-logit check has its own
flag (``random_logit_passed``: mean *signed* ρ below the same threshold — the other class's map
may rightly be the inverse of this one, evidence for one class being evidence against the
other); it is informative only for class-specific methods (EigenCAM ignores the class, so its
random-logit ρ is 1 by construction) and is *not* part of ``passed``.

Re-initialisation follows Quantus's ``MPRT`` (0.6.0) exactly, so Quantus is the test oracle:
inside a block, every submodule with ``reset_parameters()`` is reset in reverse
``named_modules()`` order, each right after ``torch.manual_seed(seed + 1)`` (the global RNG is
forked and restored: the caller's random state is not consumed). Blocks partition that order,
so after block k our copy equals Quantus's per-module copy after the last module of block k.
Parameters held by a module without ``reset_parameters`` (e.g. a layer-scale vector) are not
re-initialised; :attr:`SanityResult.not_randomised` names them.

Constant maps: when the original map of an image is constant its ρ is undefined (NaN, the image
is left out of the means); when only the randomised map is constant (a blank map: no positive
evidence left) ρ is 0 — it shares no ranking with the original.

API::

    from cam_core.sanity import sanity_check, sanity_frame
    results = sanity_check(explainer, images, ["gradcam", "eigencam"], layers=[None])
    results[0].passed, results[0].spearman_full, results[0].random_logit_spearman_mean
    frame = sanity_frame(results)   # one row per (method, layer, check, depth): see its doc

Charts: :func:`cam_core.sanity_figures.sanity_figure`. In a dataset evaluation:
``EvalConfig(sanity=True, sanity_images=8)`` → ``EvalResult.sanity`` (:func:`sanity_frame`).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats
from skimage.metrics import structural_similarity
from torch import nn

from cam_core.explain import Explainer, Explanation
from cam_core.layers import LayerSet
from cam_core.methods import get_method
from cam_core.models import resolve_layer

__all__ = [
    "DEFAULT_IMAGES",
    "DEFAULT_SEED",
    "FRAME_COLUMNS",
    "THRESHOLD",
    "Block",
    "SanityResult",
    "bootstrap_ci",
    "model_blocks",
    "randomise_block",
    "sanity_check",
    "sanity_frame",
    "similarity",
]

THRESHOLD = 0.5
"""A method passes when mean |Spearman ρ| at full randomization is below this (see the module)."""

DEFAULT_IMAGES = 8
"""Images a sanity check runs on by default."""

DEFAULT_SEED = 42
"""Seed of the re-initialisation (Quantus MPRT's default) and of the random-logit classes."""

FRAME_COLUMNS: tuple[str, ...] = (
    "method",
    "layer",
    "check",
    "depth",
    "block",
    "spearman",
    "abs_spearman",
    "ssim",
    "n",
    "ci_low",
    "ci_high",
    "passed",
    "random_logit_passed",
    "threshold",
)
"""Columns of :func:`sanity_frame`."""

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Block:
    """One randomization step: ``name`` (a module path) and the paths of the submodules whose
    ``reset_parameters()`` it calls, in call order (reverse ``named_modules()`` order).
    """

    name: str
    modules: tuple[str, ...]


@dataclass(frozen=True)
class SanityResult:
    """The sanity check of one (method, layer) on N images.

    ``blocks[k - 1]`` is the block randomised last at depth k (depth 0: the intact model, whose
    similarity to itself is 1); ``spearman`` and ``ssim`` are (D + 1, N) per depth and image.
    ``random_logit_*`` are (N,) (NaN with a single class). ``targets`` / ``random_classes`` are
    the explained and the random other class per image. ``passed`` applies :data:`THRESHOLD`
    (the module says why) to the last depth.
    """

    method: str
    layer: str
    blocks: tuple[str, ...]
    spearman: np.ndarray
    ssim: np.ndarray
    random_logit_spearman: np.ndarray
    random_logit_ssim: np.ndarray
    targets: tuple[int, ...]
    random_classes: tuple[int, ...]
    threshold: float = THRESHOLD
    not_randomised: tuple[str, ...] = ()

    @property
    def depths(self) -> int:
        """Number of randomised blocks at full randomization."""
        return len(self.blocks)

    def mean_spearman(self) -> np.ndarray:
        """(D + 1,) mean ρ per depth over the images with a defined ρ."""
        return _nanmean(self.spearman)

    def mean_abs_spearman(self) -> np.ndarray:
        """(D + 1,) mean |ρ| per depth."""
        return _nanmean(np.abs(self.spearman))

    def mean_ssim(self) -> np.ndarray:
        """(D + 1,) mean SSIM per depth."""
        return _nanmean(self.ssim)

    @property
    def spearman_full(self) -> float:
        """Mean |ρ| at full randomization: the figure ``passed`` reads."""
        return float(self.mean_abs_spearman()[-1])

    @property
    def ssim_full(self) -> float:
        """Mean SSIM at full randomization."""
        return float(self.mean_ssim()[-1])

    @property
    def random_logit_spearman_mean(self) -> float:
        """Mean ρ between the map of the explained class and of a random other class."""
        return float(_nanmean(self.random_logit_spearman))

    @property
    def passed(self) -> bool:
        """Mean |ρ| at full randomization below :attr:`threshold` (False when undefined)."""
        return bool(self.spearman_full < self.threshold)

    @property
    def random_logit_passed(self) -> bool:
        """Mean random-logit ρ (signed) below :attr:`threshold` (False when undefined): the
        other class's map may be the inverse of this one (evidence for one class is evidence
        against the other), which is the class-discriminative behaviour the check asks for.
        """
        return bool(float(_nanmean(self.random_logit_spearman)) < self.threshold)


def bootstrap_ci(
    values: np.ndarray, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Seeded percentile-bootstrap CI of the mean of the finite ``values`` (NaN, NaN when fewer
    than two).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return math.nan, math.nan
    means = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _nanmean(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column → NaN, said in docs
        return np.nanmean(a, axis=-1)


# -------------------------------------------------------------------------------- similarity
def similarity(original: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(Spearman ρ, SSIM) of two (H, W) maps in [0, 1].

    ρ over the flattened pixels; NaN when ``original`` is constant, 0 when only ``other`` is
    (see the module). SSIM: skimage's default 7×7 Gaussian-free window, ``data_range=1.0``.
    """
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"maps must be two (H, W) arrays of one shape, got {a.shape}, {b.shape}")
    if a.max() == a.min():
        rho = math.nan
    elif b.max() == b.min():
        rho = 0.0
    else:
        rho = float(stats.spearmanr(a.ravel(), b.ravel())[0])
    win = min(7, *a.shape)
    win -= 1 - win % 2  # odd
    ssim = float(structural_similarity(a, b, data_range=1.0, win_size=win))
    return rho, ssim


# ------------------------------------------------------------------------------------ blocks
def _has_params(m: nn.Module) -> bool:
    return next(m.parameters(), None) is not None


def _resettable(model: nn.Module, prefix: str) -> tuple[str, ...]:
    """Paths under ``prefix`` with ``reset_parameters``, in reverse ``named_modules`` order."""
    sub = resolve_layer(model, prefix)
    names = [
        f"{prefix}.{n}" if n else prefix
        for n, m in sub.named_modules()
        if hasattr(m, "reset_parameters")
    ]
    return tuple(reversed(names))


def model_blocks(model: nn.Module) -> tuple[Block, ...]:
    """The randomization steps of ``model``, head first.

    A block is a top-level child with parameters (ResNet: ``fc``, ``layer4`` … ``layer1``,
    ``bn1``, ``conv1``; this project's patch nets: ``classifier``, ``head``, ``layer2`` …).
    When a model has fewer than four such children (a features/classifier pair: EfficientNet,
    VGG, fastai's body/head) each of them that is a container is opened one level
    (``features.8``, ``features.7`` … ``0.7``, ``0.6`` …). Blocks are in reverse registration
    order, so they partition Quantus's top-down module order. ValueError when nothing has
    ``reset_parameters``.
    """
    top = [(n, m) for n, m in model.named_children() if _has_params(m)]
    if len(top) < 4:
        opened: list[tuple[str, nn.Module]] = []
        for n, m in top:
            kids = [(f"{n}.{k}", c) for k, c in m.named_children() if _has_params(c)]
            own = next(m.parameters(recurse=False), None) is not None
            opened.extend(kids if kids and not own else [(n, m)])
        top = opened
    blocks = [Block(n, _resettable(model, n)) for n, _ in reversed(top)]
    blocks = [b for b in blocks if b.modules]
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} has no submodule with reset_parameters(): nothing to "
            "randomise for the sanity check"
        )
    return tuple(blocks)


def _not_randomised(model: nn.Module, blocks: Sequence[Block]) -> tuple[str, ...]:
    """Parameter names that no ``reset_parameters()`` of ``blocks`` re-initialises."""
    covered: set[int] = set()
    for b in blocks:
        for path in b.modules:
            covered.update(id(p) for p in resolve_layer(model, path).parameters(recurse=False))
    return tuple(n for n, p in model.named_parameters() if id(p) not in covered)


def randomise_block(model: nn.Module, block: Block, seed: int = DEFAULT_SEED) -> None:
    """Re-initialise ``block`` of ``model`` in place: each module's ``reset_parameters()`` right
    after ``torch.manual_seed(seed + 1)`` (Quantus MPRT's rule), in a forked RNG state.
    """
    devices = [p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=sorted(set(devices))), torch.no_grad():
        for path in block.modules:
            torch.manual_seed(seed + 1)
            resolve_layer(model, path).reset_parameters()  # type: ignore[operator]


# ------------------------------------------------------------------------------ the check
def _copy_model(explainer: Explainer) -> nn.Module:
    with explainer.lock:  # no other session's hooks inside the copy
        try:
            model = copy.deepcopy(explainer.model)
        except Exception as exc:
            raise TypeError(
                f"cannot copy {type(explainer.model).__name__} for the sanity check "
                f"(copy.deepcopy failed: {exc}); the model was not changed"
            ) from exc
    return model.eval()


def _random_other(targets: Sequence[int], n_classes: int, seed: int) -> list[int]:
    """A random class ≠ target per image, drawn as Quantus's RandomLogit draws it (one batch)."""
    if n_classes < 2:
        return [-1] * len(targets)
    offsets = np.random.RandomState(seed).randint(0, n_classes - 1, len(targets))
    return [
        [c for c in range(n_classes) if c != t][o] for t, o in zip(targets, offsets, strict=True)
    ]


def _maps(exp: Explanation, method: str, n: int, targets: Sequence[int]) -> list[np.ndarray]:
    return [exp.get(i, targets[i], method).cam for i in range(n)]


def sanity_check(
    explainer: Explainer,
    images: Sequence[np.ndarray],
    methods: Sequence[str],
    *,
    layers: Sequence[str | None] = (None,),
    targets: Sequence[int | None] | None = None,
    seed: int = DEFAULT_SEED,
    threshold: float = THRESHOLD,
    flip_smooth: bool = False,
    blocks: Sequence[Block] | None = None,
    progress: Progress | None = None,
) -> tuple[SanityResult, ...]:
    """Cascading randomization and random logit for every (method, layer) on ``images``.

    ``images`` are (H, W) uint8 arrays (a few: :data:`DEFAULT_IMAGES`), one class index per image in
    ``targets`` (None, or a None entry: the intact model's predicted class). ``layers`` as in
    :meth:`Explainer.explain` (None: the card's default). ``blocks`` default to
    :func:`model_blocks` of the model. Each depth is one batched engine call per layer for all
    methods. The caller's model is only deep-copied (under its lock), never run or changed.
    Returns results in (method, layer) order. ValueError on no images / methods, a target out
    of range or a bad threshold; KeyError on an unknown method or layer (before any work).
    """
    if len(images) == 0:
        raise ValueError("sanity_check needs at least one image")
    if not methods:
        raise ValueError("sanity_check needs at least one method (e.g. 'gradcam')")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    for m in methods:
        get_method(m)  # KeyError listing the valid names
    card = explainer.card
    n_classes = len(card.classes)
    layer_names = [str(LayerSet.parse(lay or explainer.default_layer)) for lay in layers]
    for name in layer_names:
        LayerSet.parse(name).resolve(explainer.model)  # KeyError naming the path
    model = _copy_model(explainer)
    ex = Explainer(model, card, batch_size=explainer.batch_size)
    steps = tuple(blocks) if blocks is not None else model_blocks(model)
    for b in steps:
        for path in b.modules:
            resolve_layer(model, path)
    n = len(images)
    wanted = list(targets) if targets is not None else [None] * n
    if len(wanted) != n:
        raise ValueError(f"targets has {len(wanted)} entries for {n} images")
    if any(t is None for t in wanted):
        predicted = ex.predict(images).argmax(axis=1)  # on the intact copy
        wanted = [int(p) if t is None else t for t, p in zip(wanted, predicted, strict=True)]
    targets = [int(t) for t in wanted]
    bad = [t for t in targets if not 0 <= t < n_classes]
    if bad:
        raise ValueError(f"target class {bad[0]} out of range for {n_classes} classes")
    others = _random_other(targets, n_classes, seed)
    total = (len(steps) + 2) * len(layer_names)
    done = 0

    def explain(layer: str, cls: Sequence[int]) -> Explanation:
        nonlocal done
        exp = ex.explain(
            images, methods, targets=[[c] for c in cls], layers=layer, flip_smooth=flip_smooth
        )
        done += 1
        if progress is not None:
            progress(done, total, f"sanity check: {done}/{total} map sets")
        return exp

    original: dict[tuple[str, str], list[np.ndarray]] = {}
    rl: dict[tuple[str, str], np.ndarray] = {}
    for layer in layer_names:
        exp = explain(layer, targets)
        for m in methods:
            original[(m, layer)] = _maps(exp, m, n, targets)
        if n_classes > 1:
            exp_off = explain(layer, others)
            for m in methods:
                off = _maps(exp_off, m, n, others)
                rl[(m, layer)] = np.array(
                    [similarity(a, b) for a, b in zip(original[(m, layer)], off, strict=True)]
                ).reshape(n, 2)
        else:
            done += 1
            for m in methods:
                rl[(m, layer)] = np.full((n, 2), np.nan)
    sims = {k: [np.array([similarity(a, a) for a in maps])] for k, maps in original.items()}
    for b in steps:
        randomise_block(model, b, seed)
        for layer in layer_names:
            exp = explain(layer, targets)
            for m in methods:
                now = _maps(exp, m, n, targets)
                pairs = [similarity(a, c) for a, c in zip(original[(m, layer)], now, strict=True)]
                sims[(m, layer)].append(np.array(pairs).reshape(n, 2))
    left = _not_randomised(model, steps)
    out = []
    for m in methods:
        for layer in layer_names:
            s = np.stack(sims[(m, layer)])  # (D + 1, N, 2)
            out.append(
                SanityResult(
                    method=m,
                    layer=layer,
                    blocks=tuple(b.name for b in steps),
                    spearman=s[..., 0],
                    ssim=s[..., 1],
                    random_logit_spearman=rl[(m, layer)][:, 0],
                    random_logit_ssim=rl[(m, layer)][:, 1],
                    targets=tuple(targets),
                    random_classes=tuple(others),
                    threshold=threshold,
                    not_randomised=left,
                )
            )
    return tuple(out)


def sanity_frame(results: Sequence[SanityResult]) -> pd.DataFrame:
    """One row per (method, layer, check, depth), columns :data:`FRAME_COLUMNS`.

    ``check`` is ``"randomization"`` (depth 0 = intact model, block "-"; depth k: ``block``
    randomised last, all blocks above it too) or ``"random-logit"`` (one row, depth -1, block
    "random class"). ``spearman``/``abs_spearman``/``ssim`` are means over the ``n`` images with
    a defined ρ; ``ci_low``/``ci_high`` the seeded 95 % bootstrap CI over images of the figure a
    verdict reads (mean |ρ| on randomization rows, mean ρ on the random-logit row): a verdict
    whose CI straddles ``threshold`` is not settled by this many images (:func:`bootstrap_ci`).
    ``passed`` / ``random_logit_passed`` / ``threshold`` repeat the (method, layer)
    verdicts on each of its rows, so ``frame.groupby(["method", "layer"]).passed.first()`` is
    the verdict table.
    """
    rows = []
    for r in results:
        common = {
            "method": r.method,
            "layer": r.layer,
            "passed": r.passed,
            "random_logit_passed": r.random_logit_passed,
            "threshold": r.threshold,
        }
        rho, arho, ssim = r.mean_spearman(), r.mean_abs_spearman(), r.mean_ssim()
        counts = np.isfinite(r.spearman).sum(axis=1)
        for d in range(r.depths + 1):
            lo, hi = bootstrap_ci(np.abs(r.spearman[d]))
            rows.append(
                {
                    **common,
                    "check": "randomization",
                    "depth": d,
                    "block": r.blocks[d - 1] if d else "-",
                    "spearman": float(rho[d]),
                    "abs_spearman": float(arho[d]),
                    "ssim": float(ssim[d]),
                    "n": int(counts[d]),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
        rl_lo, rl_hi = bootstrap_ci(r.random_logit_spearman)
        rows.append(
            {
                **common,
                "check": "random-logit",
                "depth": -1,
                "block": "random class",
                "spearman": r.random_logit_spearman_mean,
                "abs_spearman": float(_nanmean(np.abs(r.random_logit_spearman))),
                "ssim": float(_nanmean(r.random_logit_ssim)),
                "n": int(np.isfinite(r.random_logit_spearman).sum()),
                "ci_low": rl_lo,
                "ci_high": rl_hi,
            }
        )
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
