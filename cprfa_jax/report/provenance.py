"""What a report rests on besides the checkpoints: the code (git commit, uncommitted changes),
the command and the config, in a form json.dump accepts."""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys


def _git(directory: str, *args) -> str | None:
  try:
    out = subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True,
                         timeout=30)
  except (OSError, subprocess.SubprocessError):   # no git on this machine
    return None
  return out.stdout if out.returncode == 0 else None


def git_state(directory: str) -> dict:
  """{"commit": HEAD's hash, "dirty": whether tracked or untracked files differ from it} of
  the repository holding `directory`; both None when git or the repository is missing."""
  head = _git(directory, "rev-parse", "HEAD")
  status = _git(directory, "status", "--porcelain") if head else None
  return {"commit": head.strip() if head else None,
          "dirty": None if status is None else bool(status.strip())}


def jsonable(value):
  """A JSON round trip: tuples become lists, anything json does not know becomes its str."""
  return json.loads(json.dumps(value, default=str))


def strict_json(value):
  """`value` with every NaN / Inf float replaced by None, so json.dump writes standard JSON
  (null: no value, e.g. an empty |yaw| bin or a subset with no detected vertex)."""
  if isinstance(value, dict):
    return {k: strict_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [strict_json(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def command_line() -> str:
  return shlex.join([sys.executable, *sys.argv])


def describe(code: dict) -> str:
  """One line for report.md."""
  if code.get("commit") is None:
    return "unknown (git or the repository is unavailable)"
  return code["commit"] + (" with uncommitted changes" if code.get("dirty") else "")
