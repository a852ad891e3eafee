"""Deterministic, stratified train/val/test splits by stem hash (the same on every machine)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Sequence

from cam_core.data.core import Sample

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)


def stem_hash(stem: str) -> str:
    """The hex SHA-1 of a file stem: the machine- and layout-independent order of the splits."""
    return hashlib.sha1(stem.encode("utf-8"), usedforsecurity=False).hexdigest()


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test) summing to 1, "
            f"got {tuple(fractions)!r}"
        )
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def _split_of_rank(rank: int, n: int, fractions: tuple[float, float, float]) -> str:
    """Split of the ``rank``-th of ``n`` hash-ordered stems: cut at rounded cumulative counts."""
    n_train = math.floor(n * fractions[0] + 0.5 + 1e-9)
    n_train_val = math.floor(n * (fractions[0] + fractions[1]) + 0.5 + 1e-9)
    if rank < n_train:
        return "train"
    return "val" if rank < n_train_val else "test"


def _split_of_hash(stem: str, fractions: tuple[float, float, float]) -> str:
    """Split of a stem from its hash alone (a uniform number in [0, 1))."""
    u = int(stem_hash(stem)[:13], 16) / 16**13
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def _hash_order(stems: Iterable[str]) -> list[str]:
    return sorted(set(stems), key=lambda s: (stem_hash(s), s))


def assign_split(
    stem: str,
    label: str | None,
    stems_of_label: Collection[str] = (),
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for one sample; deterministic across machines.

    Labelled: the stems of its class (``stems_of_label``, which must contain ``stem``) are
    ordered by :func:`stem_hash` and cut at the rounded cumulative ``fractions``, so every
    class is split in the same proportions. Unlabelled (``label`` None): the stem's hash alone
    decides, independently of other samples. :func:`split_samples` applies this to a dataset.
    """
    fr = _check_fractions(fractions)
    if label is None:
        return _split_of_hash(stem, fr)
    order = _hash_order(stems_of_label)
    try:
        rank = order.index(stem)
    except ValueError:
        raise ValueError(f"stem {stem!r} is not among the stems of class {label!r}") from None
    return _split_of_rank(rank, len(order), fr)


def split_samples(
    samples: Iterable[Sample], fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, tuple[Sample, ...]]:
    """Deterministic train/val/test split, stratified by ``Sample.label`` (see assign_split).

    Returns ``{"train": ..., "val": ..., "test": ...}``, each keeping the input order.
    """
    fr = _check_fractions(fractions)
    samples = tuple(samples)
    by_label: dict[str, list[str]] = {}
    for s in samples:
        if s.label is not None:
            by_label.setdefault(s.label, []).append(s.stem)
    split_of: dict[tuple[str | None, str], str] = {}
    for label, stems in by_label.items():
        order = _hash_order(stems)
        for rank, stem in enumerate(order):
            split_of[(label, stem)] = _split_of_rank(rank, len(order), fr)
    out: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for s in samples:
        key = (s.label, s.stem)
        out[split_of[key] if s.label is not None else _split_of_hash(s.stem, fr)].append(s)
    return {name: tuple(out[name]) for name in SPLITS}
