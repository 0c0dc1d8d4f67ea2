"""python -m cprfa_jax.predict: see `cprfa_jax.predict.cli`."""

from absl import app

from cprfa_jax import cli
from cprfa_jax.predict import cli as predict_cli

if __name__ == "__main__":
  predict_cli.define_flags()
  app.run(predict_cli.main, flags_parser=cli.flags_parser(predict_cli.SCRIPT, predict_cli.__doc__))
