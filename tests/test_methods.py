"""The method registry: dispatch by kind, refusals that name the valid choices, a method added
with one registry entry running end to end, and test-time averaging as data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cam_core.cams import gradient, perturbation, reference
from cam_core.cams.context import AUG_SMOOTH, FLIP_AVERAGE, FLIPS, Augment, Batch
from cam_core.explain import Explainer
from cam_core.methods import (
    KIND_COMPUTE,
    KINDS,
    METHODS,
    MethodSpec,
    get_method,
    register_method,
)
from cam_core.models import ModelCard, build_model

CLASSES = ("a", "b", "c")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", len(CLASSES)).eval()


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard(
        name="toy",
        arch="resnet18",
        classes=CLASSES,
        multilabel=False,
        input_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )


@pytest.fixture
def temporary():
    """Register specs for one test, unregistered after."""
    added: list[str] = []

    def add(spec: MethodSpec) -> MethodSpec:
        added.append(spec.name)
        return register_method(spec)

    yield add
    for name in added:
        METHODS.pop(name, None)


def test_unknown_method_fails_with_the_list_of_valid_ones():
    with pytest.raises(KeyError, match=r"Unknown CAM method 'gradkam'; valid: \[.*'gradcam'.*\]"):
        get_method("gradkam")


def test_every_method_dispatches_to_a_function_of_its_family():
    family = {
        "gradient": gradient,
        "activation": gradient,
        "analytic": gradient,
        "perturbation": perturbation,
    }
    for name, spec in METHODS.items():
        compute = spec.compute or KIND_COMPUTE[spec.kind]
        assert spec.kind in KINDS
        expected = family.get(spec.kind, reference if name != "lime" else perturbation)
        assert compute.__module__ == expected.__name__, name
    assert get_method("scorecam").compute is perturbation.scorecam
    assert get_method("gradcam").compute is None  # the kind's: formula_map
    assert KIND_COMPUTE["gradient"] is gradient.formula_map
    assert KIND_COMPUTE["library"] is reference.library


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (MethodSpec("gradcam", "again", "gradient"), "'gradcam' is already registered"),
        (
            MethodSpec("x-kind", "X", "magic"),
            r"unknown kind 'magic'; valid: \['gradient', 'activation', 'analytic', 'perturbation'",
        ),
        (MethodSpec("x-grad", "X", "gradient"), "kind 'gradient' needs a formula"),
        (MethodSpec("x-pert", "X", "perturbation"), "kind 'perturbation' needs a compute"),
    ],
)
def test_register_refuses_what_the_engine_could_not_run(spec, message):
    with pytest.raises(ValueError, match=message):
        register_method(spec)
    assert METHODS.get(spec.name) is not spec


def test_a_formula_method_is_one_registry_entry(temporary, model, card):
    """|G|-weighted Grad-CAM: registered with a one-line formula, computed by the engine."""
    temporary(
        MethodSpec(
            "abs-gradcam",
            "Abs Grad-CAM",
            "gradient",
            formula=lambda a, g: g.abs().mean(dim=(2, 3))[:, :, None, None] * a,
        )
    )
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64), np.uint8) for _ in range(2)]
    exp = Explainer(model, card).explain(images, ["abs-gradcam", "gradcam"], targets=[[0], [2]])
    for i, c in ((0, 0), (1, 2)):
        ours = exp.get(i, c, "abs-gradcam")
        assert ours.cam.shape == (64, 64) and ours.cam.min() >= 0 and ours.cam.max() <= 1
        assert ours.strength is not None and ours.strength > 0
        assert not np.allclose(ours.cam, exp.get(i, c, "gradcam").cam, atol=1e-3)


def test_a_method_with_its_own_compute_sees_one_batch_context(temporary, model, card):
    seen: list[Batch] = []

    def centre(ctx: Batch, spec: MethodSpec) -> tuple[torch.Tensor, None]:
        seen.append(ctx)
        maps = torch.zeros(len(ctx.img_idx), *ctx.input_size)
        maps[:, 24:40, 24:40] = 1
        return maps, None

    temporary(MethodSpec("centre", "Centre", "perturbation", compute=centre))
    images = [np.zeros((128, 96), np.uint8), np.zeros((64, 64), np.uint8)]
    exp = Explainer(model, card, batch_size=2).explain(
        images, ["centre"], targets=[[0, 1], [2]], layers="layer3+layer4"
    )
    (ctx,) = seen
    assert ctx.img_idx.tolist() == [0, 0, 1] and ctx.cls_idx.tolist() == [0, 1, 2]
    assert ctx.layers.names == ("layer3", "layer4") and ctx.modules == (model.layer3, model.layer4)
    assert tuple(ctx.x.shape) == (2, 3, 64, 64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.x = ctx.x  # type: ignore[misc]
    cam = exp.get(0, 1, "centre")
    assert cam.cam.shape == (128, 96) and cam.layer == "layer3+layer4" and cam.strength is None


def test_averaging_transforms_are_data_and_undo_what_they_do():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    assert [a.flip for a in FLIP_AVERAGE.augments] == list(FLIPS) and FLIP_AVERAGE.renormalise
    assert [(a.flip, a.scale) for a in AUG_SMOOTH.augments] == [
        ((), 0.9),
        ((), 1.0),
        ((), 1.1),
        ((-1,), 0.9),
        ((-1,), 1.0),
        ((-1,), 1.1),
    ]
    assert not AUG_SMOOTH.renormalise
    for aug in FLIP_AVERAGE.augments:
        torch.testing.assert_close(aug.undo(aug.apply(x)[:, 0])[:, None], x[:, :1])
    assert Augment().identity and not Augment((-1,)).identity and not Augment((), 0.9).identity
    torch.testing.assert_close(Augment((), 1.1).apply(x), x * 1.1)
