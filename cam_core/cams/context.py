"""The per-batch context a method sees, and test-time averaging (augment, compute, undo, average).

A method is ``compute(ctx, spec) -> (maps, strengths)``: ``ctx`` (:class:`Batch`) holds the
model, the preprocessed batch, the (image, class) targets and the target layers; it hands out
the batch's one shared capture and gradients, so every gradient method of one call costs one
forward and one backward in all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
from torch import nn

from cam_core.cams.capture import Capture, MapOut, capture, finish, gradients, normalise
from cam_core.layers import LayerSet
from cam_core.models import ModelCard

Formula = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(A, G) → weighted activations (T, C, h, w); summed over channels, or projected on their first
principal component (``eigen_smooth`` and the Eigen methods)."""


class Spec(Protocol):
    """What a method reads of its registry entry (:class:`cam_core.methods.MethodSpec`)."""

    name: str
    label: str
    kind: str
    formula: Formula | None
    project: bool
    library_class: str | None


class SharedCapture:
    """The captures of one (augmented) input, shared by the methods of one call: a gradient
    capture serves activation methods too; gradients are taken once per capture (the graph is
    freed after). ``child(aug)`` is the memo of an augmented copy (the identity is this one).
    """

    def __init__(self) -> None:
        self._caps: dict[bool, Capture] = {}
        self._grads: list[torch.Tensor] | None = None
        self._children: dict[Augment, SharedCapture] = {}

    def get(self, need_grad: bool, make: Callable[[], Capture]) -> Capture:
        """The capture (one with gradients serves both needs); ``make()`` when there is none."""
        cap = self._caps.get(True) or (None if need_grad else self._caps.get(False))
        if cap is None:
            cap = self._caps[need_grad] = make()
        return cap

    def grads(self, make: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
        """The gradients of the capture, ``make()`` the first time only."""
        if self._grads is None:
            self._grads = make()
        return self._grads

    def child(self, aug: Augment) -> SharedCapture:
        """The memo of the input augmented by ``aug`` (this one for the identity)."""
        return self if aug.identity else self._children.setdefault(aug, SharedCapture())


@dataclass(frozen=True)
class Batch:
    """One batch of one engine call, as a method sees it.

    ``x``: (B, 3, S, S) preprocessed images on the model's device; ``img_idx``/``cls_idx``: (T,)
    image and class of each target; ``modules``: ``layers`` resolved in ``model``;
    ``let_others_in()``: slow methods call it between chunks so other threads can use the model.
    """

    model: nn.Module
    card: ModelCard
    x: torch.Tensor
    img_idx: torch.Tensor
    cls_idx: torch.Tensor
    layers: LayerSet
    modules: tuple[nn.Module, ...]
    eigen_smooth: bool
    let_others_in: Callable[[], None]
    shared: SharedCapture = field(default_factory=SharedCapture)

    @property
    def input_size(self) -> tuple[int, int]:
        """(S, S): the preprocessed input's height and width."""
        return (int(self.x.shape[-2]), int(self.x.shape[-1]))

    def capture(self, need_grad: bool) -> Capture:
        """The batch's capture of the target layers (shared between methods)."""
        return self.shared.get(need_grad, lambda: self.capture_of(self.x, need_grad))

    def capture_of(self, x: torch.Tensor, need_grad: bool) -> Capture:
        """A fresh capture of another input (noisy copies); not shared."""
        return capture(self.model, x, self.modules, self.layers.names, need_grad)

    def gradients(self) -> list[torch.Tensor]:
        """(T, C, h, w) gradients of each target's logit per layer, from the shared capture."""
        cap = self.capture(need_grad=True)
        return self.shared.grads(lambda: gradients(cap, self.img_idx, self.cls_idx))

    def finish(self, raw: list[torch.Tensor], spec: Spec) -> MapOut:
        """Raw per-layer (T, h, w) maps → normalised maps at input size and strengths."""
        bad = sorted({self.card.classes[c] for c in self.cls_idx.tolist()})
        return finish(raw, self.input_size, f"{spec.label} map for {bad}")

    def augmented(self, aug: Augment) -> Batch:
        """The batch with ``aug`` applied to its input (and its own shared capture)."""
        return (
            self
            if aug.identity
            else replace(self, x=aug.apply(self.x), shared=self.shared.child(aug))
        )


# ------------------------------------------------------------------------ test-time averaging
@dataclass(frozen=True)
class Augment:
    """An input transform whose map can be mapped back: flip tensor dims, scale intensities."""

    flip: tuple[int, ...] = ()
    scale: float = 1.0

    @property
    def identity(self) -> bool:
        """Changes nothing."""
        return not self.flip and self.scale == 1.0

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) input → the augmented input."""
        x = x.flip(self.flip) if self.flip else x
        return x * self.scale if self.scale != 1.0 else x

    def undo(self, cam: torch.Tensor) -> torch.Tensor:
        """A map of the augmented input back in the original's frame."""
        return cam.flip(self.flip) if self.flip else cam


@dataclass(frozen=True)
class Averaging:
    """Maps of each augmented input, undone, averaged (renormalised to [0, 1] when asked)."""

    augments: tuple[Augment, ...]
    renormalise: bool


PLAIN = Averaging((Augment(),), renormalise=False)

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
"""The input flips ``flip_smooth`` averages over (tensor dims flipped; () is the image itself).

Measured on NEU-DET val (docs/localization.md): a model's positional habits (a class's map
peaking in the same cell whatever the image) land in different places on each flip and average
out, while the evidence on the defect moves with the defect and adds up.
"""

FLIP_AVERAGE = Averaging(tuple(Augment(d) for d in FLIPS), renormalise=True)

AUG_SMOOTH = Averaging(
    tuple(Augment(d, s) for d in ((), (-1,)) for s in (0.9, 1.0, 1.1)), renormalise=False
)
"""pytorch-grad-cam's ``aug_smooth``: horizontal flip × brightness (0.9, 1, 1.1), plain mean."""


def averaged(compute: Callable[[Batch], MapOut], ctx: Batch, averaging: Averaging) -> MapOut:
    """``compute`` on each augmented copy of ``ctx``, maps undone and averaged (one augment: its
    result as is); strengths averaged likewise.
    """
    maps, strengths = [], []
    for aug in averaging.augments:
        m, s = compute(ctx.augmented(aug))
        maps.append(aug.undo(m))
        if s is not None:
            strengths.append(s)
    if len(maps) == 1:
        return maps[0], (strengths[0] if strengths else None)
    mean = torch.stack(maps).mean(0)
    return (
        normalise(mean) if averaging.renormalise else mean,
        torch.stack(strengths).mean(0) if strengths else None,
    )
