"""LayerSet: "layer3+layer4" parsed once, printed back, validated, resolved in a model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cam_core.explain import Explainer
from cam_core.layers import LayerSet
from cam_core.models import ModelCard, build_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model("resnet18", 2).eval()


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("layer4", ("layer4",)),
        ("layer3+layer4", ("layer3", "layer4")),
        (" layer3 + layer4.1 ", ("layer3", "layer4.1")),
        ("features[-1]+layer4[-1].conv2", ("features[-1]", "layer4[-1].conv2")),
        ("0.7", ("0.7",)),
    ],
)
def test_parse_and_print_back(text, names):
    layers = LayerSet.parse(text)
    assert layers.names == names
    assert str(layers) == "+".join(names)
    assert LayerSet.parse(str(layers)) == layers
    assert LayerSet.parse(layers) is layers


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty layer set"),
        ("  ", "empty layer set"),
        ("layer3++layer4", r"empty part in layer set 'layer3\+\+layer4'"),
        ("layer4+", "empty part"),
        ("layer3+layer 4", r"bad layer 'layer 4' in 'layer3\+layer 4'"),
        ("layer4..1", r"bad layer 'layer4\.\.1'"),
        ("features[x]", r"bad layer 'features\[x\]'"),
        ("layer4+layer4", "names a layer twice"),
    ],
)
def test_malformed_sets_name_the_bad_part(text, message):
    with pytest.raises(ValueError, match=message):
        LayerSet.parse(text)


def test_a_layer_set_is_a_frozen_value():
    layers = LayerSet(("layer3", "layer4"))
    assert layers == LayerSet.parse("layer3+layer4") and hash(layers) == hash(
        LayerSet.parse("layer3+layer4")
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        layers.names = ("layer2",)  # type: ignore[misc]
    with pytest.raises(ValueError, match="empty layer set"):
        LayerSet(())


def test_resolve_gives_the_modules_in_order(model):
    assert LayerSet.parse("layer4+layer3.1").resolve(model) == (model.layer4, model.layer3[1])
    with pytest.raises(KeyError, match="layer9"):
        LayerSet.parse("layer3+layer9").resolve(model)


def test_the_engine_takes_a_layer_set_or_its_text(model):
    card = ModelCard(
        name="toy",
        arch="resnet18",
        classes=("a", "b"),
        multilabel=False,
        input_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    image = [np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)]
    ex = Explainer(model, card)
    a = ex.explain(image, ["gradcam"], targets=[[1]], layers=LayerSet.parse("layer3+layer4"))
    b = ex.explain(image, ["gradcam"], targets=[[1]], layers=" layer3 + layer4")
    assert a.results[0].layer == b.results[0].layer == "layer3+layer4"
    np.testing.assert_array_equal(a.results[0].cam, b.results[0].cam)
    with pytest.raises(ValueError, match=r"empty part in layer set 'layer3\+'"):
        ex.explain(image, ["gradcam"], targets=[[1]], layers="layer3+")
