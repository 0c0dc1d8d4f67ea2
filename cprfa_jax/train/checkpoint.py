"""Checkpointing in one file: orbax `CheckpointManager` behind three functions, so an orbax API
change is a one-file change (STYLE.md §6).

A checkpoint holds the train state (any pytree: params, optimizer state, step, rng) and the
config it was trained with, as JSON. Restoring checks that config against the current one, so a
checkpoint from another configuration stops with a message naming the keys that differ instead
of failing deep inside orbax with a shape error.
"""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp

from cprfa_jax import workdirs

# What may differ between the run that saved and the run that resumes, when the config does not
# name its `identity_keys`: any key under a `train` or `optim` block (of any stage: how long,
# how fast or how loudly a run goes) and these, which never touch the parameters.
SCHEDULE_BLOCKS = ("train", "optim")
RESUMABLE_KEYS = ("eval", "data.data_dir", "data.eval_sets", "data.num_eval",
                  "data.num_reference", "distributed", "identity_keys")


class ConfigMismatchError(ValueError):
  """The workdir holds a checkpoint made with a different configuration."""


def manager(workdir: str, save_every: int, keep: int) -> ocp.CheckpointManager:
  """A manager for `workdir/checkpoints`: saves every `save_every` steps, keeps the last `keep`."""
  options = ocp.CheckpointManagerOptions(save_interval_steps=save_every, max_to_keep=keep,
                                         create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options, item_names=("state", "config"))


def save(mngr: ocp.CheckpointManager, step: int, state, config: dict, force: bool = False) -> bool:
  """Saves if the step is due (or `force`); returns whether a save started (it is async)."""
  return mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                 config=ocp.args.JsonSave(config)), force=force)


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _under(key: str, prefixes) -> bool:
  return any(key == p or key.startswith(p + ".") for p in prefixes)


def _is_identity(key: str, identity) -> bool:
  """Whether a difference in `key` changes what the checkpoint's parameters mean."""
  if identity is not None:
    return _under(key, identity)
  return not (_under(key, RESUMABLE_KEYS) or any(s in SCHEDULE_BLOCKS for s in key.split(".")))


def config_changes(saved: dict, current: dict):
  """(refused, changed): dotted keys whose values differ, split into those that change what the
  parameters mean (refused on restore) and the rest (allowed, recorded in the history).

  With `current["identity_keys"]` (a stage's config, `workdirs.stage_config`) only keys
  under those prefixes are refused; without it every key but the schedule and evaluation ones.
  A key the saved config does not have (written by older code) is a change, not a refusal.
  Both sides go through JSON first, so a tuple and the list it was saved as compare equal."""
  a, b = (_flatten(json.loads(json.dumps(d))) for d in (saved, current))
  identity = current.get("identity_keys")
  diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k != "identity_keys")
  refused = [k for k in diff if k in a and _is_identity(k, identity)]
  changed = {k: [a.get(k), b.get(k)] for k in diff if k not in refused}
  return refused, changed


def _check_config(mngr: ocp.CheckpointManager, step: int, config: dict) -> dict:
  """Raises ConfigMismatchError naming the keys (and values) in which the checkpoint's config
  differs from `config` in a way that changes the parameters' meaning; returns the allowed
  changes {key: [saved, now]}."""
  saved = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
  saved = workdirs.upgrade_saved_view(saved)      # a stage view saved by older code, renamed
  refused, changed = config_changes(saved, config)
  if refused:
    a, b = (_flatten(json.loads(json.dumps(d))) for d in (saved, config))
    details = ", ".join(f"{k}: saved {a.get(k)!r} vs now {b.get(k)!r}" for k in refused[:8])
    raise ConfigMismatchError(
        f"{mngr.directory} holds a checkpoint (step {step}) from another configuration "
        f"({details}). Use a new --workdir, or the config it was trained with.")
  return changed


def restore_step(mngr: ocp.CheckpointManager, step, abstract_state, config: dict):
  """(state, step, allowed config changes) of checkpoint `step`, or (None, 0, {}) for None."""
  if step is None:
    return None, 0, {}
  changed = _check_config(mngr, step, config)
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
  return restored["state"], step, changed


def _on_local_device(metadata_tree):
  """Abstract arrays for a saved tree, each on this process's first device."""
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=local),
                      metadata_tree)


def restore_params(workdir: str, config: dict, step: int | None = None):
  """(params, step) of a workdir's checkpoint (latest by default) for evaluation, checked
  against the config like `restore_step`; raises FileNotFoundError naming the workdir if
  there is none.

  The parameters land on this process's first device, whatever mesh saved them: evaluation
  and the later stages' observers run each process's own images through them, which
  parameters spread over every process's devices would turn into one global computation (and
  on one host, into a copy of the work on every device)."""
  # Handlers named up front: without them a read-only manager has no metadata for "state".
  mngr = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=ocp.CheckpointManagerOptions(read_only=True),
                               item_handlers={"state": ocp.StandardCheckpointHandler(),
                                              "config": ocp.JsonCheckpointHandler()})
  try:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{workdir}: no checkpoint; train first (python train.py "
                              f"--config ... --workdir {workdir})")
    _check_config(mngr, step, config)
    abstract = _on_local_device(mngr.item_metadata(step)["state"].tree)
    state = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))["state"]
  finally:
    mngr.close()
  return state["params"], step
