"""Throughput of the full CPR input set of Eq. 4: JAX (jit + vmap) against vectorised NumPy.

Both compute, for a batch of B examples with C = 2N selected vertices, the 3-channel
Λ_rxy^G - Λ_rxy^O, Λ_rz^G - Λ_rz^O, Λ_s^G / Λ_s^O and Λ_t (x, y) of `cprfa_jax.cpr`.
Prints one JSON object: samples/s for each and their ratio. Usage:

    python benchmarks/cpr_throughput.py [--batch 64] [--n 256] [--repeats 5]
"""

import argparse
import json
import os
import platform

import jax
import numpy as np

from _timing import median_time
from cprfa_jax import cpr

EPS = cpr.kernels.EPS


# ------------------------------------------------------------------ vectorised NumPy version

def _np_norm(v):
  n = np.sqrt((v * v).sum(-1))
  return np.where(n > EPS, n, 0.0)


def _np_unit(v):
  n = _np_norm(v)
  return v / np.where(n > 0, n, 1.0)[..., None]


def numpy_cpr_inputs(yo_BxCx2, yg_BxCx2, det_BxC, layout_3xN):
  """The same math as `cpr.batched_cpr_inputs`, batched over (B, 3) with broadcasting."""
  yo, yg, det = yo_BxCx2[:, layout_3xN], yg_BxCx2[:, layout_3xN], det_BxC[:, layout_3xN]
  n = layout_3xN.shape[1]
  pm = det[..., :, None] & det[..., None, :]
  k = (np.arange(n) + 1) % n

  def rz(y):
    e = y[..., None, :, :] - y[..., :, None, :]
    nrm = _np_norm(e)
    return np.where(pm & (nrm > 0), e[..., 1] / np.where(nrm > 0, nrm, 1.0), 0.0)

  def rxy(y):
    u_ij = _np_unit(y[..., :, None, :] - y[..., None, :, :])
    u_jk = _np_unit(y - y[..., k, :])
    return np.where(pm & det[..., k][..., None, :], (u_ij * u_jk[..., None, :, :]).sum(-1), 0.0)

  def s(y):
    return np.where(pm, _np_norm(y[..., :, None, :] - y[..., None, :, :]), 0.0)

  sg, so = s(yg), s(yo)
  ok = pm & (so > EPS)
  ratio = np.where(ok, sg / np.where(ok, so, 1.0), np.where(pm, 1.0, 0.0))
  t = np.where(pm[..., None, :, :],
               np.moveaxis(yo[..., :, None, :] - yg[..., None, :, :], -1, -3), 0.0)
  return (rxy(yg) - rxy(yo), rz(yg) - rz(yo), ratio, t)


# ------------------------------------------------------------------ timing

def main():
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--n", type=int, default=256, help="CPR side N (C = 2N vertices)")
  ap.add_argument("--repeats", type=int, default=5)
  args = ap.parse_args()
  b, n = args.batch, args.n
  c = 2 * n
  rng = np.random.default_rng(0)
  yo = rng.uniform(-1, 1, (b, c, 2)).astype(np.float32)
  yg = (yo + rng.normal(0, 0.05, yo.shape)).astype(np.float32)
  det = rng.random((b, c)) < 0.6
  layout = cpr.cpr_layout(c)

  # Outputs must agree before their speed means anything.
  jx = cpr.batched_cpr_inputs(yo[:2], yg[:2], det[:2], layout)
  nx = numpy_cpr_inputs(yo[:2], yg[:2], det[:2], layout)
  max_diff = max(float(np.abs(np.asarray(a) - b_).max()) for a, b_ in zip(jx, nx))

  yo_d, yg_d, det_d = (jax.device_put(x) for x in (yo, yg, det))
  t_jax = median_time(lambda: jax.block_until_ready(cpr.batched_cpr_inputs(yo_d, yg_d, det_d, layout)),
                args.repeats)
  t_np = median_time(lambda: numpy_cpr_inputs(yo, yg, det, layout), args.repeats)
  print(json.dumps({
      "benchmark": "cpr_throughput",
      "batch": b, "cpr_shape": [3, n, n], "vertices_C": c,
      "jax_samples_per_s": round(b / t_jax, 2),
      "numpy_samples_per_s": round(b / t_np, 2),
      "jax_over_numpy": round(t_np / t_jax, 2),
      "max_abs_diff": max_diff,
      "jax": jax.__version__, "numpy": np.__version__, "backend": jax.default_backend(),
      "cpus": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor(),
  }, indent=1))


if __name__ == "__main__":
  main()
