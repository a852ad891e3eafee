"""The distributed run's row store: ``out/config.json`` + one Parquet file per batch.

``out/rows/part-<key>.parquet`` holds every row of one batch; ``key`` hashes the run identity
(:func:`cam_core.evaluation.store.run_identity`), the job's attempt and the batch's stems, so a
retried batch (a worker killed mid-run) writes the same file again instead of a second copy, and
a worker skips a batch whose file is already there; a rerun skips finished samples and computes
the rest (failed ones included) under a new attempt. Files are written to a temporary name and
moved into place, so a file is either whole or absent. Each row carries ``_run`` (the identity
key) and ``_written`` (when); with ``stem``, ``class``, ``method`` and ``layer`` that is the
row's key. A sample counts as finished, as in the local store, when all its rows are there and
none has an error; reading keeps one version of every sample (a finished one first, else the
newest). Paths and URIs go through pyarrow filesystems.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cam_core.evaluation.store import identity_key
from cam_core.scale.manifest import open_uri

__all__ = ["PartStore", "batch_key", "is_finished"]


def batch_key(run_key: str, attempt: str, stems: Sequence[str]) -> str:
    """The file key of one batch: the run identity, the attempt (one per job, so that a rerun
    computes its failed samples again) and the batch's stems, hashed.
    """
    return hashlib.sha256("\n".join([run_key, attempt, *stems]).encode()).hexdigest()[:24]


def is_finished(rows: Sequence[Mapping[str, Any]]) -> bool:
    """All of a sample's rows are there (``_n``) and none has an error."""
    return bool(rows) and len(rows) == rows[0].get("_n") and not any(r["error"] for r in rows)


def _table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows as a table, every key a column with the type its values have (pyarrow's inference:
    a column without a value is of type null), so new row keys need no change here.
    """
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])


class PartStore:
    """Rows of one run under ``out`` (a path or URI), one Parquet file per batch.

    Opening it on the driver (:meth:`create`) writes or checks ``config.json``: ValueError when
    ``out`` holds a run of another identity (naming what differs). Workers reopen it with
    :meth:`__init__` from the pickled ``out`` and ``run`` key alone.
    """

    def __init__(self, out: str, run: str) -> None:
        self.out = out
        self.run = run
        self.fs, self.root = open_uri(out)
        self.rows_dir = f"{self.root}/rows"

    @classmethod
    def create(cls, out: str, identity: dict[str, Any]) -> PartStore:
        """The store of run ``identity`` under ``out``, refusing a folder of another run."""
        store = cls(out, identity_key(identity))
        fs, config = store.fs, f"{store.root}/config.json"
        fs.create_dir(store.rows_dir, recursive=True)
        if fs.get_file_info(config).type == pafs.FileType.File:
            try:
                with fs.open_input_stream(config) as f:
                    saved = json.loads(f.read().decode("utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{out}/config.json: unreadable ({exc}); delete {out}") from None
            if saved.get("hash") != store.run:
                old = saved.get("config", {}) if isinstance(saved, dict) else {}
                diff = sorted(k for k in identity if old.get(k) != identity[k]) or ["format"]
                raise ValueError(
                    f"{out} holds an evaluation with another configuration ({', '.join(diff)} "
                    "differ); choose another output folder or delete it"
                )
        else:
            payload = json.dumps({"hash": store.run, "config": identity}, indent=2) + "\n"
            store._put(config, payload.encode("utf-8"))
        return store

    def part(self, key: str) -> str:
        """Path of one batch's file inside the filesystem."""
        return f"{self.rows_dir}/part-{key}.parquet"

    def has(self, key: str) -> bool:
        """The batch's file is there (written whole)."""
        return self.fs.get_file_info(self.part(key)).type == pafs.FileType.File

    def _put(self, path: str, data: bytes) -> None:
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.fs.move(tmp, path)

    def write(self, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write one batch's rows (whole or not at all; a rewrite replaces the file)."""
        stamp = time.time_ns()
        table = _table([{**r, "_run": self.run, "_written": stamp} for r in rows])
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self._put(self.part(key), sink.getvalue().to_pybytes())

    def read(self, stems: Iterable[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """One version of the rows of every sample (of ``stems``, when given) stored for this run:
        a finished one when there is one, else the newest; rows in their written order.
        """
        wanted = None if stems is None else set(stems)
        selector = pafs.FileSelector(self.rows_dir, allow_not_found=True)
        versions: dict[str, list[list[dict[str, Any]]]] = {}
        for info in self.fs.get_file_info(selector):
            if not info.path.endswith(".parquet"):
                continue  # a temporary file of an interrupted write
            try:
                rows = pq.read_table(info.path, filesystem=self.fs).to_pylist()
            except (OSError, pa.ArrowException):
                continue  # not ours or damaged: its batch is computed again
            by_stem: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                if r.get("_run") == self.run and (wanted is None or r["stem"] in wanted):
                    by_stem.setdefault(r["stem"], []).append(r)
            for stem, group in by_stem.items():
                versions.setdefault(stem, []).append(group)
        return {
            stem: max(groups, key=lambda g: (is_finished(g), g[0]["_written"]))
            for stem, groups in versions.items()
        }
