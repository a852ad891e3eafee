"""The data model: NEU class names, boxes (0-based, half-open pixels), samples, and the error
every reader raises (naming the file and the field).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

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


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refusing files over ``limit`` bytes without reading them whole."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise DataError(f"cannot read {what}: {exc.strerror or exc}", path=path) from exc
    if len(data) > limit:
        raise DataError(f"{what} is too large (over {limit:,} bytes)", path=path)
    return data


def read_source(
    source: bytes | str | Path, name: str | None, limit: int, what: str
) -> tuple[str, bytes]:
    """(the path to name in errors, the bytes) of a file path or of bytes already read, refusing
    more than ``limit`` bytes (``what`` names the kind of file in the message).
    """
    if isinstance(source, bytes):
        path = name or "<bytes>"
        if len(source) > limit:
            raise DataError(f"{what} is too large (over {limit:,} bytes)", path=path)
        return path, source
    return str(source), read_limited(Path(source), limit, what)
