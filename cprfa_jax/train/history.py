"""A stage's history: `workdir/history.jsonl`, one JSON row per event (a new run, a resume with
the config keys that changed since the checkpoint, a rewind past a non-finite step), and the
batch stream that leaves out the batches the rewinds skipped.

The skipped batches are read back from the history, so a run interrupted after a rewind resumes
on the same data as the run that rewound.
"""

from __future__ import annotations

import json
import os
import time

import jax
from jax.experimental import multihost_utils

from cprfa_jax import workdirs


class History:
  """Process 0 writes the file; every process keeps the skipped batches in memory, so after a
  rewind no process reads a file another one is still writing (multi-host runs)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "history.jsonl")
    self._skipped = {r["skipped_batch"] for r in self.rows() if r["event"] == "rewind"}
    if jax.process_count() > 1:
      # Every process has read the file before process 0 appends this run's first row.
      multihost_utils.sync_global_devices(f"history:{self.path}")

  def write(self, event: str, step: int, **fields) -> None:
    if event == "rewind":
      self._skipped.add(fields["skipped_batch"])
    if jax.process_index() != 0:
      return
    row = {"event": event, "step": int(step), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
    with open(self.path, "a") as f:
      f.write(json.dumps(row, default=str) + "\n")

  def rows(self) -> list[dict]:
    return workdirs.history_rows(os.path.dirname(self.path))

  def skipped_batches(self) -> list[int]:
    """The batch indices skipped by rewinds: those in the file when this History was made, and
    those written since (on any process)."""
    return sorted(self._skipped)


def first_batch_index(step: int, skipped) -> int:
  """The batch index that step `step + 1` trains on: batch indices count from 1 and step t takes
  the t-th index not in `skipped`."""
  k = step + 1
  for s in sorted(skipped):
    if s <= k:
      k += 1
  return k


class SkippingBatches:
  """(batch index, batch) for steps step + 1, ... from `batches(start)` (which yields the batches
  of indices start + 1, ...), leaving out the indices in `skipped`."""

  def __init__(self, batches, step: int, skipped):
    self._skipped = set(skipped)
    self._k = first_batch_index(step, skipped)
    self._it = batches(self._k - 1)

  def __iter__(self):
    return self

  def __next__(self):
    while True:
      k, batch = self._k, next(self._it)
      self._k += 1
      if k not in self._skipped:
        return k, batch

  def close(self):
    if hasattr(self._it, "close"):
      self._it.close()
