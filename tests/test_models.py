"""Tests for cam_core.models: registry, networks, layer paths, checkpoints, preprocessing
(the card: tests/test_card.py)."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.serialization
from torch import nn

from cam_core import models as M
from cam_core.models import (
    ARCHS,
    ArchSpec,
    CheckpointError,
    ModelCard,
    build_model,
    card_path_for,
    get_arch,
    guess_arch,
    load_model,
    preprocess,
    read_state_dict,
    register_arch,
    registry,
    resolve_layer,
    save_model,
)

CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def _card(arch: str = "resnet18", **kw) -> ModelCard:
    spec = get_arch(arch)
    base = dict(
        name="test",
        arch=arch,
        classes=CLASSES,
        multilabel=False,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
    )
    base.update(kw)
    return ModelCard(**base)


def _tiny_builder(n: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, n),
    )


TINY = ArchSpec(
    name="tiny",
    builder=_tiny_builder,
    target_layers=("2", "0"),
    input_size=32,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    head="5",
    gap_linear=True,
    description="test-only: conv-bn-relu, GAP, linear",
)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """Register the tiny test arch (for this test only) and return a state dict of it."""
    monkeypatch.setattr(registry, "ARCHS", dict(ARCHS))
    register_arch(TINY)
    torch.manual_seed(0)
    model = TINY.builder(6)
    model[1].running_mean.uniform_(-0.1, 0.1)
    model[1].num_batches_tracked += 3
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    """A resnet18 state dict with non-default BN statistics (so a round trip is meaningful)."""
    torch.manual_seed(0)
    model = build_model("resnet18", 6)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert set(got) == set(state)
    for k, v in state.items():
        assert got[k].dtype == (torch.float32 if v.is_floating_point() else v.dtype), k
        torch.testing.assert_close(got[k], v.to(got[k].dtype), msg=k)


# ---------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_every_arch_builds_and_its_layers_resolve(name: str) -> None:
    spec = get_arch(name)
    model = build_model(name, 6)
    named = dict(model.named_modules())
    head = resolve_layer(model, spec.head)
    assert (isinstance(head, nn.Linear) and head.out_features == 6) or (
        isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1) and head.out_channels == 6
    )
    for layer in spec.target_layers:
        module = resolve_layer(model, layer)
        assert named[layer] is module  # canonical dotted names, usable as hook names
    if name.startswith(("local_", "patch_")):  # this project's NEU archs: 200 px, gray statistics
        assert (spec.input_size, spec.mean, spec.std) == (200, (0.5,) * 3, (0.25,) * 3)
    elif name == "convstem_vit":  # the bundled NEU transformer: 128 px (16x16 tokens), gray
        assert (spec.input_size, spec.mean, spec.std) == (128, (0.5,) * 3, (0.25,) * 3)
    else:  # torchvision / fastai: ImageNet conventions
        assert spec.input_size == 224
        assert spec.mean == M.IMAGENET_MEAN and spec.std == M.IMAGENET_STD


def test_resnet18_tiny_forward_and_gap_linear_identity() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 6).eval()
    x = torch.randn(2, 3, 64, 64)
    feats: list[torch.Tensor] = []
    handle = resolve_layer(model, "layer4").register_forward_hook(lambda m, i, o: feats.append(o))
    with torch.no_grad():
        out = model(x)
    handle.remove()
    assert out.shape == (2, 6)
    # gap_linear=True means: logits == fc(GAP(target layer)), i.e. the original CAM applies
    assert get_arch("resnet18").gap_linear
    torch.testing.assert_close(out, model.fc(feats[0].mean(dim=(2, 3))))


def test_unknown_arch_lists_valid_names() -> None:
    with pytest.raises(KeyError, match=r"Unknown architecture 'resnet19'; valid: \[.*'resnet18'"):
        get_arch("resnet19")
    with pytest.raises(KeyError, match="resnet19"):
        build_model("resnet19", 6)


def test_register_arch_adds_and_refuses_duplicates(tiny: dict[str, torch.Tensor]) -> None:
    assert "tiny" not in ARCHS  # registered in the fixture's copy only
    assert M.get_arch("tiny") is TINY
    assert M.build_model("tiny", 3)[5].out_features == 3
    with pytest.raises(ValueError, match="'tiny' is already registered"):
        register_arch(TINY)
    with pytest.raises(ValueError, match="'resnet18' is already registered"):
        register_arch(dataclasses.replace(get_arch("resnet18"), description="copy"))
    with pytest.raises(ValueError, match="target_layers is empty"):
        dataclasses.replace(TINY, name="t2", target_layers=())


# ---------------------------------------------------------------------------- fastai layout


def test_fastai_resnet18_matches_learner_state_dict_keys() -> None:
    model = build_model("fastai_resnet18", 6)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "0.0.weight": (64, 3, 7, 7),  # conv1
        "0.1.running_mean": (64,),  # bn1
        "0.4.0.conv1.weight": (64, 64, 3, 3),  # layer1
        "0.7.1.conv2.weight": (512, 512, 3, 3),  # layer4
        "1.2.weight": (1024,),  # BatchNorm1d(2*nf)
        "1.2.running_var": (1024,),
        "1.4.weight": (512, 1024),  # Linear(1024, 512, bias=False)
        "1.6.weight": (512,),  # BatchNorm1d(512)
        "1.8.weight": (6, 512),  # Linear(512, n, bias=False)
    }
    for key, shape in expected.items():
        assert shapes.get(key) == shape, key
    assert "1.4.bias" not in shapes and "1.8.bias" not in shapes
    assert not any(k.startswith(("1.0.", "1.1.", "1.3.", "1.5.", "1.7.")) for k in shapes)
    assert isinstance(resolve_layer(model, "0.7"), nn.Sequential)
    assert resolve_layer(model, "0.7") is resolve_layer(model, "0[-1]")
    assert isinstance(resolve_layer(model, "1.0.mp"), nn.AdaptiveMaxPool2d)
    assert dict(build_model("fastai_resnet50", 6).state_dict())["1.2.weight"].shape == (4096,)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 6)


def test_adaptive_concat_pool_puts_max_first() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    out = M.AdaptiveConcatPool2d()(x)
    assert out.shape == (2, 6, 1, 1)
    torch.testing.assert_close(out[:, :3, 0, 0], x.amax(dim=(2, 3)))
    torch.testing.assert_close(out[:, 3:, 0, 0], x.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------- layer paths


def test_resolve_layer_paths() -> None:
    model = build_model("resnet18", 6)
    assert resolve_layer(model, "layer4") is model.layer4
    assert resolve_layer(model, "layer4.1") is model.layer4[1]
    assert resolve_layer(model, "layer4[-1]") is model.layer4[1]
    assert resolve_layer(model, "layer4[-1].conv2") is model.layer4[1].conv2
    assert resolve_layer(model, "layer4[0].downsample[1]") is model.layer4[0].downsample[1]
    eff = build_model("efficientnet_b0", 6)
    assert resolve_layer(eff, "features[-1]") is eff.features[8]
    assert resolve_layer(eff, "features.8") is eff.features[8]


def test_resolve_layer_unknown_names_path_and_valid_names() -> None:
    model = build_model("resnet18", 6)
    with pytest.raises(KeyError, match=r"'layer5'.*top level.*'conv1'.*'layer4'"):
        resolve_layer(model, "layer5")
    with pytest.raises(KeyError, match=r"'layer4.1.conv9'.*under layer4.1.*'conv2'"):
        resolve_layer(model, "layer4.1.conv9")
    with pytest.raises(KeyError, match=r"index \[5\] out of range for layer4 \(2 children\)"):
        resolve_layer(model, "layer4[5]")
    with pytest.raises(KeyError, match="Malformed"):
        resolve_layer(model, "layer4[x]")
    with pytest.raises(KeyError, match="Malformed"):
        resolve_layer(model, "layer4..1")


# ---------------------------------------------------------------------------- checkpoints


def test_save_load_round_trip(tmp_path: Path, resnet18_state: dict[str, torch.Tensor]) -> None:
    model = build_model("resnet18", 6)
    model.load_state_dict(resnet18_state)
    card = _card(training={"epochs": 1}, target_layer="layer3")
    path = save_model(model, card, tmp_path / "sub" / "r18.pt")
    assert path.is_file() and card_path_for(path).is_file()
    loaded = load_model(path)
    assert loaded.card == card
    assert not loaded.model.training
    assert all(p.requires_grad and p.dtype == torch.float32 for p in loaded.model.parameters())
    assert loaded.target_layer == "layer3" and loaded.spec.name == "resnet18"
    _assert_same(loaded.model, resnet18_state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model.eval()(x))


def test_save_refuses_card_with_wrong_class_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="6 outputs but the card lists 2 classes"):
        save_model(build_model("resnet18", 6), _card(classes=("a", "b")), tmp_path / "m.pt")


def test_safetensors_round_trip(tmp_path: Path, tiny: dict[str, torch.Tensor]) -> None:
    model = build_model("tiny", 6)
    model.load_state_dict(tiny)
    path = save_model(model, _card("tiny", multilabel=True), tmp_path / "t.safetensors")
    with open(path, "rb") as f:  # really a safetensors file: 8-byte header length, then JSON
        header_len = int.from_bytes(f.read(8), "little")
        assert "5.weight" in json.loads(f.read(header_len))
    loaded = load_model(path)
    assert loaded.card.multilabel and loaded.card.input_size == 32
    _assert_same(loaded.model, tiny)
    card_path_for(path).unlink()  # card-less: arguments instead
    loaded = load_model(path, arch="tiny", classes=CLASSES, multilabel=False)
    assert not loaded.card.multilabel and loaded.card.classes == CLASSES
    assert loaded.card.mean == TINY.mean and loaded.target_layer == "2"


def test_fp16_checkpoint_is_cast_to_fp32(tmp_path: Path, tiny: dict[str, torch.Tensor]) -> None:
    half = {k: v.half() if v.is_floating_point() else v for k, v in tiny.items()}
    torch.save(half, tmp_path / "half.pt")
    loaded = load_model(tmp_path / "half.pt", arch="tiny", classes=CLASSES)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert not torch.equal(loaded.model[0].weight, tiny["0.weight"])  # really went through fp16
    _assert_same(
        loaded.model, {k: v.float() if v.is_floating_point() else v for k, v in half.items()}
    )


def test_dataparallel_prefix_is_stripped(tmp_path: Path, tiny: dict[str, torch.Tensor]) -> None:
    torch.save({f"module.{k}": v for k, v in tiny.items()}, tmp_path / "dp.pt")
    _assert_same(load_model(tmp_path / "dp.pt", arch="tiny", classes=CLASSES).model, tiny)


@pytest.mark.parametrize("key", ["model", "state_dict", "model_state_dict", "net"])
def test_wrapped_state_dict_with_optimizer(
    tmp_path: Path, tiny: dict[str, torch.Tensor], key: str
) -> None:
    sgd = torch.optim.SGD([nn.Parameter(torch.ones(2))], lr=0.1, momentum=0.9)
    sgd.param_groups[0]["params"][0].grad = torch.ones(2)
    sgd.step()
    blob = {key: tiny, "optimizer": sgd.state_dict(), "epoch": 4, "best": 0.99}
    torch.save(blob, tmp_path / "ckpt.pth")
    _assert_same(load_model(tmp_path / "ckpt.pth", arch="tiny", classes=CLASSES).model, tiny)


def test_cuda_saved_checkpoint_loads_on_cpu(
    tmp_path: Path, tiny: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tag every storage as living on cuda:0 at save time, as a checkpoint saved on a GPU is.
    registry = torch.serialization._package_registry
    with monkeypatch.context() as patch:
        patch.setattr(
            torch.serialization,
            "_package_registry",
            [(0, lambda storage: "cuda:0", lambda storage, location: None), *registry],
        )
        torch.save(tiny, tmp_path / "gpu.pt")
    with zipfile.ZipFile(tmp_path / "gpu.pt") as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        assert b"cuda:0" in zf.read(pkl)
    if not torch.cuda.is_available():  # without map_location this file cannot load here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pt", weights_only=True)
    loaded = load_model(tmp_path / "gpu.pt", arch="tiny", classes=CLASSES, device="cpu")
    assert next(loaded.model.parameters()).device.type == "cpu"
    _assert_same(loaded.model, tiny)


def test_wrong_class_count_names_both_counts(tmp_path: Path, tiny: dict[str, torch.Tensor]) -> None:
    torch.save(tiny, tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match=r"t\.pt.*\(5\) has 6 outputs but 5 class names"):
        load_model(tmp_path / "t.pt", arch="tiny", classes=CLASSES[:5])
    card = _card("tiny", classes=CLASSES[:4])
    card_path_for(tmp_path / "t.pt").write_text(card.to_json())
    with pytest.raises(CheckpointError, match="has 6 outputs but 4 class names"):
        load_model(tmp_path / "t.pt")


def test_wrong_arch_names_arch_and_keys(
    tmp_path: Path, resnet18_state: dict[str, torch.Tensor]
) -> None:
    torch.save(resnet18_state, tmp_path / "r18.pt")
    with pytest.raises(
        CheckpointError,
        match=r"r18\.pt does not match architecture 'resnet34': missing keys \['layer1\.2\.conv1"
        r".*its keys match \['resnet18'\]",
    ):
        load_model(tmp_path / "r18.pt", arch="resnet34", classes=CLASSES)
    with pytest.raises(CheckpointError, match=r"'efficientnet_b0'.*unexpected keys \['conv1"):
        load_model(tmp_path / "r18.pt", arch="efficientnet_b0", classes=CLASSES)
    bad = dict(resnet18_state, **{"conv1.weight": torch.zeros(64, 1, 7, 7)})
    torch.save(bad, tmp_path / "gray.pt")
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatches \['conv1\.weight: file \(64, 1, 7, 7\) vs model \(64, 3, 7, 7\)'",
    ):
        load_model(tmp_path / "gray.pt", arch="resnet18", classes=CLASSES)


def test_guess_arch_and_cardless_load_without_arch(
    tmp_path: Path, resnet18_state: dict[str, torch.Tensor]
) -> None:
    assert guess_arch(resnet18_state) == ["resnet18"]
    assert guess_arch({f"module.{k}": v for k, v in resnet18_state.items()}) == ["resnet18"]
    fastai_state = build_model("fastai_resnet18", 3).state_dict()
    assert guess_arch(fastai_state) == ["fastai_resnet18"]
    torch.save(
        {"model": fastai_state, "opt": {"state": {}, "param_groups": []}}, tmp_path / "learn.pth"
    )
    loaded = load_model(tmp_path / "learn.pth", classes=("a", "b", "c"))
    assert loaded.card.arch == "fastai_resnet18" and loaded.card.classes == ("a", "b", "c")
    assert guess_arch({"weird.weight": torch.zeros(2, 2)}) == []
    torch.save({"weird.weight": torch.zeros(2, 2)}, tmp_path / "weird.pt")
    with pytest.raises(CheckpointError, match=r"weird\.pt.*none of the registered.*tried \["):
        load_model(tmp_path / "weird.pt", classes=("a", "b"))


def test_cardless_load_without_classes_says_what_is_missing(
    tmp_path: Path, tiny: dict[str, torch.Tensor]
) -> None:
    torch.save(tiny, tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match=r"t\.pt: no model card at .*t\.json; pass classes"):
        load_model(tmp_path / "t.pt", arch="tiny")


def test_card_overrides_and_bad_card(tmp_path: Path, tiny: dict[str, torch.Tensor]) -> None:
    torch.save(tiny, tmp_path / "t.pt")
    card_path_for(tmp_path / "t.pt").write_text(_card("tiny", notes="kept").to_json())
    names = tuple("abcdef")
    loaded = load_model(tmp_path / "t.pt", classes=names, multilabel=True)
    assert loaded.card.classes == names and loaded.card.multilabel and loaded.card.notes == "kept"
    card_path_for(tmp_path / "t.pt").write_text('{"name": "x"}')
    with pytest.raises(CheckpointError, match=r"t\.json: unreadable model card.*'arch'"):
        load_model(tmp_path / "t.pt")
    data = json.loads(_card("tiny").to_json())
    card_path_for(tmp_path / "t.pt").write_text(json.dumps(dict(data, arch="nonet")))
    with pytest.raises(CheckpointError, match=r"t\.pt: Unknown architecture 'nonet'; valid"):
        load_model(tmp_path / "t.pt")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "checkpoint file is empty"),
        (b"hello, this is not a checkpoint", "a text file, not a checkpoint"),
        (None, "not a readable PyTorch checkpoint"),  # truncated zip
        (b"\x80\x02\x8a\x0agarbage", "not a readable PyTorch checkpoint"),  # a broken pickle
    ],
)
def test_broken_files(
    tmp_path: Path, tiny: dict[str, torch.Tensor], content: bytes | None, match: str
) -> None:
    path = tmp_path / "broken.pt"
    if content is None:
        torch.save(tiny, path)
        data = path.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"broken\.pt.*{match}"):
        load_model(path, arch="tiny", classes=CLASSES)


def _image_bytes(fmt: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(out, fmt)
    return out.getvalue()


def _safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save({"fc.weight": torch.zeros(2, 2)})


def _zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("weights/readme.txt", "not here")
    return out.getvalue()


NOT_A_CHECKPOINT = ", not a checkpoint"


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("model.pt", lambda: _image_bytes("JPEG"), "a JPEG image" + NOT_A_CHECKPOINT),
        ("model.pth", lambda: _image_bytes("PNG"), "a PNG image" + NOT_A_CHECKPOINT),
        ("model.pt", lambda: _image_bytes("GIF"), "a GIF image" + NOT_A_CHECKPOINT),
        ("m.safetensors", lambda: _image_bytes("JPEG"), "a JPEG image" + NOT_A_CHECKPOINT),
        ("model.pt", _zip_bytes, "a ZIP archive with no PyTorch checkpoint inside"),
        ("model.pt", lambda: b'{"epochs": 3}', "a JSON file" + NOT_A_CHECKPOINT),
        (
            "model.pt",
            lambda: _card().to_json().encode(),
            "a model card (JSON), not a checkpoint: give the weights file, with this card "
            "beside it under the same name",
        ),
        (
            "model.pt",
            lambda: b"<!DOCTYPE html><html><body>Sign in</body></html>",
            "an HTML page, not a checkpoint (a download that returned a web page?)",
        ),
        (
            "model.pt",
            lambda: b"<?xml version='1.0'?><annotation/>",
            "an XML file" + NOT_A_CHECKPOINT,
        ),
        ("model.pt", lambda: "pesos del modelo: ñ\n".encode(), "a text file" + NOT_A_CHECKPOINT),
        (
            "model.pt",
            _safetensors_bytes,
            "a safetensors file with another suffix: rename it to end in .safetensors",
        ),
        # "c" is the pickle GLOBAL opcode: this must not read as a code-running pickle
        ("model.pt", lambda: b"crazing\ninclusion\n", "a text file" + NOT_A_CHECKPOINT),
        (
            "model.pt",
            lambda: b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 4\n",
            "a Git LFS pointer, not the weights themselves: fetch them with `git lfs pull` in "
            "the repository it came from",
        ),
    ],
)
def test_a_file_that_is_no_checkpoint_is_named_for_what_it_is(
    tmp_path: Path, name: str, content, what: str
) -> None:
    """The whole message: the file, what it is; never PyTorch's advice to turn the safety off."""
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(CheckpointError, match=rf"^{re.escape(f'{path}: {what}')}$"):
        load_model(path, arch="resnet18", classes=CLASSES)


def test_an_unrecognised_unreadable_file_gets_no_advice_to_disable_the_safety(
    tmp_path: Path,
) -> None:
    path = tmp_path / "odd.pt"
    path.write_bytes(bytes(range(256)) * 4)  # binary, no known signature: PyTorch's unpickler fails
    expected = f"{path}: not a readable PyTorch checkpoint (truncated, corrupt or another format)"
    with pytest.raises(CheckpointError, match=rf"^{re.escape(expected)}$"):
        read_state_dict(path)


def test_broken_safetensors_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{trunc")
    with pytest.raises(CheckpointError, match=r"x\.safetensors: not a readable safetensors"):
        read_state_dict(tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such checkpoint file"):
        read_state_dict(tmp_path / "nope.pt")
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt: holds a list, not a state_dict"):
        read_state_dict(tmp_path / "list.pt")
    torch.save({"epoch": 3, "opt": {"lr": 0.1}}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match=r"meta\.pt: no state_dict found.*'epoch'"):
        read_state_dict(tmp_path / "meta.pt")


def test_nan_weights_name_the_first_bad_tensor(
    tmp_path: Path, tiny: dict[str, torch.Tensor]
) -> None:
    bad = {k: v.clone() for k, v in tiny.items()}
    bad["1.weight"][2] = float("nan")
    bad["5.weight"][0, 0] = float("inf")
    torch.save(bad, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"nan\.pt: tensor '1\.weight' contains NaN or inf"):
        load_model(tmp_path / "nan.pt", arch="tiny", classes=CLASSES)
    del bad["1.weight"]
    torch.save(bad, tmp_path / "inf.pt")
    with pytest.raises(CheckpointError, match=r"inf\.pt: tensor '5\.weight'"):
        read_state_dict(tmp_path / "inf.pt")


class _Malicious:
    """Unpickling this would create a marker file (stands in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(6, 512), "payload": _Malicious(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused.*would execute code.*open"):
        load_model(path, arch="resnet18", classes=CLASSES)
    assert not marker.exists()


def test_whole_pickled_model_is_refused_with_resave_hint(tmp_path: Path) -> None:
    torch.save(nn.Linear(2, 2), tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match=r"torch\.save\(model\.state_dict\(\), path\)"):
        load_model(tmp_path / "whole.pt", arch="resnet18", classes=CLASSES)


# ---------------------------------------------------------------------------- preprocessing


def test_preprocess_gray_and_rgb_agree_and_normalise() -> None:
    spec = get_arch("resnet18")
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (200, 200), dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    white = np.full((50, 80), 255, np.uint8)
    x = preprocess([gray, rgb, white], spec)
    assert x.shape == (3, 3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], x[1])
    expected_white = (1 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    torch.testing.assert_close(x[2, :, 100, 100], expected_white)
    # the gray channel is replicated: un-normalising each channel gives the same image
    unnorm = x[0] * torch.tensor(spec.std).view(3, 1, 1) + torch.tensor(spec.mean).view(3, 1, 1)
    torch.testing.assert_close(unnorm[0], unnorm[2])
    same = preprocess([gray], _card(input_size=200))
    torch.testing.assert_close(
        same[0, 0] * spec.std[0] + spec.mean[0], torch.from_numpy(gray / 255).float()
    )


def test_preprocess_antialiases_and_converts_colour() -> None:
    checker = (np.indices((200, 200)).sum(0) % 2 * 255).astype(np.uint8)
    card = _card(input_size=50, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    x = preprocess([checker], card)
    assert float(x.min()) > 0.45 and float(x.max()) < 0.55  # aliasing would give 0/1 stripes
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 255
    assert abs(float(preprocess([red], card)[0, 0, 5, 5]) - 0.299) < 1e-5


def test_preprocess_rejects_bad_input() -> None:
    spec = get_arch("resnet18")
    with pytest.raises(ValueError, match="image 1 has dtype float64; expected uint8"):
        preprocess([np.zeros((8, 8), np.uint8), np.zeros((8, 8))], spec)
    with pytest.raises(ValueError, match=r"image 0 has shape \(8, 8, 2\)"):
        preprocess([np.zeros((8, 8, 2), np.uint8)], spec)
    with pytest.raises(ValueError, match="at least one image"):
        preprocess([], spec)
