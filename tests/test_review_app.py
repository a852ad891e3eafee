"""The Review page driven headlessly (AppTest) on the synthetic demo: no evaluation yet, then
one evaluation's quadrants, gallery → Explore, bias view, annotation QA export and the diff."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
DEMO = ROOT / "models" / "demo-synthetic" / "model.pt"

pytestmark = [
    pytest.mark.skipif(not DEMO.is_file(), reason=f"bundled demo model missing ({DEMO})"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def _new_app(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr("cam_core.data.find_neu_det", lambda: None)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["model_choice"] = "demo-synthetic"
    return at


def _ok(at):
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.fixture(scope="module")
def evaluated():
    """One app session for the module: the demo's 18 images evaluated (Grad-CAM) once; each
    test starts on the Review page (widget choices of earlier tests may remain)."""
    from pages._legacy import apptest_uses_navigation_only

    with pytest.MonkeyPatch.context() as mp:
        apptest_uses_navigation_only(mp)
        at = _new_app(mp)
        _ok(at.switch_page("pages/review.py").run())  # before any evaluation
        at.session_state["_test_first_view"] = (at.title[0].value, [i.value for i in at.info])
        _ok(at.switch_page("pages/evaluate.py").run())
        next(n for n in at.number_input if n.label == "Images (0 = all)").set_value(18)
        next(b for b in at.button if b.label == "Run evaluation").click()
        _ok(at.run())
        yield at


@pytest.fixture()
def reviewed(evaluated):
    return _ok(evaluated.switch_page("pages/review.py").run())


def _frame(at, column):
    return next(d.value for d in at.dataframe if column in getattr(d.value, "columns", ()))


def test_without_an_evaluation_the_page_says_how_to_get_one(evaluated):
    title, infos = evaluated.session_state["_test_first_view"]
    assert title == "Review"
    assert any("Run evaluation" in i and "Evaluate" in i for i in infos), infos


def test_quadrants_bias_and_confusion_of_the_evaluated_split(reviewed):
    at = reviewed
    assert not [e.value for e in at.error]
    counts = _frame(at, "Correct class, map off the defect")
    assert list(counts.columns[1:5]) == [
        "Correct class, map off the defect",
        "Correct class, map on the defect",
        "Wrong class, map on the defect",
        "Wrong class, map off the defect",
    ]
    total = counts.set_index("Class").loc["all"]
    assert total["Scored"] + total["Unscored"] == 18  # one Grad-CAM row per demo image
    assert total.iloc[:4].sum() == total["Scored"]
    bias = _frame(at, "in_box_prior")
    assert len(bias) == 6 and bias["n"].sum() == 18
    assert "flagged" in bias.columns
    charts = at.get("plotly_chart")
    assert len(charts) >= 2  # the evaluated split's confusion matrix and a bias map
    assert any("Evaluated split" in c.proto.spec for c in charts)


def test_a_gallery_image_opens_in_explore(reviewed):
    at = reviewed
    # pick the non-empty quadrant with the most rows
    counts = _frame(at, "Correct class, map off the defect").set_index("Class").loc["all"]
    names = {
        "Correct class, map off the defect": "correct-miss",
        "Correct class, map on the defect": "correct-hit",
        "Wrong class, map on the defect": "wrong-hit",
        "Wrong class, map off the defect": "wrong-miss",
    }
    best = max(names, key=lambda n: counts[n])
    at.selectbox(key="review_quadrant").set_value(names[best])
    _ok(at.run())
    openers = [b for b in at.button if b.label == "Open in Explore"]
    assert 1 <= len(openers) <= 8
    shown = [c.caption for i in at.get("image") for c in i.proto.imgs]
    assert len(shown) == len(openers) and all(" · p=" in c for c in shown), shown
    openers[0].click()
    _ok(at.run())
    assert at.title[0].value == "Explore"
    assert any(c.value.startswith("Opened from Review, ") for c in at.caption)


def test_misclassified_only_limits_the_gallery_to_wrong_predictions(reviewed):
    at = reviewed
    at.toggle(key="review_wrong_only").set_value(True)
    _ok(at.run())
    assert at.selectbox(key="review_quadrant").options == [
        "Wrong class, map on the defect",
        "Wrong class, map off the defect",
    ]


def test_annotation_qa_exports_a_zip_of_voc_xml(reviewed):
    at = reviewed
    at.slider(key="review_conf").set_value(0.5)
    _ok(at.run())
    qa = _frame(at, "suspicion")
    if qa.empty:
        pytest.skip("the demo model has no confident correct row off its boxes at 0.5")
    next(b for b in at.button if b.key == "qa_prepare").click()
    _ok(at.run())
    data = at.session_state["review_qa_zip"]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert names and all(n.startswith("annotations/") and n.endswith(".xml") for n in names)
        assert b"<annotation>" in zf.read(names[0])


def test_release_diff_evaluates_another_model_on_the_same_images(reviewed):
    at = reviewed
    others = at.selectbox(key="review_b").options
    assert others, "another bundled model should be offered as release B"
    next(b for b in at.button if b.key == "diff_run").click()
    _ok(at.run())
    assert not [e.value for e in at.error], [e.value for e in at.error]
    table = _frame(at, "B − A")
    assert {"Accuracy", "Pointing game (strict)", "Energy in the boxes"} <= set(table["Figure"])
    assert set(table.loc[table["Class"] == "all", "Images"]) == {18}
    assert any(c.value.endswith("rows changed, worse first.") for c in at.caption)
