"""Command line: ``python -m cam_core {train,explain,evaluate,synth,mosaics} …`` (``-h`` each)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from tqdm import tqdm

    from cam_core.train import TrainConfig, command_line, train

    cfg = TrainConfig(
        data=args.data,
        out=args.out,
        arch=args.arch,
        multilabel=args.multilabel,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        mosaic=args.mosaic,
        box_loss=args.box_loss,
        seed=args.seed,
        patience=args.patience,
        limit_per_class=args.limit_per_class,
        max_steps=args.max_steps,
        input_size=args.input_size,
        name=args.name or "",
        command=command_line(argv),
        **({"device": args.device} if args.device else {}),
    )
    bar = tqdm(unit="step", dynamic_ncols=True)

    def progress(ev: dict[str, object]) -> None:
        if ev["kind"] == "step":
            bar.total = int(ev["total"])
            bar.update(1)
            bar.set_postfix(epoch=ev["epoch"], loss=f"{ev['loss']:.3f}")
        elif ev["kind"] == "epoch":
            bar.write(
                f"epoch {ev['epoch']}: loss {ev['loss']} val acc {ev['val_accuracy']} "
                f"macro-F1 {ev['val_macro_f1']} (best epoch {ev['best_epoch']})"
            )

    path = train(cfg, progress)
    bar.close()
    print(f"saved {path} and {path.with_suffix('.json')}")
    return 0


def _explain(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Overlays (PNG) + maps (.npy) + one JSON of scores and localization figures."""
    import json
    from pathlib import Path

    from cam_core.data import IMAGE_SUFFIXES, DataError, annotation_for, parse_voc, read_image
    from cam_core.explain import Explainer
    from cam_core.metrics import localization_scores
    from cam_core.models import load_model
    from cam_core.render import npy_bytes, panel_image, png_bytes

    classes = args.classes.split(",") if args.classes else None
    loaded = load_model(args.checkpoint, arch=args.arch, classes=classes)
    card = loaded.card
    paths: list[Path] = []
    for item in map(Path, args.images):
        paths += (
            sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if item.is_dir()
            else [item]
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    report: dict[str, object] = {
        "checkpoint": str(args.checkpoint),
        "classes": list(card.classes),
        "methods": methods,
        "images": {},
    }
    images, names, boxes = [], [], []
    for p in paths:
        try:
            images.append(read_image(p))
        except DataError as exc:
            report["images"][p.name] = {"error": str(exc)}  # type: ignore[index]
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        names.append(p)
        xml = annotation_for(p)
        try:
            boxes.append(parse_voc(xml, image_size=images[-1].shape[:2]).boxes if xml else ())
        except DataError as exc:
            print(f"no GT boxes: {exc}", file=sys.stderr)
            boxes.append(())
    targets = None
    if args.classes_to_explain:
        wanted = [card.classes.index(c.strip()) for c in args.classes_to_explain.split(",")]
        targets = [wanted] * len(images)
    exp = Explainer(loaded.model, card).explain(
        images, methods, targets=targets, layers=args.layers, flip_smooth=args.flip_smooth
    )
    for r in exp.results:
        p = names[r.image]
        stem = f"{p.stem}__{r.class_name}__{r.method}"
        gt = tuple(b for b in boxes[r.image] if b.cls == r.class_name)
        (out / f"{stem}.png").write_bytes(
            png_bytes(panel_image(images[r.image], r.cam, gt_boxes=gt))
        )
        (out / f"{stem}.npy").write_bytes(npy_bytes(r.cam))
        entry = report["images"].setdefault(
            p.name,
            {  # type: ignore[union-attr]
                "scores": dict(zip(card.classes, map(float, exp.probs[r.image]), strict=True)),
                "maps": [],
            },
        )
        entry["maps"].append(
            {
                "class": r.class_name,
                "method": r.method,
                "layer": r.layer,
                "flip_smooth": args.flip_smooth,
                "strength": r.strength,
                "overlay": f"{stem}.png",
                "localization": localization_scores(r.cam, gt) if gt else None,
            }
        )
    (out / "explain.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {len(exp.results)} maps for {len(images)} image(s) to {out}")
    return 0


def _evaluate(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from cam_core.evaluate import run_cli

    return run_cli(args)


def _synth(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from cam_core.synth import write_voc_folder

    print(write_voc_folder(args.out, args.per_class, args.seed))
    return 0


def _mosaics(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from cam_core.train import write_mosaic_folder

    print(write_mosaic_folder(args.data, args.out, args.split, args.n, args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (subcommands train, explain, evaluate, synth, mosaics)."""
    p = argparse.ArgumentParser(prog="python -m cam_core", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a classifier on a NEU-DET/VOC folder")
    t.add_argument(
        "--data", required=True, help="NEU-DET root (flat or Kaggle layout) or VOC folder"
    )
    t.add_argument("--out", required=True, help="output folder (model.pt + model.json)")
    t.add_argument("--arch", default="local_resnet18")
    t.add_argument("--multilabel", action="store_true", help="targets = the set of box classes")
    t.add_argument("--mosaic", type=float, default=0.0, help="fraction of 2x2 mosaics per batch")
    t.add_argument(
        "--box-loss",
        type=float,
        default=0.0,
        help="weight of a loss tying each class score map to that class's GT boxes "
        "(local_*/patch_* archs)",
    )
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--patience",
        type=int,
        default=5,
        help="stop after N epochs without a better val score, counted in the second half of "
        "training (0: train every epoch; the best epoch is kept either way)",
    )
    t.add_argument("--input-size", type=int, default=None)
    t.add_argument("--limit-per-class", type=int, default=None)
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--device", default=None)
    t.add_argument("--name", default=None)
    t.set_defaults(func=_train)

    e = sub.add_parser("explain", help="write overlays + a JSON of scores for some images")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--arch", default=None)
    e.add_argument("--classes", default=None, help="comma-separated, when there is no model card")
    e.add_argument("--images", required=True, nargs="+", help="image files or folders")
    e.add_argument("--methods", default="gradcam", help="comma-separated method names")
    e.add_argument("--layers", default=None)
    e.add_argument(
        "--flip-smooth",
        action="store_true",
        help="average each map over the four flips of the image (4x the work)",
    )
    e.add_argument(
        "--classes-to-explain",
        default=None,
        help="comma-separated class names (default: predicted)",
    )
    e.add_argument("--out", required=True)
    e.set_defaults(func=_explain)

    v = sub.add_parser("evaluate", help="localization metrics of methods x layers over a split")
    from cam_core.evaluate import add_arguments

    add_arguments(v)
    v.set_defaults(func=_evaluate)

    s = sub.add_parser("synth", help="write a synthetic NEU-like VOC folder")
    s.add_argument("out")
    s.add_argument("--per-class", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synth)

    m = sub.add_parser("mosaics", help="write held-out 2x2 mosaics of a split as a VOC folder")
    m.add_argument("--data", required=True, help="NEU-DET root (flat or Kaggle layout)")
    m.add_argument("--out", required=True)
    m.add_argument("--split", default="test", choices=["train", "val", "test"])
    m.add_argument("--n", type=int, default=200)
    m.add_argument("--seed", type=int, default=12345)
    m.set_defaults(func=_mosaics)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return int(args.func(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())
