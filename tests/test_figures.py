import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from cam_core import figures, render
from cam_core.data import Box


def test_image_figure_has_one_trace_per_class_and_legend():
    boxes = [Box("crazing", 0, 0, 5, 5), Box("patches", 1, 1, 4, 4), Box("crazing", 6, 6, 9, 9)]
    fig = figures.image_figure(np.zeros((10, 10), np.uint8), boxes, title="raw")
    assert isinstance(fig.data[0], go.Image)
    names = [t.name for t in fig.data[1:] if t.showlegend is not False]
    assert names == ["GT crazing (2)", "GT patches (1)"]
    assert fig.layout.title.text == "raw"
    # box edges sit on pixel boundaries: x0 = 0 is drawn at -0.5
    crazing = _trace(fig, "GT crazing (2)")
    assert crazing.x[0] == -0.5 and crazing.x[1] == 4.5
    # a dark halo is drawn under every outline, before (below) the coloured lines
    halo = _trace(fig, "outline halo")
    assert list(fig.data).index(halo) < list(fig.data).index(crazing)
    assert halo.line.width > crazing.line.width and halo.line.color.startswith("rgba(0,0,0,")


def test_heatmap_figure_traces_and_downsampling():
    image = np.zeros((40, 60), np.uint8)
    cam = np.zeros((40, 60), np.float32)
    cam[10:20, 30:40] = 1
    fig = figures.heatmap_figure(
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
    assert kinds[:2] == ["Image", "Heatmap"] and set(kinds[2:]) == {"Scatter"}
    heat = fig.data[1]
    assert heat.opacity == 0.3 and np.asarray(heat.z).shape == (13, 20)
    assert heat.dx == pytest.approx(3.0)
    labels = [t for t in fig.data if getattr(t, "mode", None) == "text"]
    assert len(labels) == 1 and labels[0].text == ("IoU 1.00",)
    assert heat.colorscale[-1][1] == figures.colorscale("turbo")[-1][1]


def _trace(fig, name, legend=None):
    found = [
        t
        for t in fig.data
        if t.name == name and (legend is None or (t.showlegend is not False) == legend)
    ]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def _map_figure(cam_boxes, shape=(100, 200)):
    return figures.heatmap_figure(
        np.zeros(shape, np.uint8),
        np.zeros(shape, np.float32),
        cam_boxes=cam_boxes,
        cam_box_labels=[f"IoU 0.{i}" for i in range(len(cam_boxes))],
    )


def test_map_box_labels_stay_inside_the_image():
    # plotly drops text outside the axes: a label above a box at the top edge was not drawn, one
    # starting at a box near the right edge ran out of the image
    boxes = [(0, 0, 20, 10), (180, 40, 200, 60), (20, 50, 60, 70)]
    fig = _map_figure(boxes)
    text = next(t for t in fig.data if getattr(t, "mode", None) == "text")
    assert text.text == ("IoU 0.0", "IoU 0.1", "IoU 0.2")
    plates = render.label_rects((100, 200), boxes, list(text.text))
    for x, y, (x0, y0, x1, y1) in zip(text.x, text.y, plates, strict=True):
        assert x0 >= 0 and x1 <= 200 and y0 >= 0 and y1 <= 100  # the whole plate inside
        assert x == (x0 + x1) / 2 - 0.5 and y == (y0 + y1) / 2 - 0.5
    assert text.cliponaxis is False


def test_map_box_legend_swatch_reads_on_a_white_page():
    fig = _map_figure([(10, 10, 30, 30)])
    entry = _trace(fig, "map boxes (1)", legend=True)
    assert entry.marker.color == "rgb(255,255,255)" and entry.marker.line.color == "rgb(0,0,0)"
    assert _trace(fig, "map boxes (1)", legend=False).line.color == "rgb(255,255,255)"


def test_colorscale_matches_colorize():
    scale = figures.colorscale("jet", steps=2)
    top = render.colorize(np.ones((1, 1)), "jet")[0, 0]
    assert scale[-1] == [1.0, f"rgb({top[0]},{top[1]},{top[2]})"]


def test_confusion_figure_checks_its_shape():
    fig = figures.confusion_figure(["a", "b"], [[3, 1], [0, 4]])
    assert fig.data[0].z.tolist() == [[3, 1], [0, 4]]
    with pytest.raises(ValueError, match=r"confusion matrix is \(1, 2\) for 2 classes"):
        figures.confusion_figure(["a", "b"], [[1, 2]])


def test_probability_figure():
    fig = figures.probability_figure(["a", "b"], [0.25, 0.75], highlight=["b"])
    assert list(fig.data[0].y) == ["a", "b"] and fig.data[0].text == ("0.25", "0.75")
    with pytest.raises(ValueError, match="2 classes for 1 scores"):
        figures.probability_figure(["a", "b"], [0.5])


def _summary():
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
    table = figures.comparison_table(_summary(), "pointing")
    assert list(table.columns) == ["n", "gradcam", "baseline:centre", "baseline:uniform"]
    assert list(table.index) == ["crazing", "scratches", "all"]
    assert table.loc["crazing", "gradcam"] == 0.9 and table.loc["all", "n"] == 7
    with pytest.raises(KeyError, match="Unknown metric 'speed'"):
        figures.comparison_table(_summary(), "speed")


def test_styled_comparison_marks_cells_that_beat_every_baseline():
    html = figures.styled_comparison(figures.comparison_table(_summary(), "pointing")).to_html()
    green = re.search(r"([^{}]*)\{\s*background-color: #d1fae5", html).group(1)
    # crazing (row 0) and all (row 2) beat 0.5 in the gradcam column (col 1); scratches does not
    assert sorted(re.findall(r"row(\d)_col(\d)", green)) == [("0", "1"), ("2", "1")]
    assert "0.900" in html and "font-style: italic" in html
    # a person reads names; the ids stay in comparison_table (the CSV's keys)
    assert "Grad-CAM" in html and "Centre point (baseline)" in html and "n (scored)" in html
    assert "baseline:centre" not in html and ">gradcam<" not in html


def test_metric_bars_one_trace_per_method_baselines_hatched():
    fig = figures.metric_bars(_summary(), "energy")
    # display names, not ids; the title gives n and the axis the metric's name
    assert [t.name for t in fig.data] == [
        "Grad-CAM",
        "Centre point (baseline)",
        "Uniform (baseline)",
    ]
    assert (
        "(n = 7)" in fig.layout.title.text and fig.layout.yaxis.title.text == "Energy in the boxes"
    )
    assert fig.data[1].marker.pattern.shape == "/" and fig.data[0].marker.pattern.shape is None
    assert list(fig.data[0].y) == [0.45, 0.1, 0.3]


def test_map_box_labels_never_overlap():
    # small map boxes side by side on a busy crazing map: their labels piled up at the corners
    boxes = [(40, 40, 44, 44), (45, 40, 49, 44), (41, 46, 45, 50), (100, 60, 104, 64)]
    fig = _map_figure(boxes)
    text = next(t for t in fig.data if getattr(t, "mode", None) == "text")
    plates = [r for r in render.label_rects((100, 200), boxes, list(_labels(4))) if r]
    assert len(text.text) == len(plates) >= 3
    for i, a in enumerate(plates):
        for b in plates[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def _labels(n):
    return [f"IoU 0.{i}" for i in range(n)]
