"""The engine: (model, images, classes per image, methods) → per-class maps at image resolution.

One forward captures the target layer(s); every gradient method of every requested class then comes
from one batched backward that starts at the logits and stops at the target layer (no parameter
gradients, nothing below the layer). Maps are computed, upsampled and normalised on the model's
device and cross to numpy once per call.

The engine owns the lifecycle: hooks are removed in ``finally``, the caller's grad mode, train/eval
mode and parameter ``requires_grad`` flags are restored, and one lock per model serialises use of a
model shared between threads or browser sessions. pytorch-grad-cam stays available as the
reference (``reference_cam``) and implements the methods we do not re-derive, inside the same
guards.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cam_core.methods import (
    METHODS,
    MethodSpec,
    get_method,
    gradcam_plusplus_weights,
    projection_2d,
)
from cam_core.models import ModelCard, get_arch, preprocess, resolve_layer

Progress = Callable[[int, int, str], None]
"""progress(done, total, message) — called from the computing thread."""


class CamError(RuntimeError):
    """A map could not be computed; the message says which layer/method/class and why."""


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


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The one lock of a model object: every engine call on it holds it while hooks are attached."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def _normalise(cam: torch.Tensor) -> torch.Tensor:
    """Per-map min-max to [0, 1] over the last two dims, as pytorch-grad-cam's scale_cam_image."""
    cam = cam - cam.amin(dim=(-2, -1), keepdim=True)
    return cam / (1e-7 + cam.amax(dim=(-2, -1), keepdim=True))


def _resize(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, h, w) → (T, *size) bilinear with half-pixel centres (cv2.resize's INTER_LINEAR)."""
    if tuple(cam.shape[-2:]) == tuple(size):
        return cam
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _finish(per_layer: list[torch.Tensor], input_size: tuple[int, int]) -> torch.Tensor:
    """Raw (T, h, w) maps per layer → one normalised (T, S, S) map, as BaseCAM does."""
    scaled = [_resize(_normalise(torch.relu(c)), input_size) for c in per_layer]
    fused = torch.relu(torch.stack(scaled)).mean(dim=0)
    return _normalise(fused)


FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
"""The input flips ``flip_smooth`` averages over (tensor dims flipped; () is the image itself).

Measured on NEU-DET val (docs/localization.md): a model's positional habits (a class's map
peaking in the same cell whatever the image) land in different places on each flip and average
out, while the evidence on the defect moves with the defect and adds up.
"""


def _flip_mean(
    compute: Callable[..., tuple[torch.Tensor, torch.Tensor | None]],
    x: torch.Tensor,
    flips: Sequence[tuple[int, ...]],
    memos: dict[tuple[int, ...], dict[bool, list]],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``compute(x flipped, memo=…)`` for each of ``flips``, the maps flipped back, averaged and
    renormalised (one flip: its result as is). One memo per flip, so every method of a call
    shares that flip's capture.
    """
    maps, strengths = [], []
    for dims in flips:
        m, s = compute(x.flip(dims) if dims else x, memo=memos.setdefault(dims, {}))
        maps.append(m.flip(dims) if dims else m)
        if s is not None:
            strengths.append(s)
    if len(maps) == 1:
        return maps[0], (strengths[0] if strengths else None)
    mean = _normalise(torch.stack(maps).mean(0))
    return mean, (torch.stack(strengths).mean(0) if strengths else None)


@dataclass
class _Capture:
    """Activations of the target layers from one forward; the first one is a graph leaf."""

    logits: torch.Tensor
    acts: list[torch.Tensor]


class Explainer:
    """CAM engine bound to one model and its card; safe to share between threads.

    ``layers`` arguments accept a module path ("layer4", "layer3.1", "features[-1]") or several
    joined by "+" ("layer3+layer4": maps of each layer normalised, averaged, renormalised).
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

    @property
    def default_layer(self) -> str:
        """The card's target layer, else the architecture's default."""
        return self.card.target_layer or get_arch(self.card.arch).target_layers[0]

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
        layers: str | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        flip_smooth: bool = False,
        progress: Progress | None = None,
    ) -> Explanation:
        """Maps for every (image, target class, method).

        ``images`` are (H, W) uint8 grayscale arrays of any sizes; ``targets[i]`` lists class
        indices for image i (None: :meth:`default_targets`). ``flip_smooth``: each map is the
        mean of the maps of the four flips of the input (none, left-right, up-down, both), each
        flipped back, renormalised (:data:`FLIPS`; 4× the work). Raises :class:`CamError` on a
        map that is not finite (NaN weights or input) and KeyError on an unknown method or layer.
        """
        specs = [get_method(m) for m in methods]
        layer_names = self._layer_names(layers)
        n_classes = len(self.card.classes)
        results: list[CamResult] = []
        probs_all: list[np.ndarray] = []
        batches = list(range(0, len(images), self.batch_size))
        total = len(batches) * len(specs)
        done = 0
        with self.lock, self._guard():
            for start in batches:
                chunk = images[start : start + self.batch_size]
                x = preprocess(chunk, self.card).to(self.device)
                # The capture's forward also gives the class scores: one forward per batch.
                memos: dict[tuple[int, ...], dict[bool, list]] = {(): {}}
                memo = memos[()]
                if not aug_smooth and any(s.kind in ("gradient", "activation") for s in specs):
                    need_grad = any(s.kind == "gradient" for s in specs)
                    cap = self._capture(x, layer_names, need_grad=need_grad)
                    memo[need_grad] = [cap, None]
                    logits = cap.logits.detach()
                else:
                    with torch.no_grad():
                        logits = self.model(x)
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
                maps: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
                for spec in specs:
                    compute = partial(
                        self._compute,
                        spec,
                        img_idx=img_idx,
                        cls_idx=cls_idx,
                        layer_names=layer_names,
                        eigen_smooth=eigen_smooth,
                        aug_smooth=aug_smooth,
                    )
                    maps[spec.name] = _flip_mean(compute, x, FLIPS if flip_smooth else ((),), memos)
                    done += 1
                    if progress is not None:
                        progress(
                            done, total, f"{spec.label}: images {start + 1}–{start + len(chunk)}"
                        )
                results.extend(
                    self._to_results(
                        maps, chunk, img_idx, cls_idx, start, layers or self.default_layer
                    )
                )
        probs_np = np.concatenate(probs_all) if probs_all else np.zeros((0, n_classes), np.float32)
        return Explanation(self.card.classes, probs_np, tuple(results))

    # ------------------------------------------------------------- the lifecycle
    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Eval mode for the call; the caller's mode, grad flags and .grad come back after."""
        model = self.model
        was_training = model.training
        flags = [(p, p.requires_grad, p.grad) for p in model.parameters()]
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)
            for p, flag, grad in flags:
                p.requires_grad_(flag)
                p.grad = grad

    def _let_others_in(self) -> None:
        """Release the model's lock for a moment, then take it back (however deeply held).

        Called by the slow perturbation methods between chunks, where this call has no hook
        attached and the model is in eval mode: another session's call (a 50-ms Grad-CAM) runs
        there instead of waiting out a whole Score-CAM. Its own guard leaves the model as it
        found it.
        """
        threading.Condition(self.lock).wait(timeout=0.002)

    def _layer_names(self, layers: str | None) -> list[str]:
        names = [n.strip() for n in (layers or self.default_layer).split("+") if n.strip()]
        for n in names:
            resolve_layer(self.model, n)  # KeyError naming the path when it does not exist
        return names

    def _capture(self, x: torch.Tensor, layer_names: list[str], need_grad: bool) -> _Capture:
        """Forward ``x`` once, keeping each target layer's output.

        With ``need_grad`` the graph starts at the first target layer to run: its output is
        detached into a leaf, so a backward stops there and never touches the stem's parameters.
        """
        modules = [resolve_layer(self.model, n) for n in layer_names]
        acts: dict[int, torch.Tensor] = {}

        def make_hook(i: int) -> Callable[[nn.Module, object, object], torch.Tensor]:
            def hook(_module: nn.Module, _inputs: object, output: object) -> torch.Tensor:
                if i in acts:
                    raise CamError(
                        f"layer {layer_names[i]!r} runs more than once per forward (a shared "
                        "module such as a reused ReLU); target its parent block instead"
                    )
                if not isinstance(output, torch.Tensor) or output.ndim != 4:
                    kind = (
                        tuple(output.shape)
                        if isinstance(output, torch.Tensor)
                        else type(output).__name__
                    )
                    raise CamError(
                        f"layer {layer_names[i]!r} outputs {kind}, not a (B, C, h, w) feature map; "
                        "pick a convolutional block"
                    )
                if need_grad and not torch.is_grad_enabled():
                    torch.set_grad_enabled(True)  # restored by the no_grad() block around forward
                    output = output.detach().requires_grad_(True)
                acts[i] = output
                # Downstream in-place ops (ResNet's `out += identity`) must not change what we keep.
                return output.clone()

            return hook

        handles = [m.register_forward_hook(make_hook(i)) for i, m in enumerate(modules)]
        try:
            with torch.no_grad():
                logits = self.model(x)
        finally:
            for h in handles:
                h.remove()
        missing = [layer_names[i] for i in range(len(modules)) if i not in acts]
        if missing:
            raise CamError(f"layer(s) {missing} did not run in the forward pass")
        return _Capture(logits, [acts[i] for i in range(len(modules))])

    def _gradients(
        self, cap: _Capture, img_idx: torch.Tensor, cls_idx: torch.Tensor
    ) -> list[torch.Tensor]:
        """D logit[i_t, c_t] / d A for every target t, per layer: (T, C, h, w) each.

        Targets are packed in rounds holding at most one target per image, so one backward with
        ``is_grads_batched`` (vmap over the rounds) yields every gradient.
        """
        batch, n_classes = cap.logits.shape
        rank = torch.zeros_like(img_idx)
        seen: dict[int, int] = {}
        for t, i in enumerate(img_idx.tolist()):
            rank[t] = seen.get(i, 0)
            seen[i] = rank[t].item() + 1
        rounds = int(rank.max().item()) + 1
        grad_out = torch.zeros(rounds, batch, n_classes, device=cap.logits.device)
        grad_out[rank, img_idx, cls_idx] = 1.0
        try:
            grads = torch.autograd.grad(
                cap.logits, cap.acts, grad_outputs=grad_out, is_grads_batched=True
            )
        except RuntimeError:  # an op without a vmap rule: one backward per round instead
            per_round = [
                torch.autograd.grad(cap.logits, cap.acts, grad_outputs=g, retain_graph=True)
                for g in grad_out
            ]
            grads = tuple(torch.stack(gs) for gs in zip(*per_round, strict=True))
        return [g[rank, img_idx] for g in grads]

    # ------------------------------------------------------------ the methods
    def _compute(
        self,
        spec: MethodSpec,
        x: torch.Tensor,
        img_idx: torch.Tensor,
        cls_idx: torch.Tensor,
        layer_names: list[str],
        eigen_smooth: bool,
        aug_smooth: bool,
        memo: dict[bool, list] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(T, S, S) normalised maps at input size and (T,) strengths for one method.

        ``memo`` shares one capture (and its gradients) between the gradient and activation
        methods of one call: every such method then costs one forward + one backward in all.
        """
        if aug_smooth and spec.kind not in ("library",):
            return self._aug_smooth(spec, x, img_idx, cls_idx, layer_names, eigen_smooth)
        if spec.name == "smooth-gradcam++":
            return self._smooth_gradcampp(x, img_idx, cls_idx, layer_names)
        if spec.kind in ("gradient", "activation"):
            need_grad = spec.kind == "gradient"
            memo = {} if memo is None else memo
            entry = memo.get(True) or (None if need_grad else memo.get(False))
            if entry is None:
                entry = memo[need_grad] = [self._capture(x, layer_names, need_grad), None]
            cap = entry[0]
            if need_grad and entry[1] is None:  # once per capture: the graph is freed after
                entry[1] = self._gradients(cap, img_idx, cls_idx)
            grads = entry[1] if need_grad else [torch.zeros(0)] * len(cap.acts)
            raw = []
            for a, g in zip(cap.acts, grads, strict=True):
                a_t = a.detach()[img_idx]
                weighted = spec.formula(a_t, g if spec.kind == "gradient" else a_t)
                raw.append(
                    projection_2d(weighted) if spec.project or eigen_smooth else weighted.sum(1)
                )
            return self._finish_raw(raw, x, spec, cls_idx)
        if spec.name == "cam":
            return self._cam(x, img_idx, cls_idx, layer_names)
        if spec.name == "scorecam":
            return self._scorecam(x, img_idx, cls_idx, layer_names)
        if spec.name == "ablationcam":
            return self._ablationcam(x, img_idx, cls_idx, layer_names)
        if spec.name == "lime":
            return self._lime(x, img_idx, cls_idx)
        return self._library(spec, x, img_idx, cls_idx, layer_names, eigen_smooth)

    def _finish_raw(
        self, raw: list[torch.Tensor], x: torch.Tensor, spec: MethodSpec, cls_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for r in raw:
            if not torch.isfinite(r).all():
                bad = sorted({self.card.classes[c] for c in cls_idx.tolist()})
                raise CamError(
                    f"{spec.label} map for {bad} is not finite (NaN/inf): the model's weights or "
                    "the input produce non-finite activations or gradients"
                )
        strength = torch.stack([torch.relu(r).amax(dim=(1, 2)) for r in raw]).mean(0)
        return _finish(raw, tuple(x.shape[-2:])), strength

    def _cam(
        self, x: torch.Tensor, img_idx: torch.Tensor, cls_idx: torch.Tensor, layer_names: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        spec = get_arch(self.card.arch)
        head = resolve_layer(self.model, spec.head)
        if not spec.gap_linear or len(layer_names) != 1:
            raise CamError(
                f"CAM needs a global-average-pool + linear head fed by one target layer; "
                f"{self.card.arch!r} with layers {layer_names} is not that (use Grad-CAM)"
            )
        cap = self._capture(x, layer_names, need_grad=False)
        a = cap.acts[0][img_idx]
        weight = head.weight.detach()
        if weight.shape[1] != a.shape[1]:
            raise CamError(
                f"CAM: head {spec.head!r} takes {weight.shape[1]} features but layer "
                f"{layer_names[0]!r} has {a.shape[1]} channels; use the last feature layer"
            )
        return self._finish_raw(
            [(weight[cls_idx][:, :, None, None] * a).sum(1)], x, get_method("cam"), cls_idx
        )

    def _smooth_gradcampp(
        self,
        x: torch.Tensor,
        img_idx: torch.Tensor,
        cls_idx: torch.Tensor,
        layer_names: list[str],
        n_samples: int = 8,
        sigma: float = 0.15,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ weights from the first, second and
        third gradient moments averaged over ``n_samples`` noisy copies (σ = ``sigma`` × the input's
        range; a fixed seed makes it deterministic), applied to the clean activations.
        """
        clean = self._capture(x, layer_names, need_grad=False)
        gen = torch.Generator(device="cpu").manual_seed(0)
        noise_scale = sigma * float(x.max() - x.min())
        moments: list[list[torch.Tensor]] | None = None
        for _ in range(n_samples):
            noise = torch.randn(x.shape, generator=gen).to(x.device) * noise_scale
            cap = self._capture(x + noise, layer_names, need_grad=True)
            gs = self._gradients(cap, img_idx, cls_idx)
            step = [[g, g * g, g * g * g] for g in gs]
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
            a_t = a[img_idx]
            w = gradcam_plusplus_weights(a_t, g1 / n_samples, g2 / n_samples, g3 / n_samples)
            raw.append((w[:, :, None, None] * a_t).sum(1))
        return self._finish_raw(raw, x, get_method("smooth-gradcam++"), cls_idx)

    def _aug_smooth(
        self,
        spec: MethodSpec,
        x: torch.Tensor,
        img_idx: torch.Tensor,
        cls_idx: torch.Tensor,
        layer_names: list[str],
        eigen_smooth: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pytorch-grad-cam's aug_smooth: mean of the maps over horizontal flip × brightness
        factors (0.9, 1, 1.1), each map flipped back before averaging.
        """
        maps, strengths = [], []
        for flip in (False, True):
            for factor in (0.9, 1.0, 1.1):
                xa = (x.flip(-1) if flip else x) * factor
                m, s = self._compute(spec, xa, img_idx, cls_idx, layer_names, eigen_smooth, False)
                maps.append(m.flip(-1) if flip else m)
                if s is not None:
                    strengths.append(s)
        return torch.stack(maps).mean(0), (torch.stack(strengths).mean(0) if strengths else None)

    @torch.no_grad()
    def _scorecam(
        self,
        x: torch.Tensor,
        img_idx: torch.Tensor,
        cls_idx: torch.Tensor,
        layer_names: list[str],
        chunk: int = 64,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score-CAM batched on device: each image's masked copies are scored once for all its
        target classes, in chunks of ``chunk`` copies, with no host sync per score.

        Two exact savings: a channel that is constant over the image (a dead ReLU channel, 9–20 %
        of them in the bundled NEU model's layers) normalises to an all-zero mask, so all such
        channels share the score of one all-zero input; and the masked copies are fed
        channels-last, which CPU convolutions run ≈ 1.3× faster (same maps within 1e-5).
        """
        cap = self._capture(x, layer_names, need_grad=False)
        raw_per_layer = []
        for a in cap.acts:
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
                for k in range(0, masks.shape[0], chunk):
                    self._let_others_in()
                    xs = x[i : i + 1] * masks[k : k + chunk, None]
                    parts.append(self.model(xs.contiguous(memory_format=torch.channels_last)))
                scored = torch.cat(parts)
                scores = scored[-1:].expand(up.shape[1], -1).clone()  # (C, K)
                scores[live] = scored[: len(live)]
                weights = torch.softmax(scores[:, cls_idx[rows]].T, dim=-1)  # (targets, C)
                raw[rows] = (weights[:, :, None, None] * a[i]).sum(1)
            raw_per_layer.append(raw)
        return self._finish_raw(raw_per_layer, x, get_method("scorecam"), cls_idx)

    @torch.no_grad()
    def _ablationcam(
        self,
        x: torch.Tensor,
        img_idx: torch.Tensor,
        cls_idx: torch.Tensor,
        layer_names: list[str],
        chunk: int = 64,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ablation-CAM batched: the layer's cached output, with one channel ablated per copy, is
        fed to the rest of the network in chunks (the stem runs once per chunk, not per channel).
        Ablation value as pytorch-grad-cam: 0 when the activations' minimum is 0, else min − 1e7.
        """
        if len(layer_names) != 1:
            raise CamError("Ablation-CAM takes one target layer")
        module = resolve_layer(self.model, layer_names[0])
        cap = self._capture(x, layer_names, need_grad=False)
        a_all = cap.acts[0]
        raw = torch.empty(len(img_idx), *a_all.shape[-2:], device=x.device)
        for i in img_idx.unique().tolist():
            rows = (img_idx == i).nonzero().flatten()
            a = a_all[i]
            value = 0.0 if float(a.min()) == 0 else float(a.min()) - 1e7
            original = cap.logits[i, cls_idx[rows]]  # (targets,)
            n_ch = a.shape[0]
            scores = []
            for k in range(0, n_ch, chunk):
                self._let_others_in()
                ks = torch.arange(k, min(k + chunk, n_ch), device=x.device)
                batch = a.expand(len(ks), *a.shape).clone()
                batch[torch.arange(len(ks)), ks] = value
                handle = module.register_forward_hook(lambda _m, _i, _o, b=batch: b)
                try:
                    scores.append(self.model(x[i : i + 1]))
                finally:
                    handle.remove()
            ablated = torch.cat(scores)[:, cls_idx[rows]].T  # (targets, C)
            weights = (original[:, None] - ablated) / original[:, None]
            raw[rows] = (weights[:, :, None, None] * a).sum(1)
        return self._finish_raw([raw], x, get_method("ablationcam"), cls_idx)

    def _library(
        self,
        spec: MethodSpec,
        x: torch.Tensor,
        img_idx: torch.Tensor,
        cls_idx: torch.Tensor,
        layer_names: list[str],
        eigen_smooth: bool,
    ) -> tuple[torch.Tensor, None]:
        maps = reference_cam(
            self.model,
            spec.name,
            x[img_idx],
            cls_idx.tolist(),
            layer_names,
            eigen_smooth=eigen_smooth,
        )
        cams = torch.from_numpy(maps).to(x.device)
        if not torch.isfinite(cams).all():
            raise CamError(f"{spec.label} map is not finite (NaN/inf)")
        return cams, None

    def _lime(
        self, x: torch.Tensor, img_idx: torch.Tensor, cls_idx: torch.Tensor, num_samples: int = 256
    ) -> tuple[torch.Tensor, None]:
        """LIME on the model input (SLIC superpixels, fixed seed); map = positive weights."""
        from lime import lime_image  # imported lazily: heavy, and only this method needs it
        from skimage.segmentation import slic

        mean = torch.tensor(self.card.mean, device=x.device)[:, None, None]
        std = torch.tensor(self.card.std, device=x.device)[:, None, None]

        def classify(batch: np.ndarray) -> np.ndarray:
            self._let_others_in()
            t = torch.from_numpy(batch).permute(0, 3, 1, 2).float().to(x.device)
            with torch.no_grad():
                return self._probs(self.model((t - mean) / std)).cpu().numpy()

        explainer = lime_image.LimeImageExplainer(random_state=0)
        out = []
        for i, c in zip(img_idx.tolist(), cls_idx.tolist(), strict=True):
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
        return _normalise(torch.stack(out)).to(x.device), None

    # ------------------------------------------------------------------ helpers
    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.card.multilabel else torch.softmax(logits, dim=-1)

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
            pieces.append(_resize(stacked[t], (h, w)).clamp_(0, 1).flatten())
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
    layer_names: Sequence[str],
    *,
    eigen_smooth: bool = False,
    aug_smooth: bool = False,
) -> np.ndarray:
    """Plain pytorch-grad-cam, called correctly: (T, S, S) maps at input size.

    Guards the library's pitfalls: exactly one target per batch item (it silently returns empty
    maps otherwise), hooks released in ``finally`` (its ``__exit__`` swallows IndexError, so no
    ``with``), AblationCAM's layer swap undone even when it raises, parameter ``.grad`` cleared.
    """
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.find_layers import replace_layer_recursive
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget

    if len(classes) != input_tensor.shape[0]:
        raise ValueError(
            f"one target per batch item: got {len(classes)} targets for "
            f"{input_tensor.shape[0]} images"
        )
    spec = get_method(method)
    if spec.library_class is None:
        raise ValueError(f"{spec.label} has no pytorch-grad-cam implementation")
    layers = [resolve_layer(model, n) for n in layer_names]
    cls = getattr(pgc, spec.library_class)
    with model_lock(model):
        grads_before = [(p, p.grad) for p in model.parameters()]
        was_training = model.training
        cam = cls(model=model, target_layers=layers)
        if method == "ablationcam":
            cam.batch_size = 64
        targets: list[object] = [ClassifierOutputTarget(int(c)) for c in classes]
        try:
            if method == "finercam":
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
                **({} if method == "finercam" else {"aug_smooth": aug_smooth}),
            )
        finally:
            base = getattr(cam, "base_cam", cam)
            base.activations_and_grads.release()
            if method == "ablationcam":
                for layer in layers:
                    replace_layer_recursive(model, cam.ablation_layer, layer)
            for p, g in grads_before:
                p.grad = g
            model.train(was_training)
    return np.asarray(maps, dtype=np.float32)


def available_methods() -> tuple[str, ...]:
    """Names of every registered method, registry order."""
    return tuple(METHODS)
