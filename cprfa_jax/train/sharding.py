"""Data parallelism with `jax.sharding`: one mesh axis `data` over every device, the batch split
along it, parameters replicated (STYLE.md §4). The same code runs on 1 CPU, on simulated CPU
devices (XLA_FLAGS=--xla_force_host_platform_device_count=8), on GPUs and on a TPU slice.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def maybe_initialize_distributed(enabled: bool) -> None:
  """Multi-host start: every process calls this before touching devices (cluster auto-detect)."""
  if enabled:
    jax.distributed.initialize()


def make_mesh() -> jax.sharding.Mesh:
  # Auto axes: the compiler propagates shardings through the model (jax 0.10's default is
  # Explicit, which would make every reshape of a sharded batch spell out its output sharding).
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, the rest replicated."""
  return NamedSharding(mesh, P("data"))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f"batch size {batch_size} is not divisible by the {n} devices of the mesh; "
                     f"use a multiple of {n} (--config.train.batch_size)")


def shard_batch(batch, mesh):
  """Host batch (pytree of NumPy arrays, global batch on this host) -> sharded jax arrays.

  Single-process: a plain device_put. Multi-process: each host holds its slice of the global
  batch and the global array is assembled from the per-host pieces.
  """
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
