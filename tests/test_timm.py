"""Bring your own model: timm and torchvision networks (CNNs, ViT, DeiT, Swin) by name, from a
state_dict or a hub-layout folder, offline; token / channels-last layers read as maps; maps of
every method kind; equality with pytorch-grad-cam called with its documented
``reshape_transform``; clear errors for folders that do not fit.

Tiny configurations with random weights, one torch thread.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from cam_core.explain import CamError, Explainer
from cam_core.models import CheckpointError, load_model, preprocess, resolve_layer
from cam_core.models.probe import probe_layers
from cam_core.models.reshape import LayoutError, layout_of, token_grid
from cam_core.models.timm_models import arch_name, search_timm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")

TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}
TINY_SWIN = {
    "img_size": 32,
    "patch_size": 4,
    "window_size": 4,
    "embed_dim": 16,
    "depths": [1, 1],
    "num_heads": [1, 2],
}
TINY_TV_VIT = {
    "image_size": 32,
    "patch_size": 8,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 32,
    "mlp_dim": 64,
}

# name → (family, architecture, constructor arguments, input side, layer for the oracle,
#         pytorch-grad-cam's documented reshape_transform for that layer, or None for a CNN)
MODELS: dict[str, tuple[str, str, dict[str, Any], int, str, Any]] = {}


def _reshapes() -> None:
    from pytorch_grad_cam.utils.reshape_transforms import (
        swinT_reshape_transform,
        vit_reshape_transform,
    )

    def swin(t: torch.Tensor) -> torch.Tensor:  # timm ≥ 0.9 and torchvision: (B, h, w, C)
        return swinT_reshape_transform(t.flatten(1, 2), height=4, width=4)

    def deit(t: torch.Tensor) -> torch.Tensor:  # the tutorial's ViT transform, 2 tokens dropped
        return vit_reshape_transform(t[:, 1:], height=4, width=4)

    MODELS.update(
        {
            "timm-cnn": ("timm", "test_efficientnet", {}, 64, "bn2", None),
            "timm-vit": (
                "timm",
                "vit_tiny_patch16_224",
                TINY_VIT,
                32,
                "blocks.1.norm1",
                partial(vit_reshape_transform, height=4, width=4),
            ),
            "deit": (
                "timm",
                "deit_tiny_distilled_patch16_224",
                TINY_VIT,
                32,
                "blocks.1.norm1",
                deit,
            ),
            "swin": ("timm", "swin_tiny_patch4_window7_224", TINY_SWIN, 32, "layers.1", swin),
            "torchvision-vit": (
                "torchvision",
                "VisionTransformer",
                TINY_TV_VIT,
                32,
                "encoder.layers.encoder_layer_1.ln_1",
                partial(vit_reshape_transform, height=4, width=4),
            ),
        }
    )


_reshapes()


def _build(key: str) -> nn.Module:
    family, name, args, _, _, _ = MODELS[key]
    torch.manual_seed(0)
    if family == "timm":
        import timm

        model = timm.create_model(name, pretrained=False, num_classes=len(CLASSES), **args)
    else:
        import torchvision.models as tvm

        model = getattr(tvm, name)(num_classes=len(CLASSES), **args)
    with torch.no_grad():  # random weights with some spread (torchvision zero-inits its head)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _hub_folder(key: str, folder: Path, **config: Any) -> Path:
    """A hub-layout folder: timm's own writer (save_for_hf) for timm models, by hand for
    torchvision. ``config`` entries replace config.json's.
    """
    family, name, args, size, _, _ = MODELS[key]
    model = _build(key)
    folder.mkdir(parents=True, exist_ok=True)
    if family == "timm":
        from timm.models import save_for_hf

        save_for_hf(
            model,
            str(folder),
            model_config={"label_names": list(CLASSES)},
            model_args=args or None,
            safe_serialization=True,
            data_config={"input_size": (3, size, size), "mean": (0.5,) * 3, "std": (0.25,) * 3},
        )
    else:
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(folder / "model.safetensors"))
        cfg = {
            "architecture": f"torchvision/{name}",
            "num_classes": len(CLASSES),
            "label_names": list(CLASSES),
            "model_args": args,
            "pretrained_cfg": {
                "input_size": [3, size, size],
                "mean": [0.5] * 3,
                "std": [0.25] * 3,
            },
        }
        (folder / "config.json").write_text(json.dumps(cfg))
    if config:
        data = json.loads((folder / "config.json").read_text())
        data.update(config)
        (folder / "config.json").write_text(json.dumps(data))
    return folder


def _image(size: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((size + 8, size + 4)) * 255).astype(np.uint8)


@pytest.fixture(scope="module", params=sorted(MODELS))
def hub_loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    key = request.param
    folder = _hub_folder(key, tmp_path_factory.mktemp(key) / "my-model")
    return key, load_model(folder)


# ------------------------------------------------------------------------------- loading
def test_hub_folder_loads_offline_with_a_card_built_from_config(hub_loaded):
    key, loaded = hub_loaded
    family, name, _, size, _, _ = MODELS[key]
    card = loaded.card
    assert card.arch.split("?")[0] == f"{family}/{name}"  # timm records more arguments
    assert card.classes == CLASSES and card.input_hw == (size, size) and card.in_chans == 3
    assert card.mean == (0.5,) * 3 and card.std == (0.25,) * 3
    assert "config.json" in card.notes
    x = preprocess([_image(size)], card)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), _build(key)(x))  # the folder's weights


def test_state_dict_loads_with_the_arch_name(hub_loaded, tmp_path):
    key, hub = hub_loaded
    family, name, args, size, _, _ = MODELS[key]
    path = tmp_path / "weights.pt"
    torch.save(_build(key).state_dict(), path)
    loaded = load_model(path, arch=arch_name(family, name, args), classes=CLASSES)
    x = preprocess([_image(size)], hub.card)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), hub.model(x))
    # the card built without config.json: the layer default is the probe's
    assert loaded.card.default_layer == probe_layers(hub.model, (size, size))[0].name


EVERY_KIND = ("gradcam", "gradcam++", "eigencam", "scorecam", "ablationcam", "finercam")
"""One method or more of each kind: gradient, activation, perturbation, library."""


def test_every_method_kind_gives_maps_at_the_default_layer(hub_loaded):
    key, loaded = hub_loaded
    size = MODELS[key][3]
    images = [_image(size, 1), _image(size, 2)]
    ex = Explainer(loaded.model, loaded.card)
    out = ex.explain(images, EVERY_KIND, targets=[[0, 3], [5]])
    assert len(out.results) == 3 * len(EVERY_KIND)
    for r in out.results:
        assert r.cam.shape == images[r.image].shape and r.cam.dtype == np.float32
        assert np.isfinite(r.cam).all() and r.cam.min() >= 0 and r.cam.max() <= 1
    for m in ("gradcam", "eigencam", "scorecam"):  # the default layer gets gradients
        assert any(out.get(i, c, m).cam.max() > 0.99 for i, c in ((0, 0), (0, 3), (1, 5)))


ORACLE = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam")


def test_maps_equal_pytorch_grad_cam_with_its_reshape_transform(hub_loaded):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from cam_core.methods import get_method

    key, loaded = hub_loaded
    _, _, _, size, layer, transform = MODELS[key]
    model, card = loaded.model, loaded.card
    image = _image(size, 3)
    ours = Explainer(model, card).explain([image], ORACLE, targets=[[1, 4]], layers=layer)
    x = preprocess([image], card)
    compared: list[tuple[str, int]] = []
    for method in ORACLE:
        cls = getattr(pgc, get_method(method).library_class)
        cam = cls(
            model=model, target_layers=[resolve_layer(model, layer)], reshape_transform=transform
        )
        try:
            ref = cam(
                input_tensor=x.repeat(2, 1, 1, 1),
                targets=[ClassifierOutputTarget(c) for c in (1, 4)],
            )
        finally:
            cam.activations_and_grads.release()
        for row, c in enumerate((1, 4)):
            if (ours.get(0, c, method).strength or 1) < 1e-5:
                continue  # raw maximum near the library's 1e-7 normalisation epsilon
            compared.append((method, c))
            got = ours.get(0, c, method).cam
            want = torch.nn.functional.interpolate(
                torch.from_numpy(ref[row])[None, None], size=image.shape, mode="bilinear"
            )[0, 0].numpy()
            assert np.abs(got - want).max() < 1e-4, (key, method, c)
    assert len(compared) >= 2 * len(ORACLE) - 2, compared


# --------------------------------------------------------------------------- target layers
def test_probe_finds_blocks_and_stage_ends_by_name():
    vit = {c.name: c for c in probe_layers(_build("timm-vit"), (32, 32))}
    assert {"blocks.0", "blocks.1", "norm"} <= set(vit)
    assert vit["blocks.0"].gradient and vit["blocks.0"].shape == (32, 4, 4)
    assert not vit["norm"].gradient  # only the class token reaches the head
    deit = probe_layers(_build("deit"), (32, 32))
    assert deit[0].name == "blocks.0" and "2 dropped" in deit[0].layout
    swin = [c.name for c in probe_layers(_build("swin"), (32, 32))]
    assert swin == ["norm", "layers.0"]
    cnn = [c.name for c in probe_layers(_build("timm-cnn"), (64, 64))]
    assert cnn[0] == "bn2" and "blocks.0" in cnn


def test_auto_configuration_gets_the_probe_candidates(hub_loaded):
    key, loaded = hub_loaded
    size = MODELS[key][3]
    found = [c.name for c in probe_layers(loaded.model, (size, size))]
    assert set(found) <= set(loaded.card.candidate_layers)
    assert loaded.card.candidate_layers[0] == found[0]


# ----------------------------------------------------------------------------------- inputs
def test_one_channel_non_square_model(tmp_path):
    import timm
    from timm.models import save_for_hf

    args = {**TINY_VIT, "img_size": [32, 48], "in_chans": 1}
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=6, **args)
    save_for_hf(
        model,
        str(tmp_path),
        model_config={"label_names": list(CLASSES)},
        model_args=args,
        safe_serialization=True,
        data_config={"input_size": (1, 32, 48), "mean": (0.5,), "std": (0.25,)},
    )
    loaded = load_model(tmp_path)
    assert loaded.card.in_chans == 1 and loaded.card.input_hw == (32, 48)
    image = _image(40)
    x = preprocess([image], loaded.card)
    assert x.shape == (1, 1, 32, 48)
    out = Explainer(loaded.model, loaded.card).explain(
        [image], ["gradcam", "eigencam"], targets=[[2]]
    )
    assert all(r.cam.shape == image.shape for r in out.results)
    assert out.results[0].layer == "blocks.0"  # 4 x 6 patches, class token dropped


def test_input_size_off_the_patch_grid_is_refused(tmp_path):
    folder = _hub_folder("timm-vit", tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["pretrained_cfg"]["input_size"] = [3, 36, 36]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"36×36 does not fit the 8-px patch grid.*32×32"):
        load_model(folder)
    with pytest.raises(LayoutError, match="does not fit the 16-px patch grid"):
        token_grid(197, (200, 200), 16)


def test_layouts_read_tokens_and_channels_last():
    assert (
        layout_of((2, 197, 384), (224, 224), None).describe()
        == "tokens (1 dropped) on a 14×14 grid"
    )
    assert layout_of((2, 198, 384), (224, 224), None).prefix == 2  # DeiT's distillation token
    assert layout_of((2, 7, 7, 768), (224, 224), None).kind == "nhwc"
    assert layout_of((2, 768, 7, 7), (224, 224), None).kind == "nchw"
    t = torch.arange(2 * 17 * 3.0).reshape(2, 17, 3)
    lay = layout_of(tuple(t.shape), (32, 32), None)
    m = lay.to_map(t)
    assert m.shape == (2, 3, 4, 4) and m[0, :, 0, 1].tolist() == t[0, 2].tolist()
    torch.testing.assert_close(lay.to_output(m, t), t)  # the inverse puts tokens back
    with pytest.raises(LayoutError, match=r"outputs \(2, 6\), not a \(B, C, h, w\)"):
        layout_of((2, 6), (32, 32), None)


def test_a_layer_that_is_no_map_is_named(hub_loaded):
    key, loaded = hub_loaded
    if key != "timm-vit":
        pytest.skip("one model is enough")
    with pytest.raises(CamError, match=r"layer 'head' outputs \(1, 6\), not a \(B, C, h, w\)"):
        Explainer(loaded.model, loaded.card).explain([_image(32)], ["gradcam"], layers="head")


# ----------------------------------------------------------------------------------- errors
def test_hub_folder_errors_name_what_did_not_match(tmp_path):
    wrong = _hub_folder(
        "timm-vit", tmp_path / "wrong", num_classes=5, label_names=list(CLASSES[:5])
    )
    with pytest.raises(
        CheckpointError, match=r"config.json: num_classes.*5 classes.*head.*6 outputs"
    ):
        load_model(wrong)
    labels = _hub_folder("timm-vit", tmp_path / "labels", label_names=["a", "b"])
    with pytest.raises(CheckpointError, match=r"num_classes is 6 but label_names has 2 names"):
        load_model(labels)
    missing = _hub_folder("timm-vit", tmp_path / "missing")
    (missing / "model.safetensors").unlink()
    with pytest.raises(
        CheckpointError, match=r"missing weights: no model.safetensors or pytorch_model.bin"
    ):
        load_model(missing)
    unknown = _hub_folder("timm-vit", tmp_path / "unknown", architecture="vit_tiny_patch16_244")
    with pytest.raises(
        CheckpointError,
        match=r"Unknown timm architecture 'vit_tiny_patch16_244'.*close.*vit_tiny_patch16_224",
    ):
        load_model(unknown)
    keys = _hub_folder("timm-vit", tmp_path / "keys", model_args={**TINY_VIT, "depth": 3})
    with pytest.raises(
        CheckpointError, match=r"does not match architecture.*missing keys \['blocks\.2"
    ):
        load_model(keys)


def test_download_arguments_are_refused_and_names_are_searchable():
    from cam_core.models import get_arch

    with pytest.raises(KeyError, match="not accepted"):
        get_arch('timm/resnet18?{"pretrained_cfg_overlay":{"file":"/etc/passwd"}}')
    with pytest.raises(KeyError, match=r"Unknown architecture 'nope'.*'timm/<name>'"):
        get_arch("nope")
    found = search_timm("vit small patch16")
    assert "vit_small_patch16_224" in found and all("vit" in n for n in found)


def test_a_method_that_fails_at_a_layer_says_which(hub_loaded):
    key, loaded = hub_loaded
    if key != "swin":
        pytest.skip("Swin's in-block norm is the case")
    # Ablation-CAM feeds one ablated copy per channel; inside a Swin block the residual
    # branch keeps the batch of one, which timm's reshape refuses
    with pytest.raises(CamError, match=r"Ablation-CAM at layer 'layers.1.blocks.0.norm1' failed"):
        Explainer(loaded.model, loaded.card).explain(
            [_image(32)], ["ablationcam"], layers="layers.1.blocks.0.norm1"
        )


def test_a_one_channel_timm_resnet_saved_without_model_args_loads(tmp_path):
    """timm's save_for_hf without model_args records 1 channel only in the input size, and
    'resnet18' is also one of our architectures: the folder is timm's, built with in_chans=1
    (found by the browser walk: it was refused with a conv1 shape mismatch)."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=6, in_chans=1)
    save_for_hf(
        model,
        str(tmp_path),
        model_config={"label_names": list(CLASSES)},
        safe_serialization=True,
        data_config={"input_size": (1, 64, 64), "mean": (0.5,), "std": (0.25,)},
    )
    loaded = load_model(tmp_path)
    assert loaded.card.in_chans == 1 and loaded.card.arch.startswith("timm/resnet18")
    image = _image(64)
    out = Explainer(loaded.model, loaded.card).explain([image], ["gradcam"], targets=[[1]])
    assert out.results[0].cam.shape == image.shape
