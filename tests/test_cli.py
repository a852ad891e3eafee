"""The command line (cam_core.cli): every subcommand parses and helps, and runs its library call."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cam_core import cli
from cam_core.__main__ import main
from cam_core.data import NEU_CLASSES
from cam_core.evaluation import BASELINES, evaluate
from cam_core.explain import Explainer
from cam_core.models import ModelCard, load_model

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
SUBCOMMANDS = ("train", "explain", "evaluate", "synth", "mosaics")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------- parsers


def test_the_parser_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in text


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert f"python -m cam_core {name}" in capsys.readouterr().out


def test_missing_required_arguments_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate"])
    assert exc.value.code == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_train_arguments_become_the_train_config(monkeypatch, tmp_path, capsys):
    """The train subcommand builds TrainConfig from its flags and prints the typed events."""
    from cam_core import train as train_module

    seen = {}
    epoch = train_module.EpochEvent(
        epoch=0, loss=1.5, val_accuracy=0.5, val_macro_f1=0.25, best_epoch=0, step=2, total=2
    )

    def fake_train(cfg, progress):
        seen["cfg"] = cfg
        progress(train_module.StepEvent(epoch=0, step=1, total=2, loss=1.5))
        progress(epoch)
        return tmp_path / "model.pt"

    monkeypatch.setattr(train_module, "train", fake_train)
    argv = ["train", "--data", "d", "--out", str(tmp_path), "--epochs", "3", "--multilabel"]
    argv += ["--box-loss", "8", "--patience", "0", "--device", "cpu"]
    assert main(argv) == 0
    cfg = seen["cfg"]
    assert (cfg.data, cfg.epochs, cfg.multilabel, cfg.box_loss, cfg.patience) == (
        "d",
        3,
        True,
        8.0,
        0,
    )
    assert cfg.device == "cpu" and cfg.command.startswith("python -m cam_core train --data d")
    out = capsys.readouterr().out
    assert epoch.describe() in out and "macro-F1 0.25" in out
    assert f"saved {tmp_path / 'model.pt'}" in out


def test_python_m_cam_core_runs_the_cli(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cam_core", "synth", str(tmp_path), "--per-class", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "ANNOTATIONS").glob("*.xml"))) == len(NEU_CLASSES)
    assert f"wrote {len(NEU_CLASSES)} images to {tmp_path}" in proc.stdout


# --------------------------------------------------------------------------------- synth


def test_synth_writes_a_folder(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "a"), "--per-class", "1", "--seed", "2"]) == 0
    assert "wrote 6 images" in capsys.readouterr().out
    assert len(list((tmp_path / "a" / "IMAGES").glob("*.png"))) == 6
    image = cv2.imread(str(next((tmp_path / "a" / "IMAGES").glob("*.png"))))
    assert image.shape[:2] == (200, 200)
    assert main(["synth", str(tmp_path / "s"), "--per-class", "1", "--size", "48"]) == 0
    image = cv2.imread(str(next((tmp_path / "s" / "IMAGES").glob("*.png"))))
    assert image.shape[:2] == (48, 48)
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path / "b"), "--per-class", "-2"])
    assert "--per-class: must be >= 0, got -2" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_synth_module_has_no_second_cli():
    from cam_core import synth

    assert not hasattr(synth, "main")


# ------------------------------------------------------------------------------ evaluate


def test_evaluate_writes_summary_report_and_card(voc, checkpoint, tmp_path, capsys):
    ckpt = tmp_path / "m" / "model.pt"
    ckpt.parent.mkdir()
    shutil.copy(checkpoint, ckpt)
    shutil.copy(checkpoint.with_suffix(".json"), ckpt.with_suffix(".json"))
    out = tmp_path / "eval"
    argv = ["evaluate", "--data", str(voc), "--split", "val", "--checkpoint", str(ckpt)]
    argv += ["--methods", "gradcam,gradcam++", "--layers", "layer3,layer2+layer3"]
    argv += ["--out", str(out), "--auto-configure", "--try-flips"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "summary.csv")
    pairs = set(zip(table["method"], table["layer"], strict=True))
    for m in ("gradcam", "gradcam++"):
        assert {(m, "layer3"), (m, "layer2+layer3")} <= pairs
    assert {(b, "-") for b in BASELINES} <= pairs
    assert table.loc[table["method"].isin(list(BASELINES)), "baseline"].all()
    assert not table.loc[~table["method"].isin(list(BASELINES)), "baseline"].any()
    # one val image per class: 6 scored pairs in every (method, layer) "all" row
    assert (table.loc[table["class"] == "all", "n_rows"] == 6).all()
    for b in BASELINES:
        assert b in printed
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 6 * (2 * 2 + 3)
    report = (out / "report.html").read_text()
    assert "baseline:gaussian" in report and "<table>" in report
    assert "<tr><th>split</th><td>val</td></tr>" in report
    assert report.count('class="plotly-graph-div"') == 2
    assert "cdn.plot.ly/plotly" not in report and 'src="http' not in report
    assert len(report) > 1_000_000, "plotly.js must be inlined (no network at view time)"
    rec = json.loads(ckpt.with_suffix(".json").read_text())["recommended"]
    assert rec["method"] in ("gradcam", "gradcam++")
    assert rec["layer"] in ("layer3", "layer2+layer3")
    assert rec["threshold"] in (0.3, 0.4, 0.5, 0.6, 0.7)
    assert rec["calibration"]["split"] == "val" and rec["calibration"]["n"] == 6
    # --try-flips: every method × layer scored as is and flip-averaged
    assert sorted((c["flips"], c["method"], c["layer"]) for c in rec["candidates"]) == sorted(
        (f, m, lay)
        for f in (False, True)
        for m in ("gradcam", "gradcam++")
        for lay in ("layer3", "layer2+layer3")
    )
    assert rec["flips"] is max(rec["candidates"], key=lambda c: c["score"])["flips"]
    assert load_model(ckpt).card.recommended.to_dict() == rec
    # the card was rewritten through ModelCard: everything else in it is unchanged
    before = ModelCard.from_json(checkpoint.with_suffix(".json").read_text())
    after = load_model(ckpt).card
    assert (after.name, after.arch, after.classes, after.input_size) == (
        before.name,
        before.arch,
        before.classes,
        before.input_size,
    )


def test_evaluate_reports_bad_checkpoint(voc, tmp_path, capsys):
    bad = tmp_path / "nope.pt"
    assert main(["evaluate", "--data", str(voc), "--checkpoint", str(bad)]) == 2
    assert "nope.pt" in capsys.readouterr().err


def test_evaluate_arguments_become_an_eval_config(voc, checkpoint):
    argv = ["evaluate", "--data", str(voc), "--split", "all", "--checkpoint", str(checkpoint)]
    argv += ["--methods", "gradcam", "--layers", "layer2", "--limit", "2", "--tau", "0.4"]
    cfg = cli.config_from_args(cli.build_parser().parse_args(argv))
    assert cfg.split is None and cfg.methods == ("gradcam",) and cfg.layers == ("layer2",)
    result = evaluate(cfg)  # no explainer: the checkpoint and its card are loaded
    assert result.config.tau == 0.4 and result.layers == ("layer2",)
    assert [r["layer"] for r in result.rows if r["method"] == "gradcam"] == ["layer2"] * 2


# ------------------------------------------------------------------------------- explain


def test_explain_writes_overlays_maps_and_scores_with_the_folders_gt(voc, checkpoint, tmp_path):
    out = tmp_path / "explained"
    argv = ["explain", "--checkpoint", str(checkpoint), "--images", str(voc / "IMAGES")]
    argv += ["--methods", "gradcam,eigencam", "--classes-to-explain", "patches"]
    argv += ["--flip-smooth", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "explain.json").read_text())
    assert len(report["images"]) == 3 * len(NEU_CLASSES)
    entry = report["images"]["patches_synth_0000.png"]
    assert [(m["class"], m["method"], m["flip_smooth"]) for m in entry["maps"]] == [
        ("patches", "gradcam", True),
        ("patches", "eigencam", True),
    ]
    # GT found in the VOC folder's ANNOTATIONS/, so the maps are scored against it
    assert entry["maps"][0]["localization"]["energy"] is not None
    assert report["images"]["crazing_synth_0000.png"]["maps"][0]["localization"] is None
    saved = np.load(out / "patches_synth_0000__patches__gradcam.npy")
    image = cv2.imread(str(voc / "IMAGES" / "patches_synth_0000.png"), cv2.IMREAD_GRAYSCALE)
    loaded = load_model(checkpoint)
    c = NEU_CLASSES.index("patches")
    exp = Explainer(loaded.model, loaded.card).explain(
        [image], ["gradcam"], targets=[[c]], flip_smooth=True
    )
    np.testing.assert_allclose(saved, exp.results[0].cam, atol=1e-5)
    assert (out / "patches_synth_0000__patches__gradcam.png").stat().st_size > 0


def test_explain_files_reports_unreadable_images_and_unknown_classes(checkpoint, tmp_path):
    from cam_core.evaluation import explain_files

    loaded = load_model(checkpoint)
    ex = Explainer(loaded.model, loaded.card)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((SIZE, SIZE), 90, np.uint8))
    warnings: list[str] = []
    done = explain_files(ex, [bad, good], tmp_path / "out", ["gradcam"], warn=warnings.append)
    assert (done.n_images, done.n_maps) == (1, 1)
    assert "error" in done.report["images"]["bad.png"]
    assert len(warnings) == 1 and "bad.png" in warnings[0]
    with pytest.raises(ValueError, match=r"unknown class\(es\) \['rust'\]"):
        explain_files(ex, [good], tmp_path / "o2", ["gradcam"], classes=["rust"])
