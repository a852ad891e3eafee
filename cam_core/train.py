"""Train a registry architecture from scratch on a NEU-DET / VOC folder.

Single-label (the file's class, cross-entropy) or multi-label (the set of box classes, BCE),
optionally mixing in 2×2 mosaics of images of different classes (labels and boxes carried along)
so per-class maps can be checked on images holding several defect types. Deterministic for a
seed; the best validation epoch is kept; ``last.pt`` in the output folder makes a run resumable.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from cam_core.data import Box, Sample, load_dataset, read_image, rescale_boxes, split_samples
from cam_core.metrics import box_mask
from cam_core.models import ModelCard, build_model, get_arch, preprocess, save_model

TrainProgress = Callable[[dict[str, object]], None]
"""progress(event) with event["kind"] in {"step", "epoch", "done"} and the running figures."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``mosaic`` is the fraction of each batch made of 2×2 mosaics;
    ``limit_per_class`` trims the training split (quick runs and tests). ``box_loss`` > 0 adds
    that weight × a per-location BCE tying each class score map to the class's GT boxes (archs
    with score maps only: ``local_*`` / ``patch_*``): the model is taught to take its evidence
    from the defect, which the maps then show.
    """

    data: str
    out: str
    arch: str = "local_resnet18"
    multilabel: bool = False
    epochs: int = 12
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    input_size: int | None = None
    mosaic: float = 0.0
    box_loss: float = 0.0
    seed: int = 0
    patience: int = 5
    limit_per_class: int | None = None
    max_steps: int | None = None
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    name: str = ""
    command: str = field(default="", compare=False)


@dataclass
class _Item:
    image: np.ndarray  # (H, W) uint8
    boxes: tuple[Box, ...]
    label: str | None


def _load_items(samples: Sequence[Sample]) -> list[_Item]:
    return [_Item(read_image(s.path), s.boxes, s.label) for s in samples]


def _targets(item: _Item, classes: tuple[str, ...], multilabel: bool) -> np.ndarray:
    y = np.zeros(len(classes), np.float32)
    names = {b.cls for b in item.boxes} if multilabel else set()
    if not names and item.label is not None:
        names = {item.label}
    for n in names:
        if n in classes:
            y[classes.index(n)] = 1.0
    return y


def box_targets(
    boxes: Sequence[Box],
    classes: Sequence[str],
    image_shape: tuple[int, int],
    map_shape: tuple[int, int],
) -> np.ndarray:
    """(K, h, w) float32: the fraction of each score-map cell covered by boxes of class k
    (``image_shape`` = (H, W) the boxes are annotated on; boxes of other classes are ignored).
    """
    out = np.zeros((len(classes), *map_shape), np.float32)
    for k, c in enumerate(classes):
        own = [b for b in boxes if b.cls == c]
        if own:
            mask = box_mask(own, image_shape).astype(np.float32)
            out[k] = cv2.resize(mask, (map_shape[1], map_shape[0]), interpolation=cv2.INTER_AREA)
    return out


def augment(
    image: np.ndarray, boxes: tuple[Box, ...], rng: np.random.Generator
) -> tuple[np.ndarray, tuple[Box, ...]]:
    """Random horizontal/vertical flips and a reflect-padded shift of up to 12 % per axis; boxes
    follow the pixels (and are clipped to the image).
    """
    h, w = image.shape
    out = image
    bx = list(boxes)
    if rng.random() < 0.5:
        out = out[:, ::-1]
        bx = [Box(b.cls, w - b.x1, b.y0, w - b.x0, b.y1, b.truncated, b.difficult) for b in bx]
    if rng.random() < 0.5:
        out = out[::-1, :]
        bx = [Box(b.cls, b.x0, h - b.y1, b.x1, h - b.y0, b.truncated, b.difficult) for b in bx]
    dx, dy = (int(v) for v in rng.integers(-int(0.12 * w), int(0.12 * w) + 1, size=2))
    if dx or dy:
        pad = cv2.copyMakeBorder(
            np.ascontiguousarray(out), abs(dy), abs(dy), abs(dx), abs(dx), cv2.BORDER_REFLECT_101
        )
        out = pad[abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w]
        bx = [
            Box(
                b.cls,
                min(max(b.x0 + dx, 0), w),
                min(max(b.y0 + dy, 0), h),
                min(max(b.x1 + dx, 0), w),
                min(max(b.y1 + dy, 0), h),
                b.truncated,
                b.difficult,
            )
            for b in bx
        ]
        bx = [b for b in bx if b.area > 0]
    return np.ascontiguousarray(out), tuple(bx)


def mosaic(
    parts: Sequence[tuple[np.ndarray, tuple[Box, ...]]], size: int = 200
) -> tuple[np.ndarray, tuple[Box, ...]]:
    """2×2 mosaic of four (image, boxes): part k goes to quadrant (row k // 2, col k % 2), each
    resized to size/2; boxes are scaled and shifted with it.
    """
    half = size // 2
    canvas = np.zeros((size, size), np.uint8)
    out: list[Box] = []
    for k, (img, boxes) in enumerate(parts):
        r, c = divmod(k, 2)
        h, w = img.shape
        canvas[r * half : (r + 1) * half, c * half : (c + 1) * half] = cv2.resize(
            img, (half, half), interpolation=cv2.INTER_AREA
        )
        sx, sy = half / w, half / h
        out += [
            Box(
                b.cls,
                b.x0 * sx + c * half,
                b.y0 * sy + r * half,
                b.x1 * sx + c * half,
                b.y1 * sy + r * half,
                b.truncated,
                b.difficult,
            )
            for b in boxes
        ]
    return canvas, tuple(out)


def _mosaic_item(items: Sequence[_Item], rng: np.random.Generator) -> _Item:
    """Four images of four different file classes (when there are that many) in a 2×2 mosaic."""
    by_class: dict[str | None, list[int]] = {}
    for i, it in enumerate(items):
        by_class.setdefault(it.label, []).append(i)
    keys = list(by_class)
    chosen = rng.choice(len(keys), size=min(4, len(keys)), replace=False)
    picks = [by_class[keys[k]][int(rng.integers(len(by_class[keys[k]])))] for k in chosen]
    while len(picks) < 4:
        picks.append(int(rng.integers(len(items))))
    parts = []
    for i in picks:
        it = items[i]
        boxes = it.boxes or ((Box(it.label, 0, 0, *it.image.shape[::-1]),) if it.label else ())
        parts.append((it.image, boxes))
    img, boxes = mosaic(parts, size=items[0].image.shape[0])
    return _Item(img, boxes, None)


def _stop_early(epoch: int, best_epoch: int, cfg: TrainConfig) -> bool:
    """Early stopping: ``patience`` epochs without a better val score, counted only in the second
    half of the one-cycle schedule. Before that the learning rate is near its peak and val scores
    swing (a 24-epoch NEU-DET run stopped at epoch 6, val accuracy 0.72, its best 0.80 at epoch 1).
    ``patience`` 0 never stops early.
    """
    return cfg.patience > 0 and epoch >= cfg.epochs // 2 and epoch - best_epoch >= cfg.patience


def val_mosaics(items: Sequence[_Item], n: int = 200, seed: int = 12345) -> list[_Item]:
    """``n`` held-out 2×2 mosaics of validation images (fixed seed: the same set every run)."""
    rng = np.random.default_rng(seed)
    return [_mosaic_item(items, rng) for _ in range(n)]


def write_mosaic_folder(
    data: str | Path, out_dir: str | Path, split: str = "test", n: int = 200, seed: int = 12345
) -> Path:
    """Write ``n`` 2×2 mosaics of ``split`` images (never trained on when ``split`` is val/test)
    as a VOC folder (``IMAGES/mosaic_<k>.png`` + ``ANNOTATIONS/mosaic_<k>.xml``, boxes carried).

    Evaluate per-class maps on it with ``--target-rule box-classes``: every class present in a
    mosaic is explained and scored against its own boxes only.
    """
    from cam_core.synth import voc_xml

    samples = split_samples(load_dataset(data).samples)[split]
    if not samples:
        raise ValueError(f"{str(data)!r}: the {split!r} split is empty")
    items = _load_items(samples)
    out = Path(out_dir)
    (out / "IMAGES").mkdir(parents=True, exist_ok=True)
    (out / "ANNOTATIONS").mkdir(parents=True, exist_ok=True)
    for k, it in enumerate(val_mosaics(items, n=n, seed=seed)):
        name = f"mosaic_{k:04d}.png"
        if not cv2.imwrite(str(out / "IMAGES" / name), it.image):
            raise OSError(f"could not write {out / 'IMAGES' / name}")
        (out / "ANNOTATIONS" / f"mosaic_{k:04d}.xml").write_bytes(
            voc_xml(name, it.image.shape, it.boxes)
        )
    return out


def evaluate_classifier(
    model: nn.Module, card: ModelCard, items: Sequence[_Item], batch_size: int = 64
) -> dict[str, object]:
    """Validation figures: accuracy (single-label: argmax; multi-label: exact set match at 0.5),
    per-class precision/recall/F1 and (single-label) the confusion matrix, rows = truth.
    """
    classes = card.classes
    device = next(model.parameters()).device
    model.eval()
    probs = []
    with torch.no_grad():
        for s in range(0, len(items), batch_size):
            x = preprocess([it.image for it in items[s : s + batch_size]], card).to(device)
            logits = model(x)
            probs.append(
                (torch.sigmoid(logits) if card.multilabel else torch.softmax(logits, 1)).cpu()
            )
    p = torch.cat(probs).numpy()
    y = np.stack([_targets(it, classes, card.multilabel) for it in items])
    pred = (p >= 0.5) if card.multilabel else np.eye(len(classes), dtype=bool)[p.argmax(1)]
    truth = y.astype(bool)
    per_class = {}
    for k, c in enumerate(classes):
        tp = int((pred[:, k] & truth[:, k]).sum())
        fp = int((pred[:, k] & ~truth[:, k]).sum())
        fn = int((~pred[:, k] & truth[:, k]).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        per_class[c] = {
            "precision": round(prec, 4),
            "recall": round(rec, 4),
            "f1": round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0,
            "support": int(truth[:, k].sum()),
        }
    out: dict[str, object] = {
        "n": len(items),
        "accuracy": round(float((pred == truth).all(1).mean()), 4),
        "per_class": per_class,
        "macro_f1": round(float(np.mean([v["f1"] for v in per_class.values()])), 4),
    }
    if not card.multilabel:
        cm = np.zeros((len(classes), len(classes)), int)
        for t, q in zip(y.argmax(1), p.argmax(1), strict=True):
            cm[t, q] += 1
        out["confusion"] = cm.tolist()
    return out


def _box_loss(
    maps: torch.Tensor, batch: Sequence[_Item], classes: tuple[str, ...], input_size: int
) -> torch.Tensor:
    """Mean per-location BCE between the score maps and the box coverage, over the images of
    ``batch`` that have boxes (an image without boxes says nothing about where its defect is).
    """
    size = (input_size, input_size)
    rows = [i for i, it in enumerate(batch) if it.boxes]
    if not rows:
        return maps.sum() * 0.0
    target = np.stack(
        [
            box_targets(
                rescale_boxes(batch[i].boxes, batch[i].image.shape, size),
                classes,
                size,
                tuple(maps.shape[2:]),
            )
            for i in rows
        ]
    )
    return nn.functional.binary_cross_entropy_with_logits(
        maps[rows], torch.from_numpy(target).to(maps.device)
    )


def train(cfg: TrainConfig, progress: TrainProgress | None = None) -> Path:
    """Run ``cfg``; returns the saved checkpoint path (card JSON beside it)."""
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    spec = get_arch(cfg.arch)
    ds = load_dataset(cfg.data)
    if not ds.samples:
        raise ValueError(f"no images found under {cfg.data!r}")
    splits = split_samples(ds.samples)
    train_s, val_s = list(splits["train"]), list(splits["val"])
    if cfg.limit_per_class:
        seen: dict[str | None, int] = {}
        keep = []
        for s in train_s:
            if seen.get(s.label, 0) < cfg.limit_per_class:
                keep.append(s)
                seen[s.label] = seen.get(s.label, 0) + 1
        train_s = keep
        val_s = val_s[: max(12, cfg.limit_per_class)]
    if not val_s:
        raise ValueError(
            f"{cfg.data!r}: the validation split is empty ({len(ds.samples)} images); "
            "about 7 images per class are needed for a 70/15/15 split"
        )
    classes = tuple(c for c in ds.classes)
    if not classes:
        raise ValueError(f"{cfg.data!r}: no class labels found (file names or folders)")
    card = ModelCard(
        name=cfg.name or f"{cfg.arch}-{'multilabel' if cfg.multilabel else 'single'}",
        arch=cfg.arch,
        classes=classes,
        multilabel=cfg.multilabel,
        input_size=cfg.input_size or spec.input_size,
        mean=spec.mean,
        std=spec.std,
        synthetic=all("_synth_" in s.stem for s in ds.samples),
        training={
            **{k: v for k, v in asdict(cfg).items() if k not in ("data", "out", "command")},
            "command": cfg.command,
            "split": "cam_core.data.split_samples 70/15/15 by stem hash",
            "n_train": len(train_s),
            "n_val": len(val_s),
        },
    )
    train_items, val_items = _load_items(train_s), _load_items(val_s)
    device = torch.device(cfg.device)
    model = build_model(cfg.arch, len(classes)).to(device)
    if cfg.box_loss < 0:
        raise ValueError(f"box_loss must be >= 0, got {cfg.box_loss}")
    if cfg.box_loss and not (hasattr(model, "score_maps") and hasattr(model, "pool")):
        raise ValueError(
            f"box_loss needs an architecture with class score maps (local_*/patch_*); "
            f"{cfg.arch!r} has none"
        )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_items) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(total, 1), pct_start=0.15
    )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    start_epoch, best, best_epoch, history = 0, -1.0, -1, []
    best_metrics: dict[str, object] | None = None
    if last.exists():  # resume
        state = torch.load(last, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start_epoch, best, best_epoch = (
            int(state["epoch"]) + 1,
            float(state["best"]),
            int(state["best_epoch"]),
        )
        rng = np.random.default_rng(cfg.seed + start_epoch)
        torch.manual_seed(cfg.seed + start_epoch)
    loss_fn: nn.Module = (
        nn.BCEWithLogitsLoss() if cfg.multilabel else nn.CrossEntropyLoss(label_smoothing=0.05)
    )
    step = start_epoch * steps_per_epoch
    ckpt = out / "model.pt"
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = rng.permutation(len(train_items))
        running = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            batch = []
            for i in idx:
                it = train_items[int(i)]
                if cfg.mosaic and rng.random() < cfg.mosaic:
                    it = _mosaic_item(train_items, rng)
                img, boxes = augment(it.image, it.boxes, rng)
                batch.append(_Item(img, boxes, it.label))
            x = preprocess([it.image for it in batch], card).to(device)
            y = torch.from_numpy(
                np.stack(
                    [_targets(it, classes, cfg.multilabel or it.label is None) for it in batch]
                )
            ).to(device)
            if cfg.box_loss:
                maps = model.score_maps(x)
                logits = model.pool(maps)
            else:
                logits = model(x)
            if cfg.multilabel:
                loss = loss_fn(logits, y)
            else:  # mosaics carry several classes: soft targets split between them
                loss = loss_fn(logits, y / y.sum(1, keepdim=True).clamp(min=1))
            if cfg.box_loss:
                loss = loss + cfg.box_loss * _box_loss(maps, batch, classes, card.input_size)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running += float(loss.detach())
            if progress:
                progress(
                    {
                        "kind": "step",
                        "epoch": epoch,
                        "step": step,
                        "total": total,
                        "loss": float(loss.detach()),
                    }
                )
            if cfg.max_steps and step >= cfg.max_steps:
                break
        metrics = evaluate_classifier(model, card, val_items)
        score = float(metrics["macro_f1"])
        history.append(
            {
                "epoch": epoch,
                "loss": round(running / max(b + 1, 1), 4),
                "val_accuracy": metrics["accuracy"],
                "val_macro_f1": score,
            }
        )
        if score > best:
            best, best_epoch = score, epoch
            save_model(model, card, ckpt)
            best_metrics = metrics
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
            },
            last,
        )
        if progress:
            progress(
                {
                    "kind": "epoch",
                    **history[-1],
                    "best_epoch": best_epoch,
                    "total": total,
                    "step": step,
                }
            )
        if (cfg.max_steps and step >= cfg.max_steps) or _stop_early(epoch, best_epoch, cfg):
            break
    from cam_core.models import load_model

    final = load_model(ckpt, device=str(device))
    metrics = best_metrics or evaluate_classifier(final.model, card, val_items)
    extra: dict[str, object] = {}
    if cfg.mosaic and cfg.multilabel:
        extra["val_mosaic"] = evaluate_classifier(final.model, card, val_mosaics(val_items))
    card = ModelCard(
        **{
            **asdict(card),
            "metrics": {"val": metrics, **extra, "best_epoch": best_epoch, "history": history},
            "training": {
                **card.training,
                "wall_time_s": round(time.time() - t0, 1),
                "device": str(device),
            },
        }
    )
    save_model(final.model, card, ckpt)
    last.unlink(missing_ok=True)
    if progress:
        progress({"kind": "done", "path": str(ckpt), "metrics": metrics})
    return ckpt


def command_line(argv: Sequence[str] | None = None) -> str:
    """The exact command that ran, for the model card."""
    return "python -m cam_core " + shlex.join(list(argv if argv is not None else sys.argv[1:]))
