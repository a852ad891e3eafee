"""Sanity checks (cam_core.sanity): planted cases that can fail, Quantus 0.6.0 as the oracle where
its definitions match ours, and the caller's model left untouched."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cam_core.data import Box
from cam_core.explain import CamError, Explainer
from cam_core.methods import METHODS, MethodSpec, register_method
from cam_core.metrics import energy_in_boxes, pointing_game
from cam_core.metrics.localization import box_mask
from cam_core.models import ModelCard
from cam_core.sanity import (
    THRESHOLD,
    Block,
    bootstrap_ci,
    model_blocks,
    sanity_check,
    sanity_frame,
    similarity,
)
from cam_core.sanity_figures import sanity_figure, sanity_figures

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 32
CLASSES = ("dark", "bright")


class TinyNet(nn.Module):
    """Three convolutions, GAP, one Linear: blocks fc, conv3, conv2, conv1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(16, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


CARD = ModelCard(
    name="tiny-blob",
    arch="resnet18",  # metadata only: the engine reads input size and normalisation
    classes=CLASSES,
    multilabel=False,
    input_size=SIZE,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
)


def blob_images(n: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """Textured mid-gray background with one 6×6 blob anywhere; class = dark or bright blob."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        img = rng.integers(40, 120, (SIZE, SIZE)).astype(np.uint8)
        label = i % 2
        r, c = (int(v) for v in rng.integers(2, SIZE - 8, 2))
        img[r : r + 6, c : c + 6] = 230 if label else 5
        images.append(img)
        labels.append(label)
    return images, labels


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """TinyNet trained until it tells the blob's kind (train accuracy checked): the honest case
    for "a gradient method passes" is a model whose maps follow learned evidence, so that
    randomising the weights has something to destroy."""
    from cam_core.models import preprocess

    torch.manual_seed(0)
    model = TinyNet()
    images, labels = blob_images(32, seed=1)
    x, y = preprocess(images, CARD), torch.tensor(labels)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.9, f"the tiny model did not learn the task (train accuracy {acc:.2f})"
    return model.eval()


def _sobel(ctx, spec):
    """|∇x| of the input by Sobel: a map that never looks at the model's weights."""
    gray = ctx.x[ctx.img_idx, :1]
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])[None, None]
    gx = nn.functional.conv2d(gray, kx, padding=1)
    gy = nn.functional.conv2d(gray, kx.transpose(-1, -2), padding=1)
    return torch.sqrt(gx**2 + gy**2)[:, 0], None


@pytest.fixture
def sobel():
    register_method(MethodSpec("test-sobel", "Sobel edges", "perturbation", compute=_sobel))
    yield "test-sobel"
    METHODS.pop("test-sobel", None)


def _state_bytes(model: nn.Module) -> dict[str, bytes]:
    return {k: v.detach().cpu().numpy().tobytes() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------- planted cases
def test_edge_detector_fails_and_gradcam_passes(trained, sobel):
    images, _ = blob_images(8, seed=7)
    res = {
        r.method: r
        for r in sanity_check(
            Explainer(trained, CARD), images, ["gradcam", sobel], layers=["conv3"]
        )
    }
    edge, grad = res[sobel], res["gradcam"]
    assert edge.blocks == grad.blocks == ("fc", "conv3", "conv2", "conv1")
    # the edge map ignores the weights: identical at every depth → fails
    np.testing.assert_allclose(edge.mean_spearman(), 1.0, atol=1e-6)
    assert not edge.passed and edge.spearman_full > 0.99
    # Grad-CAM of the learned blob evidence is gone once the weights are random → passes
    assert grad.mean_spearman()[0] == pytest.approx(1.0)
    assert grad.passed, grad.mean_abs_spearman()
    assert grad.spearman_full < THRESHOLD and grad.ssim_full < 0.5
    # random logit: the other class's Grad-CAM is another map; the edge map is the same map
    assert grad.random_logit_passed and not edge.random_logit_passed
    frame = sanity_frame(res.values())
    verdict = frame.groupby("method").passed.first()
    assert bool(verdict["gradcam"]) and not bool(verdict[sobel])
    assert len(frame) == 2 * (4 + 1 + 1)
    figs = sanity_figures(frame)
    fig = figs[("gradcam", "conv3")]
    assert "passes" in fig.layout.title.text and "fails" in figs[(sobel, "conv3")].layout.title.text
    assert list(fig.data[0].x) == ["intact", "+fc", "+conv3", "+conv2", "+conv1"]
    np.testing.assert_allclose(fig.data[0].y, grad.mean_abs_spearman())
    with pytest.raises(KeyError, match="no sanity rows"):
        sanity_figure(frame, "eigencam")


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    v = np.array([0.1, 0.5, 0.3, 0.9, 0.2, np.nan])
    lo, hi = bootstrap_ci(v)
    assert lo < np.nanmean(v) < hi and bootstrap_ci(v) == (lo, hi)
    assert lo >= 0.1 and hi <= 0.9
    assert np.isnan(bootstrap_ci(np.array([0.4, np.nan]))[0])


def test_similarity_rules():
    rng = np.random.default_rng(0)
    a = rng.random((16, 16)).astype(np.float32)
    assert similarity(a, a) == pytest.approx((1.0, 1.0))
    rho, _ = similarity(a, 1 - a)
    assert rho == pytest.approx(-1.0)
    assert similarity(a, np.zeros_like(a))[0] == 0.0  # blank randomised map: no shared ranking
    assert np.isnan(similarity(np.zeros_like(a), a)[0])  # blank original: undefined
    with pytest.raises(ValueError, match="one shape"):
        similarity(a, a[:8])


def test_blocks_follow_the_architecture():
    import torchvision.models as tvm

    from cam_core.models import build_model

    assert [b.name for b in model_blocks(tvm.resnet18())] == [
        "fc",
        *("layer4", "layer3", "layer2", "layer1"),
        *("bn1", "conv1"),
    ]
    effnet = [b.name for b in model_blocks(tvm.efficientnet_b0())]
    assert effnet[:3] == ["classifier.1", "features.8", "features.7"] and effnet[-1] == "features.0"
    patch = model_blocks(build_model("patch_resnet18", 6))
    assert [b.name for b in patch][:3] == ["classifier", "head", "layer2"]
    # the blocks partition Quantus's top-down order (every module with reset_parameters)
    net = build_model("patch_resnet18", 6)
    quantus_order = [n for n, m in net.named_modules() if hasattr(m, "reset_parameters")][::-1]
    assert [p for b in model_blocks(net) for p in b.modules] == quantus_order
    with pytest.raises(ValueError, match="nothing to randomise"):
        model_blocks(nn.Sequential(nn.ReLU()))


# ---------------------------------------------------------------------- Quantus as the oracle
def _quantus_explain(method: str):
    """Quantus's explain_func: (model, numpy (B, 3, S, S) normalised inputs, targets) → our
    engine's (B, 1, S, S) maps. The inputs were made from uint8 images at S×S by preprocess, so
    the uint8 image is recovered exactly (resize is the identity at S)."""

    def explain(model, inputs, targets, **kwargs):
        gray = np.rint((inputs[:, 0] * CARD.std[0] + CARD.mean[0]) * 255).astype(np.uint8)
        exp = Explainer(model, CARD).explain(
            list(gray), [method], targets=[[int(t)] for t in targets], layers="conv3"
        )
        return np.stack([exp.get(i, int(t), method).cam for i, t in enumerate(targets)])[:, None]

    return explain


def _quantus_inputs(images):
    from cam_core.models import preprocess

    return preprocess(images, CARD).numpy()


def test_mprt_equals_quantus_at_every_block(trained):
    """Quantus's MPRT randomises one module at a time, top-down (every module with
    reset_parameters, reversed named_modules order, torch.manual_seed(seed + 1) before each), and
    scores Spearman ρ of the flattened maps. Ours randomises whole blocks with the same rule, so
    after block k our copy is Quantus's copy after the last module of block k: the ρ there must be
    equal. (On TinyNet every block is one module, so every Quantus step is compared.) abs and
    normalise-by-max change nothing on our non-negative [0, 1] maps."""
    import quantus

    images, _ = blob_images(6, seed=3)
    ours = sanity_check(Explainer(trained, CARD), images, ["gradcam"], layers=["conv3"], seed=42)[0]
    targets = np.array(ours.targets)
    reference = copy.deepcopy(trained)  # Quantus may put the model it is given in eval mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = quantus.MPRT(
            similarity_func=quantus.similarity_func.correlation_spearman,
            layer_order="top_down",
            seed=42,
            disable_warnings=True,
        )(
            model=reference,
            x_batch=_quantus_inputs(images),
            y_batch=targets,
            explain_func=_quantus_explain("gradcam"),
            channel_first=True,
            batch_size=len(images),
        )
    blocks = model_blocks(trained)
    np.testing.assert_allclose(scores["original"], 1.0, atol=1e-6)
    compared = 0
    for depth, block in enumerate(blocks, start=1):
        theirs, mine = np.asarray(scores[block.modules[-1]]), ours.spearman[depth]
        # A blank map on the randomised model (no positive evidence left): scipy's ρ of a
        # constant is NaN in Quantus; ours is 0 by our stated rule (it shares no ranking).
        defined = np.isfinite(theirs)
        np.testing.assert_allclose(mine[defined], theirs[defined], atol=1e-6)
        assert np.all(mine[~defined] == 0.0)
        compared += int(defined.sum())
    assert compared >= len(blocks) * len(images) // 2


def test_random_logit_equals_quantus(trained):
    """Quantus's RandomLogit draws the other class with np.random.seed(seed) once per batch; ours
    draws it the same way, so with one batch the classes and the Spearman ρ agree. Its default
    similarity (quantus ssim) flattens each map to 1-D before SSIM — a 1-D windowed SSIM, not
    the 2-D SSIM of Adebayo et al. that we report — so SSIM is compared on the 2-D maps through
    quantus' own ssim function (its data_range is the pair's range: 1 for our [0, 1] maps)."""
    import quantus
    from quantus.functions.similarity_func import ssim as quantus_ssim

    images, _ = blob_images(6, seed=4)
    (ours,) = sanity_check(Explainer(trained, CARD), images, ["gradcam"], layers=["conv3"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = quantus.RandomLogit(
            similarity_func=quantus.similarity_func.correlation_spearman,
            num_classes=len(CLASSES),
            seed=42,
            disable_warnings=True,
        )(
            model=copy.deepcopy(trained),
            x_batch=_quantus_inputs(images),
            y_batch=np.array(ours.targets),
            explain_func=_quantus_explain("gradcam"),
            channel_first=True,
            batch_size=len(images),
        )
    theirs = np.asarray(scores)
    defined = np.isfinite(theirs)  # NaN in Quantus = a blank map of the other class; ours 0
    np.testing.assert_allclose(ours.random_logit_spearman[defined], theirs[defined], atol=1e-6)
    assert np.all(ours.random_logit_spearman[~defined] == 0.0) and defined.sum() >= 3
    exp = Explainer(trained, CARD).explain(
        images, ["gradcam"], targets=[[t] for t in ours.targets], layers="conv3"
    )
    off = Explainer(trained, CARD).explain(
        images, ["gradcam"], targets=[[c] for c in ours.random_classes], layers="conv3"
    )
    for i, (t, c) in enumerate(zip(ours.targets, ours.random_classes, strict=True)):
        a, b = exp.get(i, t, "gradcam").cam, off.get(i, c, "gradcam").cam
        assert ours.random_logit_ssim[i] == pytest.approx(quantus_ssim(a, b), abs=1e-3)


def test_localization_equals_quantus_pointing_and_relevance_mass(trained):
    """PointingGame = our pointing game at tolerance 0, RelevanceMassAccuracy = our energy in the
    boxes, given the same mask (ours: box_mask, a pixel is in a box when its centre is). The one
    difference is ties: Quantus hits when *any* maximal pixel is in the mask, we point at the
    first maximum (argmax); the maps here have unique maxima, and the tie is checked apart."""
    import quantus

    rng = np.random.default_rng(0)
    maps, masks, box_sets = [], [], []
    for _ in range(12):
        cam = rng.random((SIZE, SIZE)).astype(np.float32) ** 3
        x0, y0 = rng.integers(0, SIZE - 8, 2)
        w, h = rng.integers(3, 12, 2)
        boxes = [Box("x", float(x0), float(y0), float(x0 + w), float(y0 + h))]
        maps.append(cam)
        box_sets.append(boxes)
        masks.append(box_mask(boxes, cam.shape))
    # half of them with the maximum planted inside the box, so both outcomes occur
    for i in range(0, 12, 2):
        r, c = np.argwhere(masks[i])[0]
        maps[i][r, c] = 2.0
    a, s = np.stack(maps)[:, None], np.stack(masks)[:, None].astype(np.float32)
    x = np.zeros((12, 3, SIZE, SIZE), np.float32)
    y = np.zeros(12, int)
    kw = dict(model=trained, x_batch=x, y_batch=y, a_batch=a, s_batch=s, channel_first=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pg = quantus.PointingGame(disable_warnings=True)(**kw)
        rma = quantus.RelevanceMassAccuracy(disable_warnings=True)(**kw)
    ours_pg = [pointing_game(m, b) for m, b in zip(maps, box_sets, strict=True)]
    assert [bool(v) for v in pg] == ours_pg and 0 < sum(ours_pg) < 12
    np.testing.assert_allclose(
        rma, [energy_in_boxes(m, b) for m, b in zip(maps, box_sets, strict=True)], 1e-5
    )
    # the tie: two maxima, the first outside the box, the second inside
    tie = np.zeros((SIZE, SIZE), np.float32)
    tie[0, 0] = tie[20, 20] = 1.0
    box = [Box("x", 18.0, 18.0, 24.0, 24.0)]
    assert pointing_game(tie, box) is False  # ours: the first maximum (0, 0) misses
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hit = quantus.PointingGame(disable_warnings=True)(
            **{**kw, "a_batch": tie[None, None], "s_batch": box_mask(box, tie.shape)[None, None]}
            | {"x_batch": x[:1], "y_batch": y[:1]}
        )
    assert bool(hit[0]) is True  # Quantus: any maximum inside hits


# ---------------------------------------------------------------------- the caller's model
def test_the_callers_model_is_untouched_also_when_it_raises(trained):
    model = copy.deepcopy(trained).train()
    model.conv2.eval()  # a per-module mode that must survive
    before, modes = _state_bytes(model), [m.training for m in model.modules()]
    rng_before = torch.random.get_rng_state()
    images, _ = blob_images(4, seed=5)
    ex = Explainer(model, CARD)
    sanity_check(ex, images, ["gradcam", "eigencam"], layers=["conv3"])
    assert _state_bytes(model) == before and [m.training for m in model.modules()] == modes
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # re-init ran in a forked RNG

    calls = []

    def failing(ctx, spec):
        calls.append(1)
        if len(calls) > 2:  # fails after the copy has been partly randomised
            raise CamError("planted failure")
        return torch.rand(len(ctx.img_idx), *ctx.input_size), None

    register_method(MethodSpec("test-failing", "Failing", "perturbation", compute=failing))
    try:
        with pytest.raises(CamError, match="planted failure"):
            sanity_check(ex, images, ["test-failing"], layers=["conv3"])
    finally:
        METHODS.pop("test-failing", None)
    assert _state_bytes(model) == before and [m.training for m in model.modules()] == modes


def test_bad_input_fails_with_the_offending_value(trained):
    ex = Explainer(trained, CARD)
    images, _ = blob_images(2, seed=6)
    with pytest.raises(ValueError, match="at least one image"):
        sanity_check(ex, [], ["gradcam"])
    with pytest.raises(KeyError, match="nope"):
        sanity_check(ex, images, ["nope"])
    with pytest.raises(KeyError, match="layer9"):
        sanity_check(ex, images, ["gradcam"], layers=["layer9"])
    with pytest.raises(ValueError, match="threshold"):
        sanity_check(ex, images, ["gradcam"], layers=["conv3"], threshold=0)
    with pytest.raises(ValueError, match="class 5 out of range"):
        sanity_check(ex, images, ["gradcam"], layers=["conv3"], targets=[0, 5])
    with pytest.raises(KeyError, match="conv9"):
        sanity_check(ex, images, ["gradcam"], layers=["conv3"], blocks=[Block("x", ("conv9",))])


# ---------------------------------------------------------------------- in an evaluation
def test_evaluate_runs_it_once_and_a_resumed_run_reads_it(voc, checkpoint, tmp_path, monkeypatch):
    import cam_core.evaluation.sanity as wiring
    from cam_core.evaluation import EvalConfig, evaluate
    from cam_core.sanity import FRAME_COLUMNS

    cfg = EvalConfig(
        data=str(voc),
        checkpoint=str(checkpoint),
        split=None,
        methods=("gradcam",),
        limit=3,
        sanity=True,
        sanity_images=2,
        out=str(tmp_path / "run"),
    )
    assert evaluate(replace(cfg, sanity=False, out=None)).sanity is None
    first = evaluate(cfg).sanity
    assert first is not None and list(first.columns) == list(FRAME_COLUMNS)
    walk = first[first.check == "randomization"]
    assert walk.block.tolist()[:3] == ["-", "classifier", "layer3"] and set(walk.n) == {2}
    assert (tmp_path / "run" / "sanity.csv").is_file()

    def must_not_run(*args, **kwargs):
        raise CamError("the saved sanity check was computed again")

    monkeypatch.setattr(wiring, "sanity_check", must_not_run)
    again = evaluate(cfg).sanity
    pd.testing.assert_frame_equal(again, first, check_dtype=False, atol=1e-5)
    # a stopped run has no sanity check; one that cannot run says why instead of raising
    assert evaluate(replace(cfg, out=None), should_stop=lambda: True).sanity is None
    broken = evaluate(replace(cfg, out=None)).sanity
    assert broken.empty and "computed again" in broken.attrs["error"]
