"""The folder layout timm and the Hugging Face hub write, read offline.

A hub folder holds ``config.json`` (``architecture``, ``num_classes``, ``label_names``,
``model_args``, ``pretrained_cfg`` with ``mean``/``std``/``input_size``) beside
``model.safetensors`` or ``pytorch_model.bin``. :func:`hub_card` turns the config into a
:class:`ModelCard` (our ``model.json`` in the folder wins when there is one);
:func:`hub_weights` names the weights file. Nothing is fetched: the architecture is built
with ``pretrained=False`` and filled from the folder's own weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from cam_core.archive import UploadLimits, extract_zip
from cam_core.models.card import ModelCard
from cam_core.models.registry import ARCHS

CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
"""Weights file names of the layout, in order of preference."""


class HubError(ValueError):
    """A hub folder cannot be read; the message names the file and what did not match."""


def is_hub_folder(path: str | os.PathLike[str]) -> bool:
    """``path`` is a folder with ``config.json`` and no card of ours beside its weights, or
    that ``config.json`` itself.
    """
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if p.is_file() and p.name not in (CONFIG, *WEIGHTS):
        return False
    return (folder / CONFIG).is_file() and not (folder / "model.json").is_file()


def hub_weights(folder: str | os.PathLike[str]) -> Path:
    """The weights file of a hub folder; HubError naming the folder when there is none."""
    folder = Path(folder)
    for name in WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise HubError(
        f"{folder}: missing weights: no {' or '.join(WEIGHTS)} beside {CONFIG} "
        f"(found: {sorted(p.name for p in folder.iterdir())[:10]})"
    )


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HubError(f"{path}: not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HubError(f"{path}: must be a JSON object, got {type(data).__name__}")
    return data


def _is_timm(name: str) -> bool:
    import timm

    return bool(timm.is_model(name))


def _arch(arch: object, args: dict[str, Any], path: Path) -> str:
    """The registry name for config ``architecture`` + ``model_args``: ours as they are,
    ``torchvision/…`` as written, any other name as timm's.
    """
    from cam_core.models.timm_models import arch_name

    if not isinstance(arch, str) or not arch.strip():
        raise HubError(f"{path}: 'architecture' must be a model name, got {arch!r}")
    if arch in ARCHS:
        if args:
            raise HubError(f"{path}: model_args are not accepted for our architecture {arch!r}")
        return arch
    if arch.startswith(("timm/", "torchvision/")):
        family, _, name = arch.partition("/")
        return arch_name(family, name, args)
    return arch_name("timm", arch, args)


def _labels(data: dict[str, Any], n: int, path: Path) -> tuple[str, ...]:
    labels = data.get("label_names") or data.get("pretrained_cfg", {}).get("label_names")
    if isinstance(labels, dict):  # {"0": "crazing", …}: id → name
        try:
            labels = [labels[k] for k in sorted(labels, key=int)]
        except (ValueError, TypeError):
            raise HubError(f"{path}: label_names keys must be class indices") from None
    if labels is None:
        return tuple(f"class_{i}" for i in range(n))
    if not isinstance(labels, list | tuple) or not all(isinstance(x, str) for x in labels):
        raise HubError(f"{path}: label_names must be a list of names, got {labels!r}")
    if len(labels) != n:
        raise HubError(
            f"{path}: num_classes is {n} but label_names has {len(labels)} names: {list(labels)}"
        )
    return tuple(labels)


def hub_card(folder: str | os.PathLike[str]) -> ModelCard:
    """The model card of a hub folder: ``model.json`` when present, else built from
    ``config.json``. HubError naming the file and field that do not fit.
    """
    folder = Path(folder)
    ours = folder / "model.json"
    if ours.is_file():
        try:
            return ModelCard.from_json(ours.read_text(encoding="utf-8"))
        except (ValueError, TypeError, OSError) as exc:
            raise HubError(f"{ours}: unreadable model card: {exc}") from None
    path = folder / CONFIG
    if not path.is_file():
        raise HubError(f"{folder}: no {CONFIG} (the hub layout) and no model.json card")
    data = _read_config(path)
    args = data.get("model_args") or {}
    if not isinstance(args, dict):
        raise HubError(f"{path}: model_args must be a JSON object, got {args!r}")
    cfg = data.get("pretrained_cfg") or {}
    if not isinstance(cfg, dict):
        raise HubError(f"{path}: pretrained_cfg must be a JSON object")
    n = data.get("num_classes", cfg.get("num_classes"))
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise HubError(f"{path}: num_classes must be a whole number >= 1, got {n!r}")
    args = {k: v for k, v in args.items() if k != "num_classes"}  # timm records it there too
    size = cfg.get("input_size")
    name = data.get("architecture")
    if isinstance(name, str) and name in ARCHS and "pretrained_cfg" in data and _is_timm(name):
        name = f"timm/{name}"  # timm's save_for_hf wrote it ('resnet18' is also one of ours)
    timm_arch = isinstance(name, str) and name not in ARCHS and not name.startswith("torchvision/")
    sized = isinstance(size, list | tuple) and len(size) == 3
    if timm_arch and sized and "in_chans" not in args and int(size[0]) != 3:
        # timm's save_for_hf records a 1-channel model only in pretrained_cfg's input_size:
        # built with timm's default in_chans=3 its first conv would not fit the weights.
        args = {**args, "in_chans": int(size[0])}
    arch = _arch(name, args, path)
    classes = _labels(data, n, path)
    try:
        from cam_core.models.registry import get_arch

        spec = get_arch(arch)
    except KeyError as exc:
        raise HubError(f"{path}: {exc.args[0]}") from None
    chans, hw = spec.in_chans, spec.input_size
    if isinstance(size, list | tuple) and len(size) == 3:
        chans, hw = int(size[0]), (int(size[1]), int(size[2]))
    mean = tuple(cfg.get("mean") or spec.mean)
    std = tuple(cfg.get("std") or spec.std)
    try:
        return ModelCard(
            name=folder.name,
            arch=arch,
            classes=classes,
            multilabel=bool(data.get("multilabel", False)),
            input_size=hw,
            mean=mean,
            std=std,
            in_chans=chans,
            notes=f"Built from {CONFIG} ({data.get('architecture')}); no model card.",
        )
    except ValueError as exc:
        raise HubError(f"{path}: {exc}") from None


HUB_LIMITS = UploadLimits(
    max_files=200, max_total_bytes=4 << 30, max_file_bytes=2 << 30, max_ratio=200.0
)
"""What one zipped hub folder may hold: weights up to 2 GB, a few hundred files."""


def extract_hub_zip(
    name: str, data: bytes, base: str | os.PathLike[str], *, limits: UploadLimits = HUB_LIMITS
) -> Path:
    """The hub folder inside the zip ``data`` (uploaded as ``name``), extracted safely under
    ``base/<content hash>/`` (:func:`cam_core.archive.extract_zip`: no path traversal, links,
    bombs or oversized entries). The folder is the zip's top level or its one sub-folder with
    ``config.json``. ArchiveError / HubError naming ``name`` otherwise.
    """
    dest = Path(base) / hashlib.sha256(data).hexdigest()[:16]
    if not dest.is_dir():
        tmp = dest.with_name(dest.name + f".part-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        extract_zip(data, tmp, limits=limits, name=name)
        try:
            tmp.rename(dest)
        except OSError:  # another session extracted the same upload meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    found = sorted(p.parent for p in dest.rglob(CONFIG) if len(p.relative_to(dest).parts) <= 2)
    if len(found) != 1:
        held = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())[:10]
        what = "no" if not found else f"{len(found)}"
        raise HubError(
            f"{name}: {what} {CONFIG} at the top of the zip or in one folder (the hub layout: "
            f"{CONFIG} beside {' or '.join(WEIGHTS)}); it holds {held}"
        )
    return found[0]


def name_in_message(message: str, base: str | os.PathLike[str]) -> str:
    """``message`` with :func:`extract_hub_zip`'s storage folder removed from paths, so it
    names ``my-model/config.json`` as the user zipped it.
    """
    return re.sub(re.escape(str(Path(base))) + r"/[0-9a-f]{16}(\.part-\d+)?/", "", message)
