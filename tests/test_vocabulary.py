import numpy as np
import pytest

from cam_core import evaluation as evaluate
from cam_core import metrics
from cam_core import vocabulary as V
from cam_core.data import Box
from cam_core.methods import METHODS


def test_every_summary_and_panel_key_has_words():
    keys = [*evaluate.METRICS, "maxboxacc_v2", "pxap"]
    panel = metrics.localization_scores(np.ones((8, 8), np.float32), [Box("a", 0, 0, 4, 4)])
    for key in [*keys, *panel]:
        info = V.metric_info(key)
        assert info.key == key and info.name and info.short
        # one sentence that says the range and the direction
        assert info.tooltip.endswith(".") and "higher is better" in info.tooltip
    assert V.METRICS["maxboxacc_v2"].level == "dataset" and V.METRICS["pxap"].level == "dataset"
    assert set(V.MAP_METRICS) == set(evaluate.METRICS)
    assert V.metric_name("pointing_tol") == "Pointing game (15 px tolerance)"


def test_box_iou_at_threshold_and_unknown_keys():
    info = V.metric_info("box_iou@0.3")
    assert info.name == "Best map-box IoU at τ = 0.3" and info.level == "map"
    assert "0.3 × its maximum" in info.tooltip
    with pytest.raises(KeyError, match=r"Unknown metric 'speed'.*pointing"):
        V.metric_name("speed")
    with pytest.raises(KeyError, match="'x' after '@' is not a number"):
        V.metric_info("box_iou@x")


def test_baseline_ids_names_and_evaluation_agree():
    assert V.baseline_id("centre") == "baseline:centre"
    assert set(V.BASELINE_IDS) == set(evaluate.BASELINES)
    assert V.is_baseline("baseline:gaussian") and not V.is_baseline("gradcam")
    assert [V.method_name(b) for b in V.BASELINE_IDS] == [
        "Centre point (baseline)",
        "Centred Gaussian (baseline)",
        "Uniform (baseline)",
    ]
    with pytest.raises(KeyError, match=r"Unknown baseline 'middle'.*centre"):
        V.baseline_id("middle")


def test_method_names_come_from_the_registry():
    assert V.method_name("gradcam") == "Grad-CAM"
    slow = next(n for n, s in METHODS.items() if s.slow)
    fast = next(n for n, s in METHODS.items() if not s.slow)
    assert V.method_name(slow, mark_slow=True) == METHODS[slow].label + " (slow)"
    assert V.method_name(fast, mark_slow=True) == METHODS[fast].label
    assert V.method_name("retired-cam") == "retired-cam"  # old results files still display


def test_column_names():
    assert V.column_name("gradcam @ layer3") == "Grad-CAM @ layer3"
    assert V.column_name("baseline:uniform") == "Uniform (baseline)"
    assert V.column_name("n") == "n (scored)"


def test_metric_headings_rename_only_metric_columns():
    import pandas as pd

    frame = pd.DataFrame([{"method": "Grad-CAM", "class": "a", "pointing_tol": True, "iou": 0.5}])
    renamed = frame.rename(columns=V.metric_heading)
    assert list(renamed.columns) == [
        "method",
        "class",
        "Pointing game (15 px tolerance)",
        "Pixel IoU at τ",
    ]


def test_row_headings_and_target_rules_have_words():
    assert V.row_heading("box_iou") == "Best map-box IoU"
    assert V.row_heading("iou") == "Pixel IoU at τ"
    assert V.row_heading("score") == "Model probability"
    assert V.row_heading("stem") == "Image" and V.row_heading("extra") == "extra"
    assert set(V.TARGET_RULE_NAMES) == set(evaluate.TARGET_RULES)
    assert V.target_rule_name("file-class") == "The file's class"
    assert V.target_rule_name("box-classes") == "Every class with boxes"
    assert V.target_rule_name("predicted") == "The predicted class"
