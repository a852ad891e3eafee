"""Per-class F1 of a multi-label model on held-out 2×2 mosaics, over many draws.

    .venv/bin/python docs/tools/mosaic_f1.py [--checkpoint PT] [--split test] [--draws 20]

One draw of 200 mosaics (the card's ``val_mosaic`` figures, seed 12345) swings with which images
it happens to repeat; this prints the mean, lowest and highest per-class F1 (threshold 0.5) over
``--draws`` draws (seeds 0 … N-1) of 200 mosaics of the split's images, never trained on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cam_core.data import find_neu_det, load_dataset
from cam_core.models import load_model
from cam_core.train import evaluate_classifier
from cam_core.train_data import _load_items, val_mosaics

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser()
    default = ROOT / "models" / "neu-multilabel-boxsup-patch-resnet18" / "model.pt"
    ap.add_argument("--checkpoint", default=str(default))
    ap.add_argument("--data", default=None)
    ap.add_argument("--split", default="test", choices=("val", "test"))
    ap.add_argument("--draws", type=int, default=20)
    args = ap.parse_args()
    data = args.data or find_neu_det()
    if data is None:
        sys.exit("NEU-DET not found: pass --data or set NEU_DET_DIR")
    loaded = load_model(args.checkpoint)
    if not loaded.card.multilabel:
        sys.exit(f"{args.checkpoint}: not a multi-label model")
    items = _load_items(load_dataset(data, split=args.split).samples)
    classes = loaded.card.classes
    rows = []
    for seed in range(args.draws):
        figures = evaluate_classifier(loaded.model, loaded.card, val_mosaics(items, seed=seed))
        rows.append([figures["per_class"][c]["f1"] for c in classes])
    f1 = np.array(rows)
    print(f"{args.split} mosaics, {args.draws} draws of 200, F1 at threshold 0.5")
    print(f"{'class':16s} {'mean':>6s} {'min':>6s} {'max':>6s}")
    for c, col in zip(classes, f1.T, strict=True):
        print(f"{c:16s} {col.mean():6.3f} {col.min():6.3f} {col.max():6.3f}")
    macro = f1.mean(1)
    print(f"{'macro':16s} {macro.mean():6.3f} {macro.min():6.3f} {macro.max():6.3f}")


if __name__ == "__main__":
    main()
