"""One JAX process of tests/e2e/test_multihost.py: trains one pipeline stage on the `tiny` config
with `data.train=tfds:NAME`, and records what it read.

    python tests/multihost_worker.py --stage dafi --root R --data_dir D --dataset NAME --out F

With JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set it joins a
multi-process run (`train.sharding.maybe_initialize_distributed`); XLA_FLAGS sets how many CPU
devices it has. It writes F (JSON): its process index and count, its devices, the dataset
indices it read (from the tfds set, whatever loader reads it) and, per training batch, a hash
of each example it received. With --init_out it also writes the stage's initial parameters
(the loop's own initialisation, a run of 0 steps) to that .npz file. With --optimizer sgd the
stage trains with clipped SGD on its own schedule instead of clipped Adam (see test_multihost's
compare_params for why the comparison needs it).
"""

import argparse
import hashlib
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from cprfa_jax.train import sharding  # noqa: E402  (imports jax only; no device touched yet)

sharding.maybe_initialize_distributed(False)   # multi-process when the environment says so

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from configs import tiny  # noqa: E402
from cprfa_jax import mm  # noqa: E402
from cprfa_jax.data import tfds_io  # noqa: E402
from cprfa_jax.train import loop, pipeline  # noqa: E402
from cprfa_jax.workdirs import stage_dir  # noqa: E402

# The key that identifies an example in a stage's host batch: the image for the image stages;
# the regressors' batches hold observations (made by the U-Net, so not bit-exact across batch
# shapes) and the true parameters, which are read or drawn, never computed.
IDENTITY_KEYS = {"dafi": ("image",), "cpr": ("alpha", "pose")}


def example_hash(arrays) -> str:
  h = hashlib.sha1()
  for a in arrays:
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:16]


class _ReadRecorder:
  """An ExampleSource that notes every index read from it (single and batched reads) while
  `on` holds a true value: during training, not §2.2's selection (which reads the reference
  examples on every process)."""

  def __init__(self, source, read: set, on: list):
    self._source, self._read, self._on = source, read, on

  def __len__(self):
    return len(self._source)

  def __getattr__(self, name):   # metadata, spec, path, head ...
    return getattr(self._source, name)

  def __getitem__(self, i):
    if self._on and isinstance(i, (int, np.integer)):
      self._read.add(int(i) % len(self._source))
    return self._source[i]

  def __getitems__(self, indices):
    indices = list(indices)
    if self._on:
      self._read.update(int(i) for i in indices)
    return self._source.__getitems__(indices)

  def __repr__(self):
    return repr(self._source)


class _BatchRecorder:
  """Wraps a stage's host batches, hashing each example of each batch the loop takes."""

  def __init__(self, it, keys, out: list):
    self._it, self._keys, self._out = it, keys, out

  def __iter__(self):
    return self

  def __next__(self):
    batch = next(self._it)
    keys = [k for k in self._keys if k in batch]
    n = len(batch[keys[0]])
    self._out.append([example_hash([batch[k][i] for k in keys]) for i in range(n)])
    return batch

  def close(self):
    if hasattr(self._it, "close"):
      self._it.close()


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--stage", required=True, choices=sorted(IDENTITY_KEYS))
  ap.add_argument("--root", required=True)
  ap.add_argument("--data_dir", required=True)
  ap.add_argument("--dataset", required=True)
  ap.add_argument("--steps", type=int, default=3)
  ap.add_argument("--batch_size", type=int, default=8)
  ap.add_argument("--out", required=True)
  ap.add_argument("--init_out", default=None)
  ap.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
  args = ap.parse_args()

  config = tiny.get_config()
  config.distributed = jax.process_count() > 1
  config.data.train = f"tfds:{args.dataset}"
  config.data.data_dir = args.data_dir
  if "loader_threads" in config.data:
    config.data.loader_threads = 1   # little read-ahead: the shards stay inside one epoch
  block = config.unet.train if args.stage == "dafi" else config.cpr.train
  block.update(batch_size=args.batch_size, num_steps=args.steps, checkpoint_every=2, log_every=1)

  read, batches, training = set(), [], []
  real_read, real_train = tfds_io.read_dataset, loop.train

  def read_dataset(*a, **kw):
    return _ReadRecorder(real_read(*a, **kw), read, training)

  def train(cfg, workdir, init_fn, loss_fn, stage_batches, **kw):
    if args.init_out:
      # The loop's own initialisation: a run of 0 steps in a scratch directory.
      scratch = pathlib.Path(args.root) / "init" / pathlib.Path(workdir).name
      state = real_train(dict_copy(cfg, num_steps=0), str(scratch), init_fn, loss_fn,
                         stage_batches, **kw)
      leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
      np.savez(args.init_out, **{jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves})
    recorded = lambda start: _BatchRecorder(stage_batches(start), IDENTITY_KEYS[args.stage],
                                            batches)
    training.append(True)
    try:
      return real_train(cfg, workdir, init_fn, loss_fn, recorded, **kw)
    finally:
      training.clear()

  tfds_io.read_dataset, loop.train = read_dataset, train
  if args.optimizer == "sgd":
    loop.make_optimizer = lambda optim_cfg, num_steps: optax.chain(
        optax.clip_by_global_norm(optim_cfg.grad_clip),
        optax.sgd(loop.make_schedule(optim_cfg, num_steps)))
  model3d = mm.load_model(config.model)
  lines = []

  def log(line):
    lines.append(line)
    print(line, flush=True)

  pipeline.run_stage(config, args.root, args.stage, model3d, log=log)
  record = dict(process=jax.process_index(), count=jax.process_count(),
                devices=jax.device_count(), local_devices=jax.local_device_count(),
                read=sorted(read), batches=batches, log="\n".join(lines),
                workdir=stage_dir(args.root, args.stage))
  pathlib.Path(args.out).write_text(json.dumps(record))
  print("OK", flush=True)


def dict_copy(cfg, **train):
  c = type(cfg)(cfg.to_dict())
  c.train.update(train)
  return c


if __name__ == "__main__":
  main()
