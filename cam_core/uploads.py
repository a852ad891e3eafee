"""Images the app can explain: uploaded files (images paired with their VOC XML by stem) and
dataset samples, decoded into :class:`ImageItem` values keyed for the map cache.

Plain Python over cam_core types (no Streamlit): the pages draw the widgets, this module decides
what a batch of files means.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cam_core.data import (
    IMAGE_SUFFIXES,
    Box,
    DataError,
    Sample,
    file_class,
    parse_voc,
    read_image,
    rescale_boxes,
)

__all__ = [
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "SYNTHETIC_SOURCE",
    "ImageItem",
    "UploadReport",
    "content_digest",
    "file_key",
    "item_from_sample",
    "merge_uploads",
    "read_uploads",
]

MAX_UPLOAD_PIXELS = 25_000_000
"""Largest uploaded image the app decodes (a 5000 × 5000 picture; NEU-DET is 200 × 200)."""
MAX_UPLOAD_BYTES = 50 << 20
"""Largest uploaded file the app reads (matches ``server.maxUploadSize`` in .streamlit)."""
SYNTHETIC_SOURCE = "synthetic demo"
"""``ImageItem.source`` of the synthetic demo images (not real steel)."""


@dataclass(frozen=True, eq=False)
class ImageItem:
    """One image the app can explain.

    ``key`` identifies the pixels for caches (content hash for uploads, path for files);
    ``image`` is (H, W) uint8; ``sample.boxes`` are at the image's own resolution.
    ``source`` is ``"upload"``, ``"dataset"`` or :data:`SYNTHETIC_SOURCE`.
    """

    key: str
    name: str
    image: np.ndarray
    sample: Sample
    source: str
    warnings: tuple[str, ...] = ()

    @property
    def content(self) -> str:
        """What identifies the pixels: the content digest of an upload, the path of a file."""
        kind, _, rest = self.key.partition(":")
        return rest.split(":", 1)[0] if kind == "upload" else self.key

    @property
    def boxes(self) -> tuple[Box, ...]:
        """All GT boxes (every class)."""
        return self.sample.boxes

    @property
    def has_annotation(self) -> bool:
        """True when boxes (possibly none) came from an annotation file."""
        return self.sample.size is not None or bool(self.sample.boxes)


@dataclass(frozen=True)
class UploadReport:
    """Outcome of one batch of uploaded files: usable images, and one message per bad file.

    Every error starts with the offending file's name.
    """

    items: tuple[ImageItem, ...]
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def content_digest(data: bytes) -> str:
    """16 hex digits naming ``data`` by content (SHA-1; not for security)."""
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:16]


def read_uploads(
    files: Iterable[tuple[str, bytes]],
    *,
    max_pixels: int = MAX_UPLOAD_PIXELS,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> UploadReport:
    """Decode uploaded images and pair each with the VOC XML of the same file stem.

    ``files`` are (file name, content). A bad file never stops the others: unreadable, corrupt,
    empty, oversized or unsupported files, XML that is malformed or has no image of its stem,
    XML whose ``<size>`` disagrees with its image, and duplicate names each give one error
    naming the file. The image of a rejected XML is kept, without boxes.
    """
    images: dict[str, tuple[str, bytes]] = {}
    xmls: dict[str, tuple[str, bytes]] = {}
    errors: list[str] = []
    warnings: list[str] = []
    for name, data in files:
        suffix = Path(name).suffix.lower()
        stem = Path(name).stem
        if len(data) > max_bytes:
            errors.append(f"{name}: file is too large ({len(data):,} bytes; limit {max_bytes:,})")
            continue
        if suffix == ".xml":
            target = xmls
        elif suffix in IMAGE_SUFFIXES:
            target = images
        else:
            valid = ", ".join((*IMAGE_SUFFIXES, ".xml"))
            errors.append(f"{name}: unsupported file type {suffix or '(none)'!r}; use {valid}")
            continue
        if stem in target:
            errors.append(f"{name}: another uploaded file has the stem {stem!r}; ignored")
            continue
        target[stem] = (name, data)

    items: list[ImageItem] = []
    decoded: dict[str, np.ndarray] = {}
    for stem, (name, data) in images.items():
        try:
            decoded[stem] = read_image(data, name=name, max_pixels=max_pixels)
        except DataError as exc:
            errors.append(str(exc))
    for stem, (name, _) in xmls.items():
        if stem not in images:
            errors.append(
                f"{name}: no uploaded image has the stem {stem!r} "
                f"(images: {sorted(images) or 'none'}); boxes not used"
            )
    for stem, (name, data) in images.items():
        if stem not in decoded:
            if stem in xmls:
                warnings.append(f"{xmls[stem][0]}: not used, its image {name} was rejected")
            continue
        image = decoded[stem]
        boxes: tuple[Box, ...] = ()
        size: tuple[int, int] | None = None
        notes: list[str] = []
        if stem in xmls:
            xml_name, xml_data = xmls[stem]
            try:
                ann = parse_voc(xml_data, name=xml_name)
            except DataError as exc:
                errors.append(str(exc))
                ann = None
            if ann is not None and ann.size is not None and ann.size != image.shape:
                errors.append(
                    f"{xml_name}: annotates a {ann.size[1]}x{ann.size[0]} image but {name} is "
                    f"{image.shape[1]}x{image.shape[0]}: it belongs to another image; boxes "
                    "not used"
                )
            elif ann is not None:
                # re-read with the true size so boxes are clipped to this image
                ann = parse_voc(xml_data, name=xml_name, image_size=image.shape[:2])
                boxes, size = ann.boxes, image.shape[:2]
                notes += ann.warnings
                tag = Path(ann.filename).stem if ann.filename else None
                if tag and tag != stem:
                    notes.append(f"{xml_name}: <filename> says {ann.filename!r}, paired by stem")
        sample = Sample(Path(name), stem, file_class(stem), boxes, size, tuple(notes))
        key = f"upload:{content_digest(data)}:{name}"
        items.append(ImageItem(key, name, image, sample, "upload", tuple(notes)))
        warnings += notes
    return UploadReport(tuple(items), tuple(errors), tuple(warnings))


def merge_uploads(earlier: Iterable[ImageItem], new: Iterable[ImageItem]) -> tuple[ImageItem, ...]:
    """The uploads of a session after a new batch: ``earlier`` then ``new``, one item per
    image content (:attr:`ImageItem.content`); a re-uploaded image moves to the end and
    replaces its earlier item (e.g. now with its XML), except that an annotated item is not
    replaced by the same image without annotation.
    """
    merged: dict[str, ImageItem] = {}
    for item in (*earlier, *new):
        old = merged.pop(item.content, None)
        keep_old = old is not None and old.has_annotation and not item.has_annotation
        merged[item.content] = old if keep_old else item
    return tuple(merged.values())


def item_from_sample(sample: Sample, *, source: str = "dataset") -> ImageItem:
    """Read a dataset sample's image; its boxes are moved to the decoded size when the XML's
    ``<size>`` differs (with a warning). Raises DataError naming the file.
    """
    image = read_image(sample.path)
    boxes, notes = sample.boxes, list(sample.warnings)
    if sample.size is not None and sample.size != image.shape:
        boxes = rescale_boxes(boxes, sample.size, image.shape[:2])
        notes.append(
            f"{sample.path.name}: XML size {sample.size[1]}x{sample.size[0]} differs from the "
            f"image {image.shape[1]}x{image.shape[0]}; boxes rescaled"
        )
    sample = Sample(sample.path, sample.stem, sample.label, boxes, image.shape[:2], tuple(notes))
    return ImageItem(file_key(sample), sample.path.name, image, sample, source, tuple(notes))


def file_key(sample: Sample) -> str:
    """:attr:`ImageItem.key` of a sample read from disk (what :func:`item_from_sample` gives it),
    so a page can name the image's cached maps and remembered choices without decoding it.
    """
    return f"file:{sample.path}"
