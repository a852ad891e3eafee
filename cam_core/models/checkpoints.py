"""Checkpoints: read a state_dict safely, rebuild the model its card names, save one back.

Checkpoints are only ever read with ``torch.load(..., weights_only=True)``: a file that needs
code to unpickle is refused, never executed. A file that is no checkpoint at all (an image, a
JSON card, a web page …) is named for what it is.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cam_core.models import registry
from cam_core.models.card import ModelCard, card_path_for
from cam_core.models.hub import CONFIG, HubError, hub_card, hub_weights, is_hub_folder
from cam_core.models.preprocessing import input_hw
from cam_core.models.registry import ArchSpec, get_arch
from cam_core.models.reshape import LayoutError, check_input_size
from cam_core.models.sniff import what_file_is


class CheckpointError(ValueError):
    """A checkpoint (or its card) cannot be loaded; the message names the file and why."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode (fp32, on the requested device) and the card describing it."""

    model: nn.Module
    card: ModelCard

    @property
    def spec(self) -> ArchSpec:
        """The registered architecture named by the card."""
        return get_arch(self.card.arch)

    @property
    def target_layer(self) -> str:
        """The default CAM layer: :attr:`ModelCard.default_layer`."""
        return self.card.default_layer


_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net")
_PREFIXES = ("module.", "_orig_mod.")


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _unwrap(obj: object, path: Path, depth: int = 0) -> dict[str, torch.Tensor]:
    if _is_state_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
    if isinstance(obj, Mapping) and depth < 3:
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], path, depth + 1)
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:10]]
        raise CheckpointError(
            f"{path}: no state_dict found (top-level keys {keys}); expected a dict of tensors, "
            f"or one under {list(_WRAPPER_KEYS)}"
        )
    raise CheckpointError(
        f"{path}: holds a {type(obj).__name__}, not a state_dict; re-save it with "
        "torch.save(model.state_dict(), path)"
    )


def _clean(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DataParallel/compile prefixes; floating tensors to fp32 on CPU."""
    out = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if out and all(k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                changed = True
    return {
        k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
        for k, v in out.items()
    }


def _refusal(path: Path, exc: Exception) -> CheckpointError:
    found = re.search(r"GLOBAL (\S+)", str(exc))
    needs = f" (it references {found.group(1)})" if found else ""
    return CheckpointError(
        f"{path}: refused to load — unpickling it would execute code{needs}. Only plain "
        "state_dicts are accepted; if it is a whole pickled model or fastai Learner, re-save "
        "it where it was made with torch.save(model.state_dict(), path)"
    )


def _unreadable(path: Path, kind: str, exc: Exception) -> CheckpointError:
    """The error for a file the loader could not read: what the file is when that is
    recognisable, else the loader's reason when it is one short line that gives no advice
    (PyTorch's own text suggests turning the ``weights_only`` safety off: never passed on).
    """
    what = what_file_is(path)
    if what is not None:
        return CheckpointError(f"{path}: {what}")
    lines = str(exc).strip().splitlines()
    reason = lines[0].strip() if lines else ""
    shown = len(reason) <= 200 and len(reason.split()) >= 3 and "weights" not in reason.lower()
    return CheckpointError(
        f"{path}: not a readable {kind} (truncated, corrupt or another format)"
        + (f"; the loader says: {reason}" if shown else "")
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped, prefix-stripped, fp32, on CPU.

    Accepts ``.safetensors`` and torch files (a state_dict, or one wrapped under
    ``model``/``state_dict``/``model_state_dict``/``net``). Raises :class:`CheckpointError` for
    missing/empty/truncated/foreign files, pickles needing code, and NaN/inf weights.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (0 bytes)")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw: object = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise _unreadable(path, "safetensors file", exc) from None
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            text = str(exc)
            # a text file starting with "c" reads as a pickle GLOBAL: say what the file is first
            if "GLOBAL" in text and "Weights only load failed" in text and not what_file_is(path):
                raise _refusal(path, exc) from None
            raise _unreadable(path, "PyTorch checkpoint", exc) from None
    state = _clean(_unwrap(raw, path))
    for key, tensor in state.items():
        # one cheap reduction per tensor; the exact test only when the sum is not finite
        if (
            tensor.is_floating_point()
            and not bool(torch.isfinite(tensor.sum()))
            and not bool(torch.isfinite(tensor).all())
        ):
            raise CheckpointError(f"{path}: tensor {key!r} contains NaN or inf values")
    return state


@functools.lru_cache(maxsize=64)
def _expected_shapes(spec: ArchSpec, num_classes: int) -> dict[str, tuple[int, ...]]:
    try:
        with torch.device("meta"):
            model = spec.builder(num_classes)
    except Exception:  # a custom builder that cannot run on the meta device
        model = spec.builder(num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _head_classes(state: Mapping[str, torch.Tensor], spec: ArchSpec) -> int | None:
    weight = state.get(spec.head + ".weight")
    # A Linear (K, C) or a 1x1 conv (K, C, 1, 1) head: K classes either way.
    return int(weight.shape[0]) if weight is not None and weight.ndim >= 2 else None


def guess_arch(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Registered architectures whose state-dict keys and shapes match ``state_dict`` exactly."""
    state = _clean(state_dict)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    found = []
    for name, spec in registry.ARCHS.items():
        n = _head_classes(state, spec)
        if n is not None and _expected_shapes(spec, n) == shapes:
            found.append(name)
    return found


def _mismatch(path: Path, arch: str, state: Mapping[str, torch.Tensor], model: nn.Module) -> str:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k}: file {got[k]} vs model {expected[k]}"
        for k in expected
        if k in got and got[k] != expected[k]
    ]
    if not (missing or unexpected or shapes):
        return ""
    parts = [f"{path} does not match architecture {arch!r}:"]
    if missing:
        parts.append(f"missing keys {missing[:5]} ({len(missing)} in all);")
    if unexpected:
        parts.append(f"unexpected keys {unexpected[:5]} ({len(unexpected)} in all);")
    if shapes:
        parts.append(f"shape mismatches {shapes[:5]} ({len(shapes)} in all);")
    guesses = guess_arch(state)
    parts.append(f"its keys match {guesses}" if guesses else "it matches no registered arch")
    return " ".join(parts)


def _build_loaded(
    spec: ArchSpec, num_classes: int, state: Mapping[str, torch.Tensor], path: Path
) -> nn.Module:
    """``spec``'s model holding ``state`` (strict). Built on the meta device and the checkpoint
    tensors assigned (no random init, no copy); a real build when that leaves meta tensors.
    """
    try:
        with torch.device("meta"):
            model = spec.builder(num_classes)
    except Exception:  # a custom builder that cannot run on the meta device
        model = spec.builder(num_classes)
    problem = _mismatch(path, spec.name, state, model)
    if problem:
        raise CheckpointError(problem)
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = spec.builder(num_classes)  # e.g. non-persistent buffers: init them for real
        model.load_state_dict(state, strict=True)
    return model


def load_model(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    classes: Sequence[str] | None = None,
    multilabel: bool | None = None,
    device: str = "cpu",
) -> LoadedModel:
    """Rebuild the model saved at ``path``: eval mode, fp32, on ``device``.

    The card beside the file (:func:`card_path_for`) supplies arch/classes/preprocessing;
    explicit arguments override it. Without a card, ``classes`` must be given and ``arch`` is
    guessed from the keys when omitted (:func:`guess_arch`). The number of classes is read from
    the head weight. Every failure raises :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    card: ModelCard | None = None
    hub = path.is_dir() or is_hub_folder(path)
    if hub:  # the timm / Hugging Face folder layout: config.json beside the weights
        folder = path if path.is_dir() else path.parent
        try:
            card, path = hub_card(folder), hub_weights(folder)
        except HubError as exc:
            raise CheckpointError(str(exc)) from None
    state = read_state_dict(path)
    card_file = card_path_for(path)
    if card is None and card_file.is_file() and card_file != path:
        try:
            card = ModelCard.from_json(card_file.read_text(encoding="utf-8"))
        except (ValueError, TypeError, OSError) as exc:
            raise CheckpointError(f"{card_file}: unreadable model card: {exc}") from None
    if card is None and classes is None:
        hint = "" if arch else " (arch may be omitted: it is guessed from the keys)"
        raise CheckpointError(
            f"{path}: no model card at {card_file}; pass classes=[...] (class names in output "
            f"order){hint}"
        )

    arch_name = arch or (card.arch if card else None)
    if arch_name is None:
        candidates = guess_arch(state)
        if not candidates:
            raise CheckpointError(
                f"{path}: no model card and its keys match none of the registered architectures "
                f"(tried {list(registry.ARCHS)}); pass arch=..."
            )
        arch_name = candidates[0]
    try:
        spec = get_arch(arch_name)
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None

    names = tuple(classes) if classes is not None else card.classes  # type: ignore[union-attr]
    n = _head_classes(state, spec)
    if n is not None and n != len(names) and hub and classes is None:
        raise CheckpointError(
            f"{path.parent / CONFIG}: num_classes / label_names give {len(names)} classes but "
            f"the weights' head ({spec.head} in {path.name}) has {n} outputs"
        )
    if n is not None and n != len(names):
        raise CheckpointError(
            f"{path}: the checkpoint's head ({spec.head}) has {n} outputs but {len(names)} class "
            f"names were given: {list(names)}"
        )
    model = _build_loaded(spec, n if n is not None else len(names), state, path)
    model = model.to(device=device, dtype=torch.float32).eval()
    size = card.input_hw if card is not None else input_hw(spec.input_size)
    try:
        check_input_size(model, size)
    except LayoutError as exc:
        where = path.parent / CONFIG if hub else card_file if card_file.is_file() else path
        raise CheckpointError(f"{where}: {exc}") from None

    if card is None:
        card = ModelCard(
            name=path.stem,
            arch=spec.name,
            classes=names,
            multilabel=bool(multilabel),
            input_size=spec.input_size,
            mean=spec.mean,
            std=spec.std,
            in_chans=spec.in_chans,
            notes=f"No model card: built from arguments by load_model({path.name!r}).",
        )
    else:
        card = dataclasses.replace(
            card,
            arch=spec.name,
            classes=names,
            multilabel=card.multilabel if multilabel is None else multilabel,
        )
    return LoadedModel(model=model, card=card)


def save_model(model: nn.Module, card: ModelCard, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s state_dict (CPU, fp32; ``.safetensors`` by suffix) and its card beside.

    Returns the checkpoint path. Raises ValueError when the card's class count disagrees with
    the model head.
    """
    path = Path(path)
    parallel = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    inner = model.module if isinstance(model, parallel) else model
    inner = getattr(inner, "_orig_mod", inner)
    state = _clean(inner.state_dict())
    spec = registry.ARCHS.get(card.arch)
    if spec is not None:
        n = _head_classes(state, spec)
        if n is not None and n != len(card.classes):
            raise ValueError(
                f"Cannot save {path}: model head {spec.head} has {n} outputs but the card lists "
                f"{len(card.classes)} classes"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    else:
        torch.save(state, tmp)
    os.replace(tmp, path)
    card_path_for(path).write_text(card.to_json() + "\n", encoding="utf-8")
    return path
