"""Training pipeline, mosaics and the bundled models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cam_core.data import NEU_CLASSES, Box, find_neu_det, load_dataset
from cam_core.explain import Explainer
from cam_core.metrics import pointing_game
from cam_core.models import load_model
from cam_core.synth import make_sample_set, write_voc_folder
from cam_core.train import (
    DoneEvent,
    EpochEvent,
    StepEvent,
    TrainConfig,
    _box_loss,
    _Item,
    _stop_early,
    _targets,
    augment,
    box_targets,
    mosaic,
    report_splits,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
NEU = find_neu_det()
needs_neu = pytest.mark.skipif(
    NEU is None, reason="NEU-DET not found (set NEU_DET_DIR or ../shared/NEU-DET)"
)


def test_short_cpu_training_writes_a_loadable_checkpoint_and_card(tmp_path):
    data = write_voc_folder(tmp_path / "data", n_per_class=6, seed=3)
    events = []
    ckpt = train(
        TrainConfig(
            data=str(data),
            out=str(tmp_path / "run"),
            input_size=64,
            epochs=2,
            batch_size=8,
            max_steps=3,
            device="cpu",
            command="python -m cam_core train …",
        ),
        progress=events.append,
    )
    loaded = load_model(ckpt)
    card = loaded.card
    assert card.classes == NEU_CLASSES and card.arch == "local_resnet18" and card.synthetic
    assert card.training["command"] == "python -m cam_core train …"
    assert set(card.metrics["val"]["per_class"]) == set(NEU_CLASSES)
    assert "confusion" in card.metrics["val"]
    assert [type(e) for e in events] == [StepEvent] * 3 + [EpochEvent, DoneEvent]
    assert [e.step for e in events[:3]] == [1, 2, 3] and events[-1].path == ckpt
    epoch = events[3]
    assert (epoch.epoch, epoch.step, epoch.best_epoch) == (0, 3, 0)
    assert epoch.val_macro_f1 == card.metrics["history"][0]["val_macro_f1"]
    assert not (tmp_path / "run" / "last.pt").exists()
    probs = Explainer(loaded.model, card).predict([np.zeros((200, 200), np.uint8)])
    assert probs.shape == (1, 6)


def test_same_seed_trains_identical_weights_and_another_seed_does_not(tmp_path):
    """Determinism: every random draw (init, order, mosaics, flips, shifts) comes from the seed.
    The refactor into prepare/epoch/checkpoint/finalise was checked against the code before it
    by hand (same weights for this recipe and others; see the commit message), not here.
    """
    data = write_voc_folder(tmp_path / "data", n_per_class=6, seed=3)
    cfg = TrainConfig(
        data=str(data),
        out="-",
        arch="patch_resnet18",
        multilabel=True,
        input_size=32,
        epochs=1,
        batch_size=8,
        max_steps=2,
        mosaic=0.5,
        box_loss=1.0,
        device="cpu",
    )

    def weights(seed: int, out: str) -> dict[str, torch.Tensor]:
        return load_model(
            train(replace(cfg, seed=seed, out=str(tmp_path / out)))
        ).model.state_dict()

    first, again, other = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_progress_events_describe_themselves_in_one_line():
    step = StepEvent(epoch=1, step=30, total=120, loss=0.12345)
    assert step.describe() == "epoch 1 · step 30/120 · loss 0.123" and step.fraction == 0.25
    assert StepEvent(0, 0, 0, 1.0).fraction == 0.0
    epoch = EpochEvent(
        epoch=2, loss=0.4321, val_accuracy=0.9, val_macro_f1=0.8765, best_epoch=1, step=3, total=9
    )
    assert epoch.describe() == (
        "epoch 2: val accuracy 0.9, macro-F1 0.8765, loss 0.4321 (best epoch 1)"
    )
    done = DoneEvent(Path("runs/x/model.pt"), {"accuracy": 1.0})
    assert done.describe() == f"saved {Path('runs/x/model.pt')} and {Path('runs/x/model.json')}"
    with pytest.raises(AttributeError):
        step.loss = 0.0  # frozen


def test_box_targets_cover_the_cells_under_each_class_box():
    boxes = (Box("a", 0, 0, 100, 200), Box("b", 152, 48, 200, 96))
    t = box_targets(boxes, ("a", "b", "c"), (200, 200), (25, 25))  # 8-px cells
    assert t.shape == (3, 25, 25)
    np.testing.assert_allclose(t[0][:, :12], 1.0)
    np.testing.assert_allclose(t[0][:, 12], 0.5)  # pixels 96..103: half inside x < 100
    assert t[0][:, 13:].max() == 0
    assert t[1][6:12, 19:].min() == 1.0 and t[1].sum() == 36  # exactly those 6 × 6 cells
    assert t[2].max() == 0  # no box of class c


def test_box_loss_prefers_maps_on_the_boxes_and_ignores_images_without_boxes():
    classes = ("a", "b")
    img = np.zeros((200, 200), np.uint8)
    batch = [_Item(img, (Box("a", 0, 0, 100, 200),), "a"), _Item(img, (), "b")]
    t = torch.from_numpy(box_targets(batch[0].boxes, classes, (200, 200), (25, 25)))
    on = (t * 2 - 1) * 6  # high on a's boxes, low elsewhere
    on_box = torch.stack([on, torch.zeros_like(on)])  # the box-less image's map is arbitrary
    off_box = torch.stack([-on, torch.full_like(on, 9.0)])
    assert _box_loss(on_box, batch, classes, 200) < 0.05 < _box_loss(off_box, batch, classes, 200)
    # only image 0 counts: changing image 1's maps changes nothing
    assert torch.isclose(
        _box_loss(on_box, batch, classes, 200),
        _box_loss(torch.stack([on, torch.full_like(on, -9.0)]), batch, classes, 200),
    )
    assert float(_box_loss(on_box, batch[1:] * 2, classes, 200)) == 0.0


def test_box_supervised_training_runs_and_is_recorded_on_the_card(tmp_path):
    data = write_voc_folder(tmp_path / "data", n_per_class=6, seed=4)
    cfg = TrainConfig(
        data=str(data),
        out=str(tmp_path / "run"),
        arch="patch_resnet18",
        input_size=64,
        epochs=1,
        batch_size=8,
        max_steps=2,
        box_loss=1.0,
        mosaic=0.5,
        device="cpu",
    )
    card = load_model(train(cfg)).card
    assert card.training["box_loss"] == 1.0
    with pytest.raises(ValueError, match=r"score maps.*'resnet18'"):
        train(replace(cfg, arch="resnet18", out=str(tmp_path / "r2")))
    with pytest.raises(ValueError, match="box_loss must be >= 0, got -1"):
        train(replace(cfg, box_loss=-1.0, out=str(tmp_path / "r3")))


def test_training_resumes_from_last_checkpoint(tmp_path):
    data = write_voc_folder(tmp_path / "data", n_per_class=6, seed=5)
    cfg = TrainConfig(
        data=str(data),
        out=str(tmp_path / "run"),
        input_size=64,
        epochs=2,
        batch_size=8,
        device="cpu",
        patience=10,
    )
    seen = []

    def stop_after_first_epoch(ev):
        seen.append(ev)
        if isinstance(ev, EpochEvent):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=stop_after_first_epoch)
    assert (tmp_path / "run" / "last.pt").exists()
    resumed = []
    train(cfg, progress=resumed.append)
    epochs = [e.epoch for e in resumed if isinstance(e, EpochEvent)]
    assert epochs == [1], "the finished epoch 0 must not run again"


def test_empty_validation_split_is_a_clear_error(tmp_path):
    data = write_voc_folder(tmp_path / "data", n_per_class=1, seed=5)
    with pytest.raises(ValueError, match="validation split is empty"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "run"), input_size=64, device="cpu"))


def test_multilabel_targets_follow_the_boxes():
    classes = NEU_CLASSES
    item = _Item(
        np.zeros((8, 8), np.uint8),
        (Box("crazing", 0, 0, 4, 4), Box("patches", 4, 4, 8, 8)),
        "crazing",
    )
    assert _targets(item, classes, multilabel=True).tolist() == [1, 0, 1, 0, 0, 0]
    assert _targets(item, classes, multilabel=False).tolist() == [1, 0, 0, 0, 0, 0]


@needs_neu
def test_crazing_104_is_multilabel_with_patches():
    ds = load_dataset(NEU)
    s = next(s for s in ds.samples if s.stem == "crazing_104")
    item = _Item(np.zeros((1, 1), np.uint8), s.boxes, s.label)
    y = _targets(item, NEU_CLASSES, multilabel=True)
    assert y[NEU_CLASSES.index("patches")] == 1


def test_early_stopping_waits_for_the_second_half_of_the_schedule():
    cfg = TrainConfig(data="-", out="-", epochs=24, patience=5)
    # Near the peak learning rate val scores swing: no stop there, however long since the best.
    assert not any(_stop_early(epoch, 1, cfg) for epoch in range(12))
    assert _stop_early(12, 1, cfg)
    assert not _stop_early(15, 11, cfg) and _stop_early(16, 11, cfg)
    assert not _stop_early(23, 1, replace(cfg, patience=0))


def test_mosaic_boxes_land_on_their_quadrant():
    parts = []
    for k in range(4):
        img = np.zeros((200, 200), np.uint8)
        img[20:60, 100:180] = 50 * (k + 1)
        parts.append((img, (Box(NEU_CLASSES[k], 100, 20, 180, 60),)))
    canvas, boxes = mosaic(parts, size=200)
    for k, b in enumerate(boxes):
        r, c = divmod(k, 2)
        assert (b.x0, b.y0, b.x1, b.y1) == (50 + 100 * c, 10 + 100 * r, 90 + 100 * c, 30 + 100 * r)
        inside = canvas[int(b.y0) + 1 : int(b.y1) - 1, int(b.x0) + 1 : int(b.x1) - 1]
        assert (inside == 50 * (k + 1)).all(), f"quadrant {k}: the box does not cover its defect"


def test_augment_moves_boxes_with_the_pixels():
    rng = np.random.default_rng(0)
    img = np.zeros((100, 100), np.uint8)
    img[10:30, 60:90] = 255
    box = (Box("scratches", 60, 10, 90, 30),)
    for _ in range(20):
        out, (b,) = augment(img, box, rng)
        inside = out[int(b.y0) : int(b.y1), int(b.x0) : int(b.x1)]
        assert inside.mean() > 200, "augmented box lost its defect"
        assert 0 <= b.x0 < b.x1 <= 100 and 0 <= b.y0 < b.y1 <= 100


# ----------------------------------------------------------------------------- bundled models
def _bundled(name: str) -> Path:
    path = ROOT / "models" / name / "model.pt"
    if not path.exists():
        pytest.skip(f"bundled model {name} not in this checkout")
    return path


def test_demo_model_points_into_planted_defects():
    """Fresh synthetic images (a seed never used in training): the demo's recommended map must
    point into a planted box of the true class on ≥ 90 % of them."""
    loaded = load_model(_bundled("demo-synthetic"))
    card = loaded.card
    rec = card.recommended
    method, layers = (rec.method, rec.layer) if rec else ("gradcam", None)
    samples = make_sample_set(8, seed=12345)
    images = [img for _, img, _ in samples]
    targets = [[NEU_CLASSES.index(stem.split("_synth_")[0])] for stem, _, _ in samples]
    exp = Explainer(loaded.model, card).explain(images, [method], targets=targets, layers=layers)
    hits = [
        pointing_game(exp.get(i, t[0], method).cam, boxes)
        for i, ((_, _, boxes), t) in enumerate(zip(samples, targets, strict=True))
    ]
    assert np.mean(hits) >= 0.9, f"pointing {np.mean(hits):.2f} on fresh synthetic images"


@needs_neu
@pytest.mark.parametrize(
    "name", ["neu-boxsup-patch-resnet18", "neu-patch-resnet18", "neu-local-resnet18"]
)
def test_bundled_neu_model_reaches_its_stated_accuracy(name):
    path = _bundled(name)
    loaded = load_model(path)
    card = json.loads(path.with_suffix(".json").read_text())
    stated = card["metrics"]["val"]["accuracy"]
    val = load_dataset(NEU, split="val").samples
    from cam_core.data import read_image

    probs = Explainer(loaded.model, loaded.card).predict([read_image(s.path) for s in val])
    acc = float(
        np.mean(
            [loaded.card.classes[p.argmax()] == s.label for p, s in zip(probs, val, strict=True)]
        )
    )
    assert acc == pytest.approx(stated, abs=0.005)
    assert acc >= 0.98


def test_report_splits_adds_train_and_test_figures_beside_val(tmp_path):
    data = write_voc_folder(tmp_path / "data", n_per_class=8, seed=3)
    ckpt = train(
        TrainConfig(
            data=str(data),
            out=str(tmp_path / "run"),
            input_size=64,
            epochs=1,
            batch_size=8,
            max_steps=1,
            device="cpu",
        )
    )
    before = load_model(ckpt).card.metrics
    figures = report_splits(ckpt, str(data))
    metrics = load_model(ckpt).card.metrics
    assert metrics["val"] == before["val"] and metrics["history"] == before["history"]
    for split in ("train", "test"):
        assert metrics[split] == figures[split]
        assert metrics[split]["n"] == len(load_dataset(data, split=split).samples) > 0
        assert 0.0 <= metrics[split]["accuracy"] <= 1.0
    with pytest.raises(ValueError, match=r"'train' or 'test', got \['val'\]"):
        report_splits(ckpt, str(data), splits=("val",))


@needs_neu
def test_bundled_transformer_reproduces_its_stated_test_accuracy():
    """The bundled hybrid ViT (issue 17): a timm VisionTransformer under 12 MB whose card's test
    figure (written once by report_splits) is what it scores on the 222 held-out test images."""
    from timm.models.vision_transformer import VisionTransformer

    from cam_core.data import read_image

    path = _bundled("neu-convstem-vit")
    assert path.stat().st_size <= 12 * 2**20
    loaded = load_model(path)
    assert isinstance(loaded.model, VisionTransformer) and loaded.card.arch == "convstem_vit"
    stated = loaded.card.metrics["test"]["accuracy"]
    test = load_dataset(NEU, split="test").samples
    probs = Explainer(loaded.model, loaded.card).predict([read_image(s.path) for s in test])
    acc = float(
        np.mean(
            [loaded.card.classes[p.argmax()] == s.label for p, s in zip(probs, test, strict=True)]
        )
    )
    assert acc == pytest.approx(stated, abs=0.005)
    assert acc >= 0.9  # far above chance (1/6); the figure itself is stated in docs/localization.md


@needs_neu
def test_bundled_multilabel_model_separates_classes_on_held_out_mosaics():
    path = _bundled("neu-multilabel-boxsup-patch-resnet18")
    loaded = load_model(path)
    assert loaded.card.multilabel
    from cam_core.data import read_image
    from cam_core.train import evaluate_classifier, val_mosaics

    val = load_dataset(NEU, split="val").samples
    items = [_Item(read_image(s.path), s.boxes, s.label) for s in val]
    figures = evaluate_classifier(loaded.model, loaded.card, val_mosaics(items))
    stated = json.loads(path.with_suffix(".json").read_text())["metrics"]["val_mosaic"]
    assert figures["macro_f1"] == pytest.approx(stated["macro_f1"], abs=0.005)
    f1 = {c: v["f1"] for c, v in figures["per_class"].items()}
    # The target: 0.95 for every class. The bundled model reaches 0.95 (inclusion) to 0.99
    # on this draw (models/README.md); a worse retrain fails.
    assert figures["macro_f1"] >= 0.97 and min(f1.values()) >= 0.95, f1


@needs_neu
def test_default_model_recommended_map_reproduces_its_card_and_beats_the_baselines_on_val():
    from cam_core import catalogue
    from cam_core.evaluation import EvalConfig, evaluate

    ref = catalogue.bundled_models(ROOT / "models")[0]
    rec = load_model(ref.path).card.recommended
    assert rec and rec.calibration.split == "val", "default model has no val calibration"
    table = evaluate(
        EvalConfig(
            data=str(NEU),
            checkpoint=ref.path,
            split="val",
            methods=(rec.method,),
            layers=(rec.layer,),
            flip_smooth=rec.flips,
        )
    ).summary()
    overall = table[table["class"] == "all"].set_index("method")
    ours = overall.loc[rec.method]
    assert ours["pointing"] == pytest.approx(rec.figures["pointing"], abs=0.005)
    assert ours["energy"] == pytest.approx(rec.figures["energy"], abs=0.005)
    # Clearly beats the trivial maps (on val the centre point alone scores 0.60).
    assert ours["pointing"] >= overall.loc["baseline:centre", "pointing"] + 0.15
    assert ours["energy"] >= overall.loc["baseline:uniform", "energy"] + 0.2


def test_held_out_mosaic_folder_loads_back_with_every_quadrants_boxes(tmp_path):
    from cam_core.train import write_mosaic_folder

    src = write_voc_folder(tmp_path / "src", n_per_class=8, seed=3, size=200)
    out = write_mosaic_folder(src, tmp_path / "mosaics", split="test", n=6, seed=1)
    ds = load_dataset(out)
    assert len(ds.samples) == 6
    for s in ds.samples:
        assert s.label is None and len(set(s.labels)) >= 2  # no file class; several box classes
        quadrants = {(int(b.y0 >= 100), int(b.x0 >= 100)) for b in s.boxes}
        assert quadrants == {(0, 0), (0, 1), (1, 0), (1, 1)}
        assert all(0 <= b.x0 < b.x1 <= 200 and 0 <= b.y0 < b.y1 <= 200 for b in s.boxes)
