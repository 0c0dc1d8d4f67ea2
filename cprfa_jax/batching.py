"""Fixed-shape batches over a set: the one padded-batch helper of the jitted paths."""

from __future__ import annotations

import numpy as np


def padded_batches(n: int, batch_size: int, pow2: bool = False):
  """Yields (lo, hi, idx) for batches [lo, hi) covering range(n). `idx` indexes the set and is
  padded to a fixed size by repeating the batch's last row, so a jitted function compiles once
  for the whole set (callers keep the first hi - lo rows of its output): `batch_size` rows, or
  with `pow2` the smallest power of two >= hi - lo (at most `batch_size`), so a few
  compilations serve any number of rows without padding a small request to the full batch."""
  for lo in range(0, n, batch_size):
    hi = min(lo + batch_size, n)
    size = min(batch_size, 1 << max(0, (hi - lo - 1).bit_length())) if pow2 else batch_size
    yield lo, hi, np.minimum(np.arange(lo, lo + size), hi - 1)
