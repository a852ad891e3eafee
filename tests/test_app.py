"""The Streamlit app driven headlessly (streamlit.testing.v1.AppTest) on the synthetic demo."""

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from cam_core import synth
from cam_core.vocabulary import BASELINE_IDS, method_name

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
DEMO = ROOT / "models" / "demo-synthetic" / "model.pt"

pytestmark = pytest.mark.skipif(
    not DEMO.is_file(), reason=f"bundled demo model missing ({DEMO}); train it first"
)


@pytest.fixture()
def app(monkeypatch):
    """A fresh app session with no dataset on disk (first launch without data)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr("cam_core.data.find_neu_det", lambda: None)
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["model_choice"] = "demo-synthetic"
    return at


def _ok(at):
    assert not at.exception, [e.message for e in at.exception]
    return at


def _captions(at):
    return [c.value for c in at.caption]


def _heat_captions(at):
    """Heatmap panel captions: '<method label> · <class> — <figures>'."""
    return [c for c in _captions(at) if " — " in c]


def _ckpt_box(at):
    """The Models page's checkpoint box (a new key after each load attempt empties it)."""
    return next(f for f in at.file_uploader if f.key.startswith("ckpt_upload_"))


def _load_checkpoint(at, files):
    """Drop ``files`` ((name, bytes, mime) tuples) into the checkpoint box, press Load, rerun."""
    _ckpt_box(at).set_value(files)
    next(b for b in at.button if b.label == "Load checkpoint").click()
    return _ok(at.run())


def _demo_pair(stem: str) -> list[tuple[str, bytes, str]]:
    """The demo model's checkpoint and card, dropped as ``<stem>.pt`` + ``<stem>.json``."""
    return [
        (f"{stem}.pt", DEMO.read_bytes(), "application/octet-stream"),
        (f"{stem}.json", DEMO.with_suffix(".json").read_bytes(), "application/json"),
    ]


def _png(image) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_explore_opens_on_the_synthetic_demo(app):
    at = _ok(app.run())
    assert any("Synthetic demo" in c for c in _captions(at))
    assert any("No dataset" in c and "synthetic demo" in c for c in at.sidebar.caption.values)
    # GT panel beside one heatmap per default method (Grad-CAM, Grad-CAM++), one class row
    assert sum(c.startswith("GT panel: crazing_synth_0000.png") for c in _captions(at)) == 1
    heat = _heat_captions(at)
    assert [c.split(" · ")[0] for c in heat] == ["Grad-CAM", "Grad-CAM++"]
    # probability bars + GT panel + two heatmaps
    assert len(at.get("plotly_chart")) == 4
    # the demo image has crazing boxes, so the crazing row would be scored; the default row is
    # the predicted class, whose figures or "not scored" note are shown
    assert all(("pointing" in c) or ("not scored" in c) for c in heat)


def test_switching_method_and_class_changes_the_panels(app):
    at = _ok(app.run())
    at.sidebar.multiselect(key="methods").set_value(["hirescam"])
    _ok(at.run())
    assert [c.split(" · ")[0] for c in _heat_captions(at)] == ["HiResCAM"]
    classes = next(m for m in at.multiselect if m.label == "Classes to explain")
    classes.set_value(["crazing", "scratches"])
    _ok(at.run())
    heat = _heat_captions(at)
    assert [c.split(" — ")[0] for c in heat] == ["HiResCAM · crazing", "HiResCAM · scratches"]
    assert sum(c.startswith("GT panel") for c in _captions(at)) == 2
    # crazing has GT boxes in this demo image: its figures are scored
    assert "pointing" in heat[0] and "not scored" in heat[1]
    assert len(at.get("plotly_chart")) == 1 + 2 * 2


def test_opacity_change_does_not_recompute_maps(app, monkeypatch):
    at = _ok(app.run())
    from cam_core.explain import Explainer

    def boom(*args, **kwargs):
        raise AssertionError("a map was recomputed")

    monkeypatch.setattr(Explainer, "explain", boom)
    at.slider(key="opacity").set_value(0.8)
    at.selectbox(key="colormap").set_value("viridis")
    _ok(at.run())
    assert len(_heat_captions(at)) == 2


def test_flip_averaging_toggle_recomputes_the_maps_flip_averaged(app, monkeypatch):
    at = _ok(app.run())
    toggle = next(t for t in at.sidebar.toggle if t.label == "Flip averaging")
    assert toggle.value is False  # the demo card does not recommend it
    from cam_core.explain import Explainer

    calls = []
    real = Explainer.explain

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("flip_smooth", False))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Explainer, "explain", spy)
    toggle.set_value(True)
    _ok(at.run())
    assert calls and all(calls), calls  # every map of the page, flip-averaged
    assert [c.split(" · ")[0] for c in _heat_captions(at)] == ["Grad-CAM", "Grad-CAM++"]
    calls.clear()
    next(t for t in at.sidebar.toggle if t.label == "Flip averaging").set_value(False)
    _ok(at.run())
    assert calls == []  # the plain maps were cached from the first run


def test_bad_upload_is_reported_and_good_one_still_shows(app):
    stem, image, boxes = synth.make_sample_set(1, seed=3)[0]
    xml = synth.voc_xml(f"{stem}.png", image.shape, boxes)
    app.session_state["_pref_img_source"] = "Upload"
    at = _ok(app.run())
    at.file_uploader[0].set_value(
        [
            ("notes.jpg", b"this is a text file, not a JPEG", "image/jpeg"),
            (f"{stem}.png", _png(image), "image/png"),
            (f"{stem}.xml", xml, "text/xml"),
            ("other_image.xml", xml, "text/xml"),
        ]
    )
    _ok(at.run())
    errors = [e.value for e in at.error]
    assert any(e.startswith("notes.jpg: not a readable image") for e in errors), errors
    assert any(e.startswith("other_image.xml: no uploaded image") for e in errors), errors
    assert any(c.startswith(f"GT panel: {stem}.png") for c in _captions(at))
    assert len(_heat_captions(at)) == 2


def test_image_choice_survives_a_page_switch(app):
    at = _ok(app.run())
    at.selectbox(key="explore_image_stem").set_value("scratches_synth_0001")
    _ok(at.run())
    assert any(c.startswith("GT panel: scratches_synth_0001.png") for c in _captions(at))
    _ok(at.switch_page("pages/models.py").run())
    _ok(at.switch_page("pages/compare.py").run())
    assert at.selectbox(key="compare_image_stem").value == "scratches_synth_0001"
    assert at.markdown[0].value.startswith("**scratches_synth_0001.png**")


def test_compare_grid_shows_every_fast_method(app):
    at = _ok(app.run())
    _ok(at.switch_page("pages/compare.py").run())
    preset = next(g for g in at.get("button_group") if "All fast methods" in g.options)
    preset.set_value("All fast methods")  # a preset (issue 14 item 12)
    _ok(at.run())
    labels = [m.value for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")]
    assert "**Grad-CAM**" in labels and "**EigenCAM**" in labels
    assert "**Score-CAM**" not in labels  # slow methods are in the "All methods" preset only
    cells = [c.caption for i in at.get("image") for c in i.proto.imgs if " — " in c.caption]
    assert sum(c.startswith("Grad-CAM · crazing — ") for c in cells) == 1
    crazing = [c for c in cells if " · crazing — " in c]  # the demo image's GT class
    assert len(crazing) >= 8 and all("pointing" in c for c in crazing)
    assert any("CAM" in w.value for w in at.warning)  # CAM does not apply to this head


def test_evaluate_runs_on_the_synthetic_split_with_baselines(app):
    at = _ok(app.run())
    _ok(at.switch_page("pages/evaluate.py").run())
    assert any("synthetic demo" in m.value for m in at.markdown)
    next(n for n in at.number_input if n.label == "Images (0 = all)").set_value(6)
    next(b for b in at.button if b.label == "Run evaluation").click()
    _ok(at.run())
    table = at.dataframe[0].value
    baselines = [method_name(b) for b in BASELINE_IDS]
    assert list(table.columns[-3:]) == baselines  # shown by name, baselines on the right
    assert "Grad-CAM" in table.columns and "all" in table.index
    assert len(at.get("plotly_chart")) == 1
    assert any("Worst cases" in h.value for h in at.subheader)
    assert not [b for b in at.button if b.label == "Stop"]  # a finished run offers no Stop
    # select the worst case and open it on Explore
    worst = next(d.value for d in at.dataframe if "Image" in d.value.columns)
    stem, cls = worst.loc[0, "Image"], worst.loc[0, "Class"]
    at.session_state["worst_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    _ok(at.run())
    opener = next(b for b in at.button if b.label.startswith(f"Open {stem}"))
    opener.click()
    _ok(at.run())
    assert at.title[0].value == "Explore"
    assert any(c.startswith("Opened from Evaluate, worst case") for c in _captions(at))
    assert any(c.startswith(f"GT panel: {stem}.png") for c in _captions(at))
    assert any(c.split(" — ")[0].endswith(f" · {cls}") for c in _heat_captions(at))


def test_models_page_shows_the_demo_card(app):
    at = _ok(app.run())
    _ok(at.switch_page("pages/models.py").run())
    # the upload form comes first (issue 14 item 14), then the card in use
    assert [h.value for h in at.subheader][:2] == ["Use your own checkpoint", "demo-synthetic"]
    assert any("synthetic demo" in m.value for m in at.markdown)
    assert any("python -m cam_core train" in c.value for c in at.code)
    assert any(m.label == "Val accuracy" for m in at.metric)


def test_models_page_names_a_checkpoint_for_another_arch(app):
    at = _ok(app.run())
    _ok(at.switch_page("pages/models.py").run())
    _ckpt_box(at).set_value([("demo_weights.pt", DEMO.read_bytes(), "application/octet-stream")])
    next(s for s in at.selectbox if s.label == "Architecture").set_value("resnet18")
    next(b for b in at.button if b.label == "Load checkpoint").click()
    _ok(at.run())
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert errors[0].startswith("demo_weights.pt does not match architecture 'resnet18'")
    assert "missing keys" in errors[0]
    # the page and the model in use still work
    assert "demo-synthetic" in [h.value for h in at.subheader]


def test_models_page_loads_an_uploaded_checkpoint_with_its_card(app):
    at = _ok(app.run())
    _ok(at.switch_page("pages/models.py").run())
    # the checkpoint and its card dropped together in one box (issue 14 item 4)
    _load_checkpoint(at, _demo_pair("mine"))
    # named by its card (issue 14 item 5)
    assert at.sidebar.selectbox(key="model_choice").value == "demo-synthetic (uploaded)"
    assert "demo-synthetic" in [h.value for h in at.subheader]
    assert any("mine.pt" in c.value for c in at.caption)
    assert [m.value for m in at.success] == [
        "mine.pt loaded with its card mine.json as **demo-synthetic (uploaded)**; it is now "
        "selected in the sidebar with its recommended settings."
    ]


def test_models_page_trains_a_tiny_model_with_progress(app, tmp_path, monkeypatch):
    data = synth.synthetic_folder(2, 1, root=tmp_path)
    monkeypatch.setattr("pages._state.RUNS_DIR", tmp_path / "runs")
    at = _ok(app.run())
    _ok(at.switch_page("pages/models.py").run())
    next(t for t in at.text_input if t.label == "Data folder").set_value(str(data))
    next(t for t in at.text_input if t.label == "Name").set_value("tiny")
    next(n for n in at.number_input if n.label == "Input size (px)").set_value(32)
    next(n for n in at.number_input if n.label == "Batch size").set_value(4)
    next(n for n in at.number_input if n.label == "Box supervision weight").set_value(1.0)
    next(b for b in at.button if b.label == "Train").click()
    _ok(at.run(timeout=120))
    assert (tmp_path / "runs" / "tiny" / "model.pt").is_file()
    card = json.loads((tmp_path / "runs" / "tiny" / "model.json").read_text())
    assert card["training"]["box_loss"] == 1.0
    assert any("epoch 0: val accuracy" in c.value for c in at.caption)
    assert any(s.value.startswith("Saved ") for s in at.success)


def test_with_neu_det_the_app_opens_on_the_best_real_model_and_its_recommended_map():
    """The first visit with NEU-DET present: the real single-label model with the best
    recommended map (the box-supervised one), its auto-configured layer first in the layer list,
    and the test split's first image explained."""
    from streamlit.testing.v1 import AppTest

    from cam_core.data import find_neu_det

    if find_neu_det() is None:
        pytest.skip("NEU-DET not found (set NEU_DET_DIR or put it in ../shared/NEU-DET)")
    at = _ok(AppTest.from_file(APP, default_timeout=120).run())
    assert at.sidebar.selectbox(key="model_choice").value == "neu-boxsup-patch-resnet18"
    layer = next(s for s in at.sidebar.selectbox if s.label == "Target layer")
    assert layer.value == "head" and layer.options[0] == "head"
    assert any("Recommended: Grad-CAM @ head" in c for c in at.sidebar.caption.values)
    # the card recommends flip-averaged maps (auto-configured on val), so they are on
    assert next(t for t in at.sidebar.toggle if t.label == "Flip averaging").value is True
    assert at.selectbox(key="box_threshold").value == 0.3  # the card's recommended threshold
    heat = _heat_captions(at)
    assert heat and all(("pointing" in c) or ("not scored" in c) for c in heat)


# ---------------------------------------------------------------- issue 14, the app's journeys


def _heat_methods(at):
    return [c.split(" · ")[0] for c in _heat_captions(at)]


def _source(at, name):
    """Click an image source (Upload, Dataset, Synthetic demo) and rerun."""
    next(g for g in at.get("button_group") if name in g.options).set_value(name)
    return _ok(at.run())


def test_real_data_with_the_synthetic_model_switches_to_a_real_model_and_says_so(app, tmp_path):
    """Issue 14 item 3: on a fresh clone, typing a dataset folder while the synthetic-demo model
    is selected switches to the best bundled real-data model, with a note; choosing the
    synthetic model again on real data is warned about, in the sidebar and on the page."""
    folder = synth.synthetic_folder(1, 3, root=tmp_path)  # any dataset folder reads as real
    at = _ok(app.run())
    assert at.sidebar.selectbox(key="model_choice").value == "demo-synthetic"
    at.sidebar.text_input(key="dataset_dir").set_value(str(folder))
    at.sidebar.selectbox(key="split").set_value("all")
    _ok(at.run())
    chosen = at.sidebar.selectbox(key="model_choice").value
    assert "synthetic" not in chosen, chosen
    notes = [i.value for i in at.sidebar.info]
    assert any(n.startswith(f"Switched to **{chosen}** for the real data") for n in notes), notes
    _source(at, "Dataset")
    at.sidebar.selectbox(key="model_choice").set_value("demo-synthetic")
    _ok(at.run())
    assert at.sidebar.selectbox(key="model_choice").value == "demo-synthetic"
    assert any("trained on synthetic images" in w.value for w in at.sidebar.warning)
    assert any("trained on synthetic images" in w.value for w in at.main.warning)


def test_typing_a_dataset_folder_shows_its_image_in_the_picker(app):
    """QA item 3: on a fresh clone, typing the NEU-DET folder drew crazing_11.jpg while the
    selector still read "crazing_synth_0000" and no image source was highlighted; the source
    control and the image selector show what is drawn."""
    neu = Path("/work/shared/NEU-DET")
    if not neu.is_dir():
        pytest.skip(f"{neu} absent")
    at = _ok(app.run())
    assert at.get("button_group")[0].value == "Synthetic demo"
    at.sidebar.text_input(key="dataset_dir").set_value(str(neu))
    _ok(at.run(timeout=180))
    assert at.get("button_group")[0].value == "Dataset"
    box = next(s for s in at.selectbox if s.label.startswith("Image ("))
    drawn = [c for c in _captions(at) if c.startswith("GT panel: ")]
    assert drawn and all(c.startswith(f"GT panel: {box.value}.") for c in drawn), (
        box.value,
        drawn,
    )


def test_a_checkpoint_with_its_card_applies_the_recommendation_on_load(app):
    """Issue 14 items 4 and 5: model.pt and model.json dropped together load as one model named
    by its card, and the sidebar's layer, methods and Explore's threshold follow the card
    (demo card: Grad-CAM++ @ layer2, threshold 0.3)."""
    at = _ok(app.run())
    at.sidebar.selectbox(key="layer").set_value("layer3")
    at.sidebar.multiselect(key="methods").set_value(["hirescam"])
    at.selectbox(key="box_threshold").set_value(0.6)
    _ok(at.run())
    _ok(at.switch_page("pages/models.py").run())
    _ckpt_box(at).set_value(
        [
            ("model.json", DEMO.with_suffix(".json").read_bytes(), "application/json"),
            ("model.pt", DEMO.read_bytes(), "application/octet-stream"),
        ]
    )
    next(b for b in at.button if b.label == "Load checkpoint").click()
    _ok(at.run())
    assert not [e.value for e in at.error]
    assert at.sidebar.selectbox(key="model_choice").value == "demo-synthetic (uploaded)"
    assert at.sidebar.selectbox(key="layer").value == "layer2"
    assert at.sidebar.multiselect(key="methods").value[0] == "gradcam++"
    _ok(at.switch_page("pages/explore.py").run())
    assert at.selectbox(key="box_threshold").value == 0.3


def test_a_checkpoint_without_its_card_is_a_visible_warning(app):
    """Issue 14 item 4: "normalisation guessed" was a blue note; it is a warning, on the Models
    page and in the sidebar."""
    at = _ok(app.run())
    _ok(at.switch_page("pages/models.py").run())
    _ckpt_box(at).set_value([("bare.pt", DEMO.read_bytes(), "application/octet-stream")])
    next(b for b in at.button if b.label == "Load checkpoint").click()
    _ok(at.run())
    assert at.sidebar.selectbox(key="model_choice").value == "bare.pt (uploaded)"
    # QA item 2: said once on the page and once in the sidebar, with no claim of recommended
    # settings; the upload named as uploaded, not by its storage path (QA item 4)
    main = [w.value for w in at.main.warning if "model card" in w.value]
    assert len(main) == 1 and main[0].startswith("Loaded without a model card"), main
    side = [w.value for w in at.sidebar.warning if "model card" in w.value]
    assert len(side) == 1 and side[0].startswith("Loaded without a model card"), side
    assert [m.value for m in at.success] == [
        "bare.pt loaded as **bare.pt (uploaded)**; it is now selected in the sidebar."
    ]
    assert not any("model card" in i.value for i in at.main.info)
    assert not any("recommended settings" in m.value for m in at.main.markdown)
    assert "Checkpoint: `bare.pt (uploaded)`" in _captions(at)


def test_the_checkpoint_box_empties_after_a_load_and_never_reuses_a_card(app):
    """QA item 1: release.pt dropped after model.pt + model.json was loaded "with its card
    model.json" (the box kept the earlier files); the box empties after each load attempt and
    a card goes only with the checkpoint it was dropped with."""
    at = _ok(app.run())
    _ok(at.switch_page("pages/models.py").run())
    _load_checkpoint(at, _demo_pair("model"))
    assert at.sidebar.selectbox(key="model_choice").value == "demo-synthetic (uploaded)"
    assert not _ckpt_box(at).value  # emptied for the next drop
    _ckpt_box(at).set_value([("release.pt", DEMO.read_bytes(), "application/octet-stream")])
    next(b for b in at.button if b.label == "Load checkpoint").click()
    _ok(at.run())
    assert [m.value for m in at.success] == [
        "release.pt loaded as **release.pt (uploaded)**; it is now selected in the sidebar."
    ]
    assert at.sidebar.selectbox(key="model_choice").value == "release.pt (uploaded)"
    assert not _ckpt_box(at).value
    # a failed attempt empties the box too, its error naming the file
    _ckpt_box(at).set_value([("cut.pt", DEMO.read_bytes()[:1000], "application/octet-stream")])
    next(b for b in at.button if b.label == "Load checkpoint").click()
    _ok(at.run())
    assert any(e.value.startswith("cut.pt") for e in at.error), [e.value for e in at.error]
    assert not _ckpt_box(at).value


def test_a_jpeg_in_the_checkpoint_box_is_let_in_and_named(app):
    """Issue 14 item 6: the box refused a .jpg with a hover-only reason and then said "Choose a
    checkpoint file first"; it takes any file and says what it is."""
    at = _ok(app.run())
    _ok(at.switch_page("pages/models.py").run())
    box = _ckpt_box(at)
    assert list(box.proto.type) == []  # no browser-side refusal
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64)
    box.set_value([("photo.jpg", jpeg, "image/jpeg")])
    next(b for b in at.button if b.label == "Load checkpoint").click()
    _ok(at.run())
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("photo.jpg: a JPEG image, not a checkpoint")


def test_uploads_add_up_and_the_selector_shows_the_image_drawn(app):
    """Issue 14 item 7: a second batch adds to the first (the same image once, its annotation
    kept), the selector shows the image drawn, uploads stay listed after another page, and can
    be removed."""
    (s1, im1, b1), (s2, im2, _) = synth.make_sample_set(1, seed=3)[:2]
    app.session_state["_pref_img_source"] = "Upload"
    at = _ok(app.run())
    xml = synth.voc_xml(f"{s1}.png", im1.shape, b1)
    at.file_uploader[0].set_value(
        [(f"{s1}.png", _png(im1), "image/png"), (f"{s1}.xml", xml, "text/xml")]
    )
    _ok(at.run())
    at.file_uploader[0].set_value([(f"{s2}.png", _png(im2), "image/png")])
    _ok(at.run())
    box = next(s for s in at.selectbox if s.label.startswith("Uploaded image"))
    assert list(box.options) == [f"{s1}.png", f"{s2}.png"]  # shown by name
    assert box.format_func(box.value) == f"{s2}.png"  # the newest upload is drawn
    assert any(c.startswith(f"GT panel: {s2}.png") for c in _captions(at))
    at.file_uploader[0].set_value([(f"{s1}.png", _png(im1), "image/png")])  # again, no XML
    _ok(at.run())
    box = next(s for s in at.selectbox if s.label.startswith("Uploaded image"))
    assert list(box.options) == [f"{s2}.png", f"{s1}.png"]
    assert any(c == f"{s1}.png · {len(b1)} GT box(es)" for c in _captions(at))
    box.select_index(0)
    _ok(at.run())
    assert any(c.startswith(f"GT panel: {s2}.png") for c in _captions(at))
    _ok(at.switch_page("pages/models.py").run())
    _ok(at.switch_page("pages/explore.py").run())
    box = next(s for s in at.selectbox if s.label.startswith("Uploaded image"))
    assert list(box.options) == [f"{s2}.png", f"{s1}.png"]
    assert box.format_func(box.value) == f"{s2}.png"
    assert any(c.startswith(f"GT panel: {s2}.png") for c in _captions(at))
    next(b for b in at.button if b.label == "Remove").click()
    _ok(at.run())
    box = next(s for s in at.selectbox if s.label.startswith("Uploaded image"))
    assert list(box.options) == [f"{s1}.png"]
    assert any(c.startswith(f"GT panel: {s1}.png") for c in _captions(at))


def test_a_slow_method_keeps_the_drawn_panels_and_names_itself(app, monkeypatch):
    """Issue 14 item 8: while Score-CAM computes, the Grad-CAM and Grad-CAM++ panels already
    drawn stay on screen and its place says "Computing Score-CAM" with an estimate; the sidebar
    warned before. (The computation is cut short, as a Stop would.)"""
    import streamlit as st

    from cam_core.explain import Explainer

    at = _ok(app.run())
    real = Explainer.explain

    def stop_on_slow(self, images, methods, *args, **kwargs):
        if "scorecam" in methods:
            st.stop()  # what the screen shows while Score-CAM runs
        return real(self, images, methods, *args, **kwargs)

    monkeypatch.setattr(Explainer, "explain", stop_on_slow)
    at.sidebar.multiselect(key="methods").set_value(["gradcam", "gradcam++", "scorecam"])
    _ok(at.run())
    assert _heat_methods(at) == ["Grad-CAM", "Grad-CAM++"]
    infos = [i.value for i in at.info]
    assert any(i.startswith("Computing **Score-CAM** (") for i in infos), infos
    assert not any("scorecam (" in i for i in infos)
    assert any("Slow: Score-CAM" in c for c in at.sidebar.caption.values)
    monkeypatch.setattr(Explainer, "explain", real)
    _ok(at.run())
    assert _heat_methods(at) == ["Grad-CAM", "Grad-CAM++", "Score-CAM"]
    _ok(at.run())  # the sidebar now knows how long Score-CAM took here
    assert any("Score-CAM (about" in c for c in at.sidebar.caption.values)


def test_low_probability_maps_are_marked_and_the_scale_can_be_shared(app):
    """Issue 14 item 9: a class at p < 0.1 is marked as such; the shared-scale toggle draws the
    classes of one method on one scale, said on the colour bar."""
    from cam_core.render import SHARED_SCALE_TITLE

    at = _ok(app.run())
    classes = next(m for m in at.multiselect if m.label == "Classes to explain")
    classes.set_value(["crazing", "scratches"])  # scratches: p = 0.01 on crazing_synth_0000
    _ok(at.run())
    assert any(c.startswith(":orange[:material/warning: low probability") for c in _captions(at))
    at.toggle(key="shared_scale").set_value(True)
    _ok(at.run())
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [
        t["colorbar"]["title"]["text"]
        for c in charts
        for t in c["data"]
        if t.get("type") == "heatmap"
    ]
    assert titles == [SHARED_SCALE_TITLE] * 4, titles


def test_explore_and_compare_offer_slide_ready_downloads(app):
    """Issue 14 item 11: a slide PNG per panel, the image's GT + maps sheet, the Compare grid."""
    at = _ok(app.run())
    labels = _download_labels(at)
    assert labels.count("Slide PNG") == 2 and "Sheet PNG: GT + all maps" in labels, labels
    _ok(at.switch_page("pages/compare.py").run())
    assert "Grid PNG" in _download_labels(at)


def test_compare_uses_explores_threshold_so_both_pages_give_the_same_figures(app):
    """QA walk: Compare scored maps at 0.5 while Explore used the chosen map → boxes threshold,
    so one image, method and class showed different figures on the two pages."""
    at = _ok(app.run())
    at.selectbox(key="box_threshold").set_value(0.7)
    _ok(at.run())
    explore = next(c for c in _heat_captions(at) if c.startswith("Grad-CAM · crazing — "))
    _ok(at.switch_page("pages/compare.py").run())
    assert "map → boxes threshold 0.7" in at.markdown[0].value
    cells = [c.caption for i in at.get("image") for c in i.proto.imgs]
    compare = next(c for c in cells if c.startswith("Grad-CAM · crazing — "))
    assert compare.removesuffix(" · ★ best") == explore


def test_compare_says_a_slow_methods_measured_time_as_explore_does(app, monkeypatch):
    """QA walk: Compare said Score-CAM takes "up to a minute each" while the sidebar knew it
    took about 11 s here; it now says the measured time (the map cache's estimate)."""
    import streamlit as st

    from cam_core.explain import Explainer

    at = _ok(app.run())
    cache = at.session_state["map_cache"]
    model_id = next(k[0] for k in cache.seconds if k[1] == "gradcam")
    cache.seconds[(model_id, "scorecam", False)] = 11.2  # as if Score-CAM took 11 s here
    real = Explainer.explain

    def stop_on_slow(self, images, methods, *args, **kwargs):
        if "scorecam" in methods:
            st.stop()  # the caption is drawn before the maps are computed
        return real(self, images, methods, *args, **kwargs)

    monkeypatch.setattr(Explainer, "explain", stop_on_slow)
    at.sidebar.multiselect(key="methods").set_value(["gradcam", "scorecam"])
    _ok(at.run())
    _ok(at.switch_page("pages/compare.py").run())
    slow = [c for c in _captions(at) if "Slow methods in this set" in c]
    assert slow and "Score-CAM (about 11 s, as last time)" in slow[0], slow
    assert "up to a minute" not in slow[0]


def test_compare_follows_the_sidebar_and_marks_best_and_related_maps(app):
    """Issue 14 item 12: the sidebar's methods by default, a raw/GT row, one colour bar, the
    best method per class marked, identical maps flagged, readable table headings. (On the demo
    image, Grad-CAM ranks first and LayerCAM equals Grad-CAM element-wise at layer2.)"""
    at = _ok(app.run())
    chosen = ["gradcam", "layercam", "gradcam-elementwise"]
    at.sidebar.multiselect(key="methods").set_value(chosen)
    _ok(at.run())
    _ok(at.switch_page("pages/compare.py").run())
    labels = [m.value for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")]
    rows = ["**Image · GT**", *[f"**{method_name(m)}**" for m in chosen]]
    assert labels == rows, labels
    images = [c.caption for i in at.get("image") for c in i.proto.imgs]
    assert sum(c.startswith("0 → 1: ") for c in images) == 1  # the one colour bar
    assert any(c.startswith("raw image · ") for c in images)
    assert any(c.startswith("Grad-CAM · crazing — ") and c.endswith("★ best") for c in images)
    captions = _captions(at)
    assert any(c.startswith("★ Best on crazing: Grad-CAM (") for c in captions), captions
    assert "crazing: LayerCAM and Grad-CAM element-wise give identical maps (r = 1.00)" in captions
    table = next(d.value for d in at.dataframe)
    assert "method" in table.columns and "pointing" not in table.columns  # display names


def test_first_screen_gallery_says_its_pages_and_collapses_on_a_pick(app, tmp_path):
    """Issue 14 item 14: the pager says "page X of N"; a gallery click collapses the gallery so
    the new maps are in view; Streamlit's Deploy button and menu are hidden."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] in ("viewer", "minimal")
    folder = synth.synthetic_folder(4, 3, root=tmp_path)  # 24 images: two gallery pages
    at = _ok(app.run())
    at.sidebar.text_input(key="dataset_dir").set_value(str(folder))
    at.sidebar.selectbox(key="split").set_value("all")
    _ok(at.run())
    _source(at, "Dataset")
    if at.sidebar.selectbox(key="model_choice").value != "demo-synthetic":
        at.sidebar.selectbox(key="model_choice").set_value("demo-synthetic")
        _ok(at.run())
    assert next(n for n in at.number_input if n.label.startswith("Gallery page")).label == (
        "Gallery page (of 2)"
    )
    assert "page 1 of 2 · 24 images" in _captions(at)
    pick = next(b for b in at.button if b.label.endswith("_0003"))
    pick.click()
    _ok(at.run())
    assert at.session_state["explore_image_stem_gallery"] is False
    assert any(c.startswith(f"GT panel: {pick.label}") for c in _captions(at))


def test_open_in_explore_adds_the_method_to_the_sidebar_and_draws_it(app):
    """Issue 14 item 7: after "Open in Explore" the sidebar's methods and the maps drawn agree
    (the worst case's method is added to both)."""
    at = _ok(app.run())
    at.sidebar.multiselect(key="methods").set_value(["gradcam"])
    _ok(at.run())
    _ok(at.switch_page("pages/evaluate.py").run())
    next(m for m in at.multiselect if m.label == "Methods").set_value(["gradcam", "hirescam"])
    next(n for n in at.number_input if n.label == "Images (0 = all)").set_value(6)
    next(b for b in at.button if b.label == "Run evaluation").click()
    _ok(at.run())
    worst = next(d.value for d in at.dataframe if "Image" in d.value.columns)
    methods = list(worst["Method"])
    row = methods.index("HiResCAM")  # shown by name
    at.session_state["worst_table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    _ok(at.run())
    opener = next(b for b in at.button if b.label.startswith("Open "))
    assert opener.label.endswith(" · HiResCAM in Explore"), opener.label
    opener.click()
    _ok(at.run())
    assert at.title[0].value == "Explore"
    sidebar = at.sidebar.multiselect(key="methods").value
    assert sidebar == ["gradcam", "hirescam"], sidebar
    assert _heat_methods(at) == [method_name(m) for m in sidebar]


# ---------------------------------------------------------------- end of the app's journeys


def _run_evaluation(at, n=6):
    _ok(at.switch_page("pages/evaluate.py").run())
    next(n_ for n_ in at.number_input if n_.label == "Images (0 = all)").set_value(n)
    next(b for b in at.button if b.label == "Run evaluation").click()
    return _ok(at.run())


DOWNLOADS = ["PDF report", "Summary CSV", "Rows CSV", "HTML report", "Verdicts CSV"]
"""What a result offers: the PDF beside its settings, then the CSVs and the HTML report."""


def _download_labels(at):
    return [d.proto.label for d in at.get("download_button")]


def test_every_evaluation_metric_shows_worst_cases_and_keeps_the_downloads(app):
    """Issue 14 item 1: MaxBoxAccV2 and PxAP (dataset figures) crashed the worst-case section
    and took the downloads with it. Every option of the metric control is clicked."""
    at = _run_evaluation(_ok(app.run()))
    control = at.get("button_group")[0]
    summary = next(d.value for d in at.dataframe if "n_rows" in d.value.columns)
    # the control shows display names; its raw values are the summary's metric columns
    by_label = {}
    for column in summary.columns:
        try:
            by_label[control.format_func(column)] = column
        except KeyError:  # not a metric (method, class, n …)
            continue
    assert {"MaxBoxAccV2", "PxAP"} <= set(control.options), control.options
    assert set(control.options) <= set(by_label), (control.options, list(summary.columns))
    for label in control.options:
        at.get("button_group")[0].set_value(by_label[label])
        _ok(at.run())
        assert at.get("button_group")[0].value == by_label[label]
        assert not [e.value for e in at.error], (label, [e.value for e in at.error])
        assert _download_labels(at) == DOWNLOADS, label
        worst = next(d.value for d in at.dataframe if "Image" in d.value.columns)
        assert len(worst) > 0, label


def test_worst_cases_table_and_target_rules_show_display_names(app):
    """QA walk: the worst-case table showed "gradcam", box_iou, iou and score; the target-rule
    options "file-class". People read names; the ids stay in the CSVs."""
    at = _run_evaluation(_ok(app.run()))
    rule = next(s for s in at.selectbox if s.label == "Target classes")
    assert rule.options == ["The file's class", "Every class with boxes", "The predicted class"]
    assert rule.value == "file-class"  # the logic keeps the id
    for metric in ("maxboxacc_v2", "pxap"):  # rank by box_iou and iou
        at.get("button_group")[0].set_value(metric)
        _ok(at.run())
        worst = next(d.value for d in at.dataframe if "Image" in d.value.columns)
        columns = list(worst.columns)
        assert not {"stem", "method", "box_iou", "iou", "score"} & set(columns), columns
        assert columns[:4] == ["Image", "Class", "Method", "Layer"], columns
        assert {"Pixel IoU at τ", "Model probability"} <= set(columns), columns
        assert set(worst["Method"]) <= {"Grad-CAM", "Grad-CAM++"}, set(worst["Method"])
    assert "Best map-box IoU" in columns or metric == "pxap"
    these = next(m.value for m in at.markdown if m.value.startswith("**These results:**"))
    assert "target rule **The file's class**" in these
    rows_csv = next(d for d in at.get("download_button") if d.proto.label == "Rows CSV")
    assert rows_csv is not None  # the CSVs keep the ids (built from rows_frame, unchanged)


def test_enter_in_the_evaluation_form_does_not_start_a_run(app):
    """QA walk: Enter in "Images (0 = all)" submitted the form and ran the whole split; only
    the Run button starts a run now."""
    at = _ok(app.run())
    _ok(at.switch_page("pages/evaluate.py").run())
    forms = [b for b in at.main.children.values() if b.type == "form"]
    assert len(forms) == 1 and forms[0].proto.form.form_id == "eval_form"
    assert forms[0].proto.form.enter_to_submit is False


def test_streamlit_toolbar_stop_is_hidden_and_a_stopped_run_recovers(app, monkeypatch):
    """QA walk: Streamlit's toolbar Stop ends the script without a rerun, so Evaluate froze on
    "Running …". Its button is hidden (our Stop is the only one); a run it ended anyway comes
    back as a partial result with Resume on the next interaction."""
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    from cam_core.evaluation import loop

    at = _ok(app.run())
    styles = [h.proto.body for h in at.get("html") if "stStatusWidget" in h.proto.body]
    assert styles and "stBaseButton-header" in styles[0] and "display: none" in styles[0]
    real, calls = loop.evaluate_batch, []

    def batch(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise StopException()  # Streamlit's own Stop during the second batch
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_batch", batch)
    _ok(at.switch_page("pages/evaluate.py").run())
    next(n for n in at.number_input if n.label == "Images (0 = all)").set_value(0)
    next(b for b in at.button if b.label == "Run evaluation").click()
    _ok(at.run())
    _ok(at.run())  # the next interaction, whatever it is
    (warning,) = [w.value for w in at.warning if "Partial result" in w.value]
    assert "stopped at 8 of 18 images" in warning
    assert any(b.label == "Resume (10 images left)" for b in at.button)


def test_the_legacy_pages_route_is_left_once_and_rerun(monkeypatch):
    """A fresh server's first run takes Streamlit's legacy pages/ route (its file menu would list
    _state.py and friends): app.py leaves it, shows the real menu and reruns; later runs are
    untouched."""
    import streamlit as st
    from streamlit.runtime.pages_manager import PagesManager

    from pages import _legacy

    calls = []
    monkeypatch.setattr(st, "set_option", lambda key, value: calls.append((key, value)))
    monkeypatch.setattr(st, "rerun", lambda: calls.append("rerun"))
    monkeypatch.setattr(PagesManager, "uses_pages_directory", True)
    _legacy.leave_legacy_mode()
    assert PagesManager.uses_pages_directory is False
    assert calls == [("client.showSidebarNavigation", True), "rerun"]
    calls.clear()
    _legacy.leave_legacy_mode()
    assert calls == []


def test_helper_modules_in_pages_are_not_pages(app):
    """The menu holds the six pages; no helper module of pages/ (``_state.py`` …) is a page."""
    import re

    at = _ok(app.run())
    with pytest.raises(ValueError, match="Could not find a navigation page") as info:
        at.switch_page("pages/_state.py")
    known = re.search(r"Known pages: \[(.*)\]", str(info.value)).group(1)
    registered = {Path(p.strip(" '")).name for p in known.split(",")}
    helpers = {p.name for p in (ROOT / "pages").glob("_*.py")}
    assert {"_state.py", "_sidebar.py", "_picker.py", "_legacy.py"} <= helpers
    assert registered == {
        "explore.py",
        "compare.py",
        "evaluate.py",
        "models.py",
        "review.py",
        "present.py",
    }


def test_a_stopped_run_keeps_its_rows_and_is_labelled_partial_with_its_coverage(app, monkeypatch):
    """Issue 14 item 2: Stop keeps the finished batches, says what the partial result covers,
    and Resume computes only the images left."""
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    from cam_core.evaluation import loop

    real, computed, interrupt = loop.evaluate_batch, [], {"after": 1}

    def batch(explainer, samples, *args, **kwargs):
        if interrupt["after"] is not None and len(computed) == interrupt["after"]:
            # what a click on Stop does: Streamlit ends the script at its next update
            raise StopException()
        computed.append([s.stem for s in samples])
        return real(explainer, samples, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_batch", batch)
    at = _ok(app.run())
    _ok(at.switch_page("pages/evaluate.py").run())
    next(n for n in at.number_input if n.label == "Images (0 = all)").set_value(0)
    next(b for b in at.button if b.label == "Run evaluation").click()
    _ok(at.run())
    assert any(i.value.startswith("**Running**") for i in at.info)
    assert len(computed) == 1 and len(computed[0]) == 8  # one batch of 8 of the 18 images
    next(b for b in at.button if b.label == "Stop").click()
    _ok(at.run())
    (warning,) = [w.value for w in at.warning if "Partial result" in w.value]
    assert "you stopped it" in warning and "stopped at 8 of 18 images" in warning
    # class-stratified: the 8 images cover all six classes (two of the first two)
    for cls in ("crazing 2", "inclusion 2", "patches 1", "pitted_surface 1", "scratches 1"):
        assert cls in warning, warning
    result = at.session_state["eval_result"]
    assert result.n_done == 8 and {r["stem"] for r in result.rows} == set(computed[0])
    assert _download_labels(at) == DOWNLOADS
    # Resume computes only the ten images left, then the result is whole
    interrupt["after"] = None
    next(b for b in at.button if b.label.startswith("Resume (10 images left)")).click()
    _ok(at.run())
    assert sum(map(len, computed)) == 18
    assert any("Done" in s.value and "Done** — 18 images" in s.value for s in at.success)
    assert not [w for w in at.warning if "Partial result" in w.value]


def test_results_show_their_own_settings_after_the_form_changes(app):
    """Issue 14 item 2: coming back after changing the sidebar shows the results with the
    settings that produced them, and says that the form now describes other settings."""
    at = _run_evaluation(_ok(app.run()))
    these = next(m.value for m in at.markdown if m.value.startswith("**These results:**"))
    assert "methods **Grad-CAM, Grad-CAM++**" in these and "images **6 of 6" in these
    assert not [i for i in at.info if "form above now differs" in i.value]
    _ok(at.switch_page("pages/explore.py").run())
    at.sidebar.multiselect(key="methods").set_value(["hirescam"])
    _ok(at.run())
    _ok(at.switch_page("pages/evaluate.py").run())
    assert next(m for m in at.multiselect if m.label == "Methods").value == ["hirescam"]
    these = next(m.value for m in at.markdown if m.value.startswith("**These results:**"))
    assert "methods **Grad-CAM, Grad-CAM++**" in these
    (note,) = [i.value for i in at.info if "form above now differs" in i.value]
    assert "differs from these results in: methods." in note
    assert any("Done** — 6 images" in s.value for s in at.success)


def test_leaving_the_page_mid_run_keeps_its_rows_and_says_so(app, monkeypatch):
    """A run interrupted by a page switch comes back as a labelled partial result of its own
    settings (never as an earlier run's result), with Resume offered."""
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    from cam_core.evaluation import loop

    at = _run_evaluation(_ok(app.run()))  # a first, finished run of 6 images
    real, calls = loop.evaluate_batch, []

    def batch(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise StopException()  # the user switched page during the second batch
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_batch", batch)
    next(n for n in at.number_input if n.label == "Images (0 = all)").set_value(0)
    next(b for b in at.button if b.label == "Run evaluation").click()
    _ok(at.run())
    _ok(at.switch_page("pages/explore.py").run())
    _ok(at.switch_page("pages/evaluate.py").run())
    (warning,) = [w.value for w in at.warning if "Partial result" in w.value]
    # the first run's 6 images came from the row store, then one batch of 8 was computed
    assert "the page was left" in warning and "stopped at 14 of 18 images" in warning
    these = next(m.value for m in at.markdown if m.value.startswith("**These results:**"))
    assert "images **14 of 18**" in these
    assert any(b.label == "Resume (4 images left)" for b in at.button)


def test_explore_explains_the_gt_classes_by_default_as_compare_does(app):
    """Issue 14 item 9: an image with boxes of another class than the prediction explains that
    class too, by default, on Explore and on Compare (one rule: cam_core.mapcache)."""
    from cam_core.data import Box

    stem, image, boxes = synth.make_sample_set(1, seed=3)[0]
    extra = Box("inclusion" if boxes[0].cls != "inclusion" else "patches", 5, 5, 40, 40)
    xml = synth.voc_xml(f"{stem}.png", image.shape, (*boxes, extra))
    app.session_state["_pref_img_source"] = "Upload"
    at = _ok(app.run())
    at.file_uploader[0].set_value(
        [(f"{stem}.png", _png(image), "image/png"), (f"{stem}.xml", xml, "text/xml")]
    )
    _ok(at.run())
    explained = next(m for m in at.multiselect if m.label == "Classes to explain").value
    assert extra.cls in explained and boxes[0].cls in explained, explained
    _ok(at.switch_page("pages/compare.py").run())
    compared = next(m for m in at.multiselect if m.label.startswith("Classes")).value
    assert compared == explained


def test_switching_model_mid_run_keeps_the_run_on_its_own_model(app, monkeypatch):
    """A run interrupted by choosing another model in the sidebar is read back with the model it
    ran with (its row store is that model's), and the form's new model is pointed out."""
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    from cam_core.evaluation import loop

    real, calls = loop.evaluate_batch, []

    def batch(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise StopException()  # the user picked another model during the second batch
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_batch", batch)
    at = _ok(app.run())
    _ok(at.switch_page("pages/evaluate.py").run())
    next(n for n in at.number_input if n.label == "Images (0 = all)").set_value(0)
    next(b for b in at.button if b.label == "Run evaluation").click()
    _ok(at.run())
    at.sidebar.selectbox(key="model_choice").set_value("neu-local-resnet18")
    _ok(at.run())
    (warning,) = [w.value for w in at.warning if "Partial result" in w.value]
    assert "stopped at 8 of 18 images" in warning
    these = next(m.value for m in at.markdown if m.value.startswith("**These results:**"))
    assert "model **demo-synthetic**" in these
    (note,) = [i.value for i in at.info if "form above now differs" in i.value]
    assert "model" in note
