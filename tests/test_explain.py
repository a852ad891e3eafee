"""The engine against plain pytorch-grad-cam, and its lifecycle guards."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from cam_core.explain import CamError, Explainer, reference_cam
from cam_core.methods import METHODS
from cam_core.models import ModelCard, build_model, preprocess

CLASSES = ("a", "b", "c", "d")
SIZE = 96


def _card(**kw) -> ModelCard:
    base = dict(
        name="toy",
        arch="resnet18",
        classes=CLASSES,
        multilabel=False,
        input_size=SIZE,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    base.update(kw)
    return ModelCard(**base)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model("resnet18", len(CLASSES))
    # Non-trivial BN statistics so activations are not degenerate at random init.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(3, SIZE, SIZE), dtype=np.uint8)
    return [np.ascontiguousarray(b) for b in base]


def _no_hooks(model: torch.nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in model.modules()
    )


EQUAL_METHODS = [n for n, s in METHODS.items() if s.library_class and s.kind != "library"]
"""Methods we compute ourselves that pytorch-grad-cam also implements (the reference)."""


@pytest.mark.parametrize("method", EQUAL_METHODS)
@pytest.mark.parametrize("layers", ["layer4", "layer3"])
def test_maps_equal_pytorch_grad_cam(model, images, method, layers):
    if METHODS[method].slow and layers == "layer3":
        pytest.skip("one layer is enough for the slow perturbation methods")
    targets = [[0, 2], [1], [3, 0, 1]] if not METHODS[method].slow else [[0, 2], [], [1]]
    exp = Explainer(model, _card()).explain(images, [method], targets=targets, layers=layers)
    x = preprocess(images, _card())
    img_idx = [i for i, ts in enumerate(targets) for _ in ts]
    cls_idx = [c for ts in targets for c in ts]
    ref = reference_cam(model, method, x[img_idx], cls_idx, [layers])
    ours = np.stack([exp.get(i, c, method).cam for i, c in zip(img_idx, cls_idx, strict=True)])
    assert ours.shape == ref.shape == (len(cls_idx), SIZE, SIZE)
    assert ref.max() > 0.99, "reference map is empty: the comparison would prove nothing"
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_all_targets_of_a_batch_are_distinct_and_class_specific(model, images):
    exp = Explainer(model, _card()).explain(images[:1], ["gradcam"], targets=[[0, 1, 2, 3]])
    cams = [exp.get(0, c, "gradcam").cam for c in range(4)]
    assert len({c.tobytes() for c in cams}) == 4
    assert all(c.dtype == np.float32 and c.min() >= 0 and c.max() <= 1 for c in cams)


def test_maps_come_back_at_each_images_own_resolution(model):
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (200, 200), np.uint8), rng.integers(0, 255, (120, 300), np.uint8)]
    exp = Explainer(model, _card()).explain(imgs, ["gradcam", "eigencam"], targets=[[0], [1]])
    assert exp.get(0, 0, "gradcam").cam.shape == (200, 200)
    assert exp.get(1, 1, "eigencam").cam.shape == (120, 300)
    assert exp.probs.shape == (2, 4)
    np.testing.assert_allclose(exp.probs.sum(1), 1, rtol=1e-5)


def test_default_targets_single_and_multilabel(model, images):
    probs = Explainer(model, _card()).predict(images)
    assert Explainer(model, _card()).default_targets(probs) == [[int(p.argmax())] for p in probs]
    ml = Explainer(model, _card(multilabel=True))
    p = np.array([[0.9, 0.1, 0.7, 0.2], [0.1, 0.2, 0.3, 0.4]])
    assert ml.default_targets(p) == [[0, 2], [3]]


def test_cam_equals_gradcam_on_gap_linear_head(model, images):
    exp = Explainer(model, _card()).explain(images, ["cam", "gradcam"], targets=[[0], [1], [2]])
    for i in range(3):
        np.testing.assert_allclose(
            exp.get(i, i, "cam").cam, exp.get(i, i, "gradcam").cam, atol=1e-4
        )


def test_cam_refuses_a_layer_not_feeding_the_head(model, images):
    with pytest.raises(CamError, match="head 'fc' takes 512 features but layer 'layer3' has 256"):
        Explainer(model, _card()).explain(images[:1], ["cam"], layers="layer3")


def test_backward_stops_at_the_target_layer(model, images):
    calls = []
    handle = model.layer2.register_full_backward_hook(lambda *a: calls.append(1))
    try:
        Explainer(model, _card()).explain(images, ["gradcam", "gradcam++"], targets=[[0, 1]] * 3)
    finally:
        handle.remove()
    assert calls == []
    assert all(p.grad is None for p in model.parameters())


def test_lifecycle_restored_even_when_a_method_raises(images):
    torch.manual_seed(1)
    m = build_model("resnet18", 4)
    m.train()
    m.bn1.eval()
    m.conv1.weight.requires_grad_(False)
    with torch.no_grad():
        m.fc.weight[0, 0] = float("nan")
    with pytest.raises(CamError, match="not finite"):
        Explainer(m, _card()).explain(images[:1], ["gradcam"], targets=[[0]])
    _assert_modes_kept(m)
    assert m.conv1.weight.requires_grad is False and m.fc.weight.requires_grad is True
    assert _no_hooks(m)
    assert torch.is_grad_enabled()


def test_shared_module_layer_is_refused(model, images):
    with pytest.raises(CamError, match="runs more than once per forward"):
        Explainer(model, _card()).explain(images[:1], ["gradcam"], layers="layer4.1.relu")


def test_unknown_method_and_layer_name_the_valid_ones(model, images):
    with pytest.raises(KeyError, match=r"Unknown CAM method 'gradkam'.*'gradcam'"):
        Explainer(model, _card()).explain(images[:1], ["gradkam"])
    with pytest.raises(KeyError, match="layer9"):
        Explainer(model, _card()).explain(images[:1], ["gradcam"], layers="layer9")


def test_out_of_range_target_is_refused(model, images):
    with pytest.raises(ValueError, match=r"target class 7 for image 0 is outside 0\.\.3"):
        Explainer(model, _card()).explain(images[:1], ["gradcam"], targets=[[7]])


def test_reference_refuses_mismatched_targets(model, images):
    x = preprocess(images, _card())
    with pytest.raises(ValueError, match="one target per batch item: got 1 targets for 3 images"):
        reference_cam(model, "gradcam", x, [0], ["layer4"])
    assert _no_hooks(model)


def test_layer_fusion_matches_library_multi_layer(model, images):
    exp = Explainer(model, _card()).explain(
        images[:2], ["gradcam"], targets=[[1], [2]], layers="layer3+layer4"
    )
    ref = reference_cam(
        model, "gradcam", preprocess(images[:2], _card()), [1, 2], ["layer3", "layer4"]
    )
    ours = np.stack([exp.get(0, 1, "gradcam").cam, exp.get(1, 2, "gradcam").cam])
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_aug_smooth_matches_library(model, images):
    exp = Explainer(model, _card()).explain(images[:1], ["gradcam"], targets=[[1]], aug_smooth=True)
    ref = reference_cam(
        model, "gradcam", preprocess(images[:1], _card()), [1], ["layer4"], aug_smooth=True
    )
    np.testing.assert_allclose(exp.get(0, 1, "gradcam").cam, ref[0], atol=1e-4)


def test_flip_smooth_is_the_mean_of_the_flipped_images_maps_flipped_back(model, images):
    ex = Explainer(model, _card())
    methods = ["gradcam", "gradcam++", "eigencam"]
    smooth = ex.explain(images[:2], methods, targets=[[1], [3]], flip_smooth=True)
    flips = [lambda a: a, np.fliplr, np.flipud, lambda a: a[::-1, ::-1]]
    for m in methods:
        for i, c in ((0, 1), (1, 3)):
            maps, strengths = [], []
            for f in flips:  # each flip on its own, the map flipped back by hand
                r = ex.explain([np.ascontiguousarray(f(images[i]))], [m], targets=[[c]])
                maps.append(f(r.results[0].cam))
                strengths.append(r.results[0].strength)
            mean = np.mean(maps, 0)
            expected = (mean - mean.min()) / (mean.max() - mean.min() + 1e-7)
            got = smooth.get(i, c, m)
            np.testing.assert_allclose(got.cam, expected, atol=1e-4)
            assert got.strength == pytest.approx(np.mean(strengths), rel=1e-4)
    plain = ex.explain(images[:1], ["gradcam"], targets=[[1]]).results[0].cam
    assert np.abs(plain - smooth.get(0, 1, "gradcam").cam).max() > 0.05  # it did something
    assert _no_hooks(model)


def test_library_only_methods_run_and_release_hooks(model, images):
    exp = Explainer(model, _card()).explain(
        images[:1], ["shapleycam", "finercam", "fullgrad"], targets=[[2]]
    )
    for m in ("shapleycam", "finercam", "fullgrad"):
        cam = exp.get(0, 2, m).cam
        assert cam.shape == (SIZE, SIZE) and np.isfinite(cam).all() and cam.max() > 0.5
    assert _no_hooks(model)
    assert all(p.grad is None for p in model.parameters())


def _direct(model: torch.nn.Module, cam: object, call) -> np.ndarray:
    """A pytorch-grad-cam object called as its README does, hooks and grads cleaned after."""
    try:
        return np.asarray(call(cam), dtype=np.float32)
    finally:
        getattr(cam, "base_cam", cam).activations_and_grads.release()
        model.zero_grad(set_to_none=True)


def test_shapleycam_equals_a_direct_pytorch_grad_cam_call(model, images):
    from pytorch_grad_cam import ShapleyCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [[0, 2], [1]]
    exp = Explainer(model, _card()).explain(images[:2], ["shapleycam"], targets=targets)
    x = preprocess(images[:2], _card())
    ref = _direct(
        model,
        ShapleyCAM(model=model, target_layers=[model.layer4]),
        lambda cam: cam(
            input_tensor=x[[0, 0, 1]],
            targets=[ClassifierOutputTarget(c) for c in (0, 2, 1)],
        ),
    )
    ours = np.stack([exp.get(i, c, "shapleycam").cam for i, c in ((0, 0), (0, 2), (1, 1))])
    assert ref.max() > 0.99, "reference map is empty: the comparison would prove nothing"
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert _no_hooks(model) and all(p.grad is None for p in model.parameters())


def test_finercam_equals_a_direct_pytorch_grad_cam_call(model, images):
    """FinerCAM's own default: the target against its three most similar classes (alpha 1)."""
    from pytorch_grad_cam import FinerCAM

    exp = Explainer(model, _card()).explain(images[:2], ["finercam"], targets=[[3], [1]])
    x = preprocess(images[:2], _card())
    for i, c in ((0, 3), (1, 1)):
        ref = _direct(
            model,
            FinerCAM(model, [model.layer4]),
            lambda cam, i=i, c=c: cam(input_tensor=x[i : i + 1], targets=None, target_idx=c),
        )
        assert ref.max() > 0.99
        np.testing.assert_allclose(exp.get(i, c, "finercam").cam, ref[0], atol=1e-4)
    assert _no_hooks(model)


def _hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def _mixed_mode_resnet() -> torch.nn.Module:
    """A resnet18 in train mode with a frozen (eval-mode) stem BatchNorm, as in fine-tuning."""
    torch.manual_seed(2)
    m = build_model("resnet18", len(CLASSES)).train()
    m.bn1.eval()
    return m


def _assert_modes_kept(m: torch.nn.Module) -> None:
    assert m.bn1.training is False
    assert all(sub.training for name, sub in m.named_modules() if name != "bn1")


@pytest.mark.parametrize("call", ["explain", "reference_cam"])
def test_each_modules_own_train_eval_mode_comes_back(images, call):
    m = _mixed_mode_resnet()
    user_hook = m.layer2.register_forward_hook(lambda *_: None)  # the caller's own hook stays
    before = _hook_count(m)
    if call == "explain":
        Explainer(m, _card()).explain(images[:1], ["gradcam", "eigencam"], targets=[[1]])
    else:
        reference_cam(m, "gradcam", preprocess(images[:1], _card()), [1], ["layer4"])
    _assert_modes_kept(m)
    assert _hook_count(m) == before == 1
    user_hook.remove()


def test_modes_and_hooks_restored_when_the_forward_raises_with_hooks_attached(images):
    m = _mixed_mode_resnet()
    before = _hook_count(m)
    with pytest.raises(CamError, match=r"layer 'fc' outputs \(1, 4\), not a \(B, C, h, w\)"):
        Explainer(m, _card()).explain(images[:1], ["gradcam"], layers="fc")
    _assert_modes_kept(m)
    assert _hook_count(m) == before
    with pytest.raises(RuntimeError):  # one channel where conv1 expects three: raises mid-forward
        reference_cam(m, "gradcam", torch.zeros(1, 1, SIZE, SIZE), [0], ["layer4"])
    _assert_modes_kept(m)
    assert _hook_count(m) == before
    assert torch.is_grad_enabled()


def test_smooth_gradcampp_is_deterministic_and_differs_from_plain(model, images):
    # At layer4 of a GAP + linear head the gradients are the head weights whatever the input,
    # so noise changes nothing there; layer3's gradients depend on the input.
    ex = Explainer(model, _card())
    a = ex.explain(images[:1], ["smooth-gradcam++", "gradcam++"], targets=[[0]], layers="layer3")
    b = ex.explain(images[:1], ["smooth-gradcam++"], targets=[[0]], layers="layer3")
    np.testing.assert_array_equal(
        a.get(0, 0, "smooth-gradcam++").cam, b.get(0, 0, "smooth-gradcam++").cam
    )
    assert not np.allclose(
        a.get(0, 0, "smooth-gradcam++").cam, a.get(0, 0, "gradcam++").cam, atol=1e-3
    )


def test_threads_on_one_shared_model_match_serial_runs(model, images):
    ex = Explainer(model, _card())
    jobs = [
        ([images[i % 3]], [m], [[i % 4]])
        for i, m in enumerate(
            [
                "gradcam",
                "gradcam++",
                "eigencam",
                "layercam",
                "hirescam",
                "xgradcam",
                "gradcam",
                "eigengradcam",
            ]
        )
    ]
    serial = [ex.explain(imgs, ms, targets=t).results[0].cam for imgs, ms, t in jobs]
    out: list[np.ndarray | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            imgs, ms, t = jobs[k]
            out[k] = Explainer(model, _card()).explain(imgs, ms, targets=t).results[0].cam
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for s, o in zip(serial, out, strict=True):
        np.testing.assert_array_equal(s, o)
    assert _no_hooks(model)


def test_methods_sharing_one_capture_equal_separate_calls(model, images):
    ex = Explainer(model, _card())
    methods = ["eigencam", "gradcam", "gradcam++", "layercam"]
    together = ex.explain(images, methods, targets=[[0, 1], [2], [3]])
    for m in methods:
        alone = ex.explain(images, [m], targets=[[0, 1], [2], [3]])
        for r in alone.results:
            np.testing.assert_array_equal(r.cam, together.get(r.image, r.class_index, m).cam)


def test_lime_runs_and_is_class_specific(model, images):
    exp = Explainer(model, _card()).explain(images[:1], ["lime"], targets=[[0, 1]])
    a, b = exp.get(0, 0, "lime").cam, exp.get(0, 1, "lime").cam
    assert a.shape == (SIZE, SIZE) and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
    assert not np.array_equal(a, b)


def test_scorecam_shares_one_score_among_dead_channels_and_still_equals_library(model, images):
    import copy

    dead = copy.deepcopy(model)
    with torch.no_grad():  # 200 of layer4's 512 output channels become all-zero after the ReLU
        dead.layer4[-1].bn2.weight[:200] = 0
        dead.layer4[-1].bn2.bias[:200] = -1e4
    x = preprocess(images[:1], _card())
    acts = {}
    h = dead.layer4.register_forward_hook(lambda _m, _i, o: acts.setdefault("a", o))
    with torch.no_grad():
        dead(x)
    h.remove()
    assert (acts["a"][0, :200] == 0).all()
    exp = Explainer(dead, _card()).explain(images[:1], ["scorecam"], targets=[[1, 3]])
    ref = reference_cam(dead, "scorecam", torch.cat([x, x]), [1, 3], ["layer4"])
    ours = np.stack([exp.get(0, c, "scorecam").cam for c in (1, 3)])
    assert ref.max() > 0.99
    np.testing.assert_allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize("slow_method", ["scorecam", "ablationcam"])
def test_a_long_perturbation_method_lets_a_quick_gradcam_through(
    model, images, monkeypatch, slow_method
):
    """A session's Score-CAM must not make another session's Grad-CAM wait for all of it."""
    import time

    card = _card()
    serial_slow = Explainer(model, card).explain(images[:2], [slow_method], targets=[[0], [1]])
    serial_quick = Explainer(model, card).explain(images[2:], ["gradcam"], targets=[[2]])
    started = threading.Event()
    original = Explainer._let_others_in

    def spy(self: Explainer) -> None:
        started.set()
        original(self)

    monkeypatch.setattr(Explainer, "_let_others_in", spy)
    done: dict[str, float] = {}
    out: dict[str, object] = {}
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            out["slow"] = Explainer(model, card).explain(
                images[:2], [slow_method], targets=[[0], [1]]
            )
        except BaseException as e:
            errors.append(e)
        done["slow"] = time.perf_counter()

    def quick() -> None:
        try:
            assert started.wait(60)
            out["quick"] = Explainer(model, card).explain(images[2:], ["gradcam"], targets=[[2]])
        except BaseException as e:
            errors.append(e)
        done["quick"] = time.perf_counter()

    threads = [threading.Thread(target=slow), threading.Thread(target=quick)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert done["quick"] < done["slow"], "the quick call waited for the whole slow method"
    for key, ref in (("slow", serial_slow), ("quick", serial_quick)):
        for a, b in zip(ref.results, out[key].results, strict=True):
            np.testing.assert_array_equal(a.cam, b.cam)
    assert _no_hooks(model)


def test_the_default_layer_is_the_cards(model, images):
    """One owner of "which layer by default": the card's recommendation, else its target layer."""
    rec = {"method": "gradcam", "layer": "layer3+layer4"}
    for card, expected in (
        (_card(recommended=rec, target_layer="layer3"), "layer3+layer4"),
        (_card(target_layer="layer3"), "layer3"),
        (_card(), "layer4"),
    ):
        ex = Explainer(model, card)
        assert ex.default_layer == card.default_layer == expected
        plain = ex.explain(images[:1], ["gradcam"], targets=[[1]]).results[0]
        given = ex.explain(images[:1], ["gradcam"], targets=[[1]], layers=expected).results[0]
        assert plain.layer == expected
        np.testing.assert_array_equal(plain.cam, given.cam)
