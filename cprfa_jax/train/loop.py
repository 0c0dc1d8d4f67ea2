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

from cprfa_jax import workdirs
from cprfa_jax.nets import initialise
from cprfa_jax.train import checkpoint, history, sharding


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
    grad_norm = optax.tree.norm(grads)
    # Counted on the device every step, read at the checks: a NaN loss whose gradient is zero
    # (a `where` that picked a NaN constant) would leave no trace in a later step's loss.
    nonfinite = ~(jnp.isfinite(loss) & jnp.isfinite(grad_norm))
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, nonfinite=nonfinite.astype(jnp.int32))
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

  def event(self, step: int, name: str, fields: dict):
    """A row that is not a metric (a rewind): {"step", "event", ...} in metrics.jsonl."""
    if self._on:
      self._jsonl.write(json.dumps({"step": int(step), "event": name, **fields}) + "\n")
      self._jsonl.flush()

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
  iterator of host batches (dicts of NumPy arrays: this process's share of the global batch,
  all of it in a single-process run) for steps start_step + 1, ..., so a resumed run sees the
  data the uninterrupted one would have seen (minus the batches a `rewind` skipped, recorded in
  `history.jsonl`).

  Multi-process (after `sharding.maybe_initialize_distributed`): every process calls `train`
  with its own `batches`; process p's share is rows [p * B / n, (p + 1) * B / n) of the global
  batch (the mesh orders devices by process). The workdir must be on a file system every
  process sees (orbax writes one checkpoint from all of them); metrics and history are written
  by process 0."""
  tcfg = config.train
  if tcfg.get("on_nonfinite", "stop") not in ("stop", "rewind"):
    raise ValueError(f"{workdirs.view_flag(config, 'train.on_nonfinite')}={tcfg.on_nonfinite!r}: "
                     "use 'stop' or 'rewind'")
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(tcfg.batch_size, mesh)
  tx = make_optimizer(config.optim, tcfg.num_steps)
  mngr = checkpoint.manager(workdir, tcfg.checkpoint_every, tcfg.keep_checkpoints)
  run = _Run(config, workdir, init_fn, loss_fn, batches, mngr, mesh, tx, log)
  try:
    return run.train()
  finally:
    # Also on errors: a producer thread left running at interpreter exit aborts the process.
    mngr.wait_until_finished()
    mngr.close()
    run.close()


class _Run:
  """One call of `train`: the state, the data and the checkpoints, and the rewinds between
  them."""

  def __init__(self, config, workdir, init_fn, loss_fn, batches, mngr, mesh, tx, log):
    self.config, self.tcfg, self.workdir, self.log = config, config.train, workdir, log
    self.batches, self.mngr, self.mesh = batches, mngr, mesh
    self.schedule = make_schedule(config.optim, config.train.num_steps)
    self.history = history.History(workdir)
    self.data = None
    self._rep = sharding.replicated(mesh)
    self.rng0 = jax.random.PRNGKey(config.seed)   # a legacy uint32 key: plain data for orbax
    self.init_fn, self.loss_fn, self.tx = init_fn, loss_fn, tx
    self.config_dict = config.to_dict()

  def close(self):
    if self.data is not None:
      self.data.close()

  def _open_data(self, step: int):
    """The batches for steps step + 1, ...; the first one is returned for shapes."""
    self.close()
    self.data = history.SkippingBatches(self.batches, step, self.history.skipped_batches())
    return next(self.data)

  def _restore(self, step, first_batch, abstract):
    """(state, step) of checkpoint `step`, or a fresh initialisation for None."""
    if step is None:
      return initialise.init_jitted(self._init(first_batch), self.rng0,
                                    out_shardings=self.state_sharding), 0
    self.mngr.wait_until_finished()
    state, step, _ = checkpoint.restore_step(self.mngr, step, abstract, self.config_dict)
    return state, step

  def _init(self, batch):
    # Zeros of the host batch's shapes: parameters depend on shapes only, and every process
    # must compile the same program (a process's batch baked in as a constant would differ).
    zeros = jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), batch[1])

    def init(rng):
      params = self.init_fn(rng, zeros)
      return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                        opt_state=self.tx.init(params), rng=jax.random.fold_in(rng, 1))
    return init

  def train(self) -> TrainState:
    tcfg, mngr = self.tcfg, self.mngr
    start = mngr.latest_step() or 0
    pending = self._open_data(start)   # (batch index, batch): shapes for init, then step 1's
    abstract_state = jax.eval_shape(self._init(pending), self.rng0)
    self.state_sharding = jax.tree.map(lambda _: self._rep, abstract_state)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self._rep),
                            abstract_state)
    state, start, changed = checkpoint.restore_step(mngr, mngr.latest_step(), abstract,
                                                    self.config_dict)
    if state is None:
      state, start = self._restore(None, pending, abstract)
      self.log(f"initialised a new run in {self.workdir}")
      self.history.write("start", 0, config=self.config_dict)
    else:
      self.log(f"resumed from step {start} in {self.workdir}")
      if changed:
        self.log("  config changed since the checkpoint: " +
                 ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in
                           ((k, *v) for k, v in sorted(changed.items()))))
      self.history.write("resume", start, changed=changed)
    if start >= tcfg.num_steps:
      return state
    jit_step = jax.jit(make_train_step(self.loss_fn, self.tx),
                       in_shardings=(self.state_sharding, sharding.batch_sharding(self.mesh)),
                       out_shardings=(self.state_sharding, self._rep), donate_argnums=(0,))
    writer = MetricWriter(self.workdir)
    try:
      return self._loop(state, start, pending, jit_step, writer, abstract)
    finally:
      writer.close()

  def _loop(self, state, start, pending, jit_step, writer, abstract):
    tcfg, mngr = self.tcfg, self.mngr
    t0, first = time.time(), start
    replay_to = 0        # after a rewind, every step up to here is checked (finds the batch)
    bad = 0              # non-finite steps since the last check (a device scalar, no sync)
    step = start + 1
    while step <= tcfg.num_steps:
      (k, batch), pending = pending, None
      state, metrics = jit_step(state, sharding.shard_batch(batch, self.mesh))
      bad = bad + metrics["nonfinite"]
      due_log = step % tcfg.log_every == 0 or step == tcfg.num_steps
      due_ckpt = mngr.should_save(step) or step == tcfg.num_steps
      if due_log or due_ckpt or step <= replay_to:
        metrics, bad = jax.device_get(metrics), int(jax.device_get(bad))
        if bad:
          bad, good = 0, mngr.latest_step()
          if tcfg.get("on_nonfinite", "stop") != "rewind":
            raise NonFiniteLossError(self._message(metrics, step, good))
          if step <= replay_to:
            # Found: batch k is the first whose step is not finite. Skip it from now on.
            rewinds = len(self.history.skipped_batches())
            if rewinds >= tcfg.get("max_rewinds", 3):
              flag = workdirs.view_flag(self.config, "train.max_rewinds")
              raise NonFiniteLossError(self._message(metrics, step, good) +
                                       f" Gave up after {rewinds} rewinds ({flag}).")
            row = dict(restored_step=good or 0, skipped_batch=int(k),
                       loss=float(metrics["loss"]), grad_norm=float(metrics["grad_norm"]))
            self.history.write("rewind", step, **row)
            writer.event(step, "rewind", row)
            self.log(f"step {step}: non-finite loss or gradient on batch {k}; rewound to step "
                     f"{good or 0} and skipping that batch")
          else:
            replay_to = step   # somewhere in (good, step]: replay it one step at a time
            self.log(f"step {step}: non-finite loss or gradient; rewinding to step {good or 0} "
                     "to find the batch")
          del state
          pending = self._open_data(good or 0)
          state, step = self._restore(good, pending, abstract)
          first, t0 = step, time.time()
          step += 1
          continue
        rate = (step - first) / max(time.time() - t0, 1e-9)
        writer.write(step, dict(metrics, steps_per_s=rate, lr=float(self.schedule(step))))
        if due_log:
          self.log(_progress(step, tcfg.num_steps, metrics, rate))
      if due_ckpt:
        checkpoint.save(mngr, step, state, self.config_dict, force=step == tcfg.num_steps)
      if step < tcfg.num_steps:
        pending = next(self.data)
      step += 1
    return state

  def _message(self, metrics, step, good) -> str:
    where = "" if metrics["nonfinite"] else f" at a step after {good or 0}"
    return (f"non-finite loss or gradient{where} (at step {step}: loss {float(metrics['loss'])}, "
            f"gradient norm {float(metrics['grad_norm'])}); stopped without saving this state. "
            f"The last good checkpoint is step {good} in {self.workdir}.")
