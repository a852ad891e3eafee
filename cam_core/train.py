"""Train a registry architecture from scratch on a NEU-DET / VOC folder.

Single-label (the file's class, cross-entropy) or multi-label (the set of box classes, BCE),
optionally mixing in 2×2 mosaics of images of different classes (labels and boxes carried along)
so per-class maps can be checked on images holding several defect types. Deterministic for a
seed; the best validation epoch is kept; ``last.pt`` in the output folder makes a run resumable.

A run is four steps: :func:`_prepare` (data, card, model, optimiser, resume), :func:`_epoch`
(one pass over the training split), :func:`_checkpoint` (best model + ``last.pt``) and
:func:`_finalise` (the card's figures, ``last.pt`` removed). Progress is reported as
:class:`StepEvent`, :class:`EpochEvent` and :class:`DoneEvent`; each says itself in ``describe()``.
The images, targets, augmentation and mosaics live in :mod:`cam_core.train_data`.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cam_core.data import Sample, load_dataset, rescale_boxes, split_samples
from cam_core.models import ModelCard, build_model, get_arch, preprocess, save_model
from cam_core.train_data import (  # noqa: F401  (re-exported: the public training names)
    _Item,
    _load_items,
    _mosaic_item,
    _targets,
    augment,
    box_targets,
    mosaic,
    val_mosaics,
    write_mosaic_folder,
)

if TYPE_CHECKING:
    from cam_core.models import ArchSpec


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


# --------------------------------------------------------------------------- progress events


@dataclass(frozen=True)
class StepEvent:
    """One optimiser step done: ``step`` of ``total`` (counted over the whole run), its loss."""

    epoch: int
    step: int
    total: int
    loss: float

    @property
    def fraction(self) -> float:
        """Share of the run's steps done, in [0, 1]."""
        return self.step / max(self.total, 1)

    def describe(self) -> str:
        """One line for a progress bar, e.g. ``epoch 0 · step 3/40 · loss 1.792``."""
        return f"epoch {self.epoch} · step {self.step}/{self.total} · loss {self.loss:.3f}"


@dataclass(frozen=True)
class EpochEvent:
    """One epoch done: its mean training loss and the validation figures (rounded to 4 places)."""

    epoch: int
    loss: float
    val_accuracy: float
    val_macro_f1: float
    best_epoch: int
    step: int
    total: int

    def describe(self) -> str:
        """One line for a log, e.g.
        ``epoch 0: val accuracy 0.5, macro-F1 0.4, loss 1.79 (best epoch 0)``.
        """
        return (
            f"epoch {self.epoch}: val accuracy {self.val_accuracy}, "
            f"macro-F1 {self.val_macro_f1}, loss {self.loss} (best epoch {self.best_epoch})"
        )


@dataclass(frozen=True)
class DoneEvent:
    """The run is over: the checkpoint written (card JSON beside it) and its validation figures."""

    path: Path
    metrics: Mapping[str, object]

    def describe(self) -> str:
        """Where the checkpoint and its card were written."""
        return f"saved {self.path} and {self.path.with_suffix('.json')}"


TrainEvent = StepEvent | EpochEvent | DoneEvent
TrainProgress = Callable[[TrainEvent], None]
"""progress(event), called after every step, every epoch and once at the end."""


# --------------------------------------------------------------------------- validation, losses


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


def _stop_early(epoch: int, best_epoch: int, cfg: TrainConfig) -> bool:
    """Early stopping: ``patience`` epochs without a better val score, counted only in the second
    half of the one-cycle schedule. Before that the learning rate is near its peak and val scores
    swing (a 24-epoch NEU-DET run stopped at epoch 6, val accuracy 0.72, its best 0.80 at epoch 1).
    ``patience`` 0 never stops early.
    """
    return cfg.patience > 0 and epoch >= cfg.epochs // 2 and epoch - best_epoch >= cfg.patience


# --------------------------------------------------------------------------- the run, step by step


@dataclass
class _Run:
    """One run's state, built by :func:`_prepare` and advanced by the loop (mutable)."""

    cfg: TrainConfig
    card: ModelCard
    train_items: list[_Item]
    val_items: list[_Item]
    device: torch.device
    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    rng: np.random.Generator
    steps_per_epoch: int
    start_epoch: int = 0
    step: int = 0
    best: float = -1.0
    best_epoch: int = -1
    best_metrics: dict[str, object] | None = None
    history: list[dict[str, object]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Optimiser steps in the whole schedule."""
        return self.cfg.epochs * self.steps_per_epoch

    @property
    def ckpt(self) -> Path:
        return Path(self.cfg.out) / "model.pt"

    @property
    def last(self) -> Path:
        return Path(self.cfg.out) / "last.pt"

    @property
    def out_of_steps(self) -> bool:
        return bool(self.cfg.max_steps) and self.step >= self.cfg.max_steps


def _splits(cfg: TrainConfig, samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Train and val samples (70/15/15 by stem hash), trimmed by ``limit_per_class``."""
    splits = split_samples(samples)
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
            f"{cfg.data!r}: the validation split is empty ({len(samples)} images); "
            "about 7 images per class are needed for a 70/15/15 split"
        )
    return train_s, val_s


def _first_card(
    cfg: TrainConfig,
    spec: ArchSpec,
    classes: tuple[str, ...],
    samples: Sequence[Sample],
    n_train: int,
    n_val: int,
) -> ModelCard:
    """The card before training: architecture, classes, preprocessing and the recipe."""
    return ModelCard(
        name=cfg.name or f"{cfg.arch}-{'multilabel' if cfg.multilabel else 'single'}",
        arch=cfg.arch,
        classes=classes,
        multilabel=cfg.multilabel,
        input_size=cfg.input_size or spec.input_size,
        mean=spec.mean,
        std=spec.std,
        synthetic=all("_synth_" in s.stem for s in samples),
        training={
            **{k: v for k, v in asdict(cfg).items() if k not in ("data", "out", "command")},
            "command": cfg.command,
            "split": "cam_core.data.split_samples 70/15/15 by stem hash",
            "n_train": n_train,
            "n_val": n_val,
        },
    )


def _prepare(cfg: TrainConfig) -> _Run:
    """Check ``cfg``, read the data, build model, optimiser and schedule; resume from
    ``last.pt`` when the output folder has one. Seeds torch and numpy from ``cfg.seed``.
    """
    if cfg.box_loss < 0:
        raise ValueError(f"box_loss must be >= 0, got {cfg.box_loss}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    spec = get_arch(cfg.arch)
    ds = load_dataset(cfg.data)
    if not ds.samples:
        raise ValueError(f"no images found under {cfg.data!r}")
    train_s, val_s = _splits(cfg, ds.samples)
    classes = tuple(ds.classes)
    if not classes:
        raise ValueError(f"{cfg.data!r}: no class labels found (file names or folders)")
    card = _first_card(cfg, spec, classes, ds.samples, len(train_s), len(val_s))
    train_items, val_items = _load_items(train_s), _load_items(val_s)
    device = torch.device(cfg.device)
    model = build_model(cfg.arch, len(classes)).to(device)
    if cfg.box_loss and not (hasattr(model, "score_maps") and hasattr(model, "pool")):
        raise ValueError(
            f"box_loss needs an architecture with class score maps (local_*/patch_*); "
            f"{cfg.arch!r} has none"
        )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_items) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(cfg.epochs * steps_per_epoch, 1), pct_start=0.15
    )
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    loss_fn: nn.Module = (
        nn.BCEWithLogitsLoss() if cfg.multilabel else nn.CrossEntropyLoss(label_smoothing=0.05)
    )
    run = _Run(
        cfg, card, train_items, val_items, device, model, opt, sched, loss_fn, rng, steps_per_epoch
    )
    if run.last.exists():
        _resume(run)
    return run


def _resume(run: _Run) -> None:
    """Load model, optimiser, schedule and best score from ``last.pt``; reseed for the next epoch
    (the history of the epochs before is not kept: the card lists those run after resuming).
    """
    state = torch.load(run.last, map_location=run.device, weights_only=True)
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["opt"])
    run.sched.load_state_dict(state["sched"])
    run.start_epoch = int(state["epoch"]) + 1
    run.best, run.best_epoch = float(state["best"]), int(state["best_epoch"])
    run.rng = np.random.default_rng(run.cfg.seed + run.start_epoch)
    torch.manual_seed(run.cfg.seed + run.start_epoch)
    run.step = run.start_epoch * run.steps_per_epoch


def _batch(run: _Run, idx: np.ndarray) -> list[_Item]:
    """The augmented items of one batch (some replaced by mosaics, per ``cfg.mosaic``)."""
    batch = []
    for i in idx:
        it = run.train_items[int(i)]
        if run.cfg.mosaic and run.rng.random() < run.cfg.mosaic:
            it = _mosaic_item(run.train_items, run.rng)
        img, boxes = augment(it.image, it.boxes, run.rng)
        batch.append(_Item(img, boxes, it.label))
    return batch


def _loss(run: _Run, batch: Sequence[_Item]) -> torch.Tensor:
    """Classification loss of one batch (+ ``box_loss`` × the box loss)."""
    cfg, classes = run.cfg, run.card.classes
    x = preprocess([it.image for it in batch], run.card).to(run.device)
    y = torch.from_numpy(
        np.stack([_targets(it, classes, cfg.multilabel or it.label is None) for it in batch])
    ).to(run.device)
    if cfg.box_loss:
        maps = run.model.score_maps(x)
        logits = run.model.pool(maps)
    else:
        logits = run.model(x)
    if cfg.multilabel:
        loss = run.loss_fn(logits, y)
    else:  # mosaics carry several classes: soft targets split between them
        loss = run.loss_fn(logits, y / y.sum(1, keepdim=True).clamp(min=1))
    if cfg.box_loss:
        loss = loss + cfg.box_loss * _box_loss(maps, batch, classes, run.card.input_size)
    return loss


def _epoch(run: _Run, epoch: int, progress: TrainProgress) -> float:
    """One pass over the training split in a seeded order (stops at ``max_steps``);
    returns the mean training loss of its steps.
    """
    run.model.train()
    order = run.rng.permutation(len(run.train_items))
    running, steps = 0.0, 0
    size = run.cfg.batch_size
    for b in range(run.steps_per_epoch):
        loss = _loss(run, _batch(run, order[b * size : (b + 1) * size]))
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.sched.step()
        run.step += 1
        steps += 1
        running += float(loss.detach())
        progress(StepEvent(epoch, run.step, run.total, float(loss.detach())))
        if run.out_of_steps:
            break
    return running / max(steps, 1)


def _checkpoint(run: _Run, epoch: int, loss: float, metrics: dict[str, object]) -> EpochEvent:
    """Record the epoch, save the model when its val macro-F1 is the best so far, and write
    ``last.pt`` (what a resumed run starts from).
    """
    score = float(metrics["macro_f1"])
    run.history.append(
        {
            "epoch": epoch,
            "loss": round(loss, 4),
            "val_accuracy": metrics["accuracy"],
            "val_macro_f1": score,
        }
    )
    if score > run.best:
        run.best, run.best_epoch = score, epoch
        save_model(run.model, run.card, run.ckpt)
        run.best_metrics = metrics
    torch.save(
        {
            "model": run.model.state_dict(),
            "opt": run.opt.state_dict(),
            "sched": run.sched.state_dict(),
            "epoch": epoch,
            "best": run.best,
            "best_epoch": run.best_epoch,
        },
        run.last,
    )
    return EpochEvent(
        epoch=epoch,
        loss=round(loss, 4),
        val_accuracy=float(metrics["accuracy"]),
        val_macro_f1=score,
        best_epoch=run.best_epoch,
        step=run.step,
        total=run.total,
    )


def _finalise(run: _Run, t0: float) -> DoneEvent:
    """Reload the best checkpoint, write its figures and the run's history into its card
    (plus held-out mosaic figures for multi-label mosaic runs) and remove ``last.pt``.
    """
    from cam_core.models import load_model

    final = load_model(run.ckpt, device=str(run.device))
    metrics = run.best_metrics or evaluate_classifier(final.model, run.card, run.val_items)
    extra: dict[str, object] = {}
    if run.cfg.mosaic and run.cfg.multilabel:
        extra["val_mosaic"] = evaluate_classifier(final.model, run.card, val_mosaics(run.val_items))
    card = ModelCard(
        **{
            **asdict(run.card),
            "metrics": {
                "val": metrics,
                **extra,
                "best_epoch": run.best_epoch,
                "history": run.history,
            },
            "training": {
                **run.card.training,
                "wall_time_s": round(time.time() - t0, 1),
                "device": str(run.device),
            },
        }
    )
    save_model(final.model, card, run.ckpt)
    run.last.unlink(missing_ok=True)
    return DoneEvent(run.ckpt, metrics)


def train(cfg: TrainConfig, progress: TrainProgress | None = None) -> Path:
    """Run ``cfg``; returns the saved checkpoint path (card JSON beside it)."""
    t0 = time.time()
    report: TrainProgress = progress or (lambda _event: None)
    run = _prepare(cfg)
    for epoch in range(run.start_epoch, cfg.epochs):
        loss = _epoch(run, epoch, report)
        event = _checkpoint(
            run, epoch, loss, evaluate_classifier(run.model, run.card, run.val_items)
        )
        report(event)
        if run.out_of_steps or _stop_early(epoch, run.best_epoch, cfg):
            break
    done = _finalise(run, t0)
    report(done)
    return done.path


def report_splits(
    checkpoint: str | Path, data: str, splits: Sequence[str] = ("train", "test")
) -> dict[str, dict[str, object]]:
    """Classification figures of a trained checkpoint on other splits of ``data`` (the
    un-augmented ``train`` images, the held-out ``test`` images), written into its card's
    ``metrics`` beside ``val``. Run once, after training and every choice made on val: the test
    split is for reporting only.
    """
    from cam_core.models import card_path_for, load_model

    bad = [s for s in splits if s not in ("train", "test")]
    if bad:
        raise ValueError(f"report_splits: splits must be 'train' or 'test', got {bad}")
    loaded = load_model(checkpoint)
    figures = {
        split: evaluate_classifier(
            loaded.model, loaded.card, _load_items(load_dataset(data, split=split).samples)
        )
        for split in splits
    }
    card = replace(loaded.card, metrics={**loaded.card.metrics, **figures})
    card_path_for(checkpoint).write_text(card.to_json(), encoding="utf-8")
    return figures


def command_line(argv: Sequence[str] | None = None) -> str:
    """The exact command that ran, for the model card."""
    return "python -m cam_core " + shlex.join(list(argv if argv is not None else sys.argv[1:]))
