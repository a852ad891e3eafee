import io

import numpy as np
import pytest

from cam_core import render
from cam_core.data import Box
from cam_core.explain import CamResult


def _ramp(h=20, w=30):
    return np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))


def test_to_rgb_replicates_gray_and_rejects_other_dtypes():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = render.to_rgb(gray)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == gray).all() and (rgb[..., 2] == gray).all()
    with pytest.raises(ValueError, match="uint8"):
        render.to_rgb(gray.astype(np.float32))


def test_colorize_is_rgb_ordered_low_blue_high_red():
    heat = render.colorize(_ramp(), "jet")
    assert heat.shape == (20, 30, 3) and heat.dtype == np.uint8
    low, high = heat[0, 0], heat[0, -1]
    assert low[2] > 100 and low[0] < 50  # jet's low end is blue (RGB order)
    assert high[0] > 100 and high[2] < 50  # jet's high end is red


def test_colorize_unknown_colormap_lists_valid():
    with pytest.raises(KeyError, match=r"Unknown colormap 'rainbowz'.*jet"):
        render.colorize(_ramp(), "rainbowz")


def test_overlay_shape_dtype_and_alpha_extremes():
    image = np.full((20, 30), 100, np.uint8)
    cam = _ramp()
    assert (render.overlay(image, cam, alpha=0.0) == 100).all()
    full = render.overlay(image, cam, alpha=1.0, colormap="viridis")
    assert (full == render.colorize(cam, "viridis")).all()
    half = render.overlay(image, cam, alpha=0.5)
    assert half.shape == (20, 30, 3) and half.dtype == np.uint8
    expected = np.rint(0.5 * 100 + 0.5 * render.colorize(cam).astype(np.float32))
    assert np.abs(half.astype(int) - expected.astype(int)).max() <= 1


def test_overlay_rejects_mismatched_map_and_bad_alpha():
    with pytest.raises(ValueError, match=r"map is \(5, 5\) but the image is \(20, 30\)"):
        render.overlay(np.zeros((20, 30), np.uint8), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="alpha must be in"):
        render.overlay(np.zeros((20, 30), np.uint8), _ramp(), alpha=1.5)
    with pytest.raises(ValueError, match="NaN"):
        render.overlay(np.zeros((2, 2), np.uint8), np.array([[np.nan, 0], [0, 0]]))


def test_draw_boxes_outlines_exactly_the_inner_border_pixels():
    image = np.zeros((40, 50), np.uint8)
    box = Box("crazing", 10, 5, 20, 15)  # columns 10..19, rows 5..14
    out = render.draw_boxes(image, [box], thickness=2)
    colour = render.class_colour("crazing")
    painted = (out != 0).any(axis=2)
    expected = np.zeros((40, 50), bool)
    expected[5:15, 10:20] = True
    expected[7:13, 12:18] = False
    assert (painted == expected).all()
    assert tuple(out[5, 10]) == colour and tuple(out[14, 19]) == colour
    assert (image == 0).all()  # input untouched


def test_draw_boxes_tuple_boxes_clip_and_default_white():
    out = render.draw_boxes(np.zeros((10, 10), np.uint8), [(-5, -5, 3, 3, 0.9)], thickness=1)
    assert tuple(out[0, 0]) == render.CAM_BOX_COLOUR
    assert tuple(out[2, 2]) == render.CAM_BOX_COLOUR and tuple(out[1, 1]) == (0, 0, 0)
    assert not out[3:, 3:].any()
    with pytest.raises(ValueError, match="2 labels for 1 boxes"):
        render.draw_boxes(np.zeros((10, 10), np.uint8), [(0, 0, 3, 3)], labels=["a", "b"])


def test_class_colours_are_distinct_and_stable():
    colours = [render.class_colour(c) for c in render.CLASS_COLOURS]
    assert len(set(colours)) == len(colours)
    assert render.class_colour("weld") == render.class_colour("weld")


def test_thumbnail_rescales_boxes():
    image = np.zeros((200, 100), np.uint8)
    thumb = render.thumbnail(image, [Box("patches", 0, 100, 100, 200)], side=50)
    assert thumb.shape == (50, 25, 3)
    assert tuple(thumb[25, 0]) == render.class_colour("patches")
    assert not thumb[:24].any()


def test_png_and_npy_round_trip():
    from PIL import Image

    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    back = np.asarray(Image.open(io.BytesIO(render.png_bytes(rgb))).convert("RGB"))
    assert (back == rgb).all()
    cam = _ramp(4, 5)
    assert np.array_equal(np.load(io.BytesIO(render.npy_bytes(cam))), cam)


def test_scores_caption():
    cap = render.scores_caption({"pointing": True, "energy": 0.5, "iou": None, "box_iou": 0.25})
    assert cap == "pointing hit ✓ · energy 0.50 · IoU – · box IoU 0.25"
    assert "not scored" in render.scores_caption({"pointing": None, "energy": None})

    # A map with no positive evidence (strength 0) is blank; the caption says so, scores kept.
    def result(strength):
        return CamResult(0, 0, "a", "gradcam", "head", np.zeros((4, 4), np.float32), strength)

    scores = {"pointing": False, "energy": 0.2}
    blank = render.scores_caption(scores, result(0.0).blank)
    assert blank.startswith("blank map: no positive evidence") and "energy 0.20" in blank
    assert "blank" not in render.scores_caption(scores, result(0.4).blank)
    assert "blank" not in render.scores_caption(scores, result(None).blank)


def test_panel_image_draws_gt_and_map_boxes():
    image = np.zeros((30, 30), np.uint8)
    cam = np.zeros((30, 30), np.float32)
    out = render.panel_image(
        image,
        cam,
        alpha=0.0,
        gt_boxes=[Box("inclusion", 0, 0, 10, 10)],
        cam_boxes=[(20, 20, 30, 30)],
    )
    assert tuple(out[0, 0]) == render.class_colour("inclusion")
    assert tuple(out[29, 29]) == render.CAM_BOX_COLOUR
    assert tuple(out[15, 15]) == (0, 0, 0)


def _luminance(rgb):
    c = np.asarray(rgb, dtype=float) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def _contrast(a, b):
    la, lb = _luminance(a), _luminance(b)
    return (np.maximum(la, lb) + 0.05) / (np.minimum(la, lb) + 0.05)


@pytest.mark.parametrize("colormap", sorted(render.COLORMAPS))
def test_every_box_colour_stands_out_on_every_colour_of_the_colormap(colormap):
    # inclusion's sky blue vanished on jet (contrast ~1:1, same hue): every colormap holds colours
    # close to each class colour, so the outline (with its dark halo) must keep, against whatever
    # colour of the map lies under it, a luminance contrast of 3:1 (WCAG, graphics), or of 2.5:1
    # with a clearly different colour (CIEDE2000 >= 15)
    from skimage.color import deltaE_ciede2000, rgb2lab

    lut = render.colormap_lut(colormap)
    assert lut.shape == (256, 3)
    lut_lab = rgb2lab(lut[None].astype(float) / 255)[0]
    boxes = [Box(c, 4, 4, 12, 12) for c in render.CLASS_COLOURS] + [(4, 4, 12, 12)]
    for box in boxes:
        stroke = render.class_colour(box.cls) if isinstance(box, Box) else render.CAM_BOX_COLOUR
        stroke_lab = rgb2lab(np.array([[stroke]], float) / 255)[0]
        hue_gap = deltaE_ciede2000(np.repeat(stroke_lab, len(lut), axis=0), lut_lab)
        for background, gap in zip(lut, hue_gap, strict=True):
            canvas = np.tile(background, (16, 16, 1))
            drawn = render.draw_boxes(canvas, [box], thickness=2)
            across = drawn[8, :8]  # a row through the left edge: outside, edge, inside
            contrast = _contrast(across, background).max()
            assert contrast >= 3.0 or (contrast >= 2.5 and gap >= 15), (box, background, contrast)


def _label_pixels(image, box, text="IoU 0.52"):
    """How many pixels the label changes, and the (height, width) they span."""
    plain = render.draw_boxes(image, [box])
    changed = (plain != render.draw_boxes(image, [box], labels=[text])).any(axis=2)
    rows, cols = np.nonzero(changed)
    return int(changed.sum()), (int(np.ptp(rows)) + 1, int(np.ptp(cols)) + 1)


def test_map_box_labels_at_the_edges_are_drawn_whole():
    image = np.full((100, 200), 128, np.uint8)
    count, extent = _label_pixels(image, (60, 40, 80, 60))  # room above and to the right
    assert count > 50
    assert _label_pixels(image, (185, 40, 200, 60)) == (count, extent)  # right edge: shifted left
    assert _label_pixels(image, (60, 0, 80, 20)) == (count, extent)  # top edge: inside the box
    assert _label_pixels(image, (170, 0, 200, 100))[1] == extent  # both (crosses its left edge)


def test_map_box_labels_never_overlap():
    """QA walk: "IoU 0.00" labels of neighbouring map boxes were written over each other."""
    image = np.full((120, 240, 3), 128, np.uint8)
    boxes = [(40, 50, 90, 80), (50, 52, 100, 85), (45, 51, 95, 82)]  # labels at the same spot
    labels = ["IoU 0.00", "IoU 0.12", "IoU 0.34"]
    rects = render.label_rects(image.shape, boxes, labels)
    placed = [r for r in rects if r is not None]
    assert len(placed) >= 2
    for i, a in enumerate(placed):
        assert a[0] >= 0 and a[2] <= 240 and a[1] >= 0 and a[3] <= 120  # inside the image
        for b in placed[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    drawn = render.draw_boxes(image, boxes, labels=labels)
    for r in placed:  # each placed plate is drawn where label_rects says
        plate = drawn[r[1] : r[3], r[0] : r[2]]
        assert (plate == render.LABEL_PLATE).all(axis=2).mean() > 0.5


def test_map_box_labels_are_crisp_text_on_a_plate():
    """QA walk: the slide's "map 0.73" looked ghosted (a blurred dark halo stroke around the
    text). A label is a solid plate with text on it: nothing it draws bleeds into the picture."""
    image = np.zeros((100, 200, 3), np.uint8)
    image[...] = (200, 40, 40)
    box = (60, 40, 120, 80)
    plain = render.draw_boxes(image, [box])
    drawn = render.draw_boxes(image, [box], labels=["map 0.73"])
    (rect,) = render.label_rects(image.shape, [box], ["map 0.73"])
    changed = (plain != drawn).any(axis=2)
    outside = changed.copy()
    outside[rect[1] : rect[3], rect[0] : rect[2]] = False
    assert changed.any() and not outside.any()  # only the plate changes
    text = drawn[rect[1] : rect[3], rect[0] : rect[2]]
    assert (text[..., 0] == text[..., 1]).all() and (text[..., 1] == text[..., 2]).all()
    assert text.min() == render.LABEL_PLATE[0] and text.max() == 255  # white on the plate


def test_legend_swatches_have_a_dark_edge_and_map_boxes_have_one():
    html = render.legend_markdown(["inclusion", "pitted_surface"], map_boxes=True)
    swatches = html.count("border:1px solid #374151")
    assert swatches == 3 and "background:rgb(255,255,255)" in html
    assert "boxes from the map" in html and "GT inclusion" in html
    assert "boxes from the map" not in render.legend_markdown(["inclusion"])


def _result(cls, method, strength, layer="layer4"):
    return CamResult(0, cls, f"c{cls}", method, layer, np.ones((4, 4), np.float32), strength)


def test_shared_gains_scale_classes_against_the_strongest_of_their_method():
    results = [
        _result(0, "gradcam", 2.0),
        _result(1, "gradcam", 0.5),
        _result(2, "gradcam", None),
        _result(0, "eigencam", 10.0),
        _result(1, "eigencam", 0.0),
        _result(0, "gradcam", 8.0, layer="layer3"),
    ]
    assert render.shared_gains(results) == (1.0, 0.25, None, 1.0, 0.0, 1.0)
    assert render.shared_gains([_result(0, "gradcam", 0.0)]) == (None,)
    cam = _ramp()
    assert render.shared_scale(cam, 0.25).max() == pytest.approx(0.25)
    assert np.array_equal(render.shared_scale(cam, None), cam)
    with pytest.raises(ValueError, match="gain must be in"):
        render.shared_scale(cam, 1.5)


def test_panel_title_and_low_probability_note():
    title = render.panel_title("crazing_3", "crazing", 0.93, "gradcam", "layer3")
    assert title == "crazing_3 · crazing (p = 0.93) · Grad-CAM @ layer3"
    low = render.panel_title("crazing_3", "patches", 0.03, "baseline:centre")
    assert low == "crazing_3 · patches (p = 0.03) · Centre point (baseline) · " + (
        "low probability (p = 0.03 < 0.1)"
    )
    assert render.probability_note(0.5) == ""
    with pytest.raises(ValueError, match="probability must be in"):
        render.probability_note(1.2)
