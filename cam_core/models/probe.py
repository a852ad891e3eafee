"""Target-layer candidates for any network, found by a shape probe.

One forward of a random input with a hook on every module records what each module outputs;
the outputs that read as feature maps (:mod:`cam_core.models.reshape`: channels-first,
channels-last or tokens on the input's patch grid) become candidates:

- the last output of each resolution stage (``layer4``, ``stages.2``, ``norm`` …);
- for token networks, each transformer block (children of the shallowest container of token
  blocks) and the last token output.

A second forward and one backward mark which candidates' gradients reach the map (a ViT's last
block feeds the head only through its class token: its patch tokens get no gradient, so
gradient methods give a blank map there). The default layer is the deepest one they reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cam_core.models.reshape import Layout, LayoutError, Layouts, fits_grid

_SKIP = (nn.Identity, nn.Dropout)
"""Modules that never make a better candidate than their input."""


@dataclass(frozen=True)
class LayerCandidate:
    """One target layer found by :func:`probe_layers`: its dotted ``name``, its map's
    (C, h, w) ``shape``, its ``layout`` in words, whether the logits' ``gradient`` reaches the
    map, and ``why`` it is a candidate ("stage end", "block", "last token output").
    """

    name: str
    shape: tuple[int, int, int]
    layout: str
    gradient: bool
    why: str

    def describe(self) -> str:
        """``"blocks.3 — block, tokens (1 dropped) on a 14×14 grid, 384 channels"``."""
        tail = "" if self.gradient else "; no gradient reaches it (activation methods only)"
        return f"{self.name} — {self.why}, {self.layout}, {self.shape[0]} channels{tail}"


@dataclass
class _Event:
    name: str
    module: nn.Module
    layout: Layout
    channels: int


def _record(model: nn.Module, x: torch.Tensor, layouts: Layouts) -> list[_Event]:
    """Module exits, in order, whose output reads as a map of more than one location."""
    events: list[_Event] = []
    seen: set[str] = set()

    def make(name: str, module: nn.Module):  # noqa: ANN202 - a hook
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if name in seen or not isinstance(out, torch.Tensor) or isinstance(module, _SKIP):
                return
            seen.add(name)
            try:
                layout = layouts.of(tuple(out.shape))
            except LayoutError:
                return
            h, w = layout.grid
            if h * w > 1 and (layout.kind == "tokens" or fits_grid(h, w, layouts.size)):
                m = layout.to_map(out)
                events.append(_Event(name, module, layout, int(m.shape[1])))

        return hook

    handles = [m.register_forward_hook(make(n, m)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return events


def _containers(model: nn.Module) -> set[str]:
    return {n for n, m in model.named_modules() if isinstance(m, nn.Sequential | nn.ModuleList)}


def _structural(name: str, containers: set[str]) -> bool:
    """A stage or block: a child of the model or of a container, or a container itself
    (not a module inside a block, such as an attention's softmax or a block's first norm).
    """
    parent = name.rpartition(".")[0]
    return "." not in name or parent in containers or name in containers


def _pick(model: nn.Module, events: list[_Event]) -> list[tuple[_Event, str]]:
    """Per resolution, the last stage-level output (non-token maps); for token maps each
    block of the shallowest container of token blocks and the last token output. Execution order.
    """
    containers = _containers(model)
    events = [e for e in events if _structural(e.name, containers)]
    picked: dict[str, tuple[_Event, str]] = {}
    by_grid: dict[tuple[int, int], list[_Event]] = {}
    for e in events:
        if e.layout.kind != "tokens":
            by_grid.setdefault(e.layout.grid, []).append(e)
    for group in by_grid.values():
        top = min(e.name.count(".") for e in group)
        end = [e for e in group if e.name.count(".") <= top + 1][-1]
        picked[end.name] = (end, "stage end")
    tokens = [e for e in events if e.layout.kind == "tokens"]
    if tokens:
        parents: dict[str, list[_Event]] = {}
        for e in tokens:
            parent = e.name.rpartition(".")[0]
            if parent in containers:
                parents.setdefault(parent, []).append(e)
        blocks = [p for p, es in parents.items() if len(es) >= 2]
        if blocks:
            shallowest = min(blocks, key=lambda p: (p.count("."), p))
            for e in parents[shallowest]:
                picked[e.name] = (e, "block")
        picked.setdefault(tokens[-1].name, (tokens[-1], "last token output"))
    order = {e.name: i for i, e in enumerate(events)}
    return sorted(picked.values(), key=lambda p: order[p[0].name])


def _gradient_reaches(
    model: nn.Module, x: torch.Tensor, picked: Sequence[tuple[_Event, str]]
) -> list[bool]:
    """For each candidate: does a random projection of the classifier's input (the last
    ``nn.Linear`` to run; the logits when none does) have a nonzero gradient on its map? The
    classifier's input, not the logits: a freshly built head may be zero-initialised
    (torchvision's ViT), which would hide every path.
    """
    kept: dict[int, torch.Tensor] = {}
    head_in: list[torch.Tensor] = []

    def head_hook(_m: nn.Module, args: tuple[object, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor):
            head_in[:] = [args[0]]

    def make(i: int):  # noqa: ANN202 - a hook
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor | None:
            if i in kept:
                return None
            kept[i] = out
            return out.clone()  # in-place ops downstream must not touch what we keep

        return hook

    handles = [e.module.register_forward_hook(make(i)) for i, (e, _) in enumerate(picked)]
    handles += [
        m.register_forward_pre_hook(head_hook) for m in model.modules() if isinstance(m, nn.Linear)
    ]
    try:
        with torch.enable_grad():
            logits = model(x.requires_grad_(True))
            target = head_in[0] if head_in else logits
            weights = torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
            outs = [kept[i] for i in range(len(picked))]
            objective = (target * weights.to(target.device)).sum()
            grads = torch.autograd.grad(objective, outs, allow_unused=True)
    except (RuntimeError, KeyError):
        return [True] * len(picked)  # cannot tell: let the measurement decide
    finally:
        for h in handles:
            h.remove()
    return [
        g is not None and bool(e.layout.to_map(g).abs().sum() > 0)
        for g, (e, _) in zip(grads, picked, strict=True)
    ]


def probe_layers(
    model: nn.Module, size: tuple[int, int], in_chans: int = 3, *, limit: int = 16
) -> list[LayerCandidate]:
    """Target-layer candidates of ``model`` for (H, W) = ``size`` inputs, the default first
    (the deepest one gradients reach), then the rest deepest first; at most ``limit``.

    The model's train/eval flags and parameters' ``requires_grad``/``.grad`` are restored.
    ValueError when nothing in the model outputs a feature map.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    model.eval()
    try:
        device = next(iter(model.parameters()), torch.zeros(())).device
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((1, in_chans, *size), generator=gen).to(device)
        layouts = Layouts(model, size)
        picked = _pick(model, _record(model, x, layouts))
        for p in model.parameters():
            p.requires_grad_(False)
        reach = _gradient_reaches(model, x, picked) if picked else []
    finally:
        for m, training in modes:
            m.training = training
        for p, flag, grad in flags:
            p.requires_grad_(flag)
            p.grad = grad
    if not picked:
        raise ValueError(
            f"{type(model).__name__}: no module outputs a feature map of a "
            f"{size[0]}×{size[1]} input; name a target layer yourself"
        )
    found = [
        LayerCandidate(e.name, _shape(e), e.layout.describe(), ok, why)
        for (e, why), ok in zip(picked, reach, strict=True)
    ][::-1]
    first = next((c for c in found if c.gradient), found[0])
    return [first, *[c for c in found if c is not first]][:limit]


def _shape(e: _Event) -> tuple[int, int, int]:
    h, w = e.layout.grid
    return (e.channels, h, w)
