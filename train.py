"""Train a CPRFA stage.

    python train.py --config configs/quickstart.py --workdir runs/quickstart
    python train.py --config configs/tiny.py --workdir /tmp/tiny --config.train.num_steps=20

Any config value can be overridden with --config.KEY=VALUE. A run resumes from the last
checkpoint in --workdir; a workdir trained with another config is refused.
"""

import functools
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from cprfa_jax import mm
from cprfa_jax.data.tfds_io import DatasetNotBuiltError
from cprfa_jax.stages import dafi
from cprfa_jax.train import sharding
from cprfa_jax.train.checkpoint import ConfigMismatchError
from cprfa_jax.train.loop import NonFiniteLossError

# Errors a user can act on: printed as one message, not as a traceback from deep inside.
USER_ERRORS = (ConfigMismatchError, NonFiniteLossError, DatasetNotBuiltError,
               mm.ModelFormatError, ValueError)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and reports.")
flags.mark_flags_as_required(["config", "workdir"])

STAGES = {"dafi": dafi.run}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; use --config.KEY=VALUE")
  logging.set_verbosity(logging.WARNING)  # orbax's INFO lines would bury the progress
  config = _CONFIG.value
  sharding.maybe_initialize_distributed(config.distributed)
  if config.stage not in STAGES:
    raise app.UsageError(f"--config.stage={config.stage!r}: choose from {sorted(STAGES)}")
  try:
    model3d = mm.load_model(config.model)
    STAGES[config.stage](config, _WORKDIR.value, model3d, log=functools.partial(print, flush=True))
  except USER_ERRORS as e:
    print(f"train.py: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
