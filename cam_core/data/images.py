"""Image decoding to (H, W) uint8 grayscale, with size limits and errors that name the file."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cam_core.data.core import DataError, read_source

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
    path, data = read_source(source, name, MAX_IMAGE_BYTES, "image file")
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
    # Pillow names the in-memory stream ("<_io.BytesIO object at 0x…>"), not the file
    text = re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-fA-F]+>", "", text)
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
