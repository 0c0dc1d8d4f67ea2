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


def compiled_mib(compiled):
  """XLA's memory analysis of a compiled function in MiB (arguments + outputs + temporaries),
  None where the backend has none."""
  m = compiled.memory_analysis()
  if m is None:
    return None
  return round((m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 2**20, 1)
