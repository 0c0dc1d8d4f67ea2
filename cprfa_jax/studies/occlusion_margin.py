"""Claim (c) of issue 12 on a trained pipeline's own DAFIs: does CPRFA's margin over the online
LM fit grow with occlusion? Reads evaluate.py's per-image results (`per_image_SET.csv`) and the
set's ground truth, bins the images by the share of the face hidden by occluders, and prints per
bin the mean NME of each method and B - A (positive: A is better). The sets store only the
visible face mask; the whole face's is rendered again from the example's true shape and pose
(`occluded_share`), so self-occlusion (yaw) does not count as occlusion.

    python -m cprfa_jax.studies.occlusion_margin --config configs/repro.py --workdir runs/repro

Writes occlusion_margin.md and occlusion_margin.json into the workdir. The bins are fixed in
advance (--edges), not fitted to the results; a bin with few images says how few.
"""

from __future__ import annotations

import csv
import json
import os

from absl import app, flags
from ml_collections import config_flags
import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import cli, render
from cprfa_jax.data import datasets
from cprfa_jax.mm.model import shape
from cprfa_jax.report import markdown as markdown_lib

SCRIPT = "python -m cprfa_jax.studies.occlusion_margin"
CPRFA, LM = "CPRFA (CPR-H + CAPU)", "Online LM"


def read_per_image(path) -> dict[str, np.ndarray]:
  """evaluate.py's per_image_SET.csv as {column: array}; `nme[METHOD]` columns as floats."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: run evaluate.py on this workdir first")
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f"{path} has no rows: evaluate.py scored no image")
  return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def occluded_share(model3d, examples, batch: int = 32) -> np.ndarray:
  """Per example, the share of its face's pixels that occluders hide: 1 - |stored mask| /
  |mask of the same face rendered without occluders| (0 for a face with no pixel)."""
  out = []
  for lo in range(0, len(examples), batch):
    exs = examples[lo:lo + batch]
    verts = jax.vmap(shape, in_axes=(None, 0, 0))(
        model3d, jnp.asarray(np.stack([e["alpha_id"] for e in exs])),
        jnp.asarray(np.stack([e["alpha_exp"] for e in exs])))
    hw = exs[0]["mask"].shape
    whole = np.asarray(render.render_batch(model3d, verts, np.stack([e["pose"] for e in exs]),
                                           hw).mask)
    seen = np.stack([e["mask"] for e in exs])
    face = whole.sum((1, 2))
    out.append(np.where(face > 0, 1.0 - (seen & whole).sum((1, 2)) / np.maximum(face, 1), 0.0))
  return np.concatenate(out)


def margin_by_bin(nme_a_N, nme_b_N, hidden_N, edges) -> list[dict]:
  """Per bin [edges[k], edges[k+1]) (the last one closed): image count, mean NME of A and of B,
  and the margin mean(B) - mean(A). Empty bins are kept, with None means."""
  nme_a_N, nme_b_N, hidden_N = map(np.asarray, (nme_a_N, nme_b_N, hidden_N))
  rows = []
  for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
    last = k == len(edges) - 2
    inside = (hidden_N >= lo) & ((hidden_N <= hi) if last else (hidden_N < hi))
    n = int(inside.sum())
    a = float(nme_a_N[inside].mean()) if n else None
    b = float(nme_b_N[inside].mean()) if n else None
    rows.append(dict(lo=float(lo), hi=float(hi), n=n, a=a, b=b,
                     margin=None if n == 0 else b - a))
  return rows


def _fmt(x):
  return "–" if x is None else f"{100 * x:.2f}"


def markdown(results: dict, a: str, b: str) -> str:
  lines = [f"Margin {b} − {a} (landmark NME %, positive: {a} is better), images binned by the "
           "share of the face hidden by occluders.", ""]
  for name, rows in results.items():
    lines += [f"### {name}", "", markdown_lib.table(
        ["face occluded", "images", a, b, "margin"],
        [[f"{100 * r['lo']:.0f}–{100 * r['hi']:.0f}%", str(r["n"]), _fmt(r["a"]), _fmt(r["b"]),
          _fmt(r["margin"])] for r in rows])]
    lines.append("")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    cli.fail(SCRIPT, f"unexpected arguments {argv[1:]}")
  fl = flags.FLAGS
  config, work, a, b = fl.config, fl.workdir, fl.a, fl.b
  edges = [float(e) for e in fl.edges]
  model3d = cli.load_model(config)
  results = {}
  for name in config.data.eval_sets:
    if name not in datasets.SETS:
      print(f"{SCRIPT}: skipping {name}: only the synthetic sets' faces can be rendered again")
      continue
    per = read_per_image(os.path.join(work, f"per_image_{name}.csv"))
    for m in (a, b):
      if f"nme[{m}]" not in per:
        cli.fail(SCRIPT, f"per_image_{name}.csv has no method {m!r}; its columns: {list(per)}")
    src = datasets.load_set(name, model3d, config.data.data_dir, config.data.image_size)
    hidden = occluded_share(model3d, [src[int(i)] for i in per["index"]])
    results[name] = margin_by_bin(per[f"nme[{a}]"], per[f"nme[{b}]"], hidden, edges)
  text = markdown(results, a, b)
  print(text)
  with open(os.path.join(work, "occlusion_margin.md"), "w") as f:
    f.write(text)
  with open(os.path.join(work, "occlusion_margin.json"), "w") as f:
    json.dump(dict(a=a, b=b, edges=edges, sets=results), f, indent=1)


def define_flags():
  # Defined only when run as a script: importing the module (tests, notebooks) must not claim
  # --config, which other scripts' modules define too.
  config_flags.DEFINE_config_file("config", None, "The config the pipeline was trained with.")
  flags.DEFINE_string("workdir", None, "The evaluated pipeline (evaluate.py --workdir).")
  flags.DEFINE_list("edges", ["0", "0.05", "0.25", "1"],
                    "Bin edges of the occluded share of the face.")
  flags.DEFINE_string("a", CPRFA, "The method whose margin is measured.")
  flags.DEFINE_string("b", LM, "The method it is compared with.")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.flags_parser(SCRIPT, __doc__))
