"""Train the CPRFA pipeline: the stages of --config.stages in order, each in workdir/<stage>.

    .venv/bin/python train.py --config configs/quickstart.py --workdir runs/quickstart
    .venv/bin/python train.py --config configs/tiny.py --workdir /tmp/tiny --config.stages='("dafi",)'

Stages: dafi (HS-U-Net + vertex selection), landmarks, cpr (CPR(C)), cpr_h (CPR-H), capu
(CPRFA's round 2); see cprfa_jax/pipeline.py. Any config value can be overridden with
--config.KEY=VALUE. Each stage resumes from its last checkpoint; a stage directory trained with
another config (of what that stage depends on) is refused.
"""

import functools
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from cprfa_jax import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file: configs/tiny.py, quickstart.py or paper.py (or your own).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's root directory: each stage trains in "
                               "WORKDIR/<stage>; evaluate.py takes the same root.")
flags.mark_flags_as_required(["config", "workdir"])


def user_errors() -> tuple:
  """Errors a user can act on: printed as one message, not as a traceback from deep inside."""
  # Imported here, with the pipeline (jax, orbax, the data stack), after the flags are parsed:
  # --help and a mistyped flag are answered without them (`cli.flags_parser`).
  # pylint: disable=import-outside-toplevel
  from cprfa_jax import mm
  from cprfa_jax.data.tfds_io import DatasetNotBuiltError
  from cprfa_jax.train.checkpoint import ConfigMismatchError
  from cprfa_jax.train.loop import NonFiniteLossError
  return (ConfigMismatchError, NonFiniteLossError, DatasetNotBuiltError, mm.ModelFormatError,
          ValueError, FileNotFoundError)


def main(argv):
  if len(argv) > 1:
    cli.fail("train.py", f"unexpected arguments {argv[1:]}; config values go as --config.KEY=VALUE")
  logging.set_verbosity(logging.ERROR)  # orbax's INFO/WARNING lines would bury the progress
  from cprfa_jax.train import pipeline, sharding  # pylint: disable=import-outside-toplevel
  errors = user_errors()
  config = _CONFIG.value
  try:
    sharding.maybe_initialize_distributed(config.distributed)
    pipeline.check_stages(config.stages)
    model3d = cli.load_model(config)
    pipeline.run(config, _WORKDIR.value, model3d, log=functools.partial(print, flush=True),
                 config_file=config_flags.get_config_filename(flags.FLAGS["config"]))
  except errors as e:
    print(f"train.py: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.flags_parser("train.py", __doc__))
