"""cam_core.catalogue: bundled and uploaded models, layer options, the recommendation."""

from pathlib import Path

import pytest

from cam_core import catalogue
from cam_core.models import ModelCard


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
        "plant-demo": {"synthetic": True, "metrics": {"val": {"accuracy": 0.5}}},
        "no-card": None,
    }
    for name, card in cards.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.pt").write_bytes(b"x")
        if card is not None:
            (folder / "model.json").write_text(json.dumps(card))
    refs = catalogue.bundled_models(tmp_path)
    assert [r.label for r in refs] == [
        "omega-localizes",  # a better recommended map outranks a little more accuracy
        "zeta-real",
        "beta-real",
        "alpha-multi",
        "alpha-synthetic",  # short labels the sidebar box does not clip (QA item 5)
        "plant-demo · synthetic",  # marked only where the name does not say it
    ]
    assert catalogue.bundled_models(tmp_path / "absent") == []


def test_uploaded_model_needs_a_card_or_class_names(tmp_path):
    with pytest.raises(ValueError, match=r"w\.pt: no model card given, so class names are needed"):
        catalogue.uploaded_model(("w.pt", b"abc"), classes=[" ", ""], folder=tmp_path)
    with pytest.raises(ValueError, match=r"card\.json: not a model card"):
        catalogue.uploaded_model(("w.pt", b"abc"), card_json=("card.json", b"{}"), folder=tmp_path)
    ref = catalogue.uploaded_model(("my w.pt", b"abc"), classes=["a", " b"], folder=tmp_path)
    assert Path(ref.path).name == "my_w.pt" and ref.classes == ("a", "b")
    message = f"{ref.path}: not a readable PyTorch checkpoint"
    assert (
        catalogue.name_in_message(message, tmp_path) == "my_w.pt: not a readable PyTorch checkpoint"
    )


def test_layer_options_put_the_card_layer_first():
    card = ModelCard("m", "resnet18", ("a", "b"), False, 64, (0, 0, 0), (1, 1, 1), "layer3")
    assert catalogue.layer_options(card) == ["layer3", "layer4", "layer2"]


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
    assert catalogue.layer_options(card)[0] == "layer3"
    assert "layer4" in catalogue.layer_options(card)
    text = catalogue.recommended_caption(card)
    # display names, not internal ids (QA item 4)
    assert text.startswith("Recommended: LayerCAM @ layer3")
    assert "pointing 0.61" in text and "centre-point baseline 0.60" in text and "n=228" in text
    assert "flip averaging" not in text
    flipped = dataclasses.replace(
        card, recommended=dataclasses.replace(card.recommended, flips=True)
    )
    assert catalogue.recommended_caption(flipped).startswith(
        "Recommended: LayerCAM @ layer3 with flip averaging"
    )
    plain = dataclasses.replace(card, recommended=None)
    assert catalogue.recommended_caption(plain) is None
    assert catalogue.layer_options(plain)[0] == "layer4"


def _card_bytes(name="neu-boxsup-x"):
    card = ModelCard(name, "resnet18", ("a", "b"), False, 64, (0, 0, 0), (1, 1, 1))
    return card.to_json().encode()


def test_a_checkpoint_and_its_card_dropped_together_are_paired(tmp_path):
    """Issue 14 item 4: model.pt + model.json in one drop; the card by stem, else the only one."""
    pair = catalogue.pair_checkpoint_files(
        [("model.json", b"{card}"), ("model.pt", b"w"), ("other.json", b"{}")], folder=tmp_path
    )
    assert pair.checkpoint == ("model.pt", b"w") and pair.card == ("model.json", b"{card}")
    assert pair.errors == ()
    pair = catalogue.pair_checkpoint_files([("w.pth", b"w"), ("card.json", b"{}")], folder=tmp_path)
    assert pair.card == ("card.json", b"{}")
    pair = catalogue.pair_checkpoint_files([("w.pt", b"w")], folder=tmp_path)
    assert pair.checkpoint == ("w.pt", b"w") and pair.card is None
    # several checkpoints in one drop: the last is loaded and said so; its card only by stem
    pair = catalogue.pair_checkpoint_files(
        [("old.pt", b"o"), ("old.json", b"{o}"), ("w.pt", b"w"), ("a.json", b"{a}")],
        folder=tmp_path,
    )
    assert pair.checkpoint == ("w.pt", b"w") and pair.card is None
    assert pair.errors == ()
    assert pair.notes == (
        "2 checkpoints were dropped together: w.pt (the last) is loaded, old.pt not. Drop one "
        "checkpoint at a time, with its card.",
        "old.json, a.json: not used; no w.json came with w.pt",
    )


def test_a_card_is_never_paired_with_another_checkpoint(tmp_path):
    """QA item 1: release.pt dropped after model.pt + model.json was loaded "with its card
    model.json"; a card goes with its own checkpoint only."""
    pair = catalogue.pair_checkpoint_files(
        [("model.pt", b"m"), ("model.json", b"{m}"), ("release.pt", b"r")], folder=tmp_path
    )
    assert pair.checkpoint == ("release.pt", b"r") and pair.card is None
    assert any("release.pt (the last) is loaded, model.pt not" in n for n in pair.notes)
    assert "model.json: not used; no release.json came with release.pt" in pair.notes


def test_a_file_that_is_no_checkpoint_is_named_for_what_it_is(tmp_path):
    """Issue 14 item 6: a .jpg in the checkpoint box says what it is, not "choose a file"."""
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64)
    pair = catalogue.pair_checkpoint_files([("photo.jpg", jpeg)], folder=tmp_path)
    assert pair.checkpoint is None
    (error,) = pair.errors
    assert error.startswith("photo.jpg: a JPEG image, not a checkpoint")
    pair = catalogue.pair_checkpoint_files([("card.json", _card_bytes())], folder=tmp_path)
    assert pair.errors == (
        "No checkpoint among the files dropped (card.json): add the weights "
        "(.pt, .pth, .safetensors, .bin)",
    )
    pair = catalogue.pair_checkpoint_files([("w.pt", b"w"), ("photo.jpg", jpeg)], folder=tmp_path)
    assert pair.checkpoint == ("w.pt", b"w") and pair.errors == ()
    (note,) = pair.notes
    assert note.startswith("photo.jpg: a JPEG image, not a checkpoint")


def test_an_uploaded_model_is_named_by_its_card(tmp_path):
    """Issue 14 item 5: "neu-boxsup-x (uploaded)", not "model.pt (uploaded)"."""
    ref = catalogue.uploaded_model(
        ("model.pt", b"w"), card_json=("model.json", _card_bytes()), folder=tmp_path
    )
    assert ref.label == "neu-boxsup-x (uploaded)"
    assert Path(ref.path).with_suffix(".json").read_bytes() == _card_bytes()
    bare = catalogue.uploaded_model(("model.pt", b"w"), classes=["a", "b"], folder=tmp_path)
    assert bare.label == "model.pt (uploaded)"


def test_a_checkpoint_is_shown_by_the_name_it_was_uploaded_as(tmp_path):
    """QA item 4: "model.pt (uploaded)", not /tmp/cam-core-uploads/<hash>/model.pt; a bundled
    model's path relative to the repository."""
    ref = catalogue.uploaded_model(("my model.pt", b"w"), classes=["a"], folder=tmp_path)
    assert catalogue.checkpoint_shown(ref, tmp_path) == "my model.pt (uploaded)"
    bundled = catalogue.ModelRef("m", str(tmp_path / "models" / "m" / "model.pt"))
    assert catalogue.checkpoint_shown(bundled, tmp_path) == "models/m/model.pt"
    assert catalogue.checkpoint_shown(bundled, tmp_path / "elsewhere") == bundled.path
