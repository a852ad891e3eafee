"""Demo mode (pages/present.py, cam_core/presentation.py): a chosen set stepped through with
buttons bound to the arrow keys, large panels, the sidebar hidden, a verdict that agrees with
where the map's peak lies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo-synthetic" / "model.pt"

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not DEMO.is_file(), reason=f"bundled demo model missing ({DEMO})"),
]


@pytest.fixture()
def at(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr("cam_core.data.find_neu_det", lambda: None)
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    app.session_state["model_choice"] = "demo-synthetic"
    app.switch_page("pages/present.py").run()  # straight there (Explore would draw its maps)
    assert not app.exception, [e.message for e in app.exception]
    return app


def _html(at) -> list[str]:
    return [h.proto.body for h in at.get("html")]


def _head(at) -> str:
    return next(h for h in _html(at) if "present-head" in h)


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_present_steps_through_the_set_with_arrow_keys_and_hides_the_sidebar(at) -> None:
    assert "1 / 6 · crazing_synth_0000.png: predicted" in _head(at)
    assert any("stSidebar" in h and "display:none" in h for h in _html(at))
    assert len(at.image) == 2  # the GT panel and the map panel
    verdict = next(h for h in _html(at) if "present-verdict" in h)
    assert "the evidence for" in verdict or "cannot be checked" in verdict, verdict
    assert _button(at, "Next").proto.shortcut.lower() in ("right", "arrowright")
    assert _button(at, "Previous").proto.shortcut.lower() in ("left", "arrowleft")
    _button(at, "Next").click().run()
    assert "2 / 6 · inclusion_synth_0000.png" in _head(at)
    _button(at, "Previous").click().run()
    _button(at, "Previous").click().run()  # wraps round to the last
    assert "6 / 6 · scratches_synth_0000.png" in _head(at)
    # a chosen set, kept when the page is left and opened again
    at.multiselect(key="present_stems_input").set_value(
        ["patches_synth_0001", "crazing_synth_0002"]
    )
    at.run()
    assert "/ 2 · " in _head(at)
    at.switch_page("pages/explore.py").run()
    at.switch_page("pages/present.py").run()
    assert not at.exception
    assert "/ 2 · " in _head(at) and (
        "patches_synth_0001" in _head(at) or "crazing_synth_0002" in _head(at)
    )


def test_the_slides_verdict_follows_the_maps_peak() -> None:
    from cam_core import synth
    from cam_core.explain import Explainer
    from cam_core.mapcache import MapCache, class_scores, map_key
    from cam_core.models import load_model
    from cam_core.presentation import PANEL_PX, default_selection, make_slide
    from cam_core.uploads import item_from_sample

    loaded = load_model(DEMO)
    explainer = Explainer(loaded.model, loaded.card)
    samples = synth.synthetic_samples(2, 5)
    assert len(default_selection(samples)) == 6
    cache = MapCache()
    seen = set()
    for sample in samples[:6]:
        item = item_from_sample(sample, source="synthetic demo")
        layer = loaded.card.default_layer
        slide = make_slide(explainer, "demo", item, "gradcam", layer, cache)
        assert not slide.error, slide.error
        assert slide.gt.shape[1] == PANEL_PX and slide.heat.shape == slide.gt.shape
        # independent judge: the map's hottest pixel inside a box of the predicted class?
        ci = int(np.argmax(class_scores(explainer, "demo", item, cache)))
        res = cache.maps[map_key("demo", item, "gradcam", layer, False, ci)]
        r, c = np.unravel_index(int(np.argmax(res.cam)), res.cam.shape)
        cls = loaded.card.classes[ci]
        assert f"predicted {cls} " in slide.headline
        own = [b for b in item.boxes if b.cls == cls]
        inside = any(b.x0 <= c + 0.5 < b.x1 and b.y0 <= r + 0.5 < b.y1 for b in own)
        assert slide.on_defect == (inside if own else None), (sample.stem, slide.verdict)
        seen.add(slide.on_defect)
    assert seen & {True, False}, seen  # at least one judged slide
