"""The engine: (model, images, classes per image, methods) → per-class maps at image resolution.

One forward captures the target layer(s); every gradient method of every requested class then comes
from one batched backward that starts at the logits and stops at the target layer (no parameter
gradients, nothing below the layer). Maps are computed, upsampled and normalised on the model's
device and cross to numpy once per call.

The engine owns the lifecycle: hooks are removed in ``finally``, the caller's grad mode, each
module's own train/eval mode and parameter ``requires_grad`` flags are restored, and one lock per
model serialises use of a model shared between threads or browser sessions. The methods
themselves live in :mod:`cam_core.cams` and are named in :mod:`cam_core.methods`; each gets one
per-batch context (:class:`~cam_core.cams.context.Batch`). pytorch-grad-cam stays available as
the reference (:func:`reference_cam`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from cam_core.cams.capture import (
    CamError,
    MapOut,
    capture,
    class_probs,
    guarded,
    model_lock,
    resize,
)
from cam_core.cams.context import (
    AUG_SMOOTH,
    FLIP_AVERAGE,
    FLIPS,
    PLAIN,
    Batch,
    SharedCapture,
    averaged,
)
from cam_core.cams.reference import library_cam
from cam_core.layers import LayerSet
from cam_core.methods import METHODS, MethodSpec, get_method
from cam_core.models import ModelCard, preprocess
from cam_core.models.probe import LayerCandidate, probe_layers

__all__ = [
    "FLIPS",
    "CamError",
    "CamResult",
    "Explainer",
    "Explanation",
    "Progress",
    "available_methods",
    "model_lock",
    "reference_cam",
]

Progress = Callable[[int, int, str], None]
"""progress(done, total, message) — called from the computing thread."""


@dataclass(frozen=True)
class CamResult:
    """One map: ``cam`` is (H, W) float32 in [0, 1] at the image's own resolution.

    ``strength`` is the map's raw maximum before normalisation (after ReLU), averaged over fused
    layers; None for methods whose library code does not expose it. A strength of 0 means the
    method found no positive evidence and the normalised map is all zeros.
    """

    image: int
    class_index: int
    class_name: str
    method: str
    layer: str
    cam: np.ndarray
    strength: float | None

    @property
    def blank(self) -> bool:
        """The method found no positive evidence for the class: the map is all zeros."""
        return self.strength == 0


@dataclass(frozen=True)
class Explanation:
    """All maps of one engine call plus the class scores.

    ``probs`` is (B, K): softmax for single-label models, sigmoid for multi-label ones.
    """

    classes: tuple[str, ...]
    probs: np.ndarray
    results: tuple[CamResult, ...]

    def get(self, image: int, cls: int | str, method: str) -> CamResult:
        """The map of ``image`` for class ``cls`` (index or name) by ``method``."""
        index = self.classes.index(cls) if isinstance(cls, str) else cls
        for r in self.results:
            if r.image == image and r.class_index == index and r.method == method:
                return r
        raise KeyError(f"no map for image {image}, class {cls!r}, method {method!r}")


class Explainer:
    """CAM engine bound to one model and its card; safe to share between threads.

    ``layers`` arguments accept a :class:`~cam_core.layers.LayerSet` or its text: a module path
    ("layer4", "layer3.1", "features[-1]") or several joined by "+" ("layer3+layer4": maps of
    each layer normalised, averaged, renormalised).
    """

    def __init__(self, model: nn.Module, card: ModelCard, *, batch_size: int = 16) -> None:
        self.model = model
        self.card = card
        self.batch_size = batch_size
        self.lock = model_lock(model)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live (maps are computed there)."""
        return next(self.model.parameters()).device

    def layer_candidates(self) -> list[LayerCandidate]:
        """Target layers a shape probe finds in the model at the card's input size, the
        default first (:func:`cam_core.models.probe.probe_layers`); holds the model's lock.
        """
        with self.lock:
            return probe_layers(self.model, self.card.input_hw, self.card.in_chans)

    @property
    def default_layer(self) -> str:
        """The layer used when ``layers`` is not given: :attr:`ModelCard.default_layer`."""
        return self.card.default_layer

    # ---------------------------------------------------------------- public API
    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (B, K) for (H, W) uint8 grayscale images."""
        with self.lock, self._guard(), torch.no_grad():
            out = [self._probs(self.model(x)) for x in self._batches(images)]
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, len(self.card.classes)))

    def default_targets(self, probs: np.ndarray, threshold: float = 0.5) -> list[list[int]]:
        """Predicted class (single-label) or every class above ``threshold`` (multi-label; top-1
        when none is).
        """
        if not self.card.multilabel:
            return [[int(p.argmax())] for p in probs]
        return [
            [int(i) for i in np.flatnonzero(p >= threshold)] or [int(p.argmax())] for p in probs
        ]

    def explain(
        self,
        images: Sequence[np.ndarray],
        methods: Sequence[str],
        *,
        targets: Sequence[Sequence[int]] | None = None,
        layers: str | LayerSet | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        flip_smooth: bool = False,
        progress: Progress | None = None,
    ) -> Explanation:
        """Maps for every (image, target class, method).

        ``images`` are (H, W) uint8 grayscale arrays of any sizes; ``targets[i]`` lists class
        indices for image i (None: :meth:`default_targets`). ``flip_smooth``: each map is the
        mean of the maps of the four flips of the input (none, left-right, up-down, both), each
        flipped back, renormalised (:data:`FLIPS`; 4× the work). ``aug_smooth``:
        pytorch-grad-cam's flip × brightness mean. Raises :class:`CamError` on a map that is not
        finite (NaN weights or input), KeyError on an unknown method or layer, ValueError on a
        malformed layer set or a target class out of range.
        """
        specs = [get_method(m) for m in methods]
        layer_set = LayerSet.parse(layers or self.default_layer)
        modules = layer_set.resolve(self.model)  # KeyError naming a path that does not exist
        n_classes = len(self.card.classes)
        results: list[CamResult] = []
        probs_all: list[np.ndarray] = []
        starts = range(0, len(images), self.batch_size)
        done, total = 0, len(starts) * len(specs)
        with self.lock, self._guard():
            for start in starts:
                chunk = images[start : start + self.batch_size]
                x = preprocess(chunk, self.card).to(self.device)
                shared = SharedCapture()
                logits = self._logits(x, specs, layer_set, modules, shared)
                probs = self._probs(logits).cpu().numpy()
                probs_all.append(probs)
                chunk_targets = (
                    [list(t) for t in targets[start : start + len(chunk)]]
                    if targets is not None
                    else self.default_targets(probs)
                )
                img_idx, cls_idx = self._flatten_targets(chunk_targets, n_classes, start)
                if len(img_idx) == 0:
                    done += len(specs)
                    continue
                ctx = Batch(
                    self.model,
                    self.card,
                    x,
                    img_idx,
                    cls_idx,
                    layer_set,
                    modules,
                    eigen_smooth,
                    self._let_others_in,
                    shared,
                )
                maps: dict[str, MapOut] = {}
                for spec in specs:
                    compute = spec.run
                    if aug_smooth and spec.augmentable:
                        compute = partial(averaged, spec.run, averaging=AUG_SMOOTH)
                    try:
                        maps[spec.name] = averaged(
                            compute, ctx, FLIP_AVERAGE if flip_smooth else PLAIN
                        )
                    except CamError:
                        raise
                    except RuntimeError as exc:  # e.g. Ablation-CAM inside a Swin block
                        first = (str(exc).strip().splitlines() or [""])[0][:300]
                        raise CamError(
                            f"{spec.label} at layer {str(layer_set)!r} failed: {first}; try "
                            "another layer (a block's output) or method"
                        ) from exc
                    done += 1
                    if progress is not None:
                        progress(
                            done, total, f"{spec.label}: images {start + 1}–{start + len(chunk)}"
                        )
                results.extend(
                    self._to_results(maps, chunk, img_idx, cls_idx, start, str(layer_set))
                )
        probs_np = np.concatenate(probs_all) if probs_all else np.zeros((0, n_classes), np.float32)
        return Explanation(self.card.classes, probs_np, tuple(results))

    # ------------------------------------------------------------- the lifecycle
    def _guard(self) -> AbstractContextManager[None]:
        """Eval mode for the call; each module's own mode, grad flags and .grad come back after."""
        return guarded(self.model)

    def _let_others_in(self) -> None:
        """Release the model's lock for a moment, then take it back (however deeply held).

        Called by the slow perturbation methods between chunks, where this call has no hook
        attached and the model is in eval mode: another session's call (a 50-ms Grad-CAM) runs
        there instead of waiting out a whole Score-CAM. Its own guard leaves the model as it
        found it.
        """
        threading.Condition(self.lock).wait(timeout=0.002)

    def _logits(
        self,
        x: torch.Tensor,
        specs: Sequence[MethodSpec],
        layers: LayerSet,
        modules: tuple[nn.Module, ...],
        shared: SharedCapture,
    ) -> torch.Tensor:
        """The batch's (B, K) logits: from the capture the methods will share when one of them
        reads it (one forward per batch), else a plain forward.
        """
        if not any(s.uses_capture for s in specs):
            with torch.no_grad():
                return self.model(x)
        need_grad = any(s.kind == "gradient" for s in specs)
        cap = shared.get(
            need_grad, lambda: capture(self.model, x, modules, layers.names, need_grad)
        )
        return cap.logits.detach()

    # ------------------------------------------------------------------ helpers
    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return class_probs(logits, self.card.multilabel)

    def _batches(self, images: Sequence[np.ndarray]) -> Iterator[torch.Tensor]:
        for s in range(0, len(images), self.batch_size):
            yield preprocess(images[s : s + self.batch_size], self.card).to(self.device)

    def _flatten_targets(
        self, targets: list[list[int]], n_classes: int, offset: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img, cls = [], []
        for i, ts in enumerate(targets):
            for c in dict.fromkeys(ts):  # de-duplicated, order kept
                if not 0 <= int(c) < n_classes:
                    raise ValueError(
                        f"target class {c!r} for image {offset + i} is outside 0..{n_classes - 1}"
                    )
                img.append(i)
                cls.append(int(c))
        dev = self.device
        return torch.tensor(img, dtype=torch.long, device=dev), torch.tensor(
            cls, dtype=torch.long, device=dev
        )

    def _to_results(
        self,
        maps: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
        chunk: Sequence[np.ndarray],
        img_idx: torch.Tensor,
        cls_idx: torch.Tensor,
        offset: int,
        layer: str,
    ) -> list[CamResult]:
        """Resize every map to its image's own size on device, then cross to numpy once."""
        names = list(maps)
        stacked = torch.stack([maps[n][0] for n in names], dim=1)  # (T, M, S, S)
        pieces, shapes = [], []
        for t, i in enumerate(img_idx.tolist()):
            h, w = chunk[i].shape[:2]
            pieces.append(resize(stacked[t], (h, w)).clamp_(0, 1).flatten())
            shapes.append((h, w))
        flat = torch.cat(pieces).float().cpu().numpy()
        strengths = {
            n: (None if maps[n][1] is None else maps[n][1].float().cpu().numpy()) for n in names
        }
        results, pos = [], 0
        for t, (i, c) in enumerate(zip(img_idx.tolist(), cls_idx.tolist(), strict=True)):
            h, w = shapes[t]
            for m, n in enumerate(names):
                cam = flat[pos + m * h * w : pos + (m + 1) * h * w].reshape(h, w)
                s = strengths[n]
                results.append(
                    CamResult(
                        offset + i,
                        c,
                        self.card.classes[c],
                        n,
                        layer,
                        cam,
                        None if s is None else float(s[t]),
                    )
                )
            pos += len(names) * h * w
        return results


def reference_cam(
    model: nn.Module,
    method: str,
    input_tensor: torch.Tensor,
    classes: Sequence[int],
    layer_names: Sequence[str] | LayerSet | str,
    *,
    eigen_smooth: bool = False,
    aug_smooth: bool = False,
) -> np.ndarray:
    """Plain pytorch-grad-cam for ``method``, called correctly: (T, S, S) maps at input size,
    one target class per item of ``input_tensor`` (see :func:`cam_core.cams.reference.library_cam`).
    """
    spec = get_method(method)
    layers = (
        LayerSet.parse(layer_names)
        if isinstance(layer_names, str | LayerSet)
        else LayerSet(tuple(layer_names))
    )
    return library_cam(
        model,
        spec,
        input_tensor,
        classes,
        layers.resolve(model),
        eigen_smooth=eigen_smooth,
        aug_smooth=aug_smooth,
    )


def available_methods() -> tuple[str, ...]:
    """Names of every registered method, registry order."""
    return tuple(METHODS)
