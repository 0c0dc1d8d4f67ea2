"""Timing shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

import time

import numpy as np


def median_time(fn, repeats: int) -> float:
  """Median wall time of `fn()` over `repeats` calls, after one warm-up (JAX compiles there)."""
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))
