"""Slide-ready PNGs: one panel at presentation size, or a sheet of panels with a shared colour bar.

A :class:`Tile` is one picture (the raw image with its GT boxes, or a map over the image) with a
title above and a caption (its figures) below. :func:`sheet` lays rows of tiles on a white page
under a title and above one colour bar with its scale; :func:`panel_slide` is the one-tile sheet.
Text is drawn with Pillow (DejaVu Sans when the system has it, else Pillow's own font, in which
non-ASCII marks are spelled out). Outputs are (H, W, 3) uint8 RGB: pass them to
:func:`cam_core.render.png_bytes`.

Example::

    tile = map_tile(image, result, p=0.93, image_name="crazing_3", caption="pointing hit ✓")
    png = render.png_bytes(panel_slide(tile))
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cam_core.data import Box, rescale_boxes
from cam_core.render import (
    BoxLike,
    box_xyxy,
    colormap_lut,
    draw_boxes,
    overlay,
    panel_title,
    shared_scale,
    to_rgb,
)

if TYPE_CHECKING:
    from cam_core.explain import CamResult

__all__ = [
    "MIN_SHEET_PX",
    "OWN_SCALE_TITLE",
    "SheetStyle",
    "Tile",
    "colour_bar",
    "gt_tile",
    "map_tile",
    "panel_slide",
    "sheet",
]

OWN_SCALE_TITLE = "map value, each map scaled to its own peak"
"""Colour-bar title of maps drawn as the engine returns them."""

_MARGIN, _GAP, _INK, _MUTED = 24, 16, (17, 24, 39), (75, 85, 99)
_ASCII = {
    "✓": "(hit)",
    "✗": "(miss)",
    "–": "-",
    "—": "-",
    "τ": "tau",
    "≥": ">=",
    "×": "x",
    "★": "*",
    "→": "->",
}

MIN_SHEET_PX = 800
"""Narrowest sheet in pixels: a one-tile sheet still has room for its title and colour scale."""


@dataclass(frozen=True)
class Tile:
    """One picture of a sheet: ``image`` ((H, W) or (H, W, 3) uint8) with ``cam`` ((H, W) in
    [0, 1], None for the raw image), GT boxes in class colours, map boxes in white with their
    labels, a ``title`` above and a ``caption`` below (both wrapped to the tile's width).
    """

    image: np.ndarray
    cam: np.ndarray | None = None
    title: str = ""
    caption: str = ""
    gt_boxes: tuple[Box, ...] = ()
    cam_boxes: tuple[BoxLike, ...] = ()
    cam_box_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class SheetStyle:
    """How maps are drawn: overlay ``alpha`` in [0, 1], ``colormap`` (a
    :data:`cam_core.render.COLORMAPS` name), picture width ``tile_px`` in pixels, and the colour
    bar's ``scale_title`` (say :data:`cam_core.render.SHARED_SCALE_TITLE` for shared-scale maps).
    """

    alpha: float = 0.5
    colormap: str = "jet"
    tile_px: int = 360
    scale_title: str = OWN_SCALE_TITLE

    def __post_init__(self) -> None:
        if self.tile_px < 64:
            raise ValueError(f"tile_px must be >= 64 pixels, got {self.tile_px}")


def gt_tile(image: np.ndarray, boxes: Sequence[Box], *, title: str) -> Tile:
    """The raw image with its GT boxes (every class), captioned with the box count."""
    n = len(boxes)
    return Tile(image, None, title, f"{n} GT box{'es' if n != 1 else ''}", tuple(boxes))


def map_tile(
    image: np.ndarray,
    result: CamResult,
    *,
    p: float | None,
    image_name: str,
    caption: str = "",
    gt_boxes: Sequence[Box] = (),
    cam_boxes: Sequence[BoxLike] = (),
    cam_box_labels: Sequence[str] = (),
    gain: float | None = None,
) -> Tile:
    """A map tile titled by :func:`cam_core.render.panel_title` (image, class, p, method, layer;
    low probabilities marked); ``gain`` from :func:`cam_core.render.shared_gains` puts it on the
    image's shared scale; ``caption`` is e.g. :func:`cam_core.render.scores_caption`.
    """
    title = panel_title(image_name, result.class_name, p, result.method, result.layer)
    cam = shared_scale(result.cam, gain)
    return Tile(
        image, cam, title, caption, tuple(gt_boxes), tuple(cam_boxes), tuple(cam_box_labels)
    )


# --------------------------------------------------------------------------- text


@functools.lru_cache(maxsize=16)
def _font(
    size: int, bold: bool = False
) -> tuple[ImageFont.ImageFont | ImageFont.FreeTypeFont, bool]:
    """(font, has_unicode): DejaVu Sans if installed, else Pillow's built-in font (ASCII)."""
    try:
        name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
        return ImageFont.truetype(name, size), True
    except OSError:
        return ImageFont.load_default(size), False  # type: ignore[return-value]


def _text(text: str, size: int, bold: bool = False) -> tuple[str, ImageFont.FreeTypeFont]:
    font, unicode_ok = _font(size, bold)
    if not unicode_ok:
        for mark, word in _ASCII.items():
            text = text.replace(mark, word)
    return text, font


def _wrap(text: str, size: int, width: int, bold: bool = False) -> list[str]:
    """``text`` broken into lines at most ``width`` pixels wide (a longer word is split)."""
    text, font = _text(text, size, bold)
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in _split_long(paragraph.split(" "), font, width):
            candidate = f"{line} {word}".strip()
            if line and font.getlength(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return [ln for ln in lines if ln] if text.strip() else []


def _split_long(
    words: Sequence[str], font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int
) -> list[str]:
    """``words`` with each word wider than ``width`` pixels cut into pieces that fit."""
    out: list[str] = []
    for word in words:
        while font.getlength(word) > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and font.getlength(word[:cut]) > width:
                cut -= 1
            out.append(word[:cut])
            word = word[cut:]
        out.append(word)
    return out


def _line_height(size: int) -> int:
    return round(size * 1.3)


def _write(
    draw: ImageDraw.ImageDraw,
    xy: tuple[int, int],
    lines: Sequence[str],
    size: int,
    *,
    bold: bool = False,
    fill: tuple[int, int, int] = _INK,
) -> None:
    x, y = xy
    for line in lines:
        text, font = _text(line, size, bold)
        draw.text((x, y), text, font=font, fill=fill)
        y += _line_height(size)


# --------------------------------------------------------------------------- pictures


def _scale_box(box: BoxLike, sx: float, sy: float) -> tuple[float, ...]:
    x0, y0, x1, y1 = box_xyxy(box)
    return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def _picture(tile: Tile, style: SheetStyle) -> np.ndarray:
    """The tile's picture ``tile_px`` wide: overlay (or the raw image), then boxes at that size."""
    h, w = tile.image.shape[:2]
    rgb = to_rgb(tile.image)
    if tile.cam is not None:
        rgb = overlay(rgb, tile.cam, alpha=style.alpha, colormap=style.colormap)
    size = (max(1, round(h * style.tile_px / w)), style.tile_px)
    grow = style.tile_px >= w
    rgb = cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_CUBIC if grow else cv2.INTER_AREA)
    thickness = max(2, style.tile_px // 180)
    out = draw_boxes(rgb, rescale_boxes(tile.gt_boxes, (h, w), size), thickness=thickness)
    if tile.cam_boxes:
        sx, sy = size[1] / w, size[0] / h
        boxes = [_scale_box(b, sx, sy) for b in tile.cam_boxes]
        labels = list(tile.cam_box_labels) if tile.cam_box_labels else None
        out = draw_boxes(out, boxes, thickness=thickness, labels=labels)
    return out


def colour_bar(colormap: str, width: int, height: int = 18) -> np.ndarray:
    """(height, width, 3) uint8 RGB gradient of ``colormap`` from map value 0 (left) to 1."""
    if width < 2 or height < 1:
        raise ValueError(f"colour bar must be >= 2×1 pixels, got {width}×{height}")
    levels = np.linspace(0, 255, width).round().astype(int)
    return np.repeat(colormap_lut(colormap)[levels][None], height, axis=0)


# --------------------------------------------------------------------------- layout


def sheet(
    rows: Sequence[Sequence[Tile | None]],
    *,
    title: str,
    style: SheetStyle = SheetStyle(),
    note: str = "",
) -> np.ndarray:
    """Rows of tiles (None leaves a cell empty) on a white page: ``title`` (and ``note``) on top,
    each tile's title above and caption below its picture, one colour bar of ``style.colormap``
    with ticks 0 / 0.5 / 1 and ``style.scale_title`` at the bottom. The page is at least
    :data:`MIN_SHEET_PX` wide and every text is wrapped inside it. Returns (H, W, 3) uint8 RGB.
    """
    if not any(t is not None for row in rows for t in row):
        raise ValueError(f"a sheet needs at least one tile, got rows {rows!r}")
    tp = style.tile_px
    n_cols = max(len(r) for r in rows)
    width = max(MIN_SHEET_PX, 2 * _MARGIN + n_cols * tp + (n_cols - 1) * _GAP)
    inner = width - 2 * _MARGIN
    head_size = 26 if tp >= 300 or n_cols > 1 else 20
    tile_title, tile_cap = (18, 15) if tp >= 300 else (14, 12)

    header = _wrap(title, head_size, inner, bold=True)
    notes = _wrap(note, 15, inner)
    scale = _wrap(f"Colour scale: {style.scale_title}", 15, inner)
    y = _MARGIN + len(header) * _line_height(head_size) + len(notes) * _line_height(15) + 8

    layout = []  # (y, row of (tile, picture, title lines, caption lines)), row heights
    for row in rows:
        cells = [
            (
                t,
                _picture(t, style),
                _wrap(t.title, tile_title, tp, True),
                _wrap(t.caption, tile_cap, tp),
            )
            if t is not None
            else None
            for t in row
        ]
        live = [c for c in cells if c is not None]
        title_h = max((len(c[2]) for c in live), default=0) * _line_height(tile_title)
        pic_h = max((c[1].shape[0] for c in live), default=0)
        cap_h = max((len(c[3]) for c in live), default=0) * _line_height(tile_cap)
        layout.append((y, cells, title_h, pic_h))
        y += title_h + 4 + pic_h + 6 + cap_h + _GAP

    bar_w = min(inner, 512)
    bar_y = y + len(scale) * _line_height(15) + 4
    height = bar_y + 18 + 4 + _line_height(13) + _MARGIN

    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    _write(draw, (_MARGIN, _MARGIN), header, head_size, bold=True)
    _write(draw, (_MARGIN, _MARGIN + len(header) * _line_height(head_size)), notes, 15, fill=_MUTED)
    for top, cells, title_h, pic_h in layout:
        for i, cell in enumerate(cells):
            if cell is None:
                continue
            _, pic, title_lines, cap_lines = cell
            x = _MARGIN + i * (tp + _GAP)
            _write(draw, (x, top), title_lines, tile_title, bold=True)
            page.paste(Image.fromarray(pic), (x, top + title_h + 4))
            _write(draw, (x, top + title_h + 4 + pic_h + 6), cap_lines, tile_cap, fill=_MUTED)

    _write(draw, (_MARGIN, y), scale, 15, fill=_MUTED)
    page.paste(Image.fromarray(colour_bar(style.colormap, bar_w)), (_MARGIN, bar_y))
    for value in (0.0, 0.5, 1.0):
        label, font = _text(f"{value:g}", 13)
        tx = _MARGIN + value * (bar_w - 1) - font.getlength(label) * value
        draw.text((round(tx), bar_y + 22), label, font=font, fill=_MUTED)
    return np.asarray(page)


def panel_slide(tile: Tile, *, style: SheetStyle = SheetStyle(tile_px=880)) -> np.ndarray:
    """One panel at slide size (``style.tile_px`` wide, 880 by default): its title as the page
    title, the picture with boxes, its caption, the colour bar and its scale.
    """
    return sheet([[replace(tile, title="")]], title=tile.title, style=style)
