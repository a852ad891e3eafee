"""What a file is when it is not a checkpoint, from its first bytes ("a JPEG image" …).

Used only after a checkpoint failed to load, so a real checkpoint is never misread; the answer
goes into the error shown to the user instead of PyTorch's own message.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

_HEAD_BYTES = 4096
_MAX_JSON_BYTES = 10_000_000

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"%PDF-", "a PDF document"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\x93NUMPY", "a NumPy array file (.npy)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (e.g. a Keras model)"),
)


def _text(head: bytes) -> str | None:
    """``head`` decoded as UTF-8 text, or None when it holds binary data."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(head) < _HEAD_BYTES or exc.start < len(head) - 3:
            return None
        text = head[: exc.start].decode("utf-8")  # a character cut by the 4 KB read
    if any(ord(c) < 32 and c not in "\t\n\r\f" for c in text):
        return None
    return text


def _zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None  # a truncated PyTorch checkpoint is a broken ZIP too: let the loader say so
    if any(n.endswith("data.pkl") for n in names):
        return None
    return "a ZIP archive with no PyTorch checkpoint inside"


def _json(path: Path) -> str:
    if path.stat().st_size <= _MAX_JSON_BYTES:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            return "a text file, not a checkpoint"
        if isinstance(data, dict) and {"arch", "classes"} <= data.keys():
            return (
                "a model card (JSON), not a checkpoint: give the weights file, with this card "
                "beside it under the same name"
            )
    return "a JSON file, not a checkpoint"


def what_file_is(path: str | Path) -> str | None:
    """A phrase saying what ``path`` is when its content is recognisably no checkpoint
    (e.g. ``"a JPEG image, not a checkpoint"``); None when it may be one (a broken one).
    """
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
    if not head:
        return "an empty file (0 bytes), not a checkpoint"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"{what}, not a checkpoint"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image, not a checkpoint"
    if head.startswith(b"PK\x03\x04"):
        return _zip(path)
    if head[8:10] in (b'{"', b"{}") and 0 < int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file with another suffix: rename it to end in .safetensors"
    text = _text(head)
    if text is None:
        return None
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith("version https://git-lfs"):
        return (
            "a Git LFS pointer, not the weights themselves: fetch them with `git lfs pull` "
            "in the repository it came from"
        )
    if start.startswith(("<!doctype html", "<html")) or "<html" in start[:1000]:
        return "an HTML page, not a checkpoint (a download that returned a web page?)"
    if start.startswith(("<?xml", "<annotation")):
        return "an XML file, not a checkpoint"
    if start.startswith(("{", "[")):
        return _json(path)
    return "a text file, not a checkpoint"


__all__ = ["what_file_is"]
