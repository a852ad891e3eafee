"""cam_core.evaluation.worst: the rows a person should look at first."""

import pandas as pd
import pytest

from cam_core.evaluation import worst


def test_worst_cases_skip_baselines_and_errors():
    rows = pd.DataFrame(
        [
            {
                "stem": "a",
                "class": "c",
                "method": "gradcam",
                "layer": "l",
                "pointing": 1.0,
                "energy": 0.9,
                "iou": 0.5,
                "score": 0.9,
                "correct": True,
                "error": None,
            },
            {
                "stem": "b",
                "class": "c",
                "method": "gradcam",
                "layer": "l",
                "pointing": 0.0,
                "energy": 0.1,
                "iou": 0.0,
                "score": 0.8,
                "correct": True,
                "error": None,
            },
            {
                "stem": "c",
                "class": "c",
                "method": "baseline:uniform",
                "layer": "-",
                "pointing": 0.0,
                "energy": 0.0,
                "iou": 0.0,
                "score": None,
                "correct": None,
                "error": None,
            },
            {
                "stem": "d",
                "class": "c",
                "method": "gradcam",
                "layer": "l",
                "pointing": None,
                "energy": None,
                "iou": None,
                "score": None,
                "correct": None,
                "error": "boom",
            },
        ]
    )
    found = worst.worst_cases(rows, "energy", n=5)
    assert list(found["stem"]) == ["b", "a"]
    assert list(found.columns[:5]) == ["stem", "class", "method", "layer", "energy"]
    with pytest.raises(KeyError, match="Unknown metric 'nope'"):
        worst.worst_cases(rows, "nope")
    # dataset-level metrics have no per-row value: ranked by the per-row figure behind them
    rows = rows.assign(box_iou=[0.9, 0.1, 0.0, 0.5], iou=[0.2, 0.6, 0.0, 0.5])
    assert list(worst.worst_cases(rows, "maxboxacc_v2")["stem"]) == ["b", "a"]
    assert list(worst.worst_cases(rows, "pxap")["stem"]) == ["a", "b"]
    assert worst.ranking_figure("maxboxacc_v2") == "box_iou"
    assert worst.ranking_figure("energy") == "energy"


def test_every_dataset_metric_ranks_by_a_per_row_figure():
    from cam_core.evaluation.config import METRICS as ROW_METRICS
    from cam_core.vocabulary import DATASET_METRICS, MAP_METRICS

    assert set(worst.ROW_FIGURE) == set(DATASET_METRICS)
    assert all(worst.ranking_figure(m) in ROW_METRICS for m in (*DATASET_METRICS, *MAP_METRICS))


def test_the_shown_worst_table_names_methods_and_columns_and_keeps_row_order():
    from cam_core.figures import worst_table

    rows = pd.DataFrame(
        [
            {"stem": "a", "class": "c", "method": "gradcam++", "layer": "l", "box_iou": 0.1},
            {"stem": "b", "class": "c", "method": "gradcam", "layer": "l", "box_iou": 0.2},
        ]
    ).assign(iou=[0.3, 0.4], score=[0.9, 0.8], correct=[True, False])
    shown = worst_table(rows)
    assert list(shown.columns) == [
        "Image",
        "Class",
        "Method",
        "Layer",
        "Best map-box IoU",
        "Pixel IoU at τ",
        "Model probability",
        "Prediction correct",
    ]
    assert list(shown["Method"]) == ["Grad-CAM++", "Grad-CAM"]
    assert list(shown["Image"]) == ["a", "b"] and list(rows["method"]) == ["gradcam++", "gradcam"]
