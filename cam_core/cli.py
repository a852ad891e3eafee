"""Command line: ``python -m cam_core {train,explain,evaluate,synth,mosaics,diff} …`` (``-h`` each).

Every subcommand's parser and its thin handler live here: parse → one library call → print.
Handlers return the exit status (0 ok, 1 nothing scored, 2 bad input, 130 interrupted).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cam_core import metrics as M
from cam_core.data import SPLITS
from cam_core.evaluation.config import TARGET_RULES, EvalConfig

__all__ = ["build_parser", "main"]


def _split_list(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low`` (else a usage error naming the value)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


# --------------------------------------------------------------------------------------- train


def _add_train(sub: argparse._SubParsersAction) -> None:
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


def _train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from tqdm import tqdm

    from cam_core.train import EpochEvent, StepEvent, TrainConfig, TrainEvent, command_line, train

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

    def progress(event: TrainEvent) -> None:
        if isinstance(event, StepEvent):
            bar.total = event.total
            bar.update(1)
            bar.set_postfix_str(event.describe())
        elif isinstance(event, EpochEvent):
            bar.write(event.describe())

    path = train(cfg, progress)
    bar.close()
    print(f"saved {path} and {path.with_suffix('.json')}")
    return 0


# ------------------------------------------------------------------------------------- explain


def _add_explain(sub: argparse._SubParsersAction) -> None:
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


def _explain(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Overlays (PNG) + maps (.npy) + one JSON of scores and localization figures."""
    from cam_core.evaluation.files import explain_files
    from cam_core.explain import Explainer
    from cam_core.models import load_model

    loaded = load_model(args.checkpoint, arch=args.arch, classes=_split_list(args.classes) or None)
    done = explain_files(
        Explainer(loaded.model, loaded.card),
        args.images,
        args.out,
        _split_list(args.methods),
        layers=args.layers,
        classes=_split_list(args.classes_to_explain) or None,
        flip_smooth=args.flip_smooth,
        checkpoint=str(args.checkpoint),
        warn=lambda msg: print(msg, file=sys.stderr),
    )
    print(f"wrote {done.n_maps} maps for {done.n_images} image(s) to {done.out}")
    return 0


# ------------------------------------------------------------------------------------ evaluate


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="localization metrics of methods x layers over a split")
    p.add_argument("--data", default=None, help="dataset folder (default: the NEU-DET copy found)")
    p.add_argument("--split", default="test", choices=[*SPLITS, "all"])
    p.add_argument("--checkpoint", required=True, help="model file (card JSON beside it)")
    p.add_argument("--arch", default=None, help="architecture, when there is no model card")
    p.add_argument("--classes", default=None, help="comma-separated, when there is no model card")
    p.add_argument("--methods", default="gradcam", help="comma-separated method names")
    p.add_argument(
        "--layers", default=None, help="comma-separated layers, each may join several with '+'"
    )
    p.add_argument("--target-rule", default="file-class", choices=TARGET_RULES)
    p.add_argument("--tau", type=float, default=0.5, help="IoU threshold, fraction of map max")
    p.add_argument("--tolerance", type=float, default=M.CLASSIC_POINTING_TOLERANCE)
    p.add_argument("--limit", type=int, default=None, help="N samples, classes in turn")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="ray: a Ray Data job over an actor pool (--data may be a Parquet manifest); "
        "needs ray[data] (docs/scale.md)",
    )
    p.add_argument(
        "--address", default=None, help="--engine ray: auto or ray://host:port (default: local)"
    )
    p.add_argument(
        "--out", default=None, help="folder: rows.jsonl (resumable), summary.csv, report.html"
    )
    p.add_argument(
        "--auto-configure",
        action="store_true",
        help="pick method/layer/threshold on the val split; write it into the model card",
    )
    p.add_argument("--thresholds", default="0.3,0.4,0.5,0.6,0.7", help="for --auto-configure")
    p.add_argument(
        "--flip-smooth",
        action="store_true",
        help="average every map over the four flips of the image (4x the work)",
    )
    p.add_argument(
        "--try-flips",
        action="store_true",
        help="--auto-configure tries every method x layer with and without flip averaging",
    )
    p.add_argument(
        "--calibration-split",
        default="val",
        choices=[*SPLITS, "all"],
        help="split of the calibration folder that --auto-configure chooses on (all: a folder "
        "made only for it, such as held-out val mosaics)",
    )
    p.add_argument(
        "--calibration-data",
        default=None,
        help="folder --auto-configure chooses on (default --data)",
    )
    p.add_argument("--pdf", action="store_true", help="also write report.pdf into --out")
    p.add_argument(
        "--faithfulness",
        action="store_true",
        help="deletion/insertion AUC (with a random-order reference), ROAD and drop/increase in "
        "confidence per row (cam_core.metrics.faithfulness; many forward passes per image)",
    )
    p.add_argument(
        "--sanity",
        action="store_true",
        help="model-randomization and random-logit sanity checks per method (cam_core.sanity)",
    )
    p.set_defaults(func=_evaluate)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The :class:`EvalConfig` of parsed ``evaluate`` arguments."""
    from cam_core.data import find_neu_det

    data = args.data or find_neu_det()
    if data is None:
        raise ValueError("no --data given and no NEU-DET folder found (set NEU_DET_DIR)")
    return EvalConfig(
        data=str(data),
        checkpoint=args.checkpoint,
        split=None if args.split == "all" else args.split,
        methods=tuple(_split_list(args.methods)),
        layers=tuple(_split_list(args.layers)) or (None,),
        target_rule=args.target_rule,
        tau=args.tau,
        tolerance=args.tolerance,
        flip_smooth=args.flip_smooth,
        limit=args.limit,
        batch_size=args.batch_size,
        out=args.out,
        sanity=args.sanity,
        faithfulness=args.faithfulness,
    )


def _evaluate(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import pandas as pd
    from tqdm import tqdm

    from cam_core.data import DataError, load_dataset
    from cam_core.evaluation import (
        BASELINES,
        auto_configure,
        evaluate,
        stratified_order,
        write_recommended,
    )
    from cam_core.evaluation.report import write_outputs
    from cam_core.explain import Explainer
    from cam_core.models import CheckpointError, load_model
    from cam_core.verdict import RULE, confidence_table, verdict_table

    try:
        cfg = config_from_args(args)
        loaded = load_model(
            cfg.checkpoint, arch=args.arch, classes=_split_list(args.classes) or None
        )
        explainer = Explainer(loaded.model, loaded.card, batch_size=cfg.batch_size)
        if "candidates" in cfg.layers:  # --layers candidates: the model's candidate layers
            found = loaded.card.candidate_layers
            layers = (x for lay in cfg.layers for x in (found if lay == "candidates" else (lay,)))
            cfg = dataclasses.replace(cfg, layers=tuple(dict.fromkeys(layers)))
        thresholds = tuple(float(t) for t in _split_list(args.thresholds))
    except (ValueError, KeyError, CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    bar = tqdm(unit="img", dynamic_ncols=True, file=sys.stderr)

    def progress(done: int, total: int, message: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(message, refresh=True)

    try:
        if args.auto_configure:
            cal_split = None if args.calibration_split == "all" else args.calibration_split
            cal_data = args.calibration_data or cfg.data
            val = stratified_order(load_dataset(cal_data, split=cal_split).samples)[: cfg.limit]
            bar.set_description(f"calibrating ({args.calibration_split})")
            rec = auto_configure(
                explainer,
                val,
                cfg.methods,
                cfg.layers,
                thresholds=thresholds,
                target_rule=cfg.target_rule,
                split=cal_split or f"all of {Path(cal_data).name}",
                tau=cfg.tau,
                tolerance=cfg.tolerance,
                flips=(False, True) if args.try_flips else (cfg.flip_smooth,),
                progress=progress,
            )
            card_file = write_recommended(cfg.checkpoint, loaded.card, rec)
            bar.write(
                f"auto-configure on {args.calibration_split} (n={rec['calibration']['n']}): "
                f"{rec['method']} @ {rec['layer']}"
                f"{' with flip averaging' if rec['flips'] else ''}, "
                f"threshold {rec['threshold']:g} → written to {card_file}"
            )
            if cfg.split == cal_split and cal_data == cfg.data:
                bar.write(
                    "warning: evaluating on the calibration split (val): figures are optimistic"
                )
        if args.engine == "ray":  # cam_core.scale: the same rows and report, from a Ray job
            from cam_core.scale import evaluate_on_ray

            bar.set_description(f"evaluating on Ray ({cfg.split or 'all'})")
            bar.reset()
            run = evaluate_on_ray(cfg, explainer, address=args.address, progress=progress)
            result = run.result
        else:
            dataset = load_dataset(cfg.data, split=cfg.split)
            for err in dataset.errors:
                bar.write(f"skipped: {err}")
            bar.set_description(f"evaluating ({cfg.split or 'all'})")
            bar.reset()
            result = evaluate(cfg, explainer=explainer, samples=dataset.samples, progress=progress)
    except KeyboardInterrupt:
        bar.close()
        hint = " — rerun the same command to resume" if cfg.out else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 130
    except (ValueError, KeyError, CheckpointError, DataError) as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    table = result.summary()
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for stem, msg in result.errors:
        print(f"error: {stem}: {msg}", file=sys.stderr)
    boot = tqdm(desc="95 % intervals (bootstrap)", unit="stratum", file=sys.stderr)

    def boot_progress(done: int, total: int, message: str) -> None:
        boot.total, boot.n = total, done + 1
        boot.set_postfix_str(message, refresh=True)

    if cfg.out:
        out = Path(cfg.out)
        paths = write_outputs(result, out, progress=boot_progress)
        verdicts = pd.read_csv(paths["verdicts.csv"])
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    else:
        verdicts = verdict_table(result, confidence_table(result, progress=boot_progress))
    boot.close()
    print(f"verdicts ({RULE})")
    print(verdicts[["method", "layer", "class", "verdict", "why"]].to_string(index=False))
    if cfg.out and getattr(args, "pdf", False):  # the PDF to hand over (cam_core.evaluation.pdf)
        from cam_core.evaluation.pdf import write_pdf

        print(f"wrote {write_pdf(result, out / 'report.pdf', verdicts=verdicts)}")
    scored = any(r["pointing"] is not None for r in result.rows if r["method"] not in BASELINES)
    return 0 if scored else 1


# ------------------------------------------------------------------------- synth and mosaics


def _add_synth(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "synth",
        help="write a synthetic NEU-like VOC folder",
        description="Write synthetic NEU-DET-like images (PNG) and VOC boxes in the flat layout "
        "(OUT/IMAGES, OUT/ANNOTATIONS).",
    )
    s.add_argument("out", help="folder to create IMAGES/ and ANNOTATIONS/ in")
    s.add_argument(
        "--per-class", type=_at_least(0), default=20, help="images per class (default 20)"
    )
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument(
        "--size", type=_at_least(8), default=200, help="image side in pixels (default 200)"
    )
    s.set_defaults(func=_synth)


def _synth(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from cam_core.data import NEU_CLASSES
    from cam_core.synth import write_voc_folder

    out = write_voc_folder(args.out, args.per_class, args.seed, args.size)
    print(f"wrote {args.per_class * len(NEU_CLASSES)} images to {out}")
    return 0


def _add_mosaics(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("mosaics", help="write held-out 2x2 mosaics of a split as a VOC folder")
    m.add_argument("--data", required=True, help="NEU-DET root (flat or Kaggle layout)")
    m.add_argument("--out", required=True)
    m.add_argument("--split", default="test", choices=list(SPLITS))
    m.add_argument("--n", type=int, default=200)
    m.add_argument("--seed", type=int, default=12345)
    m.set_defaults(func=_mosaics)


def _mosaics(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from cam_core.train_data import write_mosaic_folder

    print(write_mosaic_folder(args.data, args.out, args.split, args.n, args.seed))
    return 0


# ---------------------------------------------------------------------------------------- diff


def _add_diff(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "diff",
        help="release vs release: two checkpoints on the same split and settings",
        description="Evaluate two checkpoints on the same images with the same settings; write "
        "per-class B - A with paired bootstrap 95%% intervals (diff.csv), the images that changed "
        "(changes.csv) and diff.html.",
    )
    d.add_argument("--checkpoint-a", required=True, help="release A (card JSON beside it)")
    d.add_argument("--checkpoint-b", required=True, help="release B (card JSON beside it)")
    d.add_argument("--data", default=None, help="dataset folder (default: the NEU-DET found)")
    d.add_argument("--split", default="test", choices=[*SPLITS, "all"])
    d.add_argument("--methods", default="gradcam", help="the method compared (first one)")
    d.add_argument("--target-rule", default="file-class", choices=TARGET_RULES)
    d.add_argument("--tau", type=float, default=0.5, help="IoU threshold, fraction of map max")
    d.add_argument("--flip-smooth", action="store_true", help="average maps over the 4 flips")
    d.add_argument("--limit", type=_at_least(1), default=None, help="N images, classes in turn")
    d.add_argument("--batch-size", type=_at_least(1), default=16)
    d.add_argument("--out", required=True, help="folder: diff.csv, changes.csv, diff.html")
    d.set_defaults(func=_diff)


def _diff(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from cam_core.data import DataError, find_neu_det
    from cam_core.models import CheckpointError
    from cam_core.review.diff import diff_checkpoints, write_diff

    try:
        data = args.data or find_neu_det()
        if data is None:
            raise ValueError("no --data given and no NEU-DET folder found (set NEU_DET_DIR)")
        cfg = EvalConfig(
            data=str(data),
            checkpoint=args.checkpoint_a,
            split=None if args.split == "all" else args.split,
            methods=tuple(_split_list(args.methods)),
            target_rule=args.target_rule,
            tau=args.tau,
            flip_smooth=args.flip_smooth,
            limit=args.limit,
            batch_size=args.batch_size,
        )
        _, _, diff = diff_checkpoints(cfg, args.checkpoint_b, out=Path(args.out) / "rows")
    except (ValueError, KeyError, CheckpointError, DataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = write_diff(diff, args.out)
    print(f"A: {diff.a}\nB: {diff.b}\n{diff.n_images} images, {len(diff.changes)} changes")
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


# ---------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (subcommands train, explain, evaluate, synth, mosaics, diff)."""
    p = argparse.ArgumentParser(
        prog="python -m cam_core",
        description="cam_core: train, explain and evaluate NEU-DET defect classifiers.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for add in (_add_train, _add_explain, _add_evaluate, _add_synth, _add_mosaics, _add_diff):
        add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return int(args.func(args, argv))
