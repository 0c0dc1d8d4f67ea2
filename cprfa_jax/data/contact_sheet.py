"""A contact sheet of data set examples: image | DAFI | mask | landmarks, one row each.

    python -m cprfa_jax.data.contact_sheet --set synth-aflw --out sheet.png [--data-dir DIR]
    python -m cprfa_jax.data.contact_sheet --head --compare --out old_new.png

With --data-dir the persisted set is read (`data.datasets.build_set`); without, the same
examples are generated (the sets are deterministic). Landmarks: green visible, red hidden
(self-occluded or behind an occluder). --head renders heads around the faces (`mm.head`);
--compare puts each example's render with the set's own settings in front of its row.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from cprfa_jax.data import datasets
from cprfa_jax.mm import load_model
from cprfa_jax.report import draw


def example_row(ex) -> np.ndarray:
  """(H, 4W, 3) uint8 RGB: image, DAFI, mask, image with landmarks."""
  img = ex["image"]
  dafi = (np.clip(ex["dafi"], 0, 1) * 255).astype(np.uint8)
  mask = np.repeat(ex["mask"][..., None].astype(np.uint8) * 255, 3, -1)
  lm = img.copy()
  for (x, y), vis in zip(ex["landmarks"], ex["landmarks_visible"]):
    cv2.circle(lm, (int(round(x)), int(round(y))), max(1, img.shape[0] // 96),
               (0, 255, 0) if vis else (255, 0, 0), -1)
  row = np.concatenate([img, dafi, mask, lm], 1)
  cv2.putText(row, f"yaw {float(ex['yaw']):+.0f}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
              (255, 255, 255), 1, cv2.LINE_AA)
  return row


def contact_sheet(examples, columns: int = 2, before=None) -> np.ndarray:
  """Rows of `example_row` in `columns` columns, separated by a thin grey line; `before`: the
  same examples rendered otherwise, whose image leads each row."""
  rows = [example_row(ex) for ex in examples]
  if before is not None:
    rows = [np.concatenate([b["image"], r], 1) for b, r in zip(before, rows)]
  h, w, _ = rows[0].shape
  pad = lambda r: np.pad(r, ((0, 2), (0, 4), (0, 0)), constant_values=96)
  rows = [pad(r) for r in rows] + [np.zeros_like(pad(rows[0]))] * ((-len(rows)) % columns)
  cols = [np.concatenate(rows[i::columns], 0) for i in range(columns)]
  return np.concatenate(cols, 1)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--set", default="synth-aflw", choices=sorted(datasets.SETS))
  ap.add_argument("--out", default="contact_sheet.png")
  ap.add_argument("--data-dir", default=None)
  ap.add_argument("--num", type=int, default=16)
  ap.add_argument("--image-size", type=int, default=128)
  ap.add_argument("--model", default="synthetic")
  ap.add_argument("--head", action="store_true", help="render heads around the faces")
  ap.add_argument("--compare", action="store_true",
                  help="lead each row with the example as the set renders it")
  args = ap.parse_args(argv)
  model = load_model(args.model)
  overrides = {"head": True} if args.head else {}
  if args.data_dir and (overrides or args.compare):
    ap.error("--head / --compare render the examples: drop --data-dir")
  if args.data_dir:
    src = datasets.load_set(args.set, model, args.data_dir, args.image_size)
    exs = [src[i] for i in range(min(args.num, len(src)))]
  else:
    exs = list(datasets.examples(model, args.set, args.image_size, num=args.num, **overrides))
  before = (list(datasets.examples(model, args.set, args.image_size, num=args.num))
            if args.compare else None)
  sheet = contact_sheet(exs, before=before)
  draw.save_png(args.out, sheet)
  print(args.out)


if __name__ == "__main__":
  main()
