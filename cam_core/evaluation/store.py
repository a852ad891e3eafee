"""The resumable row store: ``out/config.json`` (the run's identity) + ``out/rows.jsonl``.

Rows are appended after each batch together with what the dataset accumulators need (per row:
MaxBoxAccV2's best IoU per map threshold and PxAP's positive/negative histograms), so a rerun
with the same identity skips finished samples and reproduces the uninterrupted figures exactly.
A sample counts as finished when all its rows are there and none has an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cam_core.evaluation.config import PXAP_BINS, EvalConfig
from cam_core.evaluation.rows import MAXBOX
from cam_core.metrics.faithfulness import ROAD_PERCENTILES
from cam_core.models import ModelCard

__all__ = ["FORMAT", "RowStore", "identity_key", "prune_stores", "run_identity"]

FORMAT = 1
"""Bump when rows.jsonl changes meaning."""


def _file_digest(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_identity(cfg: EvalConfig, card: ModelCard, layers: Sequence[str]) -> dict[str, Any]:
    """Everything that changes a row's figures: not ``out`` or ``limit``, nor ``batch_size``
    (which moves maps by float rounding only, ~1e-6). ``layers`` are resolved names.
    """
    data = Path(cfg.data)
    identity: dict[str, Any] = {
        "format": FORMAT,
        "data": str(data.resolve()) if data.exists() else cfg.data,
        "split": cfg.split,
        "checkpoint_sha256": _file_digest(cfg.checkpoint) or cfg.checkpoint,
        "model": {
            "arch": card.arch,
            "classes": list(card.classes),
            "multilabel": card.multilabel,
            "input_size": card.input_size,
            "mean": list(card.mean),
            "std": list(card.std),
        },
        "methods": list(cfg.methods),
        "layers": list(layers),
        "target_rule": cfg.target_rule,
        "tau": cfg.tau,
        "tolerance": cfg.tolerance,
        "box_thresholds": list(cfg.box_thresholds),
        "flip_smooth": cfg.flip_smooth,
        "pxap_bins": PXAP_BINS,
        "maxbox_thresholds": MAXBOX.thresholds.tolist(),
        "maxbox_deltas": list(MAXBOX.deltas),
    }
    if cfg.faithfulness:  # absent when off: stores of runs without it keep their identity
        identity["faithfulness"] = {
            "steps": cfg.faith_steps,
            "fill": cfg.faith_fill,
            "road_percentiles": list(ROAD_PERCENTILES),
        }
    return identity


def identity_key(identity: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of ``identity`` (sorted-key JSON)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class RowStore:
    """Finished samples' rows under ``out``, appended per batch; :attr:`done` maps stem → rows.

    Raises ValueError when ``out`` holds a run of another identity (naming what differs).
    """

    def __init__(self, out: Path, identity: dict[str, Any]) -> None:
        self.out = out
        self.rows_file = out / "rows.jsonl"
        config_file = out / "config.json"
        digest = identity_key(identity)
        out.mkdir(parents=True, exist_ok=True)
        if config_file.exists():
            try:
                saved = json.loads(config_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{config_file}: unreadable ({exc}); delete {out}") from None
            if saved.get("hash") != digest:
                old = saved.get("config", {}) if isinstance(saved, dict) else {}
                diff = sorted(k for k in identity if old.get(k) != identity[k]) or ["format"]
                raise ValueError(
                    f"{out} holds an evaluation with another configuration ({', '.join(diff)} "
                    "differ); choose another output folder or delete it"
                )
        elif self.rows_file.exists():
            raise ValueError(
                f"{self.rows_file} exists without config.json; cannot tell what it holds — "
                "choose another output folder or delete it"
            )
        else:
            payload = {"hash": digest, "config": identity}
            config_file.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        self.done = self._load()

    def _load(self) -> dict[str, list[dict[str, Any]]]:
        """Rows of every complete, error-free sample; the file is rewritten without the rest."""
        if not self.rows_file.exists():
            return {}
        by_stem: dict[str, list[dict[str, Any]]] = {}
        dropped = False
        with self.rows_file.open(encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    by_stem.setdefault(row["stem"], []).append(row)
                except (ValueError, KeyError, TypeError):
                    dropped = True  # a line cut short by an interrupted write
        done = {}
        for stem, rows in by_stem.items():
            if len(rows) == rows[0].get("_n") and not any(r["error"] for r in rows):
                done[stem] = rows
            else:
                dropped = True  # partial or failed sample: computed again
        if dropped:
            tmp = self.rows_file.with_suffix(".jsonl.tmp")
            with tmp.open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for rows in done.values() for r in rows)
            os.replace(tmp, self.rows_file)
        return done

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append one batch's rows and flush them to disk."""
        with self.rows_file.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())


def prune_stores(root: str | os.PathLike[str], max_age_s: float, *, keep: str = "") -> list[Path]:
    """Delete the sub-folders of ``root`` (one per browser session's row stores) not modified
    for ``max_age_s`` seconds, except ``keep``; returns what was deleted. A folder that vanishes
    or cannot be deleted meanwhile (another server process) is left alone.
    """
    base = Path(root)
    if not base.is_dir():
        return []
    cutoff = time.time() - max_age_s
    gone = []
    for folder in base.iterdir():
        try:
            old = folder.is_dir() and folder.name != keep and folder.stat().st_mtime < cutoff
        except OSError:
            continue
        if old:
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder)
    return gone
