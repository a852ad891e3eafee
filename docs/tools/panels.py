"""docs/img/localization_panels.png: test images with GT boxes beside each model's map.

    .venv/bin/python docs/tools/panels.py [--data ../shared/NEU-DET] [--out PNG]

Rows: the first test-split image of each class. Columns: the image with all its GT boxes, then the
recommended map (method @ layer) for the file's class of the box-supervised default model and of the
same network trained on image labels only, with that class's GT boxes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cam_core.data import NEU_CLASSES, find_neu_det, load_dataset, read_image
from cam_core.explain import Explainer
from cam_core.models import load_model
from cam_core.render import draw_boxes, panel_image, to_rgb

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"neu-boxsup-patch-resnet18": "box-supervised", "neu-patch-resnet18": "labels only"}


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((22, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([bar, tile])


def main() -> None:
    """Draw the sheet."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "localization_panels.png"))
    args = ap.parse_args()
    data = args.data or find_neu_det()
    if data is None:
        raise SystemExit("NEU-DET not found: pass --data")
    test = load_dataset(data, split="test").samples
    picks = [next(s for s in test if s.label == c) for c in NEU_CLASSES]
    engines = []
    for name in MODELS:
        loaded = load_model(ROOT / "models" / name / "model.pt")
        rec = loaded.card.recommendation
        if rec is None:
            raise SystemExit(f"{name}: its card has no recommended method (run --auto-configure)")
        engines.append((Explainer(loaded.model, loaded.card), rec))
    rows = []
    for s in picks:
        image = read_image(s.path)
        gt = tuple(b for b in s.boxes if b.cls == s.label)
        tiles = [_label(draw_boxes(to_rgb(image), s.boxes), f"{s.stem} (GT)")]
        for name, (ex, rec) in zip(MODELS, engines, strict=True):
            c = ex.card.classes.index(s.label)
            method, layer, flips = rec.method, rec.layer, rec.flips
            exp = ex.explain([image], [method], targets=[[c]], layers=layer, flip_smooth=flips)
            cam = exp.results[0].cam
            label = f"{MODELS[name]}: {method}@{layer}{' +flips' if flips else ''}"
            if exp.results[0].blank:
                label = f"{MODELS[name]}: blank (no + evidence)"
            tiles.append(_label(panel_image(image, cam, gt_boxes=gt), label))
        rows.append(
            np.hstack([np.pad(t, ((0, 4), (0, 4), (0, 0)), constant_values=255) for t in tiles])
        )
    sheet = np.vstack(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, sheet[:, :, ::-1])
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
