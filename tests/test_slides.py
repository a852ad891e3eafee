import numpy as np
import pytest
from PIL import ImageFont

from cam_core import render, slides
from cam_core.data import Box
from cam_core.explain import CamResult


def _image():
    return (np.random.default_rng(0).random((200, 200)) * 255).astype(np.uint8)


def _cam():
    yy, xx = np.mgrid[0:200, 0:200]
    return np.exp(-((xx - 100) ** 2 + (yy - 80) ** 2) / 800.0).astype(np.float32)


def _tile(title="crazing_3 · crazing (p = 0.93) · Grad-CAM @ layer3"):
    return slides.Tile(
        _image(),
        _cam(),
        title,
        "pointing hit ✓ · energy 0.52 · IoU 0.41",
        (Box("inclusion", 60, 40, 150, 120),),
        ((185, 0, 200, 20, 0.5),),
        ("IoU 0.10",),
    )


def _bar_row(page, colormap, width):
    """The first row of ``page`` that holds the colour bar exactly (at the left margin)."""
    bar = slides.colour_bar(colormap, width)[0]
    for r in range(page.shape[0]):
        if np.array_equal(page[r, 24 : 24 + width], bar):
            return r
    return None


def test_panel_slide_is_slide_sized_with_title_caption_and_colour_bar():
    page = slides.panel_slide(_tile())
    w = page.shape[1]
    assert w >= 800 and page.dtype == np.uint8
    # the title is written above the picture: dark text pixels in the top band
    assert (page[24:60, 24 : w // 2] < 100).all(axis=2).sum() > 200
    # the picture: 880 px wide, the map's colours in it
    assert (page[100:900, 24:904].std(axis=(0, 1)) > 20).all()
    # the colour bar spans the colormap: its ends are the colormap's ends
    row = _bar_row(page, "jet", 512)
    assert row is not None and row > 900
    lut = render.colormap_lut("jet")
    assert tuple(page[row, 24]) == tuple(lut[0]) and tuple(page[row, 24 + 511]) == tuple(lut[255])
    assert len({tuple(p) for p in page[row, 24 : 24 + 512]}) > 200
    # the caption and the scale's words are written below the picture
    assert (page[row - 40 : row - 2, 24:400] < 150).all(axis=2).any()


def test_sheet_lays_out_rows_and_columns_with_one_colour_bar():
    gt = slides.gt_tile(_image(), (Box("crazing", 0, 0, 40, 30),), title="crazing_3 · GT")
    style = slides.SheetStyle(colormap="viridis", tile_px=250, scale_title="x")
    page = slides.sheet([[gt, _tile(), _tile()], [None, _tile()]], title="sheet", style=style)
    assert page.shape[1] == 2 * 24 + 3 * 250 + 2 * 16  # wider than MIN_SHEET_PX
    assert _bar_row(page, "viridis", 512) is not None and _bar_row(page, "jet", 512) is None
    # the empty cell (row 2, column 1) stays white
    bottom = page.shape[0] - 120
    assert (page[bottom - 150 : bottom, 24:224] == 255).all()
    with pytest.raises(ValueError, match="at least one tile"):
        slides.sheet([[None]], title="empty")
    with pytest.raises(ValueError, match="tile_px must be >= 64"):
        slides.SheetStyle(tile_px=10)


def test_map_tile_titles_and_shared_scale():
    result = CamResult(0, 1, "patches", "gradcam", "layer3", _cam(), 2.0)
    tile = slides.map_tile(_image(), result, p=0.03, image_name="crazing_3", gain=0.5)
    assert tile.title.startswith("crazing_3 · patches (p = 0.03) · Grad-CAM @ layer3")
    assert "low probability" in tile.title
    assert tile.cam.max() == pytest.approx(0.5, abs=1e-3)


def test_marks_are_spelled_out_when_the_font_lacks_them(monkeypatch):
    monkeypatch.setattr(
        slides, "_font", lambda size, bold=False: (ImageFont.load_default(size), False)
    )
    assert slides._wrap("pointing hit ✓ · τ = 0.5", 14, 500) == ["pointing hit (hit) · tau = 0.5"]
    assert slides.panel_slide(_tile()).shape[1] >= 800


def test_a_one_column_sheet_has_room_for_its_title_and_scale():
    """QA walk: Compare's one-class grid was 308 px wide; its title ("…neu-boxsup-patch-resnet…")
    and colour-scale label ran off the right edge. The page is now >= 800 px, every text is
    wrapped inside its margins (a word too long for a line is split)."""
    title = "scratches_3.png · neu-boxsup-patch-resnet-with-a-long-name · layer layer3: methods"
    style = slides.SheetStyle(tile_px=260)
    page = slides.sheet([[_tile()], [_tile()]], title=title, style=style)
    width = page.shape[1]
    assert width >= slides.MIN_SHEET_PX
    font, _ = slides._font(26, True)
    assert font.getlength(title.split(" · ")[1]) <= width - 2 * 24  # the model's name fits
    lines = slides._wrap(title, 26, width - 2 * 24, bold=True)
    assert all(font.getlength(line) <= width - 2 * 24 for line in lines)
    assert " ".join(lines) == title  # wrapped, nothing dropped
    assert (page[:, width - 20 :] == 255).all()  # nothing runs into the right margin
    narrow = slides._wrap("x" * 200, 15, 100)
    assert "".join(narrow) == "x" * 200 and len(narrow) > 1
