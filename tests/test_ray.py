"""Evaluation as a Ray Data job (cam_core.scale): the local run's summary from an actor pool,
resumable, a killed actor costing nothing, bad input as error rows.

One local Ray instance per module (``ray.init(num_cpus=2)``, no dashboard, a small object
store). Every Ray run starts its actors afresh (a process importing torch each), so the module
keeps to few runs: the killed-actor run on the synthetic folder (with a bad image and a bad
XML), its rerun after a crash, the CLI on a Parquet manifest, and a NEU-DET split when present.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("ray", reason="ray[data] is not installed (requirements-dev.txt)")

from cam_core import cli
from cam_core.data import find_neu_det, load_dataset
from cam_core.evaluation import EvalConfig, evaluate
from cam_core.explain import Explainer
from cam_core.models import load_model
from cam_core.scale import evaluate_on_ray, read_manifest, write_manifest
from cam_core.scale.parts import PartStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gradcam", "gradcam++")


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024**2,
        log_to_driver=False,
        logging_level="error",
    )
    yield ray
    started = [pid for pid, _ in _descendants("ray::")]
    ray.shutdown()
    time.sleep(2)
    for pid in started:  # an actor still importing when its raylet went stays behind: end it
        with contextlib.suppress(OSError):
            if "ray::" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def explainer(checkpoint):
    loaded = load_model(checkpoint)
    return Explainer(loaded.model, loaded.card, batch_size=2)


@pytest.fixture(scope="module")
def hostile(voc, tmp_path_factory):
    """The synthetic folder plus an image that is not an image and an XML that is not XML."""
    root = tmp_path_factory.mktemp("hostile") / "voc"
    shutil.copytree(voc, root)
    (root / "IMAGES" / "crazing_synth_0900.jpg").write_bytes(b"not an image")
    shutil.copyfile(
        root / "IMAGES" / "inclusion_synth_0000.png", root / "IMAGES" / "patches_synth_0901.png"
    )
    (root / "ANNOTATIONS" / "patches_synth_0901.xml").write_text("<annotation><object>")
    return root


def _cfg(data, checkpoint, **kw):
    base = {"data": str(data), "checkpoint": str(checkpoint), "split": None, "methods": METHODS}
    return EvalConfig(**{**base, "batch_size": 2, **kw})


def _keys(rows):
    return [(r["stem"], r["class"], r["method"], r["layer"]) for r in rows]


def _assert_same_summary(a, b):
    pd.testing.assert_frame_equal(a.summary(), b.summary(), rtol=1e-6, atol=1e-9)


def _our_actors():
    """(pid, title) of this process's Ray Data map actors (descendants of this process)."""
    return _descendants("MapWorker(MapBatches(BatchWorker))")


def _descendants(title):
    """(pid, title) of the processes under this one whose title contains ``title``."""
    parent = {}
    titles = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            titles[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parent[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])

    def ours(pid):
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = parent.get(pid, 1)
        return False

    return [(pid, t) for pid, t in titles.items() if title in t and ours(pid)]


@pytest.fixture(scope="module")
def killed_run(ray_cluster, hostile, checkpoint, explainer, tmp_path_factory):
    """The hostile folder on Ray, one actor SIGKILLed as soon as the first batch is written."""
    out = tmp_path_factory.mktemp("ray") / "out"
    cfg = _cfg(hostile, checkpoint, out=str(out))
    seen: dict[str, object] = {}

    def kill_one():
        t0 = time.monotonic()
        while time.monotonic() - t0 < 600:
            parts = list((out / "rows").glob("*.parquet"))
            busy = [a for a in _our_actors() if ".submit" in a[1]] if parts else []
            if busy:
                os.kill(busy[0][0], signal.SIGKILL)
                seen.update(pid=busy[0][0], parts_at_kill=len(parts))
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    run = evaluate_on_ray(cfg, explainer)
    killer.join(timeout=5)
    return cfg, run, seen


def test_a_killed_actor_loses_nothing_duplicates_nothing_and_the_summary_is_the_local_one(
    killed_run, explainer
):
    cfg, run, seen = killed_run
    assert "pid" in seen, "no busy actor was found to kill"
    assert seen["parts_at_kill"] < run.batches, "the kill came after the last batch"
    local = evaluate(dataclasses.replace(cfg, out=None), explainer=explainer)
    ray_rows = [r for r in run.result.rows if not r["stem"].startswith("patches_synth_0901")]
    assert sorted(_keys(ray_rows)) == sorted(_keys(local.rows))
    assert len(set(_keys(run.result.rows))) == len(run.result.rows)  # no duplicate row
    assert run.result.complete and run.result.n_done == local.n_done
    _assert_same_summary(run.result, local)
    by_key = {k: r for k, r in zip(_keys(local.rows), local.rows, strict=True)}
    for k, r in zip(_keys(ray_rows), ray_rows, strict=True):
        want = by_key[k]["energy"]
        assert r["energy"] == (want if want is None else pytest.approx(want, rel=1e-6, abs=1e-9))


def test_bad_images_and_bad_xml_become_error_rows_naming_the_file(killed_run):
    _, run, _ = killed_run
    errors = dict(run.result.errors)
    assert "crazing_synth_0900.jpg" in errors["crazing_synth_0900"]
    assert errors["crazing_synth_0900"].startswith("unreadable image")
    assert "patches_synth_0901.xml" in errors["patches_synth_0901"]
    assert run.result.complete


def test_rerun_after_a_crash_computes_only_the_missing_batches(killed_run, explainer):
    cfg, first, _ = killed_run
    rows_dir = Path(cfg.out) / "rows"
    parts = sorted(rows_dir.glob("*.parquet"))
    lost = {s for p in parts[:2] for s in pd.read_parquet(p)["stem"]}
    for p in parts[:2]:  # as if the job died before writing these two batches
        p.unlink()
    (rows_dir / "part-x.parquet.0123.tmp").write_bytes(b"PAR1 cut short")  # an interrupted write
    lost_ok = {s for s in lost if s != "crazing_synth_0900"}
    failed = {"crazing_synth_0900"}  # error rows are computed again, as in the local store
    again = evaluate_on_ray(cfg, explainer, workers=1)
    expected = -(-len(lost_ok | failed) // cfg.batch_size)
    assert again.batches == expected and again.computed == expected and again.reused == 0
    _assert_same_summary(again.result, first.result)
    assert sorted(_keys(again.result.rows)) == sorted(_keys(first.result.rows))


def test_store_refuses_another_configuration_and_keeps_finished_versions(tmp_path):
    identity = {"format": 1, "methods": ["gradcam"]}
    store = PartStore.create(str(tmp_path), identity)
    ok = {"stem": "a", "class": "x", "method": "m", "layer": "l", "error": None, "_n": 1}
    store.write("k1", [ok])
    store.write("k2", [{**ok, "error": "boom"}])  # a newer, failed version of the same sample
    assert store.has("k1") and not store.has("k3")
    assert store.read()["a"][0]["error"] is None
    with pytest.raises(ValueError, match=r"another configuration.*methods"):
        PartStore.create(str(tmp_path), {**identity, "methods": ["eigencam"]})


def test_manifest_rows_that_cannot_be_used_are_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"img": ["a.png"]}), tmp_path / "m.parquet")
    with pytest.raises(ValueError, match="no 'image' column"):
        read_manifest(str(tmp_path / "m.parquet"))
    pq.write_table(pa.table({"image": ["x/a.png", None, "y/a.png"]}), tmp_path / "n.parquet")
    items, errors = read_manifest(str(tmp_path / "n.parquet"))
    assert [it.image for it in items] == [str(tmp_path / "x" / "a.png")]  # relative: beside it
    assert [e.path for e in errors] == [f"{tmp_path / 'n.parquet'} row {i}" for i in (1, 2)]
    assert "duplicate stem 'a'" in str(errors[1])


def test_cli_ray_on_a_parquet_manifest_writes_the_local_summary_and_report(
    ray_cluster, voc, checkpoint, tmp_path, capsys
):
    samples = load_dataset(voc).samples
    manifest = tmp_path / "m.parquet"
    write_manifest(samples, manifest)
    # one image by file:// URI, one annotation left to the worker (and a broken one)
    import pyarrow.parquet as pq

    table = [{**r, "annotation": None} for r in pq.read_table(manifest).to_pylist()]
    table[0]["image"] = Path(table[0]["image"]).as_uri()
    xml = voc / "ANNOTATIONS" / f"{samples[1].stem}.xml"
    table[1].update(boxes=None, annotation=str(xml), height=None, width=None)
    (tmp_path / "bad.xml").write_text("<annotation>")
    shutil.copyfile(samples[2].path, tmp_path / "scratches_synth_0999.png")
    table.append({**table[2], "image": "scratches_synth_0999.png", "stem": None})
    table[-1].update(boxes=None, annotation="bad.xml", label="scratches")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table), manifest)
    args = ["evaluate", "--checkpoint", str(checkpoint), "--split", "all", "--batch-size", "4"]
    args += ["--methods", ",".join(METHODS)]
    assert cli.main([*args, "--data", str(voc), "--out", str(tmp_path / "local")]) == 0
    ray_args = ["--data", str(manifest), "--engine", "ray", "--out", str(tmp_path / "ray")]
    assert cli.main([*args, *ray_args]) == 0
    err = capsys.readouterr().err
    assert "scratches_synth_0999: bad annotation: bad.xml" in err
    local = pd.read_csv(tmp_path / "local" / "summary.csv")
    ray = pd.read_csv(tmp_path / "ray" / "summary.csv")
    pd.testing.assert_frame_equal(local, ray, rtol=1e-5)
    assert (tmp_path / "ray" / "report.html").stat().st_size > 10_000
    assert list((tmp_path / "ray" / "rows").glob("part-*.parquet"))


def test_a_model_that_cannot_load_fails_on_the_driver_before_ray(voc, tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    args = ["evaluate", "--data", str(voc), "--checkpoint", str(bad), "--engine", "ray"]
    assert cli.main([*args, "--classes", "a,b"]) == 2
    assert "model.pt" in capsys.readouterr().err


def test_without_the_ray_engine_nothing_imports_ray():
    code = (
        "import sys, cam_core, cam_core.cli, cam_core.evaluation, cam_core.scale\n"
        "cam_core.cli.build_parser().parse_args(['evaluate', '--checkpoint', 'x'])\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)


@pytest.mark.skipif(find_neu_det() is None, reason="NEU-DET not found (set NEU_DET_DIR)")
def test_neu_det_test_split_on_ray_equals_the_local_run(ray_cluster, checkpoint, explainer):
    cfg = _cfg(find_neu_det(), checkpoint, split="test", limit=12, batch_size=6)
    local = evaluate(cfg, explainer=explainer)
    run = evaluate_on_ray(cfg, explainer, workers=1)
    assert run.result.n_done == local.n_done == 12
    _assert_same_summary(run.result, local)
