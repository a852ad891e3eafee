"""The model catalogue: bundled models, uploaded checkpoints (stored for loading), the CAM
layers to offer for a card and what its auto-configured recommendation says.

Plain Python over cam_core types (no Streamlit).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cam_core.models import ModelCard, get_arch
from cam_core.models.sniff import what_file_is
from cam_core.uploads import content_digest
from cam_core.vocabulary import baseline_id, method_name

__all__ = [
    "BOX_THRESHOLDS",
    "CARDLESS_WARNING",
    "CHECKPOINT_SUFFIXES",
    "UPLOAD_DIR",
    "CheckpointFiles",
    "ModelRef",
    "bundled_models",
    "checkpoint_shown",
    "layer_options",
    "name_in_message",
    "pair_checkpoint_files",
    "recommended_caption",
    "recommended_threshold",
    "safe_name",
    "save_upload",
    "uploaded_model",
]


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from: a checkpoint ``path`` plus overrides for one without a card."""

    label: str
    path: str
    arch: str | None = None
    classes: tuple[str, ...] | None = None
    multilabel: bool | None = None
    synthetic: bool = False
    uploaded_as: str | None = None
    """The file name the user uploaded (None for a bundled or trained model)."""

    @property
    def model_id(self) -> str:
        """Cache key: path, overrides and the file's modification time."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            mtime = 0
        return f"{self.path}|{self.arch}|{self.classes}|{self.multilabel}|{mtime}"


_CHECKPOINT_NAMES = ("model.pt", "model.safetensors", "model.pth")


def bundled_models(models_dir: str | Path) -> list[ModelRef]:
    """Models shipped in ``models_dir/<name>/`` (a checkpoint with its ``model.json`` card).

    Order (the first real-data one is the app's default): real data before synthetic,
    single-label before multi-label, then the better recommended map on the calibration split
    (the card's auto-configuration score: a model is chosen for where it looks as well as for
    what it says), then the higher validation accuracy, then the name.
    """
    refs = []
    base = Path(models_dir)
    if not base.is_dir():
        return []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        ckpt = next((folder / n for n in _CHECKPOINT_NAMES if (folder / n).is_file()), None)
        card_file = folder / "model.json"
        if ckpt is None or not card_file.is_file():
            continue
        try:
            card = json.loads(card_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            card = {}
        synthetic = bool(card.get("synthetic")) or "synth" in folder.name
        # short enough for the sidebar's box; the mark only where the name does not say it
        label = folder.name + (" · synthetic" if synthetic and "synth" not in folder.name else "")
        try:
            accuracy = float(card["metrics"]["val"]["accuracy"])
        except (KeyError, TypeError, ValueError):
            accuracy = 0.0
        try:
            localization = float(card["recommended"]["score"])
        except (KeyError, TypeError, ValueError):
            localization = 0.0
        rank = (synthetic, bool(card.get("multilabel")), -localization, -accuracy, label)
        refs.append((rank, ModelRef(label, str(ckpt), synthetic=synthetic)))
    return [ref for _, ref in sorted(refs, key=lambda pair: pair[0])]


UPLOAD_DIR = Path(tempfile.gettempdir()) / "cam-core-uploads"
"""Where uploaded checkpoints are stored for loading (one sub-folder per content hash)."""


def safe_name(name: str) -> str:
    """``name`` reduced to letters, digits, ``._-`` (a file or folder name that is safe to use)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name).lstrip(".") or "upload"


def save_upload(name: str, data: bytes, folder: str | Path | None = None) -> Path:
    """Write uploaded bytes to ``folder/<content hash>/<name>`` (default :data:`UPLOAD_DIR`).

    The original file name is kept so error messages name it.
    """
    base = Path(folder) if folder is not None else UPLOAD_DIR
    out = base / content_digest(data) / safe_name(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.stat().st_size != len(data):
        out.write_bytes(data)
    return out


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin")
"""File suffixes taken as model weights; ``.json`` beside them is the model card."""


CARDLESS_WARNING = (
    "Loaded without a model card: normalisation, input size and CAM layer are guessed from the "
    "architecture, and there is no recommendation, so predictions and maps may be wrong. Load "
    "the checkpoint again together with its model.json."
)
"""What the app says about a model built from a bare checkpoint."""


@dataclass(frozen=True)
class CheckpointFiles:
    """The files in the checkpoint box, sorted out: the ``checkpoint`` (name, bytes) to load,
    its ``card`` JSON when one came with it, ``errors`` saying why there is nothing to load
    (``checkpoint`` None), and ``notes`` on files left unused. Every message names its file.
    """

    checkpoint: tuple[str, bytes] | None
    card: tuple[str, bytes] | None = None
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _what_upload_is(name: str, data: bytes, folder: str | Path | None) -> str:
    what = what_file_is(save_upload(name, data, folder))
    return what or f"a {Path(name).suffix or 'suffix-less'} file, not a checkpoint"


def pair_checkpoint_files(
    files: Sequence[tuple[str, bytes]], *, folder: str | Path | None = None
) -> CheckpointFiles:
    """Sort the (name, content) files of one drop, in the order dropped, into one checkpoint
    and its card (the box empties after each load, so a drop never mixes with an earlier one).

    The checkpoint is the last weights file dropped. Its card is the only ``.json`` when the
    drop holds one checkpoint and one card; otherwise only the ``.json`` of the checkpoint's
    stem (``model.pt`` + ``model.json``) is its card. A file of another type is named for what
    it is (e.g. "photo.jpg: a JPEG image, not a checkpoint"): an error when there is no
    checkpoint, else a note, as are the files left unused.
    """
    weights = [(n, d) for n, d in files if Path(n).suffix.lower() in CHECKPOINT_SUFFIXES]
    cards = [(n, d) for n, d in files if Path(n).suffix.lower() == ".json"]
    valid = ", ".join(CHECKPOINT_SUFFIXES)
    others = [
        f"{n}: {_what_upload_is(n, d, folder)} (this box takes weights: {valid}, with their "
        ".json model card)"
        for n, d in files
        if (n, d) not in weights and (n, d) not in cards
    ]
    if not weights:
        dropped = ", ".join(n for n, _ in files) or "nothing"
        missing = f"No checkpoint among the files dropped ({dropped}): add the weights ({valid})"
        return CheckpointFiles(None, None, tuple(others or [missing]))
    checkpoint = weights[-1]
    stem = Path(checkpoint[0]).stem
    notes = list(others)
    if len(weights) > 1:
        earlier = ", ".join(n for n, _ in weights[:-1])
        notes.append(
            f"{len(weights)} checkpoints were dropped together: {checkpoint[0]} (the last) is "
            f"loaded, {earlier} not. Drop one checkpoint at a time, with its card."
        )
    named = [c for c in cards if Path(c[0]).stem == stem]
    only = cards if len(cards) == 1 and len(weights) == 1 else []
    card = (named or only or [None])[-1]
    unused = [c[0] for c in cards if c != card]
    if unused:
        why = (
            f"the card of {checkpoint[0]} is {card[0]}"
            if card
            else (f"no {stem}.json came with {checkpoint[0]}")
        )
        notes.append(f"{', '.join(unused)}: not used; {why}")
    return CheckpointFiles(checkpoint, card, (), tuple(notes))


def uploaded_model(
    checkpoint: tuple[str, bytes],
    *,
    card_json: tuple[str, bytes] | None = None,
    arch: str | None = None,
    classes: Sequence[str] | None = None,
    multilabel: bool = False,
    folder: str | Path | None = None,
) -> ModelRef:
    """Store an uploaded checkpoint (and its card as ``<stem>.json`` beside it) for
    :func:`cam_core.models.load_model`. Without a card, ``classes`` are required. The model is
    labelled by its card's name ("neu-boxsup-… (uploaded)"), else by the file name.

    Raises ValueError naming the file for an unreadable card or missing class names.
    """
    name, data = checkpoint
    path = save_upload(name, data, folder)
    card_path = path.with_suffix(".json")
    if card_json is not None:
        card_name, card_bytes = card_json
        try:
            card = ModelCard.from_json(card_bytes)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{card_name}: not a model card: {exc}") from None
        card_path.write_bytes(card_bytes)
        return ModelRef(
            f"{card.name} (uploaded)", str(path), synthetic=card.synthetic, uploaded_as=name
        )
    card_path.unlink(missing_ok=True)
    names = tuple(c.strip() for c in (classes or ()) if c.strip())
    if not names:
        raise ValueError(f"{name}: no model card given, so class names are needed (output order)")
    return ModelRef(
        f"{name} (uploaded)",
        str(path),
        arch=arch,
        classes=names,
        multilabel=multilabel,
        uploaded_as=name,
    )


def checkpoint_shown(ref: ModelRef, root: str | Path) -> str:
    """How to name ``ref``'s checkpoint to the user: "model.pt (uploaded)" for an upload (not
    its storage path), else the path relative to ``root`` (the repository) when inside it.
    """
    if ref.uploaded_as is not None:
        return f"{ref.uploaded_as} (uploaded)"
    try:
        return str(Path(ref.path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return ref.path


def name_in_message(message: str, folder: str | Path | None = None) -> str:
    """``message`` with the storage folder of :func:`save_upload` removed from file paths, so
    it names the file as the user uploaded it.
    """
    base = re.escape(str(Path(folder) if folder is not None else UPLOAD_DIR))
    return re.sub(base + r"/[0-9a-f]{16}/", "", message)


def layer_options(card: ModelCard) -> list[str]:
    """CAM layers to offer for a model: its default (:attr:`ModelCard.default_layer`: the
    recommended one, else the card's own, else the architecture's first), then the card's own,
    then its architecture's. KeyError for an unregistered architecture without a layer.
    """
    options = [card.default_layer, *([card.target_layer] if card.target_layer else [])]
    with contextlib.suppress(KeyError):
        options += list(get_arch(card.arch).target_layers)
    return list(dict.fromkeys(options))


def recommended_caption(card: ModelCard) -> str | None:
    """One line on the card's auto-configured method × layer and its calibration figures."""
    rec = card.recommendation
    if rec is None:
        return None
    fig, base = rec.figures, rec.baselines.get(baseline_id("centre"), {})
    parts = [
        f"pointing {fig['pointing']:.2f}" if fig.get("pointing") is not None else "",
        f"energy {fig['energy']:.2f}" if fig.get("energy") is not None else "",
        f"centre-point baseline {base['pointing']:.2f}" if base.get("pointing") is not None else "",
    ]
    figures = " · ".join(p for p in parts if p)
    flips = " with flip averaging" if rec.flips else ""
    cal = rec.calibration
    split, n = (cal.split, cal.n) if cal is not None else (None, None)
    return (
        f"Recommended: {method_name(rec.method)} @ {rec.layer}{flips}, map→box threshold "
        f"{rec.threshold}; {figures} on {split or '?'} (n={'?' if n is None else n})"
    )


BOX_THRESHOLDS: tuple[float | str, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, "otsu")
"""The map → boxes thresholds the app offers (fractions of the map's peak, or Otsu's)."""


def recommended_threshold(
    card: ModelCard, choices: Sequence[float | str], fallback: float = 0.5
) -> float | str:
    """The card's auto-configured map → boxes threshold when it is one of ``choices``, else
    ``fallback`` (a card without a recommendation, or a threshold the page does not offer).
    """
    rec = card.recommendation
    value = rec.threshold if rec is not None else None
    return value if value in choices else fallback
