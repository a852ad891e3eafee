"""cam_core.review: quadrants, positional bias, annotation QA + VOC export, release diff (library
and CLI). Planted cases with known answers; the one model run uses tiny untrained networks."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lxml import etree

from cam_core.data import Box, Sample
from cam_core.evaluation import EvalConfig, EvalResult
from cam_core.evaluation.result import Coverage
from cam_core.metrics.position import (
    GRID,
    PositionAcc,
    box_cover,
    decode_grid,
    encode_grid,
    normalised_boxes,
)
from cam_core.review.annotation_qa import (
    ExportError,
    map_boxes,
    qa_candidates,
    voc_zip,
    write_voc_export,
)
from cam_core.review.bias import bias_figure, bias_table, position_bias
from cam_core.review.diff import diff_html, diff_results
from cam_core.review.maps import RowMap
from cam_core.review.quadrants import confusion, misclassified, quadrant_counts, quadrant_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = ("crazing", "inclusion")


def _row(stem, cls, *, correct=True, pointing=True, energy=0.5, score=0.95, n_boxes=1, **kw):
    row = {
        "stem": stem,
        "label": cls,
        "class": cls,
        "method": "gradcam",
        "layer": "layer4",
        "pointing": pointing if n_boxes else None,
        "pointing_tol": pointing if n_boxes else None,
        "energy": energy if n_boxes else None,
        "energy_ratio": 1.0 if n_boxes else None,
        "iou": 0.3 if n_boxes else None,
        "box_iou": 0.3 if n_boxes else None,
        "score": score,
        "correct": correct,
        "predicted": cls if correct else "other",
        "n_boxes": n_boxes,
        "error": None,
    }
    row.update(kw)
    return row


def _result(rows, model="m", **cfg) -> EvalResult:
    config = EvalConfig(data="d", checkpoint=f"{model}.pt", split=None, layers=("layer4",), **cfg)
    stems = list(dict.fromkeys(r["stem"] for r in rows))
    return EvalResult(
        config=config,
        classes=CLASSES,
        layers=("layer4",),
        rows=rows,
        n_samples=len(stems),
        n_done=len(stems),
        complete=True,
        model=model,
        coverage=Coverage.count([None] * len(stems), [None] * len(stems)),
        accumulators={},
    )


# ------------------------------------------------------------------------------- quadrants


def _planted_quadrant_rows() -> pd.DataFrame:
    rows = [
        *(_row(f"c{i}", "crazing", correct=True, pointing=False, energy=0.1 * i) for i in range(3)),
        *(_row(f"h{i}", "crazing", correct=True, pointing=True) for i in range(5)),
        _row("w0", "crazing", correct=False, pointing=True),
        *(_row(f"m{i}", "inclusion", correct=False, pointing=False) for i in range(2)),
        _row("nb", "inclusion", n_boxes=0),  # no box: unscored
        _row("err", "inclusion", error="boom"),  # an error: unscored
        _row("base", "crazing", method="baseline:centre", layer="-"),  # another group
    ]
    return pd.DataFrame(rows)


def test_quadrants_count_each_planted_case_and_put_correct_but_off_first():
    rows = _planted_quadrant_rows()
    counts = quadrant_counts(rows, "gradcam", "layer4", classes=CLASSES).set_index("class")
    assert counts.loc[
        "crazing", ["correct-miss", "correct-hit", "wrong-hit", "wrong-miss"]
    ].tolist() == [3, 5, 1, 0]
    assert counts.loc["inclusion", "wrong-miss"] == 2
    assert counts.loc["inclusion", "unscored"] == 2
    assert counts.loc["all", "n"] == 11
    assert counts.loc["crazing", "off_share"] == pytest.approx(3 / 8)
    ordered = quadrant_rows(rows, "gradcam", "layer4")
    assert list(ordered["quadrant"][:3]) == ["correct-miss"] * 3
    assert list(ordered["stem"][:3]) == ["c0", "c1", "c2"]  # lowest energy first
    assert "base" not in set(ordered["stem"])


def test_quadrants_refuse_an_unknown_hit_rule_and_misclassified_keeps_only_wrong_rows():
    rows = _planted_quadrant_rows()
    with pytest.raises(KeyError, match=r"unknown hit rule 'energy'.*pointing"):
        quadrant_rows(rows, "gradcam", "layer4", hit="energy")
    wrong = misclassified(rows)
    assert set(wrong["stem"]) == {"w0", "m0", "m1"}


def test_confusion_counts_each_image_once_by_label_and_top1():
    rows = pd.DataFrame(
        [
            _row("a", "crazing"),
            _row("a", "crazing", method="gradcam++"),  # same image again: counted once
            _row("b", "crazing", correct=False, predicted="inclusion"),
            _row("c", "inclusion"),
            _row("d", "inclusion", predicted=None),  # unreadable: left out
        ]
    )
    m = confusion(rows, CLASSES)
    assert m.loc["crazing"].tolist() == [1, 1]
    assert m.loc["inclusion"].tolist() == [0, 1]
    with pytest.raises(KeyError, match="no predicted class"):
        confusion(rows.drop(columns="predicted"), CLASSES)


# ------------------------------------------------------------------------- positional bias


def test_grid_round_trip_and_box_cover():
    cam = np.zeros((100, 200), np.float32)
    cam[:50, 100:] = 2.0  # top-right quarter at the peak
    grid = decode_grid(encode_grid(cam))
    assert grid.shape == (GRID, GRID)
    assert grid[:25, 25:].min() == pytest.approx(1.0) and grid[25:, :].max() == 0.0
    cover = box_cover(normalised_boxes([Box("x", 0, 0, 100, 25)], (100, 200)))
    assert cover.sum() == pytest.approx(GRID * GRID / 8)  # an eighth of the image


def _gauss(shape, cy, cx, sigma):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)


def _accumulate(maps_and_boxes, shape=(100, 100)) -> PositionAcc:
    acc = PositionAcc()
    for cam, boxes in maps_and_boxes:
        acc.add(encode_grid(cam), normalised_boxes(boxes, shape))
    return acc


def _verdict(acc: PositionAcc):
    return position_bias(acc.mean_map(), acc.box_density(), acc.peaks())


def _boxes_everywhere(n=40, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x, y = rng.integers(0, 70, size=2)
        yield Box("c", float(x), float(y), float(x + 30), float(y + 30))


def test_a_planted_corner_biased_map_set_is_flagged():
    shape = (100, 100)
    acc = _accumulate([(_gauss(shape, 3, 3, 4), [b]) for b in _boxes_everywhere()])
    v = _verdict(acc)
    assert v.flagged
    assert v.map_corners > 0.5 and v.map_corners > 2 * v.box_corners + 0.05
    assert any("corners" in r for r in v.reasons) and any("peak" in r for r in v.reasons)


def test_maps_that_follow_their_boxes_are_not_flagged():
    shape = (100, 100)
    pairs = [(_gauss(shape, b.y0 + 15, b.x0 + 15, 8), [b]) for b in _boxes_everywhere()]
    v = _verdict(_accumulate(pairs))
    assert not v.flagged, v.reasons
    assert v.in_box_prior > 0.9


def test_a_fixed_peak_under_full_image_boxes_is_flagged_only_by_the_peak_rule():
    # the zero-padding textbook case: the boxes cover the whole image (a texture class), the
    # maps peak in one fixed cell whatever the image
    shape = (100, 100)
    full = [Box("c", 0, 0, 100, 100)]
    pairs = [(_gauss(shape, 30, 70, 12) + 0.2, full) for _ in range(20)]
    v = _verdict(_accumulate(pairs))
    assert v.flagged
    assert v.reasons == (
        "half or more of the maps peak in one small window the boxes do not favour",
    )


def test_without_boxes_nothing_is_compared_or_flagged():
    acc = _accumulate([(_gauss((100, 100), 3, 3, 4), [])])
    v = _verdict(acc)
    assert not v.flagged and np.isnan(v.box_border)


def test_bias_table_and_figure_read_an_evaluations_accumulators():
    from cam_core.evaluation.result import accumulate

    rows = []
    for i, b in enumerate(_boxes_everywhere(10)):
        r = _row(f"s{i}", "crazing")
        r.update(_best_ious=None, _grid=encode_grid(_gauss((100, 100), 3, 3, 4)))
        r["_gt"] = normalised_boxes([b], (100, 100))
        rows.append(r)
    accs: dict = {}
    for r in rows:
        accumulate(accs, r)
    result = EvalResult(**{**_result(rows).__dict__, "accumulators": accs})
    table = bias_table(result, "gradcam", "layer4")
    assert table["class"].tolist() == ["crazing"] and bool(table["flagged"].iloc[0])
    assert table["n"].iloc[0] == 10
    mean = result.accumulators[("gradcam", "layer4", "crazing")].position.mean_map()
    fig = bias_figure(mean, None, "crazing")
    assert len(fig.data) == 1


# -------------------------------------------------------------------------- annotation QA


def test_qa_lists_confident_correct_rows_off_the_boxes_or_without_boxes_ranked():
    rows = pd.DataFrame(
        [
            _row("off_conf", "crazing", pointing=False, energy=0.1, score=0.99),
            _row("off_less", "crazing", pointing=False, energy=0.4, score=0.95),
            _row("nobox", "crazing", n_boxes=0, score=0.92),
            _row("on", "crazing", pointing=True, score=0.99),  # evidence in the box
            _row("unsure", "crazing", pointing=False, score=0.6),  # not confident
            _row("wrong", "crazing", pointing=False, correct=False),  # not correct
        ]
    )
    qa = qa_candidates(rows, "gradcam", "layer4", confidence=0.9)
    assert qa["stem"].tolist() == ["nobox", "off_conf", "off_less"]
    assert qa["reason"].tolist()[:2] == ["no box of the class", "evidence outside every box"]
    with pytest.raises(ValueError, match="confidence"):
        qa_candidates(rows, "gradcam", "layer4", confidence=1.5)


def _planted_map_item(tmp_path: Path, stem="img1") -> RowMap:
    cam = np.zeros((60, 80), np.float32)
    cam[10:30, 40:70] = 1.0  # one region: columns 40..69, rows 10..29
    sample = Sample(path=tmp_path / f"{stem}.png", stem=stem, label="crazing")
    return RowMap(sample, "crazing", np.zeros((60, 80), np.uint8), cam, ())


def test_map_boxes_are_exported_as_voc_in_a_new_folder_and_a_zip(tmp_path):
    item = _planted_map_item(tmp_path)
    assert map_boxes(item.cam, "crazing") == (Box("crazing", 40.0, 10.0, 70.0, 30.0),)
    out = write_voc_export([item], tmp_path / "relabel")
    root = etree.parse(str(out / "img1.xml")).getroot()
    bnd = root.find("object/bndbox")
    # VOC: 1-based inclusive pixel indices
    got = [int(bnd.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
    assert got == [41, 11, 70, 30]
    assert root.find("object/name").text == "crazing"
    assert root.find("size/width").text == "80"
    with zipfile.ZipFile(__import__("io").BytesIO(voc_zip([item]))) as zf:
        assert zf.namelist() == ["annotations/img1.xml"]
    zpath = write_voc_export([item], tmp_path / "relabel.zip")
    assert zipfile.ZipFile(zpath).namelist() == ["annotations/img1.xml"]


def test_the_export_never_overwrites_the_users_files(tmp_path):
    item = _planted_map_item(tmp_path)
    folder = tmp_path / "annotations"
    folder.mkdir()
    (folder / "img1.xml").write_text("user's own")
    with pytest.raises(ExportError, match=r"not empty.*nothing written"):
        write_voc_export([item], folder)
    assert (folder / "img1.xml").read_text() == "user's own"
    existing = tmp_path / "old.zip"
    existing.write_bytes(b"user zip")
    with pytest.raises(ExportError, match="already exists"):
        write_voc_export([item], existing)
    assert existing.read_bytes() == b"user zip"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_voc_export([item], empty) / "img1.xml").is_file()  # an empty folder is fine


# ---------------------------------------------------------------------------------- diff


def _release(rows_spec, model):
    return _result([_row(s, c, **kw) for s, c, kw in rows_spec], model=model)


def test_diff_is_paired_a_constant_gain_has_a_zero_width_interval():
    rng = np.random.default_rng(1)
    energy = rng.uniform(0, 0.8, size=30)
    a = _release([(f"s{i}", "crazing", {"energy": e}) for i, e in enumerate(energy)], "A")
    b = _release([(f"s{i}", "crazing", {"energy": e + 0.1}) for i, e in enumerate(energy)], "B")
    d = diff_results(a, b).table.set_index(["class", "figure"])
    rec = d.loc[("crazing", "energy")]
    assert rec["diff"] == pytest.approx(0.1)
    # paired: per-image noise cancels; an unpaired bootstrap would give an interval ~±0.15 wide
    assert rec["lo"] == pytest.approx(0.1) and rec["hi"] == pytest.approx(0.1)
    assert bool(rec["significant"])
    assert (
        d.loc[("crazing", "pointing"), "diff"] == 0
        and not d.loc[("crazing", "pointing"), "significant"]
    )


def test_diff_lists_the_images_that_changed_worse_first():
    spec_a = [
        ("s0", "crazing", {"pointing": True}),
        ("s1", "crazing", {"pointing": False}),
        ("s2", "inclusion", {"correct": True}),
        ("s3", "inclusion", {}),
    ]
    spec_b = [
        ("s0", "crazing", {"pointing": False}),
        ("s1", "crazing", {"pointing": True}),
        ("s2", "inclusion", {"correct": False}),
        ("s3", "inclusion", {}),
        ("s9", "inclusion", {}),  # only in B: not compared
    ]
    d = diff_results(_release(spec_a, "A"), _release(spec_b, "B"))
    assert d.changes[["stem", "change"]].values.tolist() == [
        ["s0", "hit→miss"],
        ["s2", "correct→wrong"],
        ["s1", "miss→hit"],
    ]
    assert d.n_images == 4
    acc = d.table.set_index(["class", "figure"]).loc[("inclusion", "accuracy")]
    assert (acc["a"], acc["b"]) == (1.0, 0.5)
    assert "hit→miss" in diff_html(d) and "Release diff" in diff_html(d)


def test_diff_refuses_different_settings_and_disjoint_images():
    a = _release([("s0", "crazing", {})], "A")
    b = _result([_row("s0", "crazing")], model="B", tau=0.3)
    with pytest.raises(ValueError, match=r"tau: 0\.5 vs 0\.3"):
        diff_results(a, b)
    with pytest.raises(ValueError, match="share no"):
        diff_results(a, _release([("zz", "crazing", {})], "B"))


def test_cli_diff_writes_csv_and_html_for_two_checkpoints(voc, checkpoint, tmp_path, capsys):
    import shutil

    import torch

    from cam_core.cli import main
    from cam_core.models import build_model, load_model, save_model

    torch.manual_seed(5)
    card = load_model(str(checkpoint)).card
    other = save_model(build_model(card.arch, 6), card, tmp_path / "b" / "model.pt")
    args = ["diff", "--checkpoint-a", str(checkpoint), "--checkpoint-b", str(other)]
    args += ["--data", str(voc), "--split", "all", "--limit", "6", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    table = pd.read_csv(tmp_path / "o" / "diff.csv")
    assert set(table["figure"]) >= {"accuracy", "pointing", "energy", "iou"}
    assert table.loc[table["class"] == "all", "n_images"].iloc[0] == 6
    assert "Release diff" in (tmp_path / "o" / "diff.html").read_text()
    assert main([*args[:4], str(tmp_path / "missing.pt"), *args[5:]]) == 2
    assert "error:" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "o")


def test_the_bias_grids_are_stored_with_the_rows_and_a_resumed_run_keeps_them(
    voc, checkpoint, tmp_path
):
    from cam_core.evaluation import evaluate

    cfg = EvalConfig(
        data=str(voc),
        checkpoint=str(checkpoint),
        split=None,
        limit=6,
        batch_size=3,
        out=str(tmp_path),
    )
    first = evaluate(cfg, should_stop=iter([False, True]).__next__)  # one batch of 3, stopped
    assert not first.complete
    full = evaluate(cfg)  # resumes: the first 3 images' grids come from rows.jsonl
    fresh = evaluate(EvalConfig(**{**cfg.__dict__, "out": None}))
    for cls in (full.rows[0]["class"], "all"):
        key = ("gradcam", full.layers[0], cls)
        got, want = full.accumulators[key].position, fresh.accumulators[key].position
        assert got.n == want.n > 0 and got.missing == 0
        np.testing.assert_allclose(got.map_sum, want.map_sum)
        np.testing.assert_allclose(got.box_sum, want.box_sum)
    baseline = full.accumulators[("baseline:centre", "-", "all")].position
    assert baseline.n == 0  # baselines carry no grid
