"""The HS-U-Net stage end to end on the `tiny` config: training, resuming, sharding, reports."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import tiny
from cprfa_jax import mm, workdirs
from cprfa_jax.nets import build, initialise
from cprfa_jax.nets.hs_unet import HSUNet
from cprfa_jax.train.stages.dafi import downsample_targets, hs_unet_loss
from cprfa_jax.train import checkpoint, loop
from cprfa_jax.train.stages import dafi

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(**train):
  c = workdirs.stage_config(tiny.get_config(), "dafi")
  c.train.update(train)
  return c


@pytest.fixture(scope="module")
def model3d():
  return mm.load_model(tiny.get_config().model)


def test_outputs_at_three_scales_and_loss_targets():
  net = HSUNet((4, 8, 16))
  x = np.zeros((2, 32, 32, 3), np.float32)
  params = initialise.init_jitted(net.init, jax.random.PRNGKey(0), x)
  outs = jax.jit(net.apply)(params, x)
  assert [o[0].shape for o in outs] == [(2, 8, 8, 3), (2, 16, 16, 3), (2, 32, 32, 3)]
  assert all(float(o[0].min()) >= 0 and float(o[0].max()) <= 1 for o in outs)
  # Down-sampled targets: a block half inside the mask is a soft 0.5 and no DAFI target.
  mask = np.zeros((1, 4, 4), bool)
  mask[0, :2, :] = True
  mask[0, 2, :2] = True
  d = np.random.default_rng(0).random((1, 4, 4, 3)).astype(np.float32)
  gt_dafi, frac, weight = downsample_targets(d, mask, 2)
  np.testing.assert_allclose(frac[0], [[1, 1], [0.5, 0]])
  np.testing.assert_allclose(weight[0], [[1, 1], [0, 0]])
  np.testing.assert_allclose(gt_dafi[0, 0, 0], d[0, :2, :2].reshape(-1, 3).mean(0), rtol=1e-6)
  # A perfect prediction has zero L1 at every scale.
  perfect = [(downsample_targets(d, mask, f)[0], np.where(downsample_targets(d, mask, f)[1] > 0.5, 30.0, -30.0))
             for f in (2, 1)]
  _, m = hs_unet_loss(perfect, d, mask)
  assert float(m["l1_1/1"]) == 0 and float(m["l1_1/2"]) == 0


def test_a_few_steps_lower_the_loss(tmp_path, model3d):
  """Same batch every step: the loss must fall (overfitting one batch is the minimum bar)."""
  config = tiny_config(num_steps=20, log_every=1, checkpoint_every=100)
  config.optim.lr, config.optim.lr_end = 1e-2, 1e-3
  batch = next(dafi.train_batches(config, model3d)(0))
  net = build.unet_network(config)
  init_fn = lambda rng, b: net.init(rng, build.preprocess(b["image"][:1]))["params"]
  loss_fn = lambda p, b, r: hs_unet_loss(net.apply({"params": p}, build.preprocess(b["image"])),
                                         b["dafi"], b["mask"])

  def same_batch(start):
    while True:
      yield batch

  loop.train(config, str(tmp_path), init_fn, loss_fn, same_batch, log=lambda s: None)
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  losses = [r["loss"] for r in rows]
  assert len(losses) == 20 and np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < 0.7 * losses[0]


def _state_leaves(workdir, config, step):
  params, _ = checkpoint.restore_params(workdir, config.to_dict(), step)
  return jax.tree.leaves(params)


def test_stop_and_resume_continue_exactly(tmp_path, model3d):
  """A run killed after step 4 (checkpoint at 3) resumes and ends where an uninterrupted one
  does: same parameters and optimizer state."""
  full, split = tmp_path / "full", tmp_path / "split"
  config = tiny_config(num_steps=6, checkpoint_every=3)
  dafi.run(config, str(full), model3d, log=lambda s: None)

  def interrupted(start):
    it = dafi.train_batches(config, model3d)(start)
    for _ in range(start + 1, 5):   # batches for steps start+1 .. 4, then a crash
      yield next(it)
    it.close()
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    dafi.run(config, str(split), model3d, log=lambda s: None, batches=interrupted)
  logs = []
  dafi.run(config, str(split), model3d, log=logs.append)
  assert logs[0].startswith("resumed from step 3")
  c = tiny_config()
  for a, b in zip(_state_leaves(full, c, 6), _state_leaves(split, c, 6)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # The optimizer state too: restore the whole states and compare every leaf.
  import orbax.checkpoint as ocp
  states = []
  for d in (full, split):
    mngr = ocp.CheckpointManager(d / "checkpoints", item_names=("state", "config"),
                                 options=ocp.CheckpointManagerOptions(read_only=True))
    states.append(mngr.restore(6, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"])
    mngr.close()
  for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  assert int(states[1]["step"]) == 6


def test_checkpoint_from_another_config_is_refused(tmp_path, model3d):
  dafi.run(tiny_config(num_steps=2, checkpoint_every=2), str(tmp_path), model3d, log=lambda s: None)
  other = tiny_config(num_steps=4)
  other.unet.widths = (8, 16, 32)
  with pytest.raises(checkpoint.ConfigMismatchError, match="unet.widths"):
    dafi.run(other, str(tmp_path), model3d, log=lambda s: None)


def test_bad_config_values_are_named():
  c = tiny_config()
  c.data.image_size = 30
  with pytest.raises(ValueError, match="image_size=30"):
    dafi.validate(c)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, model3d):
  config = tiny_config(num_steps=6, log_every=1, checkpoint_every=2)
  net = build.unet_network(config)
  init_fn = lambda rng, b: net.init(rng, build.preprocess(b["image"][:1]))["params"]

  def loss_fn(p, b, r):
    loss, m = hs_unet_loss(net.apply({"params": p}, build.preprocess(b["image"])), b["dafi"], b["mask"])
    step = b["step"][0]
    return jax.numpy.where(step >= 3, np.nan, loss), m

  def batches(start):
    it = dafi.train_batches(config, model3d)(start)
    k = start
    while True:
      k += 1
      yield dict(next(it), step=np.full((config.train.batch_size,), k))

  with pytest.raises(loop.NonFiniteLossError, match="last good checkpoint is step 2"):
    loop.train(config, str(tmp_path), init_fn, loss_fn, batches, log=lambda s: None)
  params, step = checkpoint.restore_params(str(tmp_path), config.to_dict())
  assert step == 2 and all(np.isfinite(x).all() for x in jax.tree.leaves(params))


SHARDED_SCRIPT = r"""
import os, sys
sys.path.insert(0, {root!r})
import jax, numpy as np
from configs import tiny
from cprfa_jax import mm, workdirs
from cprfa_jax.train.stages import dafi
from cprfa_jax.train.stages.dafi import hs_unet_loss
from cprfa_jax.train import sharding
from cprfa_jax.nets import build, initialise
assert jax.device_count() == 8, jax.devices()
config = workdirs.stage_config(tiny.get_config(), "dafi")
config.train.batch_size = 8
batch = next(dafi.train_batches(config, mm.load_model(config.model))(0))
net = build.unet_network(config)
params = initialise.init_jitted(lambda k: net.init(k, build.preprocess(batch["image"][:1]))["params"],
                                jax.random.PRNGKey(0))
def loss(p, b):
  return hs_unet_loss(net.apply({{"params": p}}, build.preprocess(b["image"])), b["dafi"], b["mask"])[0]
grad_fn = jax.value_and_grad(loss)
one_l, one_g = jax.jit(grad_fn)(params, batch)
mesh = sharding.make_mesh()
b8 = sharding.shard_batch(batch, mesh)
assert len(b8["image"].sharding.device_set) == 8
p8 = jax.device_put(params, sharding.replicated(mesh))
l8, g8 = jax.jit(grad_fn)(p8, b8)
# Float32 reductions in another order (8 partial sums, then a cross-device sum): each gradient
# element is a sum over B*H*W terms, so its rounding error is ~sqrt(B*H*W) eps of the leaf's
# scale. Element-wise comparison is wrong for this: elements where the terms cancel can differ
# by 1e-3 relative (measured; both runs are equally close to a float64 reference, ~1e-6 in norm).
# Compare each leaf's difference in norm against its norm, with a 10x margin on that bound.
n_terms = batch["image"].shape[0] * batch["image"].shape[1] * batch["image"].shape[2]
tol = 10 * np.sqrt(n_terms) * np.finfo(np.float32).eps
np.testing.assert_allclose(l8, one_l, rtol=tol)
for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(one_g)):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert np.linalg.norm(a - b) <= tol * np.linalg.norm(b), (np.linalg.norm(a - b) / np.linalg.norm(b), tol)
print("OK", float(one_l), float(l8))
"""


def test_sharded_step_on_8_simulated_devices_matches_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT.format(root=str(ROOT))], env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.startswith("OK")
