"""Architectures by name from timm and torchvision, built offline with no pretrained weights.

``get_arch("timm/<name>")`` resolves any ``timm.list_models()`` name; ``"torchvision/<name>"``
any torchvision classification constructor or model class (``VisionTransformer``,
``SwinTransformer`` …). Constructor arguments ride in the name as compact JSON after ``?``
(``timm/vit_tiny_patch16_224?{"depth":2,"img_size":64}``), so a card's ``arch`` is enough to
rebuild the model. The spec's CAM layers come from :func:`cam_core.models.probe.probe_layers`;
its input size and normalisation from timm's data config (ImageNet's for torchvision).

Nothing is downloaded: ``pretrained=False`` always, ``HF_HUB_OFFLINE=1`` while timm builds,
and the arguments that would make timm fetch or read weights are refused.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from cam_core.models.registry import IMAGENET_MEAN, IMAGENET_STD, ArchSpec, register_resolver

FORBIDDEN_ARGS = frozenset(
    {
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "checkpoint_path",
        "cache_dir",
        "num_classes",
        "features_only",
        "weights",
    }
)
"""Constructor arguments never taken from a name or config (downloads, files, the head size)."""


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` (and ``TIMM_OFFLINE``-style guards) for the block, restored after."""
    keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def arch_name(family: str, name: str, args: Mapping[str, Any] | None = None) -> str:
    """The registry name of ``name`` built with ``args``: ``"timm/name?{...}"``."""
    tail = json.dumps(dict(args), sort_keys=True, separators=(",", ":")) if args else ""
    return f"{family}/{name}" + (f"?{tail}" if tail else "")


def split_name(full: str) -> tuple[str, str, dict[str, Any]]:
    """``"timm/name?{json}"`` → ("timm", "name", args); KeyError naming a malformed name."""
    family, _, rest = full.partition("/")
    name, _, tail = rest.partition("?")
    try:
        args = json.loads(tail) if tail else {}
    except json.JSONDecodeError as exc:
        raise KeyError(f"architecture {full!r}: arguments after '?' are not JSON ({exc})") from None
    if not isinstance(args, dict):
        raise KeyError(f"architecture {full!r}: arguments after '?' must be a JSON object")
    bad = sorted(FORBIDDEN_ARGS & set(args))
    if bad:
        raise KeyError(f"architecture {full!r}: arguments {bad} are not accepted (offline build)")
    return family, name, args


@functools.lru_cache(maxsize=1)
def timm_names() -> tuple[str, ...]:
    """Every architecture name timm can build (``timm.list_models()``)."""
    import timm

    return tuple(timm.list_models())


def search_timm(query: str, limit: int = 50) -> list[str]:
    """The timm architecture names containing every word of ``query`` (``"vit small"``)."""
    words = query.lower().split()
    return [n for n in timm_names() if all(w in n for w in words)][:limit]


def _unknown(family: str, name: str, pool: tuple[str, ...]) -> KeyError:
    close = difflib.get_close_matches(name, pool, n=5, cutoff=0.6)
    hint = f"; close names: {close}" if close else ""
    return KeyError(f"Unknown {family} architecture {name!r}{hint}")


def _timm_builder(name: str, args: dict[str, Any]):  # noqa: ANN202 - a builder
    def build(num_classes: int) -> nn.Module:
        import timm

        with offline():
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **args)

    return build


def _torchvision_builder(name: str, args: dict[str, Any]):  # noqa: ANN202 - a builder
    import torchvision.models as tvm

    fn = getattr(tvm, name)
    is_class = isinstance(fn, type)

    def build(num_classes: int) -> nn.Module:
        extra = {} if is_class else {"weights": None}
        return fn(num_classes=num_classes, **extra, **args)

    return build


def _torchvision_names() -> tuple[str, ...]:
    import torchvision.models as tvm

    classes = [
        n
        for n in dir(tvm)
        if isinstance(getattr(tvm, n), type) and issubclass(getattr(tvm, n), nn.Module)
    ]
    return tuple(tvm.list_models(module=tvm)) + tuple(classes)


def _head_of(model: nn.Module, cfg: Mapping[str, Any]) -> str:
    head = cfg.get("classifier")
    if isinstance(head, list | tuple):
        head = head[0]
    if isinstance(head, str):
        return head
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return last[-1] if last else ""


def _spec(full: str) -> ArchSpec:
    """The spec of a ``timm/…`` or ``torchvision/…`` name (KeyError when unknown)."""
    from cam_core.models.probe import probe_layers

    family, name, args = split_name(full)
    if family == "timm":
        if name not in timm_names():
            raise _unknown("timm", name, timm_names())
        builder = _timm_builder(name, args)
    elif family == "torchvision":
        if name not in _torchvision_names():
            raise _unknown("torchvision", name, _torchvision_names())
        builder = _torchvision_builder(name, args)
    else:  # pragma: no cover - only registered prefixes reach here
        raise KeyError(full)
    torch.manual_seed(0)
    try:
        model = builder(2)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise KeyError(f"architecture {full!r} cannot be built: {exc}") from None
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    if family == "timm":
        from timm.data import resolve_model_data_config
        from timm.models._hub import get_model_input_config

        data = resolve_model_data_config(model)  # mean/std; the size as built (img_size=…)
        chans, h, w = get_model_input_config(model)["input_size"]
        mean, std = tuple(data["mean"]), tuple(data["std"])
    else:
        size = int(getattr(model, "image_size", 224))
        chans, h, w, mean, std = 3, size, size, IMAGENET_MEAN, IMAGENET_STD
    if len(mean) == 1:
        mean, std = mean * 3, std * 3
    layers = tuple(c.name for c in probe_layers(model, (h, w), chans))
    return ArchSpec(
        name=full,
        builder=builder,
        target_layers=layers,
        input_size=h if h == w else (h, w),
        mean=mean[:3],
        std=std[:3],
        head=_head_of(model, cfg),
        gap_linear=False,
        in_chans=int(chans),
        description=f"{family} {name}{' ' + json.dumps(args) if args else ''} "
        f"({chans}-channel input; CAM layers found by a shape probe)",
    )


register_resolver("timm", _spec)
register_resolver("torchvision", _spec)
