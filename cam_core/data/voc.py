"""Pascal-VOC XML reading, hardened: size limits, no entities or network, every bad field named."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from cam_core.data.core import NEU_CLASSES, Box, DataError, _display_name, _quote, read_source

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
    path, data = read_source(source, name, MAX_XML_BYTES, "XML")
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
