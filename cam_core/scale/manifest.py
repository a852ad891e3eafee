"""What a distributed run evaluates: :class:`Item` s from a dataset folder or a Parquet manifest.

A manifest is a Parquet file with one row per image, for archives that live in object storage:

- ``image`` (string, required): a path or URI (``s3://``, ``gs://``, ``file://``, ``hdfs://``);
  relative paths are read from the manifest's folder;
- ``label`` (string, optional): the file class (default: the NEU-DET name prefix of the stem);
- ``boxes`` (list<struct<cls, x0, y0, x1, y1>>, optional): boxes in pixels, 0-based, half-open;
- ``annotation`` (string, optional): a VOC XML path or URI, read by the worker when ``boxes``
  is null (a bad XML becomes an error row there);
- ``height``, ``width`` (int, optional): the image size the boxes refer to;
- ``stem`` (string, optional): the row key (default: the file stem).

Files are reached through pyarrow filesystems (:func:`open_uri`), so the same code reads local
paths and object storage. Nothing here imports Ray.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cam_core.data import Box, DataError, Sample, file_class, load_dataset, split_samples

__all__ = [
    "BOX_TYPE",
    "Item",
    "is_manifest",
    "load_items",
    "open_uri",
    "read_manifest",
    "read_uri",
    "write_manifest",
]

BOX_TYPE = pa.struct([("cls", pa.string())] + [(k, pa.float64()) for k in ("x0", "y0", "x1", "y1")])
"""One box of the manifest's ``boxes`` column."""


def _has_scheme(uri: str) -> bool:
    return "://" in uri


def open_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) of a local path or a URI."""
    if _has_scheme(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def read_uri(uri: str, limit: int) -> bytes:
    """The bytes of a file path or URI, refusing more than ``limit`` bytes (DataError)."""
    try:
        fs, path = open_uri(uri)
        with fs.open_input_stream(path) as f:
            data = f.read(limit + 1)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read: {exc}", path=uri) from None
    if len(data) > limit:
        raise DataError(f"file is too large (over {limit:,} bytes)", path=uri)
    return data


@dataclass(frozen=True)
class Item:
    """One image of a run: its :class:`~cam_core.data.Sample` (boxes when known), where its
    bytes are (``image``: path or URI) and, when its boxes are still to be read, its VOC XML.
    """

    sample: Sample
    image: str
    annotation: str | None = None

    def record(self) -> dict[str, Any]:
        """A JSON-able record of the item (what a worker receives)."""
        s = self.sample
        return {
            "image": self.image,
            "stem": s.stem,
            "label": s.label,
            "boxes": [[b.cls, b.x0, b.y0, b.x1, b.y1, b.truncated, b.difficult] for b in s.boxes],
            "size": list(s.size) if s.size else None,
            "annotation": self.annotation,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Item:
        """The inverse of :meth:`record`."""
        boxes = tuple(
            Box(c, x0, y0, x1, y1, bool(t), bool(d)) for c, x0, y0, x1, y1, t, d in rec["boxes"]
        )
        size = tuple(rec["size"]) if rec["size"] else None
        sample = Sample(Path(rec["image"]), rec["stem"], rec["label"], boxes, size)  # type: ignore[arg-type]
        return cls(sample, rec["image"], rec["annotation"])


def dumps(items: Sequence[Item]) -> str:
    """A batch of items as one JSON string (one Ray Data row per batch)."""
    return json.dumps([it.record() for it in items])


def loads(text: str) -> list[Item]:
    """The inverse of :func:`dumps`."""
    return [Item.from_record(r) for r in json.loads(text)]


def is_manifest(data: str) -> bool:
    """True when ``data`` names a Parquet manifest rather than a dataset folder."""
    return data.lower().endswith((".parquet", ".pq"))


def _boxes(s: Sample) -> list[dict[str, Any]]:
    return [{"cls": b.cls, "x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1} for b in s.boxes]


def write_manifest(samples: Sequence[Sample], path: str | Path) -> Path:
    """Write ``samples`` (local paths, boxes inline) as a manifest; returns the path."""
    table = pa.table(
        {
            "image": [str(s.path) for s in samples],
            "stem": [s.stem for s in samples],
            "label": [s.label for s in samples],
            "boxes": pa.array([_boxes(x) for x in samples], type=pa.list_(BOX_TYPE)),
            "height": pa.array([s.size[0] if s.size else None for s in samples], pa.int64()),
            "width": pa.array([s.size[1] if s.size else None for s in samples], pa.int64()),
        }
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _join(base: str, rel: str) -> str:
    if _has_scheme(rel) or PurePosixPath(rel).is_absolute():
        return rel
    return posixpath.join(base, rel) if _has_scheme(base) else str(Path(base) / rel)


def _stem(uri: str) -> str:
    return PurePosixPath(uri.split("://", 1)[-1]).stem


def _manifest_item(rec: dict[str, Any], base: str, where: str) -> Item:
    image = rec.get("image")
    if not isinstance(image, str) or not image.strip():
        raise DataError("no image path (column 'image' is empty)", path=where)
    image = _join(base, image.strip())
    stem = rec.get("stem") or _stem(image)
    label = rec["label"] if "label" in rec else file_class(stem)
    boxes = []
    for j, b in enumerate(rec.get("boxes") or []):
        vals = [b.get(k) for k in ("x0", "y0", "x1", "y1")]
        if not b.get("cls") or any(v is None for v in vals):
            raise DataError(f"boxes[{j}]: needs cls, x0, y0, x1, y1; got {b!r}", path=where)
        boxes.append(Box(str(b["cls"]), *(float(v) for v in vals)))
    h, w = rec.get("height"), rec.get("width")
    size = (int(h), int(w)) if h and w else None
    ann = rec.get("annotation") if rec.get("boxes") is None else None
    ann = _join(base, ann) if ann else None
    return Item(Sample(Path(image), stem, label, tuple(boxes), size), image, ann)


def read_manifest(uri: str) -> tuple[list[Item], list[DataError]]:
    """Items of a Parquet manifest, and one DataError per row that cannot be used (no image,
    a malformed box, a duplicate stem), naming the manifest and the row. Raises DataError when
    the manifest itself cannot be read or has no ``image`` column.
    """
    try:
        fs, path = open_uri(uri)
        table = pq.read_table(path, filesystem=fs)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"cannot read the Parquet manifest: {exc}", path=uri) from None
    if "image" not in table.column_names:
        raise DataError(f"no 'image' column (columns: {table.column_names})", path=uri)
    base = posixpath.dirname(uri) if _has_scheme(uri) else str(Path(path).parent)
    items: list[Item] = []
    errors: list[DataError] = []
    seen: set[str] = set()
    for i, rec in enumerate(table.to_pylist()):
        where = f"{uri} row {i}"
        try:
            item = _manifest_item(rec, base, where)
        except (DataError, TypeError, ValueError) as exc:
            errors.append(exc if isinstance(exc, DataError) else DataError(str(exc), path=where))
            continue
        if item.sample.stem in seen:
            errors.append(DataError(f"duplicate stem {item.sample.stem!r}; skipped", path=where))
            continue
        seen.add(item.sample.stem)
        items.append(item)
    return items, errors


def load_items(data: str, split: str | None) -> tuple[list[Item], list[DataError]]:
    """Items of a dataset folder (any layout :func:`~cam_core.data.load_dataset` knows; its XML
    errors returned) or of a Parquet manifest, restricted to ``split`` (the same deterministic
    split as the local run: :func:`~cam_core.data.split_samples`).
    """
    if is_manifest(data):
        items, errors = read_manifest(data)
        if split is not None:
            keep = {s.stem for s in split_samples([it.sample for it in items])[split]}
            items = [it for it in items if it.sample.stem in keep]
        return items, errors
    ds = load_dataset(data, split=split)
    return [Item(s, str(s.path)) for s in ds.samples], list(ds.errors)
