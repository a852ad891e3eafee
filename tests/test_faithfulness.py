"""Faithfulness metrics: ROAD and drop/increase vs pytorch-grad-cam (the oracle), deletion /
insertion on a planted model whose evidence is known, bad maps, and the evaluation columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import cam_core.metrics.faithfulness as FM

pytestmark = pytest.mark.usefixtures("one_torch_thread")

S = 32


class TinyNet(nn.Module):
    """A seeded random model whose output is class probabilities (softmax over 3 classes):
    a convolution, then a linear read-out of every position, so each pixel moves the scores."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * S * S, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(torch.relu(self.conv(x)).flatten(1)) * 3, dim=-1)


def _smooth_maps(n: int, seed: int) -> np.ndarray:
    """Upsampled 5x5 random maps in [0, 1] (like CAMs: smooth, few ties)."""
    g = torch.from_numpy(np.random.default_rng(seed).random((n, 1, 5, 5)).astype(np.float32))
    m = F.interpolate(g, size=(S, S), mode="bilinear", align_corners=False)[:, 0]
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return (m / m.amax(dim=(1, 2), keepdim=True)).numpy()


@pytest.fixture(scope="module")
def setup():
    model = TinyNet().eval()
    gray = torch.rand(3, 1, S, S, generator=torch.Generator().manual_seed(1))
    x = ((gray.expand(-1, 3, -1, -1) - 0.5) / 0.25).contiguous()  # like preprocess: gray x 3
    return model, x, _smooth_maps(3, 2)


# ------------------------------------------------------------------------------ oracles
def test_road_equals_pytorch_grad_cam(setup):
    model, x, cams = setup
    classes = [0, 2, 1]
    torch.manual_seed(123)
    want = ROADCombined()(x, cams, [ClassifierOutputTarget(c) for c in classes], model)
    torch.manual_seed(123)
    got = FM.road(model, x, list(cams), [0, 1, 2], classes)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(want).max() > 1e-3  # not trivially zero


def test_road_without_affine_channels_equals_pytorch_grad_cam(setup):
    """Channels that are not copies of one gray image take the general (all-channel) solve."""
    model, _, cams = setup
    x = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(7)
    want = ROADCombined(percentiles=[20, 70])(x, cams, [ClassifierOutputTarget(1)] * 3, model)
    torch.manual_seed(7)
    got = FM.road(model, x, list(cams), [0, 1, 2], [1, 1, 1], percentiles=(20, 70))
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_drop_and_increase_equal_pytorch_grad_cam(setup):
    model, x, cams = setup
    classes = [1, 0, 2]
    targets = [ClassifierOutputTarget(c) for c in classes]
    want_drop = DropInConfidence()(x, cams, targets, model)
    want_inc = IncreaseInConfidence()(x, cams, targets, model)
    drop, inc = FM.confidence_change(model, x, list(cams), [0, 1, 2], classes)
    np.testing.assert_allclose(drop, want_drop, atol=1e-4)
    np.testing.assert_array_equal(inc, want_inc)
    assert drop.max() > 1e-3 or inc.max() > 0  # something moved


def test_imputation_of_everything_is_the_mean_not_nan():
    img = np.arange(2 * 4 * 4, dtype=np.float64).reshape(2, 4, 4)
    vals = FM.impute(img, np.zeros((4, 4), bool))
    np.testing.assert_allclose(vals, np.repeat(img.reshape(2, -1).mean(1, keepdims=True), 16, 1))


# ------------------------------------------------------------------ planted: evidence known
class PatchTexture(nn.Module):
    """Class 1 iff the image has fine texture: its logit grows with the mean |Laplacian| of the
    image (a checkerboard patch on a flat background is the only texture), crossing 0 at half
    the patch's energy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lap = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=x.dtype).view(1, 1, 3, 3)
        energy = F.conv2d(x[:, :1], lap, padding=1).abs()[:, :, 1:-1, 1:-1].mean(dim=(1, 2, 3))
        logit = 12 * (energy - 0.45)
        return torch.softmax(torch.stack([torch.zeros_like(logit), logit], dim=1), dim=1)


def _planted_image() -> tuple[torch.Tensor, np.ndarray]:
    yy, xx = np.mgrid[:S, :S]
    img = np.full((S, S), 0.1)  # flat: no Laplacian energy; its blur and its mean are itself
    patch = (slice(6, 16), slice(18, 28))
    img[patch] += np.where((yy + xx)[patch] % 2 == 0, 1.0, -1.0)  # checkerboard: the evidence
    truth = np.zeros((S, S), np.float32)
    truth[patch] = 1.0
    x = torch.from_numpy(img.astype(np.float32))[None, None].expand(1, 3, S, S).contiguous()
    return x, truth


@pytest.mark.parametrize("fill", ["blur", "mean"])
def test_planted_patch_map_beats_inverse_and_random(fill):
    model = PatchTexture()
    x, truth = _planted_image()
    assert model(x)[0, 1] > 0.95  # the patch decides class 1
    rng = np.random.default_rng(0)
    maps = [truth + 0.01 * rng.random((S, S), dtype=np.float32), 1 - truth, rng.random((S, S))]
    c = FM.deletion_insertion(model, x, maps, [0, 0, 0], [1, 1, 1], steps=20, fill=fill)
    dele, ins = c.deletion_auc, c.insertion_auc
    assert dele[0] < dele[1] - 0.3 and dele[0] < dele[2] - 0.2, dele
    assert ins[0] > ins[1] + 0.3 and ins[0] > ins[2] + 0.2, ins
    # the per-image random reference is a random order: close to the random map's curves
    assert abs(c.deletion_auc_random[0] - dele[2]) < 0.15
    assert dele[0] < c.deletion_auc_random[0] and ins[0] > c.insertion_auc_random[0]
    # curves start/end where they must: full image, then fully filled (and back for insertion)
    np.testing.assert_allclose(c.deletion[:, 0], model(x)[0, 1].item(), atol=1e-6)
    np.testing.assert_allclose(c.insertion[:, -1], model(x)[0, 1].item(), atol=1e-6)
    assert c.fractions[0] == 0 and c.fractions[-1] == 1 and len(c.fractions) == 21


def test_curves_match_a_plain_per_step_loop(setup):
    """The batched, shared construction equals removing pixels one step at a time by hand."""
    model, x, cams = setup
    steps = 5
    c = FM.deletion_insertion(model, x, [cams[0], cams[0]], [1, 1], [0, 2], steps=steps)
    filled = FM.filled_copy(x, "blur")
    order = np.argsort(-cams[0].ravel(), kind="stable")
    for k in range(steps + 1):
        m = np.zeros(S * S, bool)
        m[order[: round(k * S * S / steps)]] = True
        m_t = torch.from_numpy(m.reshape(1, 1, S, S))
        with torch.no_grad():
            p_del = model(torch.where(m_t, filled[1:2], x[1:2]))[0]
            p_ins = model(torch.where(m_t, x[1:2], filled[1:2]))[0]
        np.testing.assert_allclose(c.deletion[:, k], p_del[[0, 2]].numpy(), atol=1e-5)
        np.testing.assert_allclose(c.insertion[:, k], p_ins[[0, 2]].numpy(), atol=1e-5)


# ---------------------------------------------------------------------------- bad maps
@pytest.mark.parametrize(
    ("cam", "match"),
    [
        (np.zeros((S, S)), "blank"),
        (np.full((S, S), 0.7), "blank"),
        (np.where(np.eye(S) > 0, np.nan, 0.5), "non-finite"),
        (np.full((S, S), np.inf), "non-finite"),
        (np.zeros(S), "shape"),
    ],
)
def test_blank_or_non_finite_map_is_a_clear_error(setup, cam, match):
    model, x, _ = setup
    with pytest.raises(FM.FaithfulnessError, match=match):
        FM.score_faithfulness(model, x, [cam], [0], [0], steps=4)
    assert issubclass(FM.FaithfulnessError, ValueError)


def test_bad_arguments_name_the_value(setup):
    model, x, cams = setup
    with pytest.raises(ValueError, match="image index 7"):
        FM.deletion_insertion(model, x, [cams[0]], [7], [0])
    with pytest.raises(ValueError, match="unknown fill 'zeros'"):
        FM.deletion_insertion(model, x, [cams[0]], [0], [0], fill="zeros")
    with pytest.raises(ValueError, match="1 maps but 2 image indices"):
        FM.road(model, x, [cams[0]], [0, 1], [0])


# ------------------------------------------------------------------------- evaluation rows
def test_evaluate_with_faithfulness_gives_finite_columns_and_resumes(voc, checkpoint, tmp_path):
    from cam_core.evaluation import EvalConfig, evaluate
    from cam_core.evaluation.result import row_columns
    from cam_core.explain import Explainer
    from cam_core.models import load_model

    loaded = load_model(checkpoint)
    ex = Explainer(loaded.model, loaded.card)
    base = dict(data=str(voc), checkpoint=str(checkpoint), split=None, limit=2, batch_size=1)
    cfg = EvalConfig(**base, faithfulness=True, faith_steps=2, out=str(tmp_path / "run"))
    stops = iter([False, True])  # one sample, then stop
    partial = evaluate(cfg, explainer=ex, should_stop=lambda: next(stops, False))
    assert partial.state == "stopped"
    full = evaluate(cfg, explainer=ex)  # resumes: computes the missing samples only
    rows = pd.DataFrame(full.rows)
    assert full.state == "done"
    # the untrained model's Grad-CAM for one class is blank: a clear note, not a number, and the
    # row keeps its localization figures (ticking faithfulness changes no localization count)
    notes = rows["faith_error"].dropna()
    assert notes.str.contains("faithfulness: gradcam@layer3 map .* is blank").all(), notes
    assert rows.loc[notes.index, "pointing"].notna().all() and rows["error"].isna().all()
    assert rows.loc[notes.index, "deletion_auc"].isna().all()
    plain = evaluate(EvalConfig(**base), explainer=ex)
    assert plain.summary().equals(full.summary()[plain.summary().columns])
    method = rows[(rows["layer"] != "-") & rows["faith_error"].isna()]
    assert len(method) >= 1
    for col in FM.FAITH_COLUMNS:
        assert col in rows.columns
        assert np.isfinite(method[col].astype(float)).all(), col
        assert rows.loc[rows["layer"] == "-", col].isna().all()  # baselines: not computed
    assert method["deletion_auc"].between(0, 1).all() and method["increase"].isin([0, 1]).all()
    # the resumed rows equal a fresh uninterrupted run's (seeds come from stems, not batches)
    fresh = evaluate(EvalConfig(**base, faithfulness=True, faith_steps=2), explainer=ex)
    cols = [*FM.FAITH_COLUMNS, "faith_error", "error"]
    pd.testing.assert_frame_equal(pd.DataFrame(fresh.rows)[cols], rows[cols], atol=1e-5)
    assert not set(FM.FAITH_COLUMNS) & set(row_columns(EvalConfig(**base)))


def test_a_blank_map_becomes_a_row_note_not_a_number(make_card):
    from cam_core.evaluation.faith import FaithItem, apply_faith, faith_figures
    from cam_core.explain import Explainer

    ex = Explainer(TinyNet().eval(), make_card(input_size=S, classes=("a", "b", "c")))
    image = (np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)
    good = np.random.default_rng(1).random((40, 50)).astype(np.float32)
    items = [FaithItem(0, 1, np.zeros((40, 50), np.float32), "gradcam"), FaithItem(0, 2, good, "x")]
    figs = faith_figures(ex, [image], ["img_1"], items, steps=4)
    assert isinstance(figs[0], str) and "blank" in figs[0] and "gradcam" in figs[0]
    assert isinstance(figs[1], dict) and np.isfinite(list(figs[1].values())).all()
    row = {"error": None, "deletion_auc": None, "faith_error": None}
    apply_faith(row, figs[0])
    assert row["faith_error"].startswith("faithfulness:") and row["deletion_auc"] is None
    assert row["error"] is None  # its localization figures still count


def test_every_faithfulness_column_has_a_name_and_a_direction():
    from cam_core import vocabulary as V

    assert tuple(V.FAITH_METRICS) == FM.FAITH_COLUMNS
    for col in FM.FAITH_COLUMNS:
        assert V.row_heading(col) != col and V.metric_tooltip(col).endswith(".")
    assert "lower is better" in V.metric_tooltip("deletion_auc")
    assert "higher is better" in V.metric_tooltip("road")
    assert not set(FM.FAITH_COLUMNS) & set(V.MAP_METRICS)  # not averaged as localization


# ------------------------------------------------------------------------------- Explore
def test_explore_draws_the_curves_of_a_shown_map_on_demand(monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[1]
    if not (root / "models" / "demo-synthetic" / "model.pt").is_file():
        pytest.skip("bundled demo model missing (models/demo-synthetic); train it first")
    monkeypatch.setattr("cam_core.data.find_neu_det", lambda: None)
    at = AppTest.from_file(str(root / "app.py"), default_timeout=90)
    at.session_state["model_choice"] = "demo-synthetic"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    charts = len(at.get("plotly_chart"))
    buttons = [b for b in at.button if b.label == "Compute the curves"]
    assert len(buttons) == 2  # one per shown map (Grad-CAM, Grad-CAM++), nothing computed yet
    buttons[0].click()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.get("plotly_chart")) == charts + 1
    assert len([b for b in at.button if b.label == "Compute the curves"]) == 1


def test_curves_that_do_not_move_are_flat_and_moving_ones_are_not():
    """Explore's hint when the fill still carries the class: curves within 0.1 are flat."""
    from cam_core.metrics.faithfulness import Curves

    f = np.linspace(0, 1, 5)
    still = np.full((1, 5), 0.9)
    moving = np.linspace(0.9, 0.1, 5)[None]
    assert Curves(f, still, still + 0.05, still, still).is_flat()
    assert not Curves(f, moving, still, still, still).is_flat()
