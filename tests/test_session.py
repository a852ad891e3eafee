import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cam_core import session, synth
from cam_core.data import Box, Sample
from cam_core.models import ModelCard


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def demo():
    stem, image, boxes = synth.make_sample_set(1, seed=11)[0]
    return stem, image, boxes, synth.voc_xml(f"{stem}.png", image.shape, boxes)


def test_image_and_xml_are_paired_by_stem(demo):
    stem, image, boxes, xml = demo
    report = session.read_uploads([(f"{stem}.xml", xml), (f"{stem}.png", _png(image))])
    assert report.errors == ()
    (item,) = report.items
    assert item.name == f"{stem}.png" and item.source == "upload"
    assert np.array_equal(item.image, image)
    assert item.boxes == boxes and item.sample.label == "crazing"
    assert item.has_annotation and item.key.startswith("upload:")


def test_bad_files_are_named_and_do_not_stop_the_good_ones(demo):
    stem, image, _, xml = demo
    small = np.zeros((50, 60), np.uint8)
    report = session.read_uploads(
        [
            ("notes.jpg", b"plain text, not a JPEG"),
            ("empty.png", b""),
            ("report.pdf", b"%PDF-1.4"),
            (f"{stem}.png", _png(image)),
            ("lonely.xml", xml),
            ("small.png", _png(small)),
            ("small.xml", xml),  # annotates a 200x200 image
            ("broken.png", _png(small)[:40]),
            ("broken.xml", b"<annotation><object>"),
        ]
    )
    errors = "\n".join(report.errors)
    assert [i.name for i in report.items] == [f"{stem}.png", "small.png"]
    assert "notes.jpg: not a readable image" in errors
    assert "empty.png: empty file (0 bytes)" in errors
    assert "report.pdf: unsupported file type '.pdf'" in errors
    assert "lonely.xml: no uploaded image has the stem 'lonely'" in errors
    assert "small.xml: annotates a 200x200 image but small.png is 60x50" in errors
    assert "broken.png: " in errors
    assert "broken.xml: " not in errors  # its image is rejected, so it is only noted
    assert "broken.xml: not used, its image broken.png was rejected" in report.warnings
    small_item = report.items[1]
    assert small_item.boxes == () and not small_item.has_annotation


def test_huge_and_duplicate_uploads_are_refused(demo):
    image = demo[1]
    report = session.read_uploads(
        [
            ("big.png", _png(np.zeros((300, 300), np.uint8))),
            ("a.png", _png(image)),
            ("a.jpg", _png(image)),
        ],
        max_pixels=200 * 200,
    )
    errors = "\n".join(report.errors)
    assert "big.png: image is too large: 300x300" in errors
    assert "a.jpg: another uploaded file has the stem 'a'" in errors
    assert [i.name for i in report.items] == ["a.png"]
    report = session.read_uploads([("x.png", b"0" * 11)], max_bytes=10)
    assert report.errors == ("x.png: file is too large (11 bytes; limit 10)",)


def test_xml_boxes_are_clipped_to_the_uploaded_image(demo):
    stem, image, _, _ = demo
    xml = synth.voc_xml(f"{stem}.png", image.shape, (Box("scratches", 150, 150, 260, 260),))
    xml = xml.replace(b"<xmax>200</xmax>", b"<xmax>260</xmax>")
    report = session.read_uploads([(f"{stem}.png", _png(image)), (f"{stem}.xml", xml)])
    (item,) = report.items
    assert item.boxes[0].x1 <= 200 and item.boxes[0].cls == "scratches"


def test_item_from_sample_rescales_boxes_when_xml_size_differs(tmp_path):
    path = tmp_path / "crazing_1.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    sample = Sample(path, "crazing_1", "crazing", (Box("crazing", 0, 0, 100, 200),), (200, 200))
    item = session.item_from_sample(sample)
    assert item.boxes[0] == Box("crazing", 0, 0, 50, 100)
    assert "boxes rescaled" in item.warnings[0]


def test_bundled_models_order_puts_the_best_real_single_label_model_first(tmp_path):
    import json

    cards = {
        "omega-localizes": {
            "synthetic": False,
            "metrics": {"val": {"accuracy": 0.98}},
            "recommended": {"method": "layercam", "score": 0.67},
        },
        "zeta-real": {"synthetic": False, "metrics": {"val": {"accuracy": 0.99}}},
        "beta-real": {"synthetic": False, "metrics": {"val": {"accuracy": 0.97}}},
        "alpha-multi": {"multilabel": True, "metrics": {"val": {"accuracy": 0.999}}},
        "alpha-synthetic": {"synthetic": True, "metrics": {"val": {"accuracy": 1.0}}},
        "no-card": None,
    }
    for name, card in cards.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.pt").write_bytes(b"x")
        if card is not None:
            (folder / "model.json").write_text(json.dumps(card))
    refs = session.bundled_models(tmp_path)
    assert [r.label for r in refs] == [
        "omega-localizes",  # a better recommended map outranks a little more accuracy
        "zeta-real",
        "beta-real",
        "alpha-multi",
        "alpha-synthetic (synthetic demo)",
    ]
    assert session.bundled_models(tmp_path / "absent") == []


def test_uploaded_model_needs_a_card_or_class_names(tmp_path):
    with pytest.raises(ValueError, match=r"w\.pt: no model card given, so class names are needed"):
        session.uploaded_model(("w.pt", b"abc"), classes=[" ", ""], folder=tmp_path)
    with pytest.raises(ValueError, match=r"card\.json: not a model card"):
        session.uploaded_model(("w.pt", b"abc"), card_json=("card.json", b"{}"), folder=tmp_path)
    ref = session.uploaded_model(("my w.pt", b"abc"), classes=["a", " b"], folder=tmp_path)
    assert Path(ref.path).name == "my_w.pt" and ref.classes == ("a", "b")
    message = f"{ref.path}: not a readable PyTorch checkpoint"
    assert (
        session.name_in_message(message, tmp_path) == "my_w.pt: not a readable PyTorch checkpoint"
    )


def test_layer_options_put_the_card_layer_first():
    card = ModelCard("m", "resnet18", ("a", "b"), False, 64, (0, 0, 0), (1, 1, 1), "layer3")
    assert session.layer_options(card) == ["layer3", "layer4", "layer2"]


def test_panel_scores_boxes_and_labels():
    cam = np.zeros((20, 20), np.float32)
    cam[5:10, 5:10] = 1.0
    gt = [Box("crazing", 5, 5, 10, 10)]
    scored = session.panel_scores(cam, gt, threshold=0.5)
    assert scored.cam_boxes == ((5.0, 5.0, 10.0, 10.0, 1.0),)
    assert scored.labels() == ["IoU 1.00"]
    assert scored.scores["pointing"] is True and scored.scores["box_iou"] == 1.0
    bare = session.panel_scores(cam, [], threshold="otsu")
    assert bare.labels() == ["map 1.00"] and bare.scores["pointing"] is None


class _FakeExplainer:
    def __init__(self):
        self.calls = []

    def explain(self, images, methods, *, targets, layers, flip_smooth=False):
        from cam_core.explain import CamError, CamResult, Explanation

        self.calls.append((tuple(methods), tuple(targets[0]), flip_smooth))
        if methods[0] == "cam":
            raise CamError("CAM needs a GAP + linear head")
        results = tuple(
            CamResult(0, c, f"c{c}", methods[0], layers, np.zeros((4, 4), np.float32), 1.0)
            for c in targets[0]
        )
        return Explanation(("c0", "c1"), np.zeros((1, 2)), results)


def test_compute_maps_caches_and_reports_failures_per_method():
    item = session.ImageItem(
        "k", "x.png", np.zeros((4, 4), np.uint8), Sample(Path("x"), "x"), "upload"
    )
    cache = session.MapCache()
    fake = _FakeExplainer()
    maps, errors = session.compute_maps(fake, "m", item, ["gradcam", "cam"], [0, 1], "l", cache)
    assert set(maps) == {("gradcam", 0), ("gradcam", 1)}
    assert errors == {"cam": "cam: CAM needs a GAP + linear head"}
    fake.calls.clear()
    maps, _ = session.compute_maps(fake, "m", item, ["gradcam"], [1], "l", cache)
    assert fake.calls == [] and maps[("gradcam", 1)].class_index == 1
    # flip-averaged maps are other maps: computed (once), not served from the plain ones
    for _ in range(2):
        session.compute_maps(fake, "m", item, ["gradcam"], [1], "l", cache, flip_smooth=True)
    assert fake.calls == [(("gradcam",), (1,), True)]


def test_map_cache_drops_the_oldest():
    cache = session.MapCache(capacity=2)
    for i in range(3):
        cache.put(("m", "k", "gradcam", "l", False, i), object())  # type: ignore[arg-type]
    assert [k[-1] for k in cache.maps] == [1, 2]
    store: dict = {}
    assert session.cache_in(store) is session.cache_in(store)


def test_map_cache_capacity_from_the_environment(monkeypatch):
    for raw, expected in (("12", 12), ("0", 400), ("-3", 400), ("lots", 400), ("", 400)):
        monkeypatch.setenv("CAM_CORE_MAP_CACHE", raw)
        assert session.cache_in({}).capacity == expected


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
    worst = session.worst_cases(rows, "energy", n=5)
    assert list(worst["stem"]) == ["b", "a"]
    assert list(worst.columns[:5]) == ["stem", "class", "method", "layer", "energy"]
    with pytest.raises(KeyError, match="Unknown metric 'nope'"):
        session.worst_cases(rows, "nope")
    # dataset-level metrics have no per-row value: ranked by the per-row figure behind them
    rows = rows.assign(box_iou=[0.9, 0.1, 0.0, 0.5], iou=[0.2, 0.6, 0.0, 0.5])
    assert list(session.worst_cases(rows, "maxboxacc_v2")["stem"]) == ["b", "a"]
    assert list(session.worst_cases(rows, "pxap")["stem"]) == ["a", "b"]
    assert session.ranking_figure("maxboxacc_v2") == "box_iou"
    assert session.ranking_figure("energy") == "energy"


def test_synthetic_folder_is_written_once(tmp_path):
    out = session.synthetic_folder(1, 5, root=tmp_path)
    assert (out / ".complete").exists() and len(list((out / "IMAGES").iterdir())) == 6
    mtime = (out / ".complete").stat().st_mtime_ns
    assert session.synthetic_folder(1, 5, root=tmp_path) == out
    assert (out / ".complete").stat().st_mtime_ns == mtime


def test_recommended_configuration_comes_first_and_is_described():
    import dataclasses

    from cam_core.models import ModelCard

    card = ModelCard(
        name="m",
        arch="resnet18",
        classes=("a", "b"),
        multilabel=False,
        input_size=64,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        recommended={
            "method": "layercam",
            "layer": "layer3",
            "threshold": 0.3,
            "figures": {"pointing": 0.61, "energy": 0.55},
            "baselines": {"baseline:centre": {"pointing": 0.6}},
            "calibration": {"split": "val", "n": 228},
        },
    )
    assert session.layer_options(card)[0] == "layer3"
    assert "layer4" in session.layer_options(card)
    text = session.recommended_caption(card)
    assert text.startswith("Recommended: layercam @ layer3")
    assert "pointing 0.61" in text and "centre-point baseline 0.60" in text and "n=228" in text
    assert "flip averaging" not in text
    flipped = dataclasses.replace(card, recommended={**card.recommended, "flips": True})
    assert session.recommended_caption(flipped).startswith(
        "Recommended: layercam @ layer3 with flip averaging"
    )
    plain = dataclasses.replace(card, recommended=None)
    assert session.recommended_caption(plain) is None
    assert session.layer_options(plain)[0] == "layer4"


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status: RSS cannot be read on this platform")


@pytest.mark.slow
def test_soak_many_images_keep_caches_bounded_and_memory_flat():
    """A session that browses 200 different images: caches stay at their bound, no hook is
    left on the shared model, and the process's memory levels off after warm-up."""
    import gc

    from cam_core.explain import Explainer
    from cam_core.models import load_model

    root = Path(__file__).resolve().parents[1] / "models" / "demo-synthetic" / "model.pt"
    loaded = load_model(root)
    ex = Explainer(loaded.model, loaded.card)
    cache = session.MapCache(capacity=40)
    rng = np.random.default_rng(0)
    rss = []
    for i in range(200):
        image = rng.integers(0, 256, (128, 128), dtype=np.uint8)
        item = session.ImageItem(
            f"k{i}", f"{i}.png", image, Sample(Path(f"{i}.png"), None), "upload"
        )
        session.class_scores(ex, "demo", item, cache)
        maps, errors = session.compute_maps(
            ex, "demo", item, ["gradcam", "gradcam++"], [i % 6, (i + 1) % 6], "layer2", cache
        )
        assert not errors and len(maps) == 4
        if i in (49, 199):
            gc.collect()
            rss.append(_rss_mib())
    assert len(cache.maps) == 40 and len(cache.probs) == 40
    assert all(not m._forward_hooks and not m._backward_hooks for m in loaded.model.modules())
    assert rss[1] - rss[0] < 30, f"RSS grew {rss[1] - rss[0]:.1f} MiB over 150 images: {rss}"
