"""Data parallelism with `jax.sharding`: one mesh axis `data` over every device, the batch split
along it, parameters replicated (STYLE.md §4). The same code runs on 1 CPU, on simulated CPU
devices (XLA_FLAGS=--xla_force_host_platform_device_count=8), on GPUs and on a TPU slice.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


# jax.distributed.initialize reads JAX_COORDINATOR_ADDRESS itself (jax/_src/distributed.py) but
# takes the process count and index only as arguments or from a detected cluster (Slurm, Open
# MPI, TPU): these two let a hand-launched run (or a test on localhost) name them as well.
NUM_PROCESSES_ENV, PROCESS_ID_ENV = "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


def distributed_args(environ=None) -> dict:
  """The explicit arguments of `jax.distributed.initialize` found in the environment:
  coordinator_address, num_processes and process_id, or {} when the process count and index
  are not set (a cluster JAX detects: Slurm, Open MPI, TPU)."""
  environ = os.environ if environ is None else environ
  names = ("JAX_COORDINATOR_ADDRESS", NUM_PROCESSES_ENV, PROCESS_ID_ENV)
  addr, num, pid = values = [environ.get(n) for n in names]
  if num is None and pid is None:
    return {}
  if not all(values):
    given = [n for n, v in zip(names, values) if v]
    missing = [n for n, v in zip(names, values) if not v]
    raise ValueError(f"multi-process run: {', '.join(given)} set but not {', '.join(missing)}; "
                     f"set all three (or neither {NUM_PROCESSES_ENV} nor {PROCESS_ID_ENV} on a "
                     "cluster JAX detects: Slurm, Open MPI, TPU)")
  try:
    num, pid = int(num), int(pid)
  except ValueError:
    raise ValueError(f"{NUM_PROCESSES_ENV}={num!r} and {PROCESS_ID_ENV}={pid!r} must be "
                     "integers") from None
  if not 0 <= pid < num:
    raise ValueError(f"{PROCESS_ID_ENV}={pid} must be in [0, {NUM_PROCESSES_ENV}={num})")
  return dict(coordinator_address=addr, num_processes=num, process_id=pid)


def maybe_initialize_distributed(enabled: bool, environ=None) -> bool:
  """Multi-host start: every process calls this before touching devices. The coordinator,
  process count and index come from the environment (`distributed_args`) or, without them,
  from the cluster (auto-detect). On CPUs the processes' collectives go over gloo (TCP).

  Runs when `enabled` (`--config.distributed`) or when the environment names the processes:
  processes launched as one job must never train as independent single-process runs on one
  workdir. Returns whether it initialised."""
  args = distributed_args(environ)
  if not (enabled or args):
    return False
  if jax.config.jax_cpu_collectives_implementation is None:
    # Without an implementation a CPU computation spanning processes fails at its first
    # collective; gloo is jax 0.10's default, named here for older versions and for readers.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**args)
  return True


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


def global_batch_size(batch_size: int, num_devices: int) -> int:
  """The global batch a stage trains with on `num_devices` devices when its config asks for
  `batch_size`: that batch where the devices divide it, and one example per device where it is
  smaller than the device count. §3.2 trains the regressors at batch 1 and the U-Net at batch
  4 on one GPU; on 8 devices they then train data-parallel at 8, every device stepping on
  at most the paper's per-step batch, instead of leaving devices idle or refusing to start.
  A batch larger than the device count that they do not divide is the user's own choice, and
  refused with the multiple to use."""
  if batch_size < 1:
    raise ValueError(f"batch size {batch_size} must be at least 1 (the stage's train.batch_size: "
                     "--config.<unet|lmnet|cpr>.train.batch_size)")
  if batch_size < num_devices:
    return num_devices
  if batch_size % num_devices:
    raise ValueError(f"batch size {batch_size} is not divisible by the {num_devices} devices of "
                     f"the mesh; use a multiple of {num_devices} (the stage's "
                     "train.batch_size: --config.<unet|lmnet|cpr>.train.batch_size)")
  return batch_size


def fit_batch_to_devices(config, log=print):
  """`config` (a stage's view, its schedule in `train`) with train.batch_size set to
  `global_batch_size` for this run's devices: a copy where it changes, saying so, else
  `config` itself. Call it before the stage builds its batches (each process reads its share
  of the global batch)."""
  n = jax.device_count()
  b = global_batch_size(config.train.batch_size, n)
  if b == config.train.batch_size:
    return config
  log(f"train.batch_size {config.train.batch_size} is smaller than the {n} devices: training "
      f"data-parallel with one example per device, a global batch of {b}")
  config = config.copy_and_resolve_references()
  config.train.batch_size = b
  return config


def check_batch_size(batch_size: int, mesh) -> None:
  n = mesh.devices.size
  if global_batch_size(batch_size, n) != batch_size:
    raise ValueError(f"batch size {batch_size} is smaller than the {n} devices of the mesh: "
                     "set it with sharding.fit_batch_to_devices before building the batches")


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
