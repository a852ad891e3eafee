"""The evaluation package: rows, baselines, stratified order, resume, coverage, bad samples,
target rules, auto-configuration, the report. (The command line: tests/test_cli.py.)"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cam_core import metrics as M
from cam_core.data import NEU_CLASSES, Box, Sample, load_dataset
from cam_core.evaluation import (
    BASELINES,
    EvalConfig,
    auto_configure,
    evaluate,
    report_figures,
    run_folder,
    stratified_order,
    write_report,
)
from cam_core.explain import Explainer
from cam_core.models import ModelCard, load_model

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class SpyExplainer(Explainer):
    """Counts the images each explain() call maps."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.explained: list[str] = []

    def explain(self, images, methods, **kwargs):
        self.explained += [f"{len(images)}x{'/'.join(methods)}"] * len(images)
        return super().explain(images, methods, **kwargs)


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load_model(checkpoint)


def _spy(loaded) -> SpyExplainer:
    return SpyExplainer(loaded.model, loaded.card)


def _cfg(voc, checkpoint, **kw) -> EvalConfig:
    base = dict(data=str(voc), checkpoint=str(checkpoint), split=None, methods=("gradcam",))
    base.update(kw)
    return EvalConfig(**base)


# ------------------------------------------------------------------------------ resume


def test_resume_after_stop_skips_finished_rows_and_matches_full_run(
    voc, checkpoint, loaded, tmp_path
):
    kw = dict(methods=("gradcam", "gradcam++"), limit=10, batch_size=4)
    full = evaluate(_cfg(voc, checkpoint, **kw), explainer=_spy(loaded))
    assert full.complete and full.n_done == 10
    labels = [r["label"] for r in full.rows if r["method"] == "gradcam"]
    assert set(labels) == set(NEU_CLASSES), "a limit takes the classes in turn"

    out = tmp_path / "run"
    cfg = _cfg(voc, checkpoint, out=str(out), **kw)
    seen: list[int] = []
    first = _spy(loaded)
    partial = evaluate(
        cfg,
        explainer=first,
        progress=lambda done, total, msg: seen.append(done),
        should_stop=lambda: bool(seen),
    )
    assert not partial.complete and partial.n_done == 4 and seen == [4]
    assert len(first.explained) == 4
    assert len({r["stem"] for r in partial.rows}) == 4

    second = _spy(loaded)
    resumed = evaluate(cfg, explainer=second)
    assert resumed.complete and resumed.n_done == 10
    assert len(second.explained) == 6, "the 4 finished samples must not be recomputed"
    assert resumed.rows == full.rows
    pd.testing.assert_frame_equal(resumed.summary(), full.summary())
    keys = [
        (r["stem"], r["class"], r["method"], r["layer"])
        for r in map(json.loads, (out / "rows.jsonl").read_text().splitlines())
    ]
    assert len(keys) == len(set(keys)) == len(full.rows)

    third = _spy(loaded)
    again = evaluate(cfg, explainer=third)
    assert third.explained == [] and again.rows == full.rows


def test_resume_after_exception_and_truncated_line(voc, checkpoint, loaded, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(voc, checkpoint, out=str(out), limit=6, batch_size=3)

    def boom(done, total, msg):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg, explainer=_spy(loaded), progress=boom)
    rows_file = out / "rows.jsonl"
    lines = rows_file.read_text().splitlines()
    assert len(lines) == 3 * (1 + 3)
    # a write cut short: the last line is half there, so its sample is computed again
    rows_file.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    spy = _spy(loaded)
    result = evaluate(cfg, explainer=spy)
    assert len(spy.explained) == 3 + 1
    full = evaluate(_cfg(voc, checkpoint, limit=6, batch_size=3), explainer=_spy(loaded))
    # the recomputed sample shares a batch with other images than before: float rounding only
    pd.testing.assert_frame_equal(result.summary(), full.summary(), rtol=1e-4)
    assert len(rows_file.read_text().splitlines()) == 6 * 4


def test_resume_refuses_other_configuration(voc, checkpoint, loaded, tmp_path):
    out = str(tmp_path / "run")
    evaluate(_cfg(voc, checkpoint, out=out, limit=2), explainer=_spy(loaded))
    with pytest.raises(ValueError, match=r"another configuration \(tau differ\)"):
        evaluate(_cfg(voc, checkpoint, out=out, limit=2, tau=0.3), explainer=_spy(loaded))
    # limit and batch size do not change rows: allowed
    evaluate(_cfg(voc, checkpoint, out=out, limit=3, batch_size=1), explainer=_spy(loaded))


# --------------------------------------------------------------------------- bad data


def test_corrupt_image_becomes_error_row_and_the_rest_is_evaluated(
    voc, checkpoint, loaded, tmp_path
):
    data = shutil.copytree(voc, tmp_path / "voc")
    (data / "IMAGES" / "inclusion_synth_0001.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "run"
    result = evaluate(_cfg(data, checkpoint, out=str(out)), explainer=_spy(loaded))
    bad = [r for r in result.rows if r["stem"] == "inclusion_synth_0001"]
    assert len(bad) == 1 and bad[0]["error"].startswith("unreadable image: ")
    assert bad[0]["pointing"] is None
    assert [s for s, _ in result.errors] == ["inclusion_synth_0001"]
    good = [r for r in result.rows if r["stem"] != "inclusion_synth_0001"]
    assert len({r["stem"] for r in good}) == 17 and all(r["error"] is None for r in good)
    table = result.summary()
    assert (table.loc[table["class"] == "all", "n_rows"] == 17).all()
    # an error is not a finished sample: a rerun tries it again (here it fails again)
    spy = _spy(loaded)
    rerun = evaluate(_cfg(data, checkpoint, out=str(out)), explainer=spy)
    assert spy.explained == [] and rerun.errors == result.errors


def test_map_failure_costs_only_its_rows(voc, checkpoint, loaded):
    class FailsOnOne(SpyExplainer):
        def explain(self, images, methods, **kwargs):
            if "gradcam++" in methods:
                from cam_core.explain import CamError

                raise CamError("Grad-CAM++ map is not finite")
            return super().explain(images, methods, **kwargs)

    ex = FailsOnOne(loaded.model, loaded.card)
    result = evaluate(
        _cfg(voc, checkpoint, methods=("gradcam", "gradcam++"), limit=2), explainer=ex
    )
    by_method = {m: [r for r in result.rows if r["method"] == m] for m in ("gradcam", "gradcam++")}
    assert all(r["error"] is None and r["pointing"] is not None for r in by_method["gradcam"])
    assert all("not finite" in r["error"] for r in by_method["gradcam++"])
    assert len(by_method["gradcam++"]) == 2


# ------------------------------------------------------------------------ target rules


def test_target_rules_score_each_class_against_its_own_boxes(voc, checkpoint, loaded):
    path = voc / "IMAGES" / "crazing_synth_0000.png"
    boxes = (
        Box("crazing", 0, 0, 16, 16),
        Box("patches", 32, 32, 64, 56),
        Box("patches", 0, 40, 8, 48),
        Box("not-a-class", 1, 1, 5, 5),
    )
    sample = Sample(path, "crazing_synth_0000", "crazing", boxes, (SIZE, SIZE))
    ex = _spy(loaded)

    rows = evaluate(
        _cfg(voc, checkpoint, target_rule="box-classes"), explainer=ex, samples=[sample]
    ).rows
    assert sorted({r["class"] for r in rows}) == ["crazing", "not-a-class", "patches"]
    foreign = [r for r in rows if r["class"] == "not-a-class"]
    assert len(foreign) == 1 and "not one of the model's classes" in foreign[0]["error"]
    uniform = {r["class"]: r for r in rows if r["method"] == "baseline:uniform"}
    assert uniform["crazing"]["n_boxes"] == 1 and uniform["patches"]["n_boxes"] == 2
    assert uniform["crazing"]["energy"] == pytest.approx(16 * 16 / SIZE**2)
    assert uniform["patches"]["energy"] == pytest.approx((32 * 24 + 8 * 8) / SIZE**2)
    grad = {r["class"]: r for r in rows if r["method"] == "gradcam"}
    assert set(grad) == {"crazing", "patches"}
    assert grad["crazing"]["score"] != grad["patches"]["score"]

    file_rows = evaluate(_cfg(voc, checkpoint), explainer=ex, samples=[sample]).rows
    assert {r["class"] for r in file_rows} == {"crazing"}
    assert len(file_rows) == 1 + len(BASELINES)

    probs = ex.predict([cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)])[0]
    top = NEU_CLASSES[int(probs.argmax())]
    pred_rows = evaluate(
        _cfg(voc, checkpoint, target_rule="predicted"), explainer=ex, samples=[sample]
    ).rows
    assert {r["class"] for r in pred_rows} == {top}
    assert all(r["correct"] == (top == "crazing") for r in pred_rows)
    expected_boxes = sum(b.cls == top for b in boxes)
    assert all(r["n_boxes"] == expected_boxes for r in pred_rows)


def test_row_without_boxes_is_kept_but_not_scored(voc, checkpoint, loaded):
    path = voc / "IMAGES" / "crazing_synth_0000.png"
    sample = Sample(path, "x_1", "patches", (Box("crazing", 0, 0, 8, 8),), (SIZE, SIZE))
    result = evaluate(_cfg(voc, checkpoint), explainer=_spy(loaded), samples=[sample])
    assert len(result.rows) == 1 + len(BASELINES)
    assert all(r["pointing"] is None and r["error"] is None for r in result.rows)
    table = result.summary()
    assert (table["n"] == 0).all() and table["pointing"].isna().all()
    assert table["maxboxacc_v2"].isna().all()


# --------------------------------------------------------------------- auto-configure


class _Peak(nn.Module):
    """A spot at the middle of the bright region, exactly zero elsewhere: where a wide blur of
    the input is within 5 % of its maximum."""

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        blur = nn.functional.avg_pool2d(g, 15, stride=1, padding=7, count_include_pad=False)
        return torch.relu(blur - 0.95 * blur.amax((2, 3), keepdim=True))


class _Habit(nn.Module):
    """The image plus a fixed brighter spot in the top-left corner, whatever the image shows: a
    positional habit, as NEU-DET models learn (docs/localization.md)."""

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        spot = torch.zeros_like(g)
        spot[..., :6, :6] = 1.5
        return g + spot


class Planted(nn.Module):
    """1-channel layers feeding the logits: ``good`` is the image, ``bad`` its negative, ``peak``
    a spot at the middle of the image's bright box (all of its energy inside the box, but no
    outline of it), ``habit`` the image plus a fixed corner spot."""

    def __init__(self) -> None:
        super().__init__()
        self.good = nn.Conv2d(3, 1, 1, bias=False)
        self.bad = nn.Conv2d(3, 1, 1)
        self.peak = _Peak()
        self.habit = _Habit()
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.good.weight.fill_(1 / 3)
            self.bad.weight.fill_(-1 / 3)
            self.bad.bias.fill_(1.0)
            self.head.weight.fill_(1.0)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, b = self.good(x), self.bad(x)
        p, h = self.peak(g), self.habit(g)
        return self.head(torch.cat([t.mean((2, 3)) for t in (g, b, p, h)], dim=1))


def _planted_samples(folder: Path) -> list[Sample]:
    """Dark images with a bright box inside a dimmer halo: Grad-CAM on ``good`` is the image,
    so thresholds below the halo's level (0.45) box the halo, 0.5 and above the box exactly."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(4):
        x0, y0 = (int(v) for v in rng.integers(8, 36, size=2))
        w, h = (int(v) for v in rng.integers(12, 20, size=2))
        img = np.zeros((SIZE, SIZE), np.uint8)
        img[max(y0 - 6, 0) : y0 + h + 6, max(x0 - 6, 0) : x0 + w + 6] = 115
        img[y0 : y0 + h, x0 : x0 + w] = 255
        path = folder / f"p_{i}.png"
        cv2.imwrite(str(path), img)
        out.append(Sample(path, f"p_{i}", "a", (Box("a", x0, y0, x0 + w, y0 + h),), (SIZE, SIZE)))
    return out


def _planted_explainer(target_layer: str | None = None) -> Explainer:
    card = ModelCard(
        name="planted",
        arch="planted",
        classes=("a", "b"),
        multilabel=False,
        input_size=SIZE,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        target_layer=target_layer,
    )
    return Explainer(Planted().eval(), card)


def test_auto_configure_picks_the_planted_layer_and_threshold(tmp_path):
    ex = _planted_explainer(target_layer="bad")
    rec = auto_configure(ex, _planted_samples(tmp_path), ["gradcam"], ["bad", "good"])
    assert (rec["method"], rec["layer"], rec["threshold"]) == ("gradcam", "good", 0.5)
    assert rec["figures"]["pointing"] == 1.0 and rec["figures"]["energy"] > 0.4
    assert rec["figures"]["box_iou@0.3"] < 0.9 and rec["figures"]["box_iou@0.5"] == 1.0
    scores = {c["layer"]: c["score"] for c in rec["candidates"]}
    # bad: pointing 0 and energy 0, but MaxBoxAccV2 1 (its map is dark exactly on the box, and
    # the reference MaxBoxAccV2 counts the contour of that hole too).
    assert scores["bad"] < 0.34 and scores["good"] > 0.8
    assert rec["calibration"]["n"] == 4 and rec["calibration"]["split"] == "val"
    assert set(rec["baselines"]) == set(BASELINES)
    json.dumps(rec)  # fits a model card
    with pytest.raises(ValueError, match="unknown metric 'accuracy'"):
        auto_configure(ex, [], ["gradcam"], [None], metric="accuracy")


def test_auto_configure_prefers_a_map_that_outlines_the_defect_to_a_single_bright_spot(tmp_path):
    ex = _planted_explainer()
    samples = _planted_samples(tmp_path)
    rec = auto_configure(ex, samples, ["gradcam"], ["peak", "good"])
    by_layer = {c["layer"]: c for c in rec["candidates"]}
    assert rec["layer"] == "good", by_layer
    peak = evaluate(
        EvalConfig(data="-", checkpoint="-", split=None, layers=("peak",)),
        explainer=ex,
        samples=samples,
    ).summary()
    peak = peak[(peak["method"] == "gradcam") & (peak["class"] == "all")].iloc[0]
    # The spot wins on pointing and energy, so ranking on those two alone would pick it.
    assert peak["pointing"] == 1.0 and peak["energy"] > rec["figures"]["energy"]
    assert peak["maxboxacc_v2"] < 0.2 and rec["figures"]["maxboxacc_v2"] == 1.0


def test_auto_configure_turns_flip_averaging_on_where_it_removes_a_positional_habit(tmp_path):
    ex = _planted_explainer()
    samples = _planted_samples(tmp_path)
    plain = auto_configure(ex, samples, ["gradcam"], ["habit"])
    assert plain["flips"] is False and plain["figures"]["pointing"] == 0.0  # the corner wins
    rec = auto_configure(ex, samples, ["gradcam"], ["habit"], flips=(False, True))
    assert rec["flips"] is True and rec["figures"]["pointing"] == 1.0
    assert [(c["flips"], c["score"] > 0.6) for c in rec["candidates"]] == [
        (False, False),
        (True, True),
    ]
    # the figures are those of the flip-averaged maps, as a flip-smoothed evaluation gives them
    table = evaluate(
        EvalConfig(data="-", checkpoint="-", split=None, layers=("habit",), flip_smooth=True),
        explainer=ex,
        samples=samples,
    ).summary()
    row = table[(table["method"] == "gradcam") & (table["class"] == "all")].iloc[0]
    assert rec["figures"]["energy"] == pytest.approx(row["energy"])
    with pytest.raises(ValueError, match="flips must list distinct settings"):
        auto_configure(ex, samples, ["gradcam"], ["habit"], flips=(True, True))


# ------------------------------------------------------------------ config and report


def test_config_rejects_bad_values(voc, checkpoint):
    with pytest.raises(ValueError, match="unknown target_rule 'boxes'"):
        _cfg(voc, checkpoint, target_rule="boxes")
    with pytest.raises(KeyError, match="nosuchcam"):
        _cfg(voc, checkpoint, methods=("nosuchcam",))
    with pytest.raises(ValueError, match="'baseline:centre' is a baseline"):
        _cfg(voc, checkpoint, methods=("baseline:centre",))
    with pytest.raises(ValueError, match="tau must be a fraction"):
        _cfg(voc, checkpoint, tau=2.0)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        _cfg(voc, checkpoint, split="dev")


def test_unknown_layer_fails_before_any_work(voc, checkpoint, loaded):
    spy = _spy(loaded)
    with pytest.raises(KeyError, match="layer9"):
        evaluate(_cfg(voc, checkpoint, layers=("layer3+layer9",)), explainer=spy)
    assert spy.explained == []


def test_report_embeds_examples_and_refuses_non_png(voc, checkpoint, loaded, tmp_path):
    result = evaluate(_cfg(voc, checkpoint, limit=2), explainer=_spy(loaded))
    _, png = cv2.imencode(".png", np.full((4, 4), 200, np.uint8))
    path = write_report(result, tmp_path / "r.html", examples=[("crazing <0>", png.tobytes())])
    text = path.read_text()
    assert "data:image/png;base64," in text and "crazing &lt;0&gt;" in text
    with pytest.raises(ValueError, match="example 0 \\('x'\\) is not PNG bytes"):
        write_report(result, tmp_path / "bad.html", examples=[("x", b"GIF89a")])


def test_partial_result_is_marked(voc, checkpoint, loaded, tmp_path):
    result = evaluate(_cfg(voc, checkpoint), explainer=_spy(loaded), should_stop=lambda: True)
    assert not result.complete and result.rows == [] and result.n_samples == 18
    assert result.summary().empty
    assert "Partial run: 0 of 18" in write_report(result, tmp_path / "r.html").read_text()


# ----------------------------------------------------------- additive metric accumulators


def test_accumulators_rebuild_exactly_from_stored_vectors():
    rng = np.random.default_rng(1)
    direct, rebuilt = M.MaxBoxAccV2(), M.MaxBoxAccV2()
    px_direct, px_rebuilt = M.PxAP(100), M.PxAP(100)
    for _ in range(5):
        cam = rng.random((24, 24)).astype(np.float32)
        boxes = (Box("a", *rng.integers(0, 10, 2), *rng.integers(12, 24, 2)),)
        direct.update(cam, boxes)
        px_direct.update(cam, boxes)
        rebuilt.add_best_ious(json.loads(json.dumps(direct.best_ious(cam, boxes).tolist())))
        pos, neg = px_direct.histograms(cam, boxes)
        px_rebuilt.add_histograms(pos.tolist(), neg.tolist())
    assert rebuilt.compute() == direct.compute()
    assert px_rebuilt.compute() == px_direct.compute()
    with pytest.raises(ValueError, match=r"shape \(100,\)"):
        rebuilt.add_best_ious([0.5] * 3)
    with pytest.raises(ValueError, match="negative histogram must have shape"):
        px_rebuilt.add_histograms([0] * 100, [0] * 5)


def test_real_split_loading_is_stem_sorted(voc, checkpoint, loaded):
    cfg = _cfg(voc, checkpoint, split="val")
    result = evaluate(cfg, explainer=_spy(loaded))
    stems = [r["stem"] for r in result.rows if r["method"] == "gradcam"]
    expected = sorted(s.stem for s in load_dataset(voc, split="val").samples)
    assert stems == expected


def test_evaluate_takes_an_eval_config_only(voc, checkpoint):
    import argparse

    args = argparse.Namespace(data=str(voc), checkpoint=str(checkpoint), split="all")
    with pytest.raises(TypeError, match="evaluate\\(\\) takes an EvalConfig, got Namespace"):
        evaluate(args)


# ------------------------------------------------ stratified order, stop, coverage, resume


def test_stratified_order_takes_the_classes_in_turn():
    def s(stem, label):
        return Sample(Path(f"{stem}.png"), stem, label)

    samples = [s("b_2", "b"), s("a_1", "a"), s("x", None), s("a_2", "a"), s("a_3", "a")]
    samples.append(s("b_1", "b"))
    order = [x.stem for x in stratified_order(samples)]
    # round-robin over sorted class names (no class last), each class in stem order
    assert order == ["a_1", "b_1", "x", "a_2", "b_2", "a_3"]
    assert [x.stem for x in stratified_order(reversed(samples))] == order
    assert stratified_order([]) == []


def test_a_stopped_run_covers_every_class_evenly_and_says_so(voc, checkpoint, loaded):
    """The time budget (should_stop) keeps a class-stratified prefix, not the first stems."""
    seen: list[int] = []
    result = evaluate(
        _cfg(voc, checkpoint, split="train", batch_size=6),
        explainer=_spy(loaded),
        samples=load_dataset(voc, split="train").samples,
        progress=lambda done, total, msg: seen.append(done),
        should_stop=lambda: bool(seen),
    )
    assert result.state == "stopped" and not result.complete
    assert (result.n_done, result.n_samples) == (6, 12)
    labels = sorted(r["label"] for r in result.rows if r["method"] == "gradcam")
    assert labels == sorted(NEU_CLASSES), "one image of each class, not 6 crazing ones"
    cov = result.coverage
    assert cov.classes == tuple(sorted(NEU_CLASSES))
    assert cov.done == (1,) * 6 and cov.planned == (2,) * 6
    expected = ", ".join(f"{c} 1" for c in sorted(NEU_CLASSES))
    assert result.status() == f"stopped at 6 of 12 images; covers {expected}"
    settings = result.settings()
    assert settings["split"] == "train" and settings["model"] == "tiny-local"
    assert settings["methods"] == "gradcam" and settings["layers"] == result.layers[0]
    assert settings["images"] == "6 of 12" and settings["flip averaging"] == "off"
    assert settings["target rule"] == "file-class"
    assert settings["state"] == result.status()

    full = evaluate(_cfg(voc, checkpoint, limit=7), explainer=_spy(loaded))
    assert full.state == "done" and full.status().startswith("done: 7 images; covers crazing 2,")


def test_a_stopped_run_resumes_in_its_run_folder_computing_only_the_missing_images(
    voc, checkpoint, loaded, tmp_path
):
    kw = dict(methods=("gradcam", "gradcam++"), batch_size=5)
    uninterrupted = evaluate(_cfg(voc, checkpoint, **kw), explainer=_spy(loaded))

    cfg = _cfg(voc, checkpoint, **kw)
    folder = run_folder(tmp_path / "runs", cfg, _spy(loaded))
    assert folder.parent == tmp_path / "runs"
    assert run_folder(tmp_path / "runs", cfg, _spy(loaded)) == folder
    other = _cfg(voc, checkpoint, tau=0.3, **kw)
    assert run_folder(tmp_path / "runs", other, _spy(loaded)) != folder
    cfg = dataclasses.replace(cfg, out=str(folder))

    calls: list[int] = []
    first = _spy(loaded)
    stopped = evaluate(
        cfg,
        explainer=first,
        progress=lambda done, total, msg: calls.append(done),
        should_stop=lambda: len(calls) >= 2,
    )
    assert stopped.state == "stopped" and stopped.n_done == 10 and len(first.explained) == 10
    computed_first = {r["stem"] for r in stopped.rows}

    second = _spy(loaded)
    resumed = evaluate(cfg, explainer=second)
    assert resumed.state == "done" and resumed.n_done == 18
    assert len(second.explained) == 8, "only the 8 missing images are computed"
    assert {r["stem"] for r in resumed.rows} - computed_first == {
        s.stem for s in load_dataset(voc).samples
    } - computed_first
    pd.testing.assert_frame_equal(resumed.summary(), uninterrupted.summary())
    assert resumed.rows == uninterrupted.rows


# ---------------------------------------------------------------------------- the report


def test_report_states_the_true_split_and_the_run_state(voc, checkpoint, loaded, tmp_path):
    samples = load_dataset(voc, split="val").samples
    result = evaluate(
        _cfg(voc, checkpoint, split="val"),
        explainer=_spy(loaded),
        samples=samples,
        should_stop=lambda: False,
    )
    text = write_report(result, tmp_path / "r.html").read_text()
    assert "<tr><th>split</th><td>val</td></tr>" in text
    assert "split</th><td>all" not in text
    assert "<tr><th>model</th><td>tiny-local</td></tr>" in text
    assert f"done: {len(samples)} images; covers" in text


def test_report_bars_are_render_metric_bars_one_colour_per_method(voc, checkpoint, loaded):
    methods = ("gradcam", "gradcam++", "eigencam")
    result = evaluate(_cfg(voc, checkpoint, methods=methods, limit=6), explainer=_spy(loaded))
    bars = report_figures(result)[0]
    assert {t.type for t in bars.data} == {"bar"}
    assert len(bars.data) == len(methods) + len(BASELINES)
    colorway = list(bars.layout.template.layout.colorway)
    colours = {}
    for k, trace in enumerate(bars.data):
        # an explicit marker colour, else plotly's default: the template colorway by trace index
        colours[trace.name] = trace.marker.color or colorway[k % len(colorway)]
    method_traces = [t for t in bars.data if t.marker.pattern.shape != "/"]
    base_traces = [t for t in bars.data if t.marker.pattern.shape == "/"]
    assert len(method_traces) == len(methods) and len(base_traces) == len(BASELINES)
    method_colours = [colours[t.name] for t in method_traces]
    assert len(set(method_colours)) == len(methods), method_colours
    assert not {"black", "#000", "#000000"} & {str(c).lower() for c in method_colours}
    assert not set(method_colours) & {colours[t.name] for t in base_traces}
    # the heights are the summary's pointing figures, per class and method
    table = result.summary()
    for trace, method in zip(method_traces, methods, strict=True):
        rows = table[(table["method"] == method)].set_index("class")["pointing"]
        assert list(trace.x) == list(rows.index)
        assert list(trace.y) == pytest.approx(list(rows), nan_ok=True)


def test_old_session_stores_are_pruned_and_the_kept_and_recent_ones_stay(tmp_path):
    import os
    import time

    from cam_core.evaluation.store import prune_stores

    for name in ("old", "recent", "mine"):
        (tmp_path / name / "run").mkdir(parents=True)
    week = 7 * 86_400
    stale = time.time() - week - 60
    for name in ("old", "mine"):
        os.utime(tmp_path / name, (stale, stale))
    gone = prune_stores(tmp_path, week, keep="mine")
    assert gone == [tmp_path / "old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "recent"]
    assert prune_stores(tmp_path / "missing", week) == []
