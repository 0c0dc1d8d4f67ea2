"""Does the processor move the published numbers? (issue 23: two fresh-clone quickstart runs of
the same code differed by up to 0.5 NME points, while two runs on one machine agree step for
step.) XLA compiles CPU code for the host's instruction set, so a machine with other vector
units (AVX-512 against AVX2, FMA or not) rounds differently, and training amplifies it.

This trains the smoke config's U-Net (`train.py --config configs/smoke.py`, stage dafi) as
subprocesses: twice as the host allows, and once with XLA told to use at most AVX (no AVX2, no
FMA: `XLA_FLAGS=--xla_cpu_max_isa=AVX`), with the same code, packages and seed, and compares the
logged training loss step by step. Prints one JSON object.

    python benchmarks/isa_drift.py [--steps 150] [--log_every 10]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNS = (("host_isa_1", ""), ("host_isa_2", ""), ("max_isa_avx", "--xla_cpu_max_isa=AVX"))


def train_losses(workdir, xla_flags, steps, log_every):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", **({"XLA_FLAGS": xla_flags} if xla_flags else {}))
  t0 = time.time()
  out = subprocess.run(
      [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/smoke.py"),
       "--workdir", str(workdir), "--config.stages=('dafi',)",
       f"--config.unet.train.num_steps={steps}", f"--config.unet.train.log_every={log_every}",
       f"--config.data.data_dir={workdir}/data"],
      env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
  if out.returncode:
    raise SystemExit(f"train.py failed ({xla_flags or 'host ISA'}):\n{out.stderr[-3000:]}")
  rows = [json.loads(line) for line in open(pathlib.Path(workdir) / "dafi" / "metrics.jsonl")]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}, round(time.time() - t0, 1)


def max_rel_diff(a, b):
  return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-30) for k in b)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--steps", type=int, default=150)
  ap.add_argument("--log_every", type=int, default=10)
  args = ap.parse_args()
  runs = {}
  with tempfile.TemporaryDirectory() as tmp:
    for name, flags in RUNS:
      losses, seconds = train_losses(pathlib.Path(tmp) / name, flags, args.steps, args.log_every)
      runs[name] = {"xla_flags": flags, "seconds": seconds, "loss": losses}
  a, b, c = (runs[n]["loss"] for n, _ in RUNS)
  first_diff = next((k for k in sorted(a) if a[k] != c[k]), None)
  from cprfa_jax.report import provenance   # pylint: disable=import-outside-toplevel
  env = provenance.environment()
  print(json.dumps({
      "benchmark": "isa_drift", "config": "configs/smoke.py (stage dafi)", "steps": args.steps,
      "processor": env["processor"], "isa": env["isa"], "packages": env["packages"],
      "host_runs_equal": a == b, "host_vs_avx_max_rel_loss_diff": max_rel_diff(c, a),
      "host_vs_avx_first_differing_logged_step": first_diff,
      "final_loss": {n: runs[n]["loss"][max(runs[n]["loss"])] for n, _ in RUNS},
      "runs": runs}, indent=1))


if __name__ == "__main__":
  main()
