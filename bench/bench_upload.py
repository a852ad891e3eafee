"""Uploaded zip vs the same folder on disk: evaluating N images with the app's default model and
its recommended map, side by side in one run.

    nice -n 10 .venv/bin/python bench/bench_upload.py [--n 300] [--order ABBA] [--json F]

A: ``load_dataset(folder)`` + ``evaluate`` (the folder typed in the sidebar). B: the same images
as one ``.zip`` in memory (what the browser sends) → ``cam_core.archive.save_upload`` into a
fresh folder → ``load_dataset`` → ``evaluate`` (the upload). The model is loaded once, outside
the timings; no row store (nothing resumed). Prints each run, the extraction time and the ratio
B / A of the medians. Absolute times are noisy on a shared CPU: read the ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cam_core.archive import save_upload
from cam_core.catalogue import bundled_models
from cam_core.data import find_neu_det, load_dataset
from cam_core.evaluation import EvalConfig, evaluate
from cam_core.explain import Explainer
from cam_core.models import load_model

ROOT = Path(__file__).resolve().parents[1]


def _images(n: int, work: Path) -> Path:
    """A folder of ``n`` NEU-DET images with their XML (classes in turn), else synthetic ones."""
    folder = work / "folder"
    folder.mkdir()
    root = find_neu_det()
    if root is None:
        from cam_core.synth import write_voc_folder

        src = write_voc_folder(work / "synth", -(-n // 6), seed=1, size=200)
        samples = load_dataset(src).samples
    else:
        samples = load_dataset(root).samples
    by_class: dict[str, list] = {}
    for s in samples:
        by_class.setdefault(s.label or "", []).append(s)
    picked = []
    while len(picked) < n and any(by_class.values()):
        for group in by_class.values():
            if group and len(picked) < n:
                picked.append(group.pop(0))
    for s in picked:
        shutil.copyfile(s.path, folder / s.path.name)
        xml = s.path.parent.parent / "ANNOTATIONS" / f"{s.stem}.xml"
        if xml.is_file():
            shutil.copyfile(xml, folder / xml.name)
    return folder


def _zip(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"batch/{p.name}")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--order", default="AB", help="runs in this order, e.g. ABBA")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    ref = next(r for r in bundled_models(ROOT / "models") if not r.synthetic)
    loaded = load_model(ref.path)
    explainer = Explainer(loaded.model, loaded.card)
    rec = loaded.card.recommendation
    method = rec.method if rec is not None else "gradcam"
    layer = rec.layer if rec is not None else None
    flips = bool(rec is not None and rec.flips)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = _images(args.n, work)
        data = _zip(folder)
        warm = load_dataset(folder).samples[:4]  # first calls (allocations, kernels) untimed
        evaluate(
            EvalConfig(
                data="-",
                checkpoint=ref.path,
                split=None,
                methods=(method,),
                layers=(layer,),
                flip_smooth=flips,
            ),
            explainer=explainer,
            samples=warm,
        )
        times: dict[str, list[float]] = {"A": [], "B": []}
        extract: list[float] = []
        n_done = {}
        for k, run in enumerate(args.order):
            t0 = time.perf_counter()
            if run == "B":
                root = save_upload([("batch.zip", data)], work / f"upload-{k}")
                extract.append(time.perf_counter() - t0)
            else:
                root = folder
            ds = load_dataset(root)
            cfg = EvalConfig(
                data=str(root),
                checkpoint=ref.path,
                split=None,
                methods=(method,),
                layers=(layer,),
                flip_smooth=flips,
                batch_size=8,
            )
            result = evaluate(cfg, explainer=explainer, samples=ds.samples)
            times[run].append(time.perf_counter() - t0)
            n_done[run] = result.n_done
            print(f"{run}: {times[run][-1]:.1f} s ({result.n_done} images)", flush=True)
    a, b = statistics.median(times["A"]), statistics.median(times["B"])
    out = {
        "model": ref.label,
        "method": method,
        "layer": layer,
        "flips": flips,
        "n_images": n_done,
        "zip_bytes": len(data),
        "disk_s": times["A"],
        "upload_s": times["B"],
        "extract_s": extract,
        "ratio_upload_over_disk": b / a,
    }
    print(
        f"{ref.label} · {method} @ {layer} · flips {flips}: disk {a:.1f} s, upload {b:.1f} s "
        f"(of which extraction {statistics.median(extract):.2f} s) → ratio {b / a:.3f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
