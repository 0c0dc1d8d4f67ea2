"""What train.py and evaluate.py share on the command line.

absl exits with status 1 on `--help` and lists only the script's own flags, and ml_collections
answers a mistyped `--config.KEY` with a 50-line traceback. `flags_parser` (for
`app.run(main, flags_parser=...)`) instead prints a help that lists every config key with its
default and exits 0, and turns any flag error into one line on stderr with exit status 2.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import shlex
import sys

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELP_FLAGS = ("-h", "-help", "--help", "-helpshort", "--helpshort", "-?", "-helpfull",
              "--helpfull")
DEFAULT_CONFIG = "configs/quickstart.py"
CONFIGS = ("configs/tiny.py (tests, seconds)", "configs/quickstart.py (this CPU, ~30 min)",
           "configs/paper.py (§3.2's settings, GPUs)")
# Set by stage_config for each stage's checkpoint, never by users.
INTERNAL_KEYS = ("stage",)


def fail(script: str, message: str) -> None:
  """One line on stderr, exit status 2 (a usage error)."""
  print(f"{script}: {message}", file=sys.stderr)
  sys.exit(2)


def _config_arg(argv) -> str | None:
  """The value of --config (either `--config FILE` or `--config=FILE`), if given."""
  for i, a in enumerate(argv):
    if a in ("--config", "-config") and i + 1 < len(argv):
      return argv[i + 1]
    if a.startswith(("--config=", "-config=")):
      return a.split("=", 1)[1]
  return None


def _overrides(argv) -> list[str]:
  """The dotted keys of the --config.KEY=VALUE (or --config.KEY VALUE) arguments."""
  return [a.split("=", 1)[0].split(".", 1)[1] for a in argv
          if a.startswith(("--config.", "-config."))]


def load_config(path: str):
  """`get_config()` of a config file (as config_flags loads it; `configs.common` must import)."""
  if REPO not in sys.path:
    sys.path.insert(0, REPO)
  file, *arg = path.split(":", 1)
  spec = importlib.util.spec_from_file_location("help_config", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*arg)


def config_keys(config, prefix="") -> list[tuple[str, object]]:
  """(dotted key, value) of every leaf, in the config's order."""
  out = []
  for k, v in config.items():
    key = f"{prefix}{k}"
    if hasattr(v, "items"):
      out.extend(config_keys(v, key + "."))
    elif key not in INTERNAL_KEYS:
      out.append((key, v))
  return out


def _flag_value(v) -> str:
  """The value as one would type it after --config.KEY= in a shell."""
  if isinstance(v, str):
    return shlex.quote(v)
  if isinstance(v, (tuple, list)):   # ("a", "b") in single quotes: no escapes needed
    items = [f'"{x}"' if isinstance(x, str) else repr(x) for x in v]
    return "'(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")'"
  return str(v)


def help_text(script: str, argv, doc: str) -> str:
  path = _config_arg(argv)
  if not (path and os.path.isfile(path.split(":")[0])):
    path = DEFAULT_CONFIG
  try:
    keys = config_keys(load_config(path if os.path.exists(path.split(":")[0])
                                   else os.path.join(REPO, path)))
    listing = [f"  --config.{k}={_flag_value(v)}" for k, v in keys]
  except Exception as e:  # a broken config must not hide the help
    listing = [f"  (could not read {path}: {type(e).__name__}: {one_line(str(e))})"]
  return "\n".join([
      doc.strip(), "",
      "Flags:",
      *[l for l in flags.FLAGS.main_module_help().splitlines() if l.startswith(" ")], "",
      "Configs: " + "; ".join(CONFIGS) + ".",
      f"Config keys (override any with --config.KEY=VALUE; defaults of {path};",
      "configs/common.py says what each one does; each stage's schedule is its block's",
      "train / optim: unet.* the U-Net's, lmnet.* the landmark network's, cpr.* the regressors'):",
      *listing, "",
      f"Example: .venv/bin/python {script} --config configs/tiny.py --workdir /tmp/tiny "
      "--config.unet.train.num_steps=20"])


def unknown_key_message(config_path, argv, error) -> str:
  """Names the override whose key the config does not have, with the closest existing key."""
  try:
    config = load_config(config_path)
  except Exception:
    config = None
  for key in _overrides(argv):
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
      if config is None or not hasattr(node, "keys"):
        break
      if part not in node:
        here = ".".join(["config", *parts[:i]])
        close = difflib.get_close_matches(part, list(node.keys()), n=1)
        rest = "".join("." + p for p in parts[i + 1:])
        hint = (f"did you mean --{here}.{close[0]}{rest}?" if close else
                f"{here} has {', '.join(k for k in node.keys() if k not in INTERNAL_KEYS)}")
        return f"--config.{key}: {here} has no key {part!r}; {hint} (--help lists every key)"
      node = node[part]
  # ml_collections quotes its KeyError message: "'num_step'\nDid you mean ...".
  return one_line(str(error).strip("'\"").replace("\\n", "\n")) + " (--help lists every key)"


def one_line(message: str) -> str:
  """A (possibly multi-line) error message as one line; for a traceback, its last line."""
  lines = [l.strip() for l in str(message).splitlines() if l.strip()]
  if any(l.startswith("Traceback") for l in lines):
    return lines[-1]
  return "; ".join(lines)


def flags_parser(script: str, doc: str):
  """A `flags_parser` for `absl.app.run`: `doc` (the script's docstring) heads the help."""

  def parse(argv):
    if any(a in HELP_FLAGS for a in argv[1:]):
      print(help_text(script, argv, doc))
      if any(a.endswith("helpfull") for a in argv[1:]):
        print("\nEvery flag (absl's included):\n" + flags.FLAGS.get_help())
      sys.exit(0)
    path = _config_arg(argv)
    if path is not None and not os.path.isfile(path.split(":")[0]):
      fail(script, f"--config {path}: no such file (from {os.getcwd()}); choose one of "
                   f"{', '.join(c.split(' ')[0] for c in CONFIGS)} or your own")
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      fail(script, one_line(str(e)) + f" (see {script} --help)")
    except (AttributeError, KeyError) as e:   # ml_collections: a --config.KEY it does not have
      fail(script, unknown_key_message(path, argv, e))

  return parse


def load_model(config):
  """The config's 3DMM; a bad `model` spec or file is a ModelFormatError naming the flag."""
  from cprfa_jax import mm  # pylint: disable=import-outside-toplevel
  try:
    return mm.load_model(config.model)
  except mm.ModelFormatError as e:
    raise mm.ModelFormatError(f"--config.model={config.model}: {e}") from None
