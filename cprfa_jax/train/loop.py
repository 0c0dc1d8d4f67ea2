"""The training loop shared by every stage: mesh, state, step, checkpoints, logs.

A stage supplies `init_fn(rng, batch) -> params` and `loss_fn(params, batch, rng) -> (loss,
metrics)`; the loop does the rest, the same way on 1 CPU and on a TPU slice:

* optax Adam with the learning rate decayed exponentially from `optim.lr` to `optim.lr_end`
  over the run (§3.2: "gradually decreased from 1e-4 to 1e-7");
* one pure, jitted `train_step` with the batch sharded over the `data` mesh axis and the
  state replicated (`train.sharding`), the state donated;
* orbax checkpoints every `train.checkpoint_every` steps (`train.checkpoint`), resumed
  automatically from the workdir, and a final save;
* metrics to `workdir/metrics.jsonl` and TensorBoard event files in `workdir/tb`, and a progress
  line with loss, steps/s and ETA;
* a non-finite loss stops the run before anything is saved from it: the last checkpoint stays
  the last good one.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from cprfa_jax.train import checkpoint, sharding


@struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any
  opt_state: Any
  rng: jnp.ndarray


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or Inf; the run stopped without saving that state."""


def make_schedule(optim_cfg, num_steps: int) -> optax.Schedule:
  """lr -> lr_end, exponentially over num_steps (§3.2: from 1e-4 to 1e-7)."""
  return optax.exponential_decay(optim_cfg.lr, transition_steps=max(num_steps, 1),
                                 decay_rate=optim_cfg.lr_end / optim_cfg.lr,
                                 end_value=optim_cfg.lr_end)


def make_optimizer(optim_cfg, num_steps: int) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip),
                     optax.adam(make_schedule(optim_cfg, num_steps)))


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation):
  """The pure step: (state, batch) -> (state, metrics). rng = fold_in(rng, step)."""

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


class MetricWriter:
  """JSONL + TensorBoard (tensorboardX: event files without TensorFlow), process 0 only."""

  def __init__(self, workdir: str):
    self._on = jax.process_index() == 0
    if self._on:
      from tensorboardX import SummaryWriter
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      self._tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, step: int, metrics: dict):
    if not self._on:
      return
    row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    for k, v in row.items():
      if k != "step":
        self._tb.add_scalar(k, v, step)
    self._tb.flush()

  def close(self):
    if self._on:
      self._jsonl.close()
      self._tb.close()


def _progress(step, num_steps, metrics, rate):
  eta = (num_steps - step) / rate if rate > 0 else float("inf")
  eta_s = f"{eta / 60:.1f} min" if math.isfinite(eta) else "?"
  return f"step {step}/{num_steps}  loss {float(metrics['loss']):.4f}  {rate:.2f} steps/s  ETA {eta_s}"


def train(config, workdir: str, init_fn: Callable, loss_fn: Callable, batches, *,
          log=print) -> TrainState:
  """Runs (or resumes) a stage to `config.train.num_steps`. `batches(start_step)` returns an
  iterator of host batches (dicts of NumPy arrays, global batch) for steps start_step + 1, ...,
  so a resumed run sees the data the uninterrupted one would have seen."""
  tcfg = config.train
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(tcfg.batch_size, mesh)
  tx = make_optimizer(config.optim, tcfg.num_steps)
  schedule = make_schedule(config.optim, tcfg.num_steps)
  mngr = checkpoint.manager(workdir, tcfg.checkpoint_every, tcfg.keep_checkpoints)
  start = mngr.latest_step() or 0
  data = batches(start)
  try:
    return _train(config, workdir, init_fn, loss_fn, data, mngr, start, mesh, tx, schedule, log)
  finally:
    # Also on errors: a producer thread left running at interpreter exit aborts the process.
    mngr.wait_until_finished()
    mngr.close()
    if hasattr(data, "close"):
      data.close()


def _train(config, workdir, init_fn, loss_fn, data, mngr, start, mesh, tx, schedule, log):
  tcfg = config.train
  pending = next(data)   # shapes for init, then the first step's batch

  def init(rng):
    params = init_fn(rng, pending)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=jax.random.fold_in(rng, 1))

  rep = sharding.replicated(mesh)
  rng0 = jax.random.PRNGKey(config.seed)   # a legacy uint32 key: plain data for orbax
  abstract = jax.eval_shape(init, rng0)
  state_sharding = jax.tree.map(lambda _: rep, abstract)
  config_dict = config.to_dict()
  state, start = checkpoint.restore_latest(
      mngr, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), abstract),
      config_dict)
  if state is None:
    state = jax.jit(init, out_shardings=state_sharding)(rng0)
    log(f"initialised a new run in {workdir}")
  else:
    log(f"resumed from step {start} in {workdir}")
  if start >= tcfg.num_steps:
    return state

  jit_step = jax.jit(make_train_step(loss_fn, tx), in_shardings=(state_sharding, sharding.batch_sharding(mesh)),
                     out_shardings=(state_sharding, rep), donate_argnums=(0,))
  writer = MetricWriter(workdir)
  t0 = time.time()
  try:
    for step in range(start + 1, tcfg.num_steps + 1):
      batch, pending = pending, None
      state, metrics = jit_step(state, sharding.shard_batch(batch, mesh))
      due_log = step % tcfg.log_every == 0 or step == tcfg.num_steps
      due_ckpt = mngr.should_save(step) or step == tcfg.num_steps
      if due_log or due_ckpt:
        metrics = jax.device_get(metrics)
        if not np.isfinite(metrics["loss"]):
          raise NonFiniteLossError(
              f"loss is {metrics['loss']} at step {step}; stopped without saving this state. "
              f"The last good checkpoint is step {mngr.latest_step()} in {workdir}. Lower "
              "--config.optim.lr or check the data.")
        rate = (step - start) / max(time.time() - t0, 1e-9)
        writer.write(step, dict(metrics, steps_per_s=rate, lr=float(schedule(step))))
        if due_log:
          log(_progress(step, tcfg.num_steps, metrics, rate))
      if due_ckpt:
        checkpoint.save(mngr, step, state, config_dict, force=step == tcfg.num_steps)
      if step < tcfg.num_steps:
        pending = next(data)
  finally:
    writer.close()
  return state
