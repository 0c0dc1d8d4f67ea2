"""§2.2's vertex selection: the C vertices the CPR reads, chosen once per workdir with the
trained U-Net on the reference set, and saved in workdir/dafi/selection.npz."""

from __future__ import annotations

import os

import jax
import numpy as np

from cprfa_jax import cpr, metrics, observe, workdirs
from cprfa_jax.data import streams


def select_vertices(decoded, model3d, c: int, tau: float, seed: int = 0) -> dict:
  """§2.2 on the reference set: p1 (detection frequency), p2 (accuracy: error < tau, in
  landmark-box-normalised units), the top C/2 per face half, and the 3-channel layout."""
  norm = np.asarray(metrics.box_size(decoded["landmarks"]))[:, None]          # (R, 1)
  err = np.linalg.norm(decoded["pred"] - decoded["gt"], axis=-1) / np.maximum(norm, 1e-9)
  p1, p2 = cpr.selection_probabilities(decoded["detected"], err, tau)
  left, right = cpr.select_vertices(p1, p2, np.asarray(model3d.mean_Vx3)[:, 0], c)
  return {"left": left, "right": right, "selected": cpr.selected_vertices(left, right),
          "layout": cpr.cpr_layout(c, seed), "p1": p1.astype(np.float32),
          "p2": p2.astype(np.float32)}


def ensure_selection(config, root, model3d, log=print) -> dict:
  """§2.2's vertex selection with the trained U-Net on the reference set (§3.1: the ~1% of the
  training images held out of training, `data.num_reference` of them; `data.streams`),
  computed once, then read back."""
  path = workdirs.selection_file(root)
  if not os.path.exists(path):
    ref = streams.reference_set(config, model3d, log)
    decoded = observe.decode_set(config, workdirs.params_of(config, root, "dafi"), model3d, ref,
                                 len(ref))
    sel = select_vertices(decoded, model3d, config.cpr.num_selected, config.eval.accuracy_tau,
                          config.seed)
    # Every process computes the same selection; one writes it (a shared workdir).
    if jax.process_index() == 0:
      tmp = path + ".tmp.npz"
      np.savez(tmp, **sel)
      os.replace(tmp, path)
      log(f"selected C = {config.cpr.num_selected} vertices on {len(ref)} reference images "
          f"({config.data.train}): {path}")
    else:
      return sel
  return workdirs.read_selection(root, config.cpr.num_selected)
