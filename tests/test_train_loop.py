"""The shared training loop on a tiny least-squares problem (milliseconds per step): resume with
changed schedule keys (recorded in history.jsonl), refusal of keys that change the parameters'
meaning, `train.on_nonfinite="rewind"` past an injected NaN batch, and the pieces of a
multi-process run that one process can check (the real one: tests/e2e/test_multihost.py)."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cprfa_jax.train import checkpoint, history, loop, sharding

W_TRUE = np.array([1.0, -2.0, 0.5], np.float32)


def config(num_steps=10, on_nonfinite="stop", lr=0.05, **train):
  return ml_collections.ConfigDict(dict(
      seed=0, identity_keys=("net.width",), net=dict(width=3),
      optim=dict(lr=lr, lr_end=lr / 10, grad_clip=10.0),
      train=dict(dict(batch_size=4, num_steps=num_steps, log_every=3, checkpoint_every=2,
                      keep_checkpoints=10, on_nonfinite=on_nonfinite, max_rewinds=3), **train)))


def batch_of(k, bad=()):
  x = np.random.default_rng(k).normal(size=(4, 3)).astype(np.float32)
  return {"x": x, "y": x @ W_TRUE, "bad": np.full((4,), k in bad)}


class Interrupted(Exception):
  pass


def source(bad=(), drop=(), interrupt_at=None):
  """batches(start) -> batches of indices start + 1, ..., leaving out `drop` (the reference for
  a rewound run), poisoning the indices in `bad` and stopping the run at `interrupt_at`."""
  def batches(start):
    k = start
    while True:
      k += 1
      if k == interrupt_at:
        raise Interrupted
      if k not in drop:
        yield batch_of(k, bad)
  return batches


def init_fn(rng, batch):
  return {"w": jnp.zeros((3,), jnp.float32)}


def loss_fn(params, batch, rng):
  err = batch["x"] @ params["w"] - batch["y"]
  loss = jnp.mean(err ** 2)
  return jnp.where(batch["bad"][0], jnp.nan, loss), {}


def grad_nan_loss_fn(params, batch, rng):
  """Finite loss, NaN gradient on a bad batch (sqrt at 0): only the gradient tells."""
  loss, m = loss_fn(params, dict(batch, bad=jnp.zeros_like(batch["bad"])), rng)
  at_zero = jnp.sum(params["w"] * 0.0) + jnp.where(batch["bad"][0], 0.0, 1.0)
  return loss + jnp.sqrt(at_zero) - 1.0 + batch["bad"][0], m


def train(tmp, cfg, batches, fn=loss_fn):
  return loop.train(cfg, str(tmp), init_fn, fn, batches, log=lambda s: None)


def rows(path):
  return [json.loads(line) for line in open(path)]


@pytest.mark.parametrize("fn", [loss_fn, grad_nan_loss_fn], ids=["nan_loss", "nan_gradient"])
def test_rewind_skips_the_bad_batch_and_ends_as_a_run_without_it(tmp_path, fn):
  ref = train(tmp_path / "ref", config(), source(drop={5}))
  got = train(tmp_path / "rw", config(on_nonfinite="rewind"), source(bad={5}), fn)
  assert int(got.step) == int(ref.step) == 10
  np.testing.assert_allclose(got.params["w"], ref.params["w"], rtol=1e-6, atol=1e-7)
  rewinds = [r for r in rows(tmp_path / "rw" / "history.jsonl") if r["event"] == "rewind"]
  assert [(r["skipped_batch"], r["restored_step"]) for r in rewinds] == [(5, 4)]
  events = [r for r in rows(tmp_path / "rw" / "metrics.jsonl") if r.get("event") == "rewind"]
  assert len(events) == 1 and events[0]["skipped_batch"] == 5


def test_stop_is_the_default_and_names_the_last_good_checkpoint(tmp_path):
  with pytest.raises(loop.NonFiniteLossError, match="last good checkpoint is step 4"):
    train(tmp_path, config(), source(bad={5}))


def test_a_run_interrupted_after_a_rewind_resumes_on_the_same_data(tmp_path):
  ref = train(tmp_path / "ref", config(num_steps=12, on_nonfinite="rewind"), source(bad={5, 9}))
  with pytest.raises(Interrupted):
    train(tmp_path / "cut", config(num_steps=12, on_nonfinite="rewind"),
          source(bad={5, 9}, interrupt_at=10))
  assert history.History(str(tmp_path / "cut")).skipped_batches() == [5, 9]
  got = train(tmp_path / "cut", config(num_steps=12, on_nonfinite="rewind"), source(bad={5, 9}))
  np.testing.assert_allclose(got.params["w"], ref.params["w"], rtol=1e-6, atol=1e-7)
  assert history.History(str(tmp_path / "cut")).skipped_batches() == [5, 9]


def test_rewinds_give_up_after_max_rewinds(tmp_path):
  cfg = config(on_nonfinite="rewind", max_rewinds=1)
  with pytest.raises(loop.NonFiniteLossError, match="after 1 rewinds"):
    train(tmp_path, cfg, source(bad={3, 4, 5}))


def test_resume_with_a_changed_rate_and_length_is_recorded(tmp_path):
  train(tmp_path, config(num_steps=4), source())
  state = train(tmp_path, config(num_steps=6, lr=0.01, log_every=1), source())
  assert int(state.step) == 6
  resume = [r for r in rows(tmp_path / "history.jsonl") if r["event"] == "resume"][-1]
  assert resume["step"] == 4
  assert resume["changed"]["optim.lr"] == [0.05, 0.01]
  assert resume["changed"]["train.num_steps"] == [4, 6]


def test_a_key_that_changes_the_parameters_is_refused(tmp_path):
  train(tmp_path, config(num_steps=2), source())
  cfg = config(num_steps=4)
  cfg.net.width = 4
  with pytest.raises(checkpoint.ConfigMismatchError, match="net.width: saved 3 vs now 4"):
    train(tmp_path, cfg, source())


def test_without_identity_keys_only_schedule_keys_may_change():
  saved = {"model": "a", "cpr": {"width": 8, "train": {"num_steps": 4}, "optim": {"lr": 1.0}}}
  now = {"model": "a", "cpr": {"width": 16, "train": {"num_steps": 9}, "optim": {"lr": 0.1}}}
  refused, changed = checkpoint.config_changes(saved, now)
  assert refused == ["cpr.width"]
  assert set(changed) == {"cpr.train.num_steps", "cpr.optim.lr"}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 30), st.sets(st.integers(1, 40), max_size=8))
def test_first_batch_index_is_the_next_unskipped_index(step, skipped):
  unskipped = [k for k in range(1, 100) if k not in skipped]
  assert history.first_batch_index(step, skipped) == unskipped[step]


def test_distributed_args_come_from_the_environment():
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2",
         "JAX_PROCESS_ID": "1"}
  assert sharding.distributed_args(env) == dict(coordinator_address="10.0.0.1:1234",
                                                num_processes=2, process_id=1)
  assert sharding.distributed_args({}) == {}   # a cluster JAX detects (Slurm, Open MPI, TPU)
  assert sharding.distributed_args({"JAX_COORDINATOR_ADDRESS": "h:1"}) == {}   # jax reads it
  with pytest.raises(ValueError, match="JAX_PROCESS_ID set but not JAX_NUM_PROCESSES"):
    sharding.distributed_args({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_PROCESS_ID": "0"})
  with pytest.raises(ValueError, match=r"JAX_PROCESS_ID=2 must be in \[0, JAX_NUM_PROCESSES=2\)"):
    sharding.distributed_args(dict(env, JAX_PROCESS_ID="2"))


def test_only_process_0_writes_the_history_but_every_process_knows_the_rewinds(tmp_path,
                                                                              monkeypatch):
  h0 = history.History(str(tmp_path))
  h0.write("rewind", 5, skipped_batch=5)
  monkeypatch.setattr(history.jax, "process_index", lambda: 1)
  h1 = history.History(str(tmp_path))
  h1.write("rewind", 9, skipped_batch=9)   # written by process 0 (here: not at all)
  assert [r["skipped_batch"] for r in h1.rows()] == [5]
  assert h1.skipped_batches() == [5, 9]


def test_restored_params_sit_on_one_local_device(tmp_path):
  train(tmp_path, config(num_steps=2), source())
  params, step = checkpoint.restore_params(str(tmp_path), config(num_steps=2).to_dict())
  assert step == 2
  assert {x.sharding for x in jax.tree.leaves(params)} == {
      jax.sharding.SingleDeviceSharding(jax.local_devices()[0])}


@settings(deadline=None, max_examples=200)
@given(st.integers(1, 64), st.integers(1, 16))
def test_global_batch_fills_every_device_and_keeps_a_batch_they_divide(batch, devices):
  if batch >= devices and batch % devices:
    with pytest.raises(ValueError, match=f"use a multiple of {devices}"):
      sharding.global_batch_size(batch, devices)
    return
  b = sharding.global_batch_size(batch, devices)
  assert b % devices == 0   # every device gets the same number of examples
  if batch % devices == 0:
    assert b == batch       # a batch the devices divide is the user's: unchanged
  else:
    assert b == devices     # §3.2's batch 1 (regressors) or 4 (U-Net): one example per device


def test_fit_batch_to_devices_says_so_and_leaves_the_config_alone(monkeypatch):
  cfg = config()
  said = []
  monkeypatch.setattr(sharding.jax, "device_count", lambda: 8)
  fitted = sharding.fit_batch_to_devices(cfg, said.append)
  assert fitted.train.batch_size == 8 and cfg.train.batch_size == 4
  assert said == ["train.batch_size 4 is smaller than the 8 devices: training data-parallel "
                  "with one example per device, a global batch of 8"]
  monkeypatch.setattr(sharding.jax, "device_count", lambda: 2)
  assert sharding.fit_batch_to_devices(cfg, said.append) is cfg and len(said) == 1
  with pytest.raises(ValueError, match="at least 1"):
    sharding.global_batch_size(0, 2)
