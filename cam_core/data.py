"""NEU-DET / Pascal-VOC reading: images, boxes per class, dataset layouts and splits.

Coordinates: a :class:`Box` is in pixels of the image it annotates, 0-based and half-open
(``x0 <= x < x1``). VOC's 1-based inclusive ``xmin..xmax`` becomes ``x0 = xmin - 1, x1 = xmax``.
A pixel (row r, column c) is inside a box when its centre ``(c + 0.5, r + 0.5)`` is.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from lxml import etree
from PIL import Image, ImageOps

NEU_CLASSES: tuple[str, ...] = (
    "crazing",
    "inclusion",
    "patches",
    "pitted_surface",
    "rolled-in_scale",
    "scratches",
)


@dataclass(frozen=True)
class Box:
    """One ground-truth box of class ``cls``, pixel coordinates (0-based, half-open)."""

    cls: str
    x0: float
    y0: float
    x1: float
    y1: float
    truncated: bool = False
    difficult: bool = False

    @property
    def area(self) -> float:
        """Area in square pixels (0 for an empty box)."""
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def scaled(self, sx: float, sy: float) -> Box:
        """The same box on an image resized by ``sx`` horizontally and ``sy`` vertically.

        Use :func:`rescale_boxes` (from one image size to another) rather than calling this.
        """
        return replace(self, x0=self.x0 * sx, y0=self.y0 * sy, x1=self.x1 * sx, y1=self.y1 * sy)

    def flipped(self, *, width: float | None = None, height: float | None = None) -> Box:
        """The same box after mirroring its image: left-right in an image ``width`` pixels wide,
        top-bottom in one ``height`` pixels high (either or both). Half-open edges swap:
        pixel columns ``x0 .. x1 - 1`` become ``width - x1 .. width - x0 - 1``.
        """
        box = self
        if width is not None:
            box = replace(box, x0=width - box.x1, x1=width - box.x0)
        if height is not None:
            box = replace(box, y0=height - box.y1, y1=height - box.y0)
        return box

    def shifted(self, dx: float, dy: float) -> Box:
        """The same box moved ``dx`` pixels right and ``dy`` down (no clipping)."""
        return replace(self, x0=self.x0 + dx, y0=self.y0 + dy, x1=self.x1 + dx, y1=self.y1 + dy)

    def clipped(self, width: float, height: float) -> Box:
        """The part of the box inside a ``width`` × ``height`` image (may be empty: area 0)."""
        return replace(
            self,
            x0=min(max(self.x0, 0), width),
            y0=min(max(self.y0, 0), height),
            x1=min(max(self.x1, 0), width),
            y1=min(max(self.y1, 0), height),
        )


def rescale_boxes(
    boxes: tuple[Box, ...], from_size: tuple[int, int], to_size: tuple[int, int]
) -> tuple[Box, ...]:
    """Boxes annotated on an image of ``from_size`` = (height, width) moved to ``to_size``.

    The one place in the project where GT boxes change resolution (evaluation, the app, the
    training box loss and mosaics, thumbnails); moves that keep the resolution (flips, shifts,
    clipping, a mosaic's quadrant offset) are :class:`Box` methods.
    """
    (h0, w0), (h1, w1) = from_size, to_size
    return tuple(b.scaled(w1 / w0, h1 / h0) for b in boxes)


@dataclass(frozen=True)
class Sample:
    """One image and what is known about it.

    ``label`` is the file's class (single-label use: folder name or file-name prefix), or None.
    ``boxes`` keeps every box with its own class; :attr:`labels` is the multi-label target.
    ``size`` is (height, width) from the XML when there is one, else None.
    """

    path: Path
    stem: str
    label: str | None = None
    boxes: tuple[Box, ...] = ()
    size: tuple[int, int] | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def labels(self) -> tuple[str, ...]:
        """Sorted set of box classes; the file class alone when there are no boxes."""
        classes = {b.cls for b in self.boxes}
        if not classes and self.label is not None:
            classes = {self.label}
        return tuple(sorted(classes))

    def boxes_for(self, cls: str) -> tuple[Box, ...]:
        """The boxes of one class (the rule every per-class metric uses)."""
        return tuple(b for b in self.boxes if b.cls == cls)


# --------------------------------------------------------------------------- errors


class DataError(ValueError):
    """A data file that cannot be used, and why.

    ``path`` is the offending file (or folder) as given; ``field`` the XML field at fault, if any.
    The message always starts with ``name`` (default: the file name of ``path``), e.g.
    ``"crazing_1.xml: <object>[2]/bndbox/xmin: 'abc' is not a number"``.
    """

    def __init__(
        self, reason: str, *, path: str | Path, field: str | None = None, name: str | None = None
    ) -> None:
        self.path = str(path)
        self.field = field
        self.reason = reason
        self.name = name or _display_name(self.path)
        super().__init__(f"{self.name}: " + (f"{field}: " if field else "") + reason)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_data_error, (self.reason, self.path, self.field, self.name))

    def renamed(self, name: str | None) -> DataError:
        """The same error shown under ``name`` (unchanged when ``name`` is None)."""
        if name is None or name == self.name:
            return self
        return DataError(self.reason, path=self.path, field=self.field, name=name)


def _rebuild_data_error(reason: str, path: str, field: str | None, name: str) -> DataError:
    return DataError(reason, path=path, field=field, name=name)


def _display_name(path: str) -> str:
    name = Path(path).name
    return name or path


def _quote(text: str, limit: int = 40) -> str:
    """``repr`` of a file value, cut short so messages never carry much file content."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


# --------------------------------------------------------------------------- VOC XML

MAX_XML_BYTES = 1 << 20
"""Largest annotation file :func:`parse_voc` reads (1 MiB; a NEU-DET XML is ~1 kB)."""
MAX_OBJECTS = 10_000
"""Most ``<object>`` elements one annotation may hold."""

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Annotation:
    """What one VOC XML says. ``size`` is (height, width) in pixels, or None when unknown."""

    filename: str | None
    size: tuple[int, int] | None
    boxes: tuple[Box, ...]
    warnings: tuple[str, ...] = ()


def _hardened_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
    )


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refusing files over ``limit`` bytes without reading them whole."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise DataError(f"cannot read {what}: {exc.strerror or exc}", path=path) from exc
    if len(data) > limit:
        raise DataError(f"{what} is too large (over {limit:,} bytes)", path=path)
    return data


def _text(el: etree._Element | None) -> str | None:
    """Stripped text of an element; None when the element is absent."""
    if el is None:
        return None
    return (el.text or "").strip()


def _number(text: str | None, *, path: str, field: str) -> float:
    if text is None:
        raise DataError("missing", path=path, field=field)
    if not _NUMBER.fullmatch(text):
        raise DataError(f"{_quote(text)} is not a number", path=path, field=field)
    value = float(text)
    if not math.isfinite(value):
        raise DataError(f"{_quote(text)} is not a finite number", path=path, field=field)
    return value


def _flag(text: str | None, field: str, warnings: list[str], name: str) -> bool:
    if text in (None, "", "0", "false", "False"):
        return False
    if text in ("1", "true", "True"):
        return True
    warnings.append(f"{name}: {field}: {_quote(text)} is not 0 or 1; read as 0")
    return False


def _xml_size(
    root: etree._Element, path: str, name: str, warnings: list[str]
) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    dims = []
    for tag in ("height", "width"):
        text = _text(size.find(tag))
        if text is None or text == "":
            warnings.append(f"{name}: <size>/{tag} is missing; image size unknown")
            return None
        value = _number(text, path=path, field=f"<size>/{tag}")
        if value <= 0 or value != int(value):
            warnings.append(f"{name}: <size>/{tag} is {_quote(text)}; image size ignored")
            return None
        dims.append(int(value))
    return dims[0], dims[1]


def parse_voc(
    source: bytes | str | Path,
    *,
    name: str | None = None,
    image_size: tuple[int, int] | None = None,
) -> Annotation:
    """Read one Pascal-VOC annotation, defensively.

    ``source`` is the XML content (bytes) or a path (str or Path). ``name`` labels messages
    (default: the file name). ``image_size`` = (height, width) of the decoded image, when known;
    it takes precedence over the XML's ``<size>`` for clipping and becomes ``Annotation.size``.

    Refused with :class:`DataError`: files over :data:`MAX_XML_BYTES`, more than
    :data:`MAX_OBJECTS` objects, DTD entity declarations or references (XXE, billion laughs),
    malformed XML (message gives lxml's line and column), a root other than ``<annotation>``,
    an object without ``<name>``, without ``<bndbox>`` or one of its four fields, or with a
    coordinate that is not a finite number.

    Box rules (each dropped or changed box adds a warning):

    - VOC coordinates are 1-based and inclusive; a box becomes ``x0 = xmin - 1, x1 = xmax``
      (0-based, half-open), so ``xmin == xmax`` is a box one pixel wide and is kept.
    - inverted boxes (``xmax < xmin`` or ``ymax < ymin``) are dropped;
    - boxes entirely outside the image (or entirely at negative coordinates when the size is
      unknown) are dropped; boxes partly outside are clipped to it (to >= 0 when the size is
      unknown);
    - class names are kept as written (stripped); names outside :data:`NEU_CLASSES` are kept
      with a warning. ``<filename>`` is reported but never used to find the image.
    """
    try:
        return _parse_voc(source, name, image_size)
    except DataError as exc:
        raise exc.renamed(name) from None


def _parse_voc(
    source: bytes | str | Path, name: str | None, image_size: tuple[int, int] | None
) -> Annotation:
    if isinstance(source, bytes):
        path = name or "<bytes>"
        if len(source) > MAX_XML_BYTES:
            raise DataError(f"XML is too large (over {MAX_XML_BYTES:,} bytes)", path=path)
        data = source
    else:
        path = str(source)
        data = _read_limited(Path(source), MAX_XML_BYTES, "XML")
    name = name or _display_name(path)

    if b"<!ENTITY" in data:
        raise DataError("entity declarations are not allowed", path=path)
    try:
        root = etree.fromstring(data, _hardened_parser())
    except etree.XMLSyntaxError as exc:
        line, col = exc.position if exc.position else (exc.lineno, exc.offset)
        msg = re.sub(r",\s*line \d+, column \d+$", "", str(exc.msg or exc))
        raise DataError(
            f"malformed XML (line {line}, column {col}): {msg[:200]}", path=path
        ) from None
    except ValueError as exc:  # e.g. a str with an encoding declaration
        raise DataError(f"malformed XML: {str(exc)[:200]}", path=path) from None
    if root is None:
        raise DataError("malformed XML: empty document", path=path)
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.entities()):
        raise DataError("entity declarations are not allowed", path=path)
    if any(True for _ in root.iter(etree.Entity)):
        raise DataError("entity references are not allowed", path=path)
    if root.tag != "annotation":
        raise DataError(
            f"root element is <{_quote(str(root.tag))[1:-1]}>, expected <annotation>", path=path
        )

    objects = root.findall("object")
    if len(objects) > MAX_OBJECTS:
        raise DataError(f"too many objects ({len(objects):,} > {MAX_OBJECTS:,})", path=path)

    warnings: list[str] = []
    xml_size = _xml_size(root, path, name, warnings)
    size = image_size if image_size is not None else xml_size
    if image_size is not None and xml_size is not None and xml_size != image_size:
        warnings.append(
            f"{name}: <size> says {xml_size[1]}x{xml_size[0]} but the image is "
            f"{image_size[1]}x{image_size[0]}; boxes are checked against the image"
        )
    filename = _text(root.find("filename")) or None

    boxes: list[Box] = []
    for i, obj in enumerate(objects, start=1):
        box = _parse_object(obj, i, size, path, name, warnings)
        if box is not None:
            boxes.append(box)
    return Annotation(filename=filename, size=size, boxes=tuple(boxes), warnings=tuple(warnings))


def _parse_object(
    obj: etree._Element,
    i: int,
    size: tuple[int, int] | None,
    path: str,
    name: str,
    warnings: list[str],
) -> Box | None:
    where = f"<object>[{i}]"
    cls = _text(obj.find("name"))
    if not cls:
        raise DataError("missing class name", path=path, field=f"{where}/name")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise DataError("missing", path=path, field=f"{where}/bndbox")
    xmin, ymin, xmax, ymax = (
        _number(_text(bndbox.find(tag)), path=path, field=f"{where}/bndbox/{tag}")
        for tag in ("xmin", "ymin", "xmax", "ymax")
    )
    if cls not in NEU_CLASSES:
        warnings.append(f"{name}: {where}: class {_quote(cls)} is not a NEU-DET class")
    truncated = _flag(_text(obj.find("truncated")), f"{where}/truncated", warnings, name)
    difficult = _flag(_text(obj.find("difficult")), f"{where}/difficult", warnings, name)
    raw = f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})"
    if xmax < xmin or ymax < ymin:
        warnings.append(f"{name}: {where}: inverted box {raw} dropped")
        return None
    x0, y0, x1, y1 = xmin - 1, ymin - 1, xmax, ymax
    width, height = (size[1], size[0]) if size is not None else (math.inf, math.inf)
    frame = f"{size[1]}x{size[0]} image" if size is not None else "image"
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        warnings.append(f"{name}: {where}: box {raw} is entirely outside the {frame}; dropped")
        return None
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, width), min(y1, height)
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        warnings.append(f"{name}: {where}: box {raw} clipped to the {frame}")
    if cx1 <= cx0 or cy1 <= cy0:  # unreachable for finite input; kept as a guard
        warnings.append(f"{name}: {where}: empty box {raw} dropped")
        return None
    return Box(cls, cx0, cy0, cx1, cy1, truncated=truncated, difficult=difficult)


# --------------------------------------------------------------------------- images

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
"""File suffixes (any case) that the dataset loaders treat as images."""
MAX_IMAGE_BYTES = 200 << 20
"""Largest image file :func:`read_image` reads (200 MiB)."""


def read_image(
    source: bytes | str | Path, *, name: str | None = None, max_pixels: int = 40_000_000
) -> np.ndarray:
    """Decode an image file into a (H, W) uint8 grayscale array.

    ``source`` is the file content (bytes) or a path; ``name`` labels messages. The pixel count
    is checked from the header before anything is decoded (``max_pixels``, and Pillow's own
    ``Image.MAX_IMAGE_PIXELS`` bomb guard). EXIF orientation is applied. Conversion to gray:
    colour, palette and CMYK through Pillow's ITU-R 601 luma; alpha is composited on black
    (a transparent pixel reads 0); 16-bit, 32-bit integer and float images are stretched
    linearly so that min(0, image minimum) → 0 and the image maximum → 255 (not clipped).
    Multi-frame files give their first frame. Truncated files are refused unless the caller has
    turned on Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES``.
    """
    try:
        return _read_image(source, name, max_pixels)
    except DataError as exc:
        raise exc.renamed(name) from None


def _read_image(source: bytes | str | Path, name: str | None, max_pixels: int) -> np.ndarray:
    if isinstance(source, bytes):
        path = name or "<bytes>"
        if len(source) > MAX_IMAGE_BYTES:
            raise DataError(f"image file is too large (over {MAX_IMAGE_BYTES:,} bytes)", path=path)
        data = source
    else:
        path = str(source)
        data = _read_limited(Path(source), MAX_IMAGE_BYTES, "image file")
    if not data:
        raise DataError("empty file (0 bytes)", path=path)
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DataError(f"image is too large to decode safely: {exc}", path=path) from None
    except Exception as exc:  # any decoder failure on untrusted bytes
        raise DataError(f"not a readable image ({_short_error(exc)})", path=path) from None
    with im:
        width, height = im.size
        if width < 1 or height < 1:
            raise DataError(f"image has no pixels ({width}x{height})", path=path)
        if width * height > max_pixels:
            raise DataError(
                f"image is too large: {width}x{height} = {width * height:,} pixels "
                f"(limit {max_pixels:,})",
                path=path,
            )
        try:
            im.load()
        except Exception as exc:  # any decoder failure on untrusted bytes
            raise DataError(
                f"cannot decode {im.format or 'image'} (truncated or corrupt: {_short_error(exc)})",
                path=path,
            ) from None
        with contextlib.suppress(Exception):  # unreadable EXIF: keep the pixels as stored
            im = ImageOps.exif_transpose(im)
        try:
            return _to_gray(im)
        except Exception as exc:  # any decoder failure on untrusted bytes
            raise DataError(
                f"cannot convert pixel mode {im.mode!r} to gray ({_short_error(exc)})", path=path
            ) from None


def _short_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


def _to_gray(im: Image.Image) -> np.ndarray:
    """(H, W) uint8 from any Pillow mode; see :func:`read_image` for the rules."""
    mode = im.mode
    if mode == "L":
        return np.array(im, dtype=np.uint8)
    if mode.startswith("I") or mode.startswith("F"):
        arr = np.asarray(im).astype(np.float64)
        if arr.ndim != 2:
            arr = np.asarray(im.convert("F"), dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        lo = min(0.0, float(arr.min()))
        hi = float(arr.max())
        if hi <= lo:
            return np.zeros(arr.shape, dtype=np.uint8)
        return np.rint((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    if mode == "LAB":
        return np.array(im.getchannel("L"), dtype=np.uint8)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "La", "RGBa", "LA"):
        im = im.convert("RGBA")
    elif mode not in ("1", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "HSV"):
        im = im.convert("RGB")  # LAB and other exotic modes
    if "A" in im.getbands():
        alpha = np.asarray(im.getchannel("A"), dtype=np.uint16)
        gray = np.asarray(im.convert("RGB").convert("L"), dtype=np.uint16)
        return ((gray * alpha + 127) // 255).astype(np.uint8)
    return np.array(im.convert("L"), dtype=np.uint8)


# --------------------------------------------------------------------------- splits

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)


def stem_hash(stem: str) -> str:
    """The hex SHA-1 of a file stem: the machine- and layout-independent order of the splits."""
    return hashlib.sha1(stem.encode("utf-8"), usedforsecurity=False).hexdigest()


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test) summing to 1, "
            f"got {tuple(fractions)!r}"
        )
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def _split_of_rank(rank: int, n: int, fractions: tuple[float, float, float]) -> str:
    """Split of the ``rank``-th of ``n`` hash-ordered stems: cut at rounded cumulative counts."""
    n_train = math.floor(n * fractions[0] + 0.5 + 1e-9)
    n_train_val = math.floor(n * (fractions[0] + fractions[1]) + 0.5 + 1e-9)
    if rank < n_train:
        return "train"
    return "val" if rank < n_train_val else "test"


def _split_of_hash(stem: str, fractions: tuple[float, float, float]) -> str:
    """Split of a stem from its hash alone (a uniform number in [0, 1))."""
    u = int(stem_hash(stem)[:13], 16) / 16**13
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def _hash_order(stems: Iterable[str]) -> list[str]:
    return sorted(set(stems), key=lambda s: (stem_hash(s), s))


def assign_split(
    stem: str,
    label: str | None,
    stems_of_label: Collection[str] = (),
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for one sample; deterministic across machines.

    Labelled: the stems of its class (``stems_of_label``, which must contain ``stem``) are
    ordered by :func:`stem_hash` and cut at the rounded cumulative ``fractions``, so every
    class is split in the same proportions. Unlabelled (``label`` None): the stem's hash alone
    decides, independently of other samples. :func:`split_samples` applies this to a dataset.
    """
    fr = _check_fractions(fractions)
    if label is None:
        return _split_of_hash(stem, fr)
    order = _hash_order(stems_of_label)
    try:
        rank = order.index(stem)
    except ValueError:
        raise ValueError(f"stem {stem!r} is not among the stems of class {label!r}") from None
    return _split_of_rank(rank, len(order), fr)


def split_samples(
    samples: Iterable[Sample], fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, tuple[Sample, ...]]:
    """Deterministic train/val/test split, stratified by ``Sample.label`` (see assign_split).

    Returns ``{"train": ..., "val": ..., "test": ...}``, each keeping the input order.
    """
    fr = _check_fractions(fractions)
    samples = tuple(samples)
    by_label: dict[str, list[str]] = {}
    for s in samples:
        if s.label is not None:
            by_label.setdefault(s.label, []).append(s.stem)
    split_of: dict[tuple[str | None, str], str] = {}
    for label, stems in by_label.items():
        order = _hash_order(stems)
        for rank, stem in enumerate(order):
            split_of[(label, stem)] = _split_of_rank(rank, len(order), fr)
    out: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for s in samples:
        key = (s.label, s.stem)
        out[split_of[key] if s.label is not None else _split_of_hash(s.stem, fr)].append(s)
    return {name: tuple(out[name]) for name in SPLITS}


# --------------------------------------------------------------------------- layouts

LAYOUTS: tuple[str, ...] = ("neu-flat", "kaggle", "voc-folder", "images")

_STEM_NUMBER = re.compile(r"^(.+)_(\d+)$")


def file_class(stem: str, folder: str | None = None) -> str | None:
    """The class a file stands for: its NEU-DET name prefix (``rolled-in_scale_12`` →
    ``rolled-in_scale``) when that is a known class — also with the synthetic demo's ``_synth``
    infix (``crazing_synth_0007``) — else ``folder`` (a Kaggle class folder), else None.
    """
    m = _STEM_NUMBER.match(stem)
    if m:
        prefix = m.group(1).removesuffix("_synth")
        if prefix in NEU_CLASSES:
            return prefix
    return folder


@dataclass(frozen=True)
class Dataset:
    """Samples found under ``root`` (the folder actually read), sorted by stem.

    ``layout`` is one of :data:`LAYOUTS`. ``errors`` holds one :class:`DataError` per file that
    could not be used (bad XML, XML without image, duplicate stem); those images are skipped.
    """

    root: Path
    layout: str
    samples: tuple[Sample, ...]
    errors: tuple[DataError, ...] = ()

    @property
    def classes(self) -> tuple[str, ...]:
        """Every class seen (file classes and box classes): NEU-DET order when all are NEU
        classes, else sorted.
        """
        seen = {s.label for s in self.samples if s.label is not None}
        seen |= {b.cls for s in self.samples for b in s.boxes}
        if seen <= set(NEU_CLASSES):
            return tuple(c for c in NEU_CLASSES if c in seen)
        return tuple(sorted(seen))

    def __len__(self) -> int:
        return len(self.samples)


def _subdir(folder: Path, *names: str) -> Path | None:
    """The sub-folder of ``folder`` whose name matches one of ``names``, ignoring case."""
    wanted = [n.lower() for n in names]
    found = sorted(
        (d for d in folder.iterdir() if d.is_dir() and d.name.lower() in wanted),
        key=lambda d: (wanted.index(d.name.lower()), d.name),
    )
    return found[0] if found else None


def annotation_for(image: str | Path) -> Path | None:
    """The VOC XML of one image file in any layout :func:`load_dataset` reads: beside it, in
    ``../ANNOTATIONS/`` (NEU-DET flat; ``Annotations/`` beside VOC's ``JPEGImages/``) or in the
    Kaggle layout's ``../../annotations/`` (``images/<class>/x.jpg``); None when there is none.
    """
    image = Path(image)
    name = f"{image.stem}.xml"
    folders = [
        image.parent,
        _subdir(image.parent.parent, "ANNOTATIONS"),
        _subdir(image.parent.parent.parent, "annotations"),
    ]
    for folder in folders:
        if folder is not None and (folder / name).is_file():
            return folder / name
    return None


def _files(folder: Path | None, suffixes: tuple[str, ...]) -> list[Path]:
    if folder is None:
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
    )


def _images_with_folders(images_dir: Path) -> list[tuple[Path, str | None]]:
    """Images directly in ``images_dir`` (no folder class) and in its class sub-folders."""
    found: list[tuple[Path, str | None]] = [(p, None) for p in _files(images_dir, IMAGE_SUFFIXES)]
    for sub in sorted(d for d in images_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
        found += [(p, sub.name) for p in _files(sub, IMAGE_SUFFIXES)]
    return found


def _discover(root: Path) -> tuple[Path, str, list[tuple[Path, str | None]], list[Path]]:
    """(data root, layout, images with their folder class, XML files) for a dataset folder."""
    images_dir, ann_dir = _subdir(root, "IMAGES"), _subdir(root, "ANNOTATIONS")
    if images_dir is not None:
        images = _images_with_folders(images_dir)
        xmls = _files(ann_dir, (".xml",))
        if any(folder for _, folder in images):
            return root, "kaggle", images, xmls
        return root, ("neu-flat" if ann_dir is not None else "images"), images, xmls
    parts = [
        d
        for d in sorted(root.iterdir())
        if d.is_dir() and _subdir(d, "images") and _subdir(d, "annotations")
    ]
    if parts:
        images = []
        xmls = []
        for part in parts:
            images += _images_with_folders(_subdir(part, "images"))  # type: ignore[arg-type]
            xmls += _files(_subdir(part, "annotations"), (".xml",))
        return root, "kaggle", images, xmls
    nested = _subdir(root, "NEU-DET")
    if nested is not None:
        return _discover(nested)
    images = [(p, None) for p in _files(root, IMAGE_SUFFIXES)]
    images += [(p, None) for p in _files(_subdir(root, "JPEGImages"), IMAGE_SUFFIXES)]
    xmls = _files(root, (".xml",)) + _files(_subdir(root, "Annotations"), (".xml",))
    return root, ("voc-folder" if xmls else "images"), images, xmls


def _natural_key(stem: str) -> tuple[object, ...]:
    parts = re.split(r"(\d+)", stem)
    return (*((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts), (1, 0, stem))


def load_dataset(root: str | Path, *, split: str | None = None) -> Dataset:
    """Find images and VOC boxes under ``root`` and pair them by file stem.

    Layouts: ``neu-flat`` (``IMAGES/`` + ``ANNOTATIONS/``, any case, or a folder holding
    ``NEU-DET/``), ``kaggle`` (``<part>/images/<class>/*.jpg`` + ``<part>/annotations/*.xml``
    for every part such as train/validation; the Kaggle parts are ignored by ``split``),
    ``voc-folder`` (images with same-stem XML beside them, or in ``JPEGImages/`` and
    ``Annotations/``) and ``images`` (no XML at all). Images are not decoded; ``Sample.size``
    comes from the XML. An image without XML becomes a Sample without boxes and a warning; a
    bad XML, an XML without image or a duplicate stem is recorded in ``errors`` and its image
    skipped. ``split`` None keeps all; ``"train"``, ``"val"``, ``"test"`` use
    :func:`split_samples`. Raises DataError only when ``root`` is not a folder or holds no images.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: None, {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError("not a folder", path=root)
    root, layout, images, xmls = _discover(root)
    if not images:
        raise DataError(
            "no images found (looked for IMAGES/ + ANNOTATIONS/, <part>/images/<class>/, "
            f"or {'/'.join(IMAGE_SUFFIXES)} files in the folder)",
            path=root,
        )

    errors: list[DataError] = []
    image_of: dict[str, tuple[Path, str | None]] = {}
    for path, folder in images:
        if path.stem in image_of:
            other = image_of[path.stem][0]
            errors.append(DataError(f"duplicate image stem (also {other}); skipped", path=path))
        else:
            image_of[path.stem] = (path, folder)
    xml_of: dict[str, Path] = {}
    for path in xmls:
        if path.stem in xml_of:
            errors.append(DataError(f"duplicate XML stem (also {xml_of[path.stem]})", path=path))
        else:
            xml_of[path.stem] = path
    for stem, path in xml_of.items():
        if stem not in image_of:
            errors.append(DataError(f"no image with stem {stem!r}", path=path))

    samples: list[Sample] = []
    for stem, (path, folder) in image_of.items():
        label = file_class(stem, folder)
        warnings: list[str] = []
        if folder is not None and label != folder:
            warnings.append(f"{path.name}: file name says {label!r}, folder says {folder!r}")
        xml = xml_of.get(stem)
        if xml is None:
            if layout != "images":
                warnings.append(f"{path.name}: no XML annotation found; no boxes")
            samples.append(Sample(path, stem, label, warnings=tuple(warnings)))
            continue
        try:
            ann = parse_voc(xml)
        except DataError as exc:
            errors.append(exc)
            continue
        warnings += ann.warnings
        samples.append(Sample(path, stem, label, ann.boxes, ann.size, tuple(warnings)))

    samples.sort(key=lambda s: _natural_key(s.stem))
    if split is not None:
        samples = list(split_samples(samples)[split])
    errors.sort(key=lambda e: (e.path, str(e)))
    return Dataset(root=root, layout=layout, samples=tuple(samples), errors=tuple(errors))


def find_neu_det() -> Path | None:
    """The NEU-DET folder: ``$NEU_DET_DIR`` if it exists, else ``<repo>/../shared/NEU-DET``."""
    env = os.environ.get("NEU_DET_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "NEU-DET"
    return shared if shared.is_dir() else None
