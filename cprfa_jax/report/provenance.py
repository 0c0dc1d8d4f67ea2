"""What a report rests on besides the checkpoints: the code (git commit, uncommitted changes),
the command, the config, and the packages and machine that computed it, in a form json.dump
accepts."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys

# The distributions whose versions a number rests on (issue 23): the numerics (jax, jaxlib,
# flax, optax, numpy, scipy), what reads and writes the data and checkpoints, and OpenCV.
# Distribution names, as pip and the lock file spell them.
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy",
            "opencv-python-headless", "grain", "tensorflow-datasets")


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


def package_versions(names=PACKAGES) -> dict:
  """{distribution: installed version, or None where it is not installed}."""
  out = {}
  for name in names:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def _cpuinfo(field: str) -> str | None:
  """The first `field : value` of /proc/cpuinfo (Linux), or None where there is none."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith(field):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return None


def _cpu_model() -> str:
  # XLA compiles for the host's instruction set (AVX2, FMA, AVX-512 ...), so the processor is
  # part of what a CPU number rests on; /proc/cpuinfo names it where platform.processor() is
  # empty (Linux).
  return _cpuinfo("model name") or platform.processor() or platform.machine()


def _isa() -> list[str]:
  """The vector instruction sets the CPU reports (/proc/cpuinfo flags; [] where unreadable)."""
  return sorted(x for x in (_cpuinfo("flags") or "").split()
                if x.startswith(("avx", "fma", "amx")))


def environment() -> dict:
  """The packages, Python, processor and JAX devices behind a run's numbers."""
  import jax   # pylint: disable=import-outside-toplevel  (report.md needs no jax to read)
  devices = jax.devices()
  return {"python": platform.python_version(), "packages": package_versions(),
          "platform": platform.platform(), "processor": _cpu_model(),
          "isa": _isa(), "cpu_count": os.cpu_count(),
          "devices": {"backend": jax.default_backend(), "kind": devices[0].device_kind,
                      "count": len(devices), "processes": jax.process_count()}}


def describe_environment(env: dict) -> str:
  """One line for report.md."""
  pk = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
  d = env["devices"]
  return (f"Python {env['python']}; {pk}; {d['count']} {d['backend']} device(s) ({d['kind']}) "
          f"on {env['processor']} ({env['cpu_count']} cores), {env['platform']}")


def isa_summary(isa) -> str:
  """'AVX-512 + FMA', 'AVX2 + FMA', ...: the widest vector set XLA's CPU backend may use."""
  isa = set(isa or ())
  widest = ("AVX-512" if any(x.startswith("avx512") for x in isa) else
            "AVX2" if "avx2" in isa else "AVX" if "avx" in isa else "no AVX")
  return widest + (" + FMA" if "fma" in isa else "")
