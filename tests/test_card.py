"""Tests for cam_core.models.card: the model card, its typed recommendation, the default layer."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cam_core.models import (
    Calibration,
    Candidate,
    CheckpointError,
    ModelCard,
    Recommendation,
    card_path_for,
    get_arch,
    load_model,
)

CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def test_card_json_round_trip_with_numpy_values(make_card) -> None:
    card = make_card(
        target_layer="layer3",
        training={"epochs": 3, "seed": np.int64(7), "wall_s": np.float32(1.5)},
        metrics={"confusion": np.eye(2, dtype=np.int64), "f1": {"crazing": 0.9}},
        recommended={"method": "gradcam", "layer": "layer2", "threshold": np.float64(0.5)},
        notes="hello",
    )
    back = ModelCard.from_json(card.to_json())
    assert back.classes == CLASSES and back.target_layer == "layer3"
    assert back.metrics["confusion"] == [[1, 0], [0, 1]]
    assert back.training == {"epochs": 3, "seed": 7, "wall_s": 1.5}
    assert back.recommendation == Recommendation(method="gradcam", layer="layer2", threshold=0.5)
    assert json.loads(back.to_json())["recommended"] == {
        "method": "gradcam",
        "layer": "layer2",
        "flips": False,
        "threshold": 0.5,
        "figures": {},
        "baselines": {},
        "candidates": [],
    }
    assert back == ModelCard.from_json(back.to_json())


BUNDLED_CARDS = sorted(Path(__file__).parents[1].glob("models/*/model.json"))


@pytest.mark.parametrize("path", BUNDLED_CARDS, ids=lambda p: p.parent.name)
def test_bundled_cards_parse_into_a_typed_recommendation_and_write_back_unchanged(
    path: Path,
) -> None:
    raw = json.loads(path.read_text())
    card = ModelCard.from_json(path.read_text())
    rec = card.recommendation
    assert isinstance(rec, Recommendation) and rec.method == raw["recommended"]["method"]
    assert rec.layer == raw["recommended"]["layer"] == card.default_layer
    assert rec.flips is raw["recommended"].get("flips", False)
    assert rec.threshold == raw["recommended"]["threshold"]
    assert rec.figures["pointing"] == raw["recommended"]["figures"]["pointing"]
    centre = raw["recommended"]["baselines"]["baseline:centre"]
    assert rec.baselines["baseline:centre"]["pointing"] == centre["pointing"]
    assert (
        isinstance(rec.calibration, Calibration)
        and rec.calibration.split == raw["recommended"]["calibration"]["split"]
    )
    assert all(isinstance(c, Candidate) for c in rec.candidates) and rec.candidates
    # The card written back keeps the JSON as it was (an absent "flips" now reads false).
    expected = raw["recommended"]
    expected.setdefault("flips", False)
    for c in expected["candidates"]:
        c.setdefault("flips", False)
    assert json.loads(card.to_json())["recommended"] == expected


def test_default_layer_is_recommended_then_card_then_architecture(make_card) -> None:
    rec = {"method": "gradcam", "layer": "layer2+layer3"}
    assert make_card(target_layer="layer3", recommended=rec).default_layer == "layer2+layer3"
    assert make_card(target_layer="layer3").default_layer == "layer3"
    assert make_card().default_layer == get_arch("resnet18").target_layers[0] == "layer4"
    assert make_card(arch="efficientnet_b0").default_layer == "features.8"
    with pytest.raises(KeyError, match=r"Unknown architecture 'nonet'; valid"):
        _ = make_card(arch="nonet").default_layer


def test_a_loaded_model_defaults_to_its_cards_recommended_layer(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    loaded = load_model(tiny_checkpoint)
    assert loaded.card.recommendation is None
    assert loaded.target_layer == loaded.card.default_layer == "layer3"  # local_resnet18's first
    path = tmp_path / "model.pt"
    shutil.copyfile(tiny_checkpoint, path)
    rec = {"method": "gradcam++", "layer": "layer2", "flips": True, "threshold": 0.3}
    card_path_for(path).write_text(dataclasses.replace(loaded.card, recommended=rec).to_json())
    again = load_model(path)
    assert again.card.recommendation == Recommendation(
        method="gradcam++", layer="layer2", flips=True, threshold=0.3
    )
    assert again.target_layer == "layer2"
    data = json.loads(card_path_for(path).read_text())
    data["recommended"]["threshold"] = 3
    card_path_for(path).write_text(json.dumps(data))
    with pytest.raises(
        CheckpointError,
        match=r"model\.json: unreadable model card: ModelCard 'tiny-local': "
        r"recommended\.threshold must be in \[0, 1\], got 3\.0$",
    ):
        load_model(path)


def test_a_model_card_given_as_the_checkpoint_says_what_to_give(tiny_checkpoint: Path) -> None:
    card_file = card_path_for(tiny_checkpoint)
    with pytest.raises(
        CheckpointError,
        match=rf"^{re.escape(str(card_file))}: a model card \(JSON\), not a checkpoint: give the "
        "weights file, with this card beside it under the same name$",
    ):
        load_model(card_file)


@pytest.mark.parametrize(
    ("recommended", "match"),
    [
        ({"layer": "layer4"}, r"recommended\.method is missing"),
        ({"method": "gradcam"}, r"recommended\.layer is missing"),
        ({"method": "", "layer": "layer4"}, r"recommended\.method must be a non-empty string"),
        ({"method": "gradcam", "layer": "layer4", "threshold": "high"}, r"threshold must be a n"),
        (
            {"method": "gradcam", "layer": "layer4", "threshold": 2},
            r"threshold must be in \[0, 1\]",
        ),
        ({"method": "gradcam", "layer": "layer4", "flips": "yes"}, r"flips must be true or false"),
        ({"method": "m", "layer": "l", "figures": [1]}, r"figures must be a JSON object, got list"),
        ({"method": "m", "layer": "l", "figures": {"iou": True}}, r"figures\.iou must be a number"),
        (
            {"method": "m", "layer": "l", "candidates": [{"method": "m", "layer": "l"}]},
            r"recommended\.candidates\[0\]\.score is missing",
        ),
        ({"method": "m", "layer": "l", "calibration": {"n": "all"}}, r"calibration\.n must be a"),
        ("gradcam", r"recommended must be a JSON object, got str"),
    ],
)
def test_bad_recommendation_names_the_card_and_the_field(
    make_card, recommended: object, match: str
) -> None:
    with pytest.raises(ValueError, match=rf"^ModelCard 'test-card': .*{match}"):
        make_card(recommended=recommended)
    data = dict(json.loads(make_card().to_json()), recommended=recommended)
    with pytest.raises(ValueError, match=match):
        ModelCard.from_json(json.dumps(data))


def test_card_ignores_unknown_keys_and_names_missing_ones(make_card) -> None:
    data = json.loads(make_card().to_json())
    data["future_field"] = 1
    assert ModelCard.from_json(json.dumps(data)).arch == "resnet18"
    del data["classes"], data["input_size"]
    with pytest.raises(
        ValueError, match=r"missing required field\(s\): \['classes', 'input_size'\]"
    ):
        ModelCard.from_json(json.dumps(data))
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelCard.from_json("{nope")
    with pytest.raises(ValueError, match="duplicate class names"):
        make_card(classes=("a", "a"))
    with pytest.raises(ValueError, match="mean/std need 3 values"):
        make_card(mean=(0.5,))


def test_card_path_for() -> None:
    assert card_path_for("/x/models/neu_r18.pt") == Path("/x/models/neu_r18.json")
    assert card_path_for(Path("m.safetensors")) == Path("m.json")
