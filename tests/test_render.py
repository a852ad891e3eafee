import io

import numpy as np
import plotly.graph_objects as go
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


def test_image_figure_has_one_trace_per_class_and_legend():
    boxes = [Box("crazing", 0, 0, 5, 5), Box("patches", 1, 1, 4, 4), Box("crazing", 6, 6, 9, 9)]
    fig = render.image_figure(np.zeros((10, 10), np.uint8), boxes, title="raw")
    assert isinstance(fig.data[0], go.Image)
    names = [t.name for t in fig.data[1:]]
    assert names == ["GT crazing (2)", "GT patches (1)"]
    assert fig.layout.title.text == "raw"
    # box edges sit on pixel boundaries: x0 = 0 is drawn at -0.5
    assert fig.data[1].x[0] == -0.5 and fig.data[1].x[1] == 4.5


def test_heatmap_figure_traces_and_downsampling():
    image = np.zeros((40, 60), np.uint8)
    cam = np.zeros((40, 60), np.float32)
    cam[10:20, 30:40] = 1
    fig = render.heatmap_figure(
        image,
        cam,
        alpha=0.3,
        colormap="turbo",
        title="Grad-CAM",
        gt_boxes=[Box("scratches", 30, 10, 40, 20)],
        cam_boxes=[(30, 10, 40, 20, 1.0)],
        cam_box_labels=["IoU 1.00"],
        max_side=20,
    )
    kinds = [type(t).__name__ for t in fig.data]
    assert kinds == ["Image", "Heatmap", "Scatter", "Scatter", "Scatter"]
    heat = fig.data[1]
    assert heat.opacity == 0.3 and np.asarray(heat.z).shape == (13, 20)
    assert heat.dx == pytest.approx(3.0)
    assert fig.data[4].text == ("IoU 1.00",)
    assert heat.colorscale[-1][1] == render.colorscale("turbo")[-1][1]


def test_colorscale_matches_colorize():
    scale = render.colorscale("jet", steps=2)
    top = render.colorize(np.ones((1, 1)), "jet")[0, 0]
    assert scale[-1] == [1.0, f"rgb({top[0]},{top[1]},{top[2]})"]


def test_probability_figure_and_captions():
    fig = render.probability_figure(["a", "b"], [0.25, 0.75], highlight=["b"])
    assert list(fig.data[0].y) == ["a", "b"] and fig.data[0].text == ("0.25", "0.75")
    with pytest.raises(ValueError, match="2 classes for 1 scores"):
        render.probability_figure(["a", "b"], [0.5])
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


def _summary():
    import pandas as pd

    rows = []
    for method, layer, base in (
        ("gradcam", "layer3", False),
        ("baseline:centre", "-", True),
        ("baseline:uniform", "-", True),
    ):
        for cls, value, n in (("crazing", 0.9, 4), ("scratches", 0.2, 3), ("all", 0.6, 7)):
            score = value if not base else 0.5
            rows.append(
                {"method": method, "layer": layer, "class": cls, "baseline": base,
                 "n": n, "n_rows": n, "pointing": score, "energy": score / 2}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_comparison_table_puts_baselines_right_and_counts_first():
    table = render.comparison_table(_summary(), "pointing")
    assert list(table.columns) == ["n", "gradcam", "baseline:centre", "baseline:uniform"]
    assert list(table.index) == ["crazing", "scratches", "all"]
    assert table.loc["crazing", "gradcam"] == 0.9 and table.loc["all", "n"] == 7
    with pytest.raises(KeyError, match="Unknown metric 'speed'"):
        render.comparison_table(_summary(), "speed")


def test_styled_comparison_marks_cells_that_beat_every_baseline():
    import re

    html = render.styled_comparison(render.comparison_table(_summary(), "pointing")).to_html()
    green = re.search(r"([^{}]*)\{\s*background-color: #d1fae5", html).group(1)
    # crazing (row 0) and all (row 2) beat 0.5 in the gradcam column (col 1); scratches does not
    assert sorted(re.findall(r"row(\d)_col(\d)", green)) == [("0", "1"), ("2", "1")]
    assert "0.900" in html and "font-style: italic" in html


def test_metric_bars_one_trace_per_method_baselines_hatched():
    fig = render.metric_bars(_summary(), "energy")
    assert [t.name for t in fig.data] == ["gradcam", "baseline:centre", "baseline:uniform"]
    assert fig.data[1].marker.pattern.shape == "/" and fig.data[0].marker.pattern.shape is None
    assert list(fig.data[0].y) == [0.45, 0.1, 0.3]


def test_confusion_figure_checks_its_shape():
    fig = render.confusion_figure(["a", "b"], [[3, 1], [0, 4]])
    assert fig.data[0].z.tolist() == [[3, 1], [0, 4]]
    with pytest.raises(ValueError, match=r"confusion matrix is \(1, 2\) for 2 classes"):
        render.confusion_figure(["a", "b"], [[1, 2]])
