"""The Evaluate page's trust views (AppTest, synthetic demo): CI error bars, the paired
difference table, the box-size split, the verdict table with its rule, and the faithfulness /
sanity checkboxes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cam_core import verdict

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
DEMO = ROOT / "models" / "demo-synthetic" / "model.pt"

pytestmark = [
    pytest.mark.skipif(not DEMO.is_file(), reason=f"bundled demo model missing ({DEMO})"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture()
def evaluate_page(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr("cam_core.data.find_neu_det", lambda: None)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["model_choice"] = "demo-synthetic"
    _ok(at.run())
    return _ok(at.switch_page("pages/evaluate.py").run())


def _ok(at):
    assert not at.exception, [e.message for e in at.exception]
    return at


def _run(at, images: int, **boxes: bool):
    next(n for n in at.number_input if n.label == "Images (0 = all)").set_value(images)
    for label, on in boxes.items():
        next(c for c in at.checkbox if c.label == label).set_value(on)
    next(b for b in at.button if b.label == "Run evaluation").click()
    return _ok(at.run())


def _specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_bars_carry_intervals_and_the_verdict_states_its_rule(evaluate_page):
    at = _run(evaluate_page, 6)
    bars = _specs(at)[0]
    errors = [t["error_y"] for t in bars["data"]]
    assert all(e["type"] == "data" and len(e["array"]) == len(e["arrayminus"]) for e in errors)
    assert "95 % bootstrap intervals" in bars["layout"]["title"]["text"]
    # bars named as everywhere else; the baselines' bars grey and hatched, the methods' not
    hatched = {t["name"] for t in bars["data"] if t.get("marker", {}).get("pattern")}
    assert hatched == {t["name"] for t in bars["data"] if "(baseline)" in t["name"]} != set()
    assert "Grad-CAM" in {t["name"] for t in bars["data"]}
    # the verdict tab: the rule beside the table; nothing but localization measured → amber
    assert any(verdict.RULE in m.value for m in at.markdown)
    table = next(d.value for d in at.dataframe if "verdict" in getattr(d.value, "columns", []))
    assert set(table["verdict"]) <= {"amber", "red"}
    assert (table["faithfulness"] == "not measured").all()
    assert (table["sanity"] == "not measured").all()
    # the not-measured tabs say how to measure
    infos = " ".join(i.value for i in at.info)
    assert "tick **Faithfulness**" in infos and "tick **Sanity checks**" in infos
    # the box-size split names its bins
    sizes = next(d.value for d in at.dataframe if "all" in getattr(d.value, "columns", []))
    assert {"method", "class"} <= set(sizes.columns)


def test_faithfulness_and_sanity_boxes_fill_their_tabs(evaluate_page):
    at = evaluate_page
    methods = next(m for m in at.multiselect if m.label == "Methods")
    methods.set_value(["gradcam"])
    at = _run(at, 1, **{"Faithfulness": True, "Sanity checks": True})
    titles = [s["layout"]["title"]["text"] for s in _specs(at)]
    assert any("Faithfulness gain over a random order" in t for t in titles)  # CI bars
    assert len(titles) >= 3  # localization bars, faithfulness bars, the sanity chart
    table = next(d.value for d in at.dataframe if "verdict" in getattr(d.value, "columns", []))
    assert (table["faithfulness"] != "not measured").all()
    assert (table["sanity"] != "not measured").all()
    assert (table["verdict"] == "amber").all()  # one image decides nothing
    assert all("only 1 images" in w for w in table["why"])
