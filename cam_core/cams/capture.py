"""What every method shares: the model's lifecycle, activation/gradient capture, map finishing.

- :func:`model_lock` and :func:`guarded`: one lock per model object; eval mode for the call and,
  after it, each submodule's own train/eval flag, every parameter's ``requires_grad`` and
  ``.grad`` as the caller left them.
- :func:`capture`: one forward keeping the target layers' outputs; :func:`gradients`: d logit /
  d activations for every (image, class) target from one batched backward that stops there.
- :func:`finish`: raw per-layer maps → normalised maps at input size and their strengths.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cam_core.models.reshape import Layout, LayoutError, Layouts

MapOut = tuple[torch.Tensor, torch.Tensor | None]
"""A method's answer: (T, S, S) maps in [0, 1] at input size, and (T,) strengths or None."""


class CamError(RuntimeError):
    """A map could not be computed; the message says which layer/method/class and why."""


# ------------------------------------------------------------------------------- lifecycle
_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The one lock of a model object: every engine call on it holds it while hooks are attached."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def guarded(model: nn.Module) -> Iterator[None]:
    """Eval mode inside; after, every submodule's own mode (a frozen BatchNorm inside a training
    model stays frozen), parameter ``requires_grad`` flags and ``.grad`` come back as they were.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, flag, grad in flags:
            p.requires_grad_(flag)
            p.grad = grad


def class_probs(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """(B, K) logits → sigmoid (multi-label) or softmax probabilities."""
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)


# ---------------------------------------------------------------------------------- capture
@dataclass(frozen=True)
class Capture:
    """Target-layer activations (B, C, h, w) of one forward, with its (B, K) logits; with
    gradients the first target layer's output is a graph leaf. ``layouts[i]`` says how layer
    i's own output (tokens, channels-last …) was read as a map (:mod:`cam_core.models.reshape`);
    ``layouts[i].to_output(map, original)`` hands a changed map back to the network.
    """

    logits: torch.Tensor
    acts: tuple[torch.Tensor, ...]
    layouts: tuple[Layout, ...] = ()


def capture(
    model: nn.Module,
    x: torch.Tensor,
    modules: Sequence[nn.Module],
    names: Sequence[str],
    need_grad: bool,
) -> Capture:
    """Forward ``x`` once, keeping each target module's output (``names`` for messages).

    With ``need_grad`` the graph starts at the first target layer to run: its output is
    detached into a leaf, so a backward stops there and never touches the stem's parameters.
    Token (B, N, C) and channels-last outputs are read as (B, C, h, w) maps by their layout
    (:func:`cam_core.models.reshape.layout_of`: class/distillation tokens dropped, grid from
    the input size); the network goes on with the map put back in its own layout, so gradients
    are taken with respect to the map itself.
    """
    acts: dict[int, torch.Tensor] = {}
    found: dict[int, Layout] = {}
    layouts = Layouts(model, (int(x.shape[-2]), int(x.shape[-1])))

    def make_hook(i: int) -> Callable[[nn.Module, object, object], torch.Tensor | None]:
        def hook(_module: nn.Module, _inputs: object, output: object) -> torch.Tensor | None:
            if i in acts:
                raise CamError(
                    f"layer {names[i]!r} runs more than once per forward (a shared "
                    "module such as a reused ReLU); target its parent block instead"
                )
            if not isinstance(output, torch.Tensor):
                raise CamError(
                    f"layer {names[i]!r} outputs {type(output).__name__}, not a feature map; "
                    "pick a block of the network"
                )
            try:
                layout = found[i] = layouts.of(tuple(output.shape))
            except LayoutError as exc:
                raise CamError(f"layer {names[i]!r} {exc}") from None
            if need_grad and not torch.is_grad_enabled():
                torch.set_grad_enabled(True)  # restored by the no_grad() block around forward
                act = layout.to_map(output.detach()).detach().requires_grad_(True)
            else:
                act = layout.to_map(output)
            acts[i] = act
            if layout.kind != "nchw" and not act.requires_grad:
                return None  # `act` is a copy: the network may go on with its own output
            # Downstream in-place ops (ResNet's `out += identity`) must not change what we keep.
            return layout.to_output(act, output)

        return hook

    handles = [m.register_forward_hook(make_hook(i)) for i, m in enumerate(modules)]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    missing = [names[i] for i in range(len(modules)) if i not in acts]
    if missing:
        raise CamError(f"layer(s) {missing} did not run in the forward pass")
    order = range(len(modules))
    return Capture(logits, tuple(acts[i] for i in order), tuple(found[i] for i in order))


def gradients(cap: Capture, img_idx: torch.Tensor, cls_idx: torch.Tensor) -> list[torch.Tensor]:
    """Gradients d logit[i_t, c_t] / d A for every target t, per layer: (T, C, h, w) each.

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
        if rounds == 1:  # one target per image: a plain backward
            grads = tuple(g[None] for g in torch.autograd.grad(cap.logits, cap.acts, grad_out[0]))
        else:  # the graph is kept: a failed vmap may have freed part of it otherwise
            grads = torch.autograd.grad(
                cap.logits,
                cap.acts,
                grad_outputs=grad_out,
                is_grads_batched=True,
                retain_graph=True,
            )
    except RuntimeError:  # an op without a vmap rule: one backward per round instead
        per_round = [
            torch.autograd.grad(cap.logits, cap.acts, grad_outputs=g, retain_graph=True)
            for g in grad_out
        ]
        grads = tuple(torch.stack(gs) for gs in zip(*per_round, strict=True))
    return [g[rank, img_idx] for g in grads]


# -------------------------------------------------------------------------------- finishing
def normalise(cam: torch.Tensor) -> torch.Tensor:
    """Per-map min-max to [0, 1] over the last two dims, as pytorch-grad-cam's scale_cam_image."""
    cam = cam - cam.amin(dim=(-2, -1), keepdim=True)
    return cam / (1e-7 + cam.amax(dim=(-2, -1), keepdim=True))


def resize(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, h, w) → (T, *size) bilinear with half-pixel centres (cv2.resize's INTER_LINEAR)."""
    if tuple(cam.shape[-2:]) == tuple(size):
        return cam
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def finish(raw: list[torch.Tensor], input_size: tuple[int, int], what: str) -> MapOut:
    """Raw (T, h, w) maps per layer → one normalised (T, S, S) map, as BaseCAM does, and the
    (T,) strengths (raw maximum after ReLU, averaged over layers). CamError naming ``what``
    (method and classes) when a raw map is not finite.
    """
    for r in raw:
        if not torch.isfinite(r).all():
            raise CamError(
                f"{what} is not finite (NaN/inf): the model's weights or the input produce "
                "non-finite activations or gradients"
            )
    strength = torch.stack([torch.relu(r).amax(dim=(1, 2)) for r in raw]).mean(0)
    scaled = [resize(normalise(torch.relu(c)), input_size) for c in raw]
    fused = torch.relu(torch.stack(scaled)).mean(dim=0)
    return normalise(fused), strength
