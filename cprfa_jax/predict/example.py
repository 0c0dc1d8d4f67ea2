"""A synthetic group photo to try `python -m cprfa_jax.predict` on, with its true landmarks.

    python -m cprfa_jax.predict.example --config configs/quickstart.py --out runs/photos

writes to --out: group.png (faces of the config's 3DMM at several poses and sizes on one
background), boxes.csv (their 68-landmark boxes, the CLI's --boxes format) and
landmarks.json (their true 68 landmarks, the CLI's --landmarks format: feeding them in shows
the plug-in path with a perfect detector). No real photo can be downloaded here; this is a
photo of the kind the pipeline was trained on, but larger than its crops and with several
faces, so it exercises cropping, batching and the mapping back to photo pixels.

Each face is rendered by the JAX renderer in its own square tile, framed as every data set is
(`data.sampler.frame_pose`: the landmark box is half the tile), and pasted where its mask is
set, far faces first.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from cprfa_jax import cli, render
from cprfa_jax.data import sampler, wild
from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import shape
from cprfa_jax.predict.predictor import BOX_SCALE
from cprfa_jax.report import draw

SCRIPT = "python -m cprfa_jax.predict.example"
# (centre x, centre y, landmark-box side) in photo pixels, (pitch, yaw, roll) in degrees.
FACES = (((95, 130, 96), (10, -50, 5)), ((245, 115, 120), (-5, 0, -12)),
         ((395, 135, 88), (15, 40, 8)), ((530, 150, 64), (0, 75, 0)))
PHOTO_HW = (260, 620)


def group_photo(model3d, faces=FACES, hw=PHOTO_HW, seed: int = 0, photometric: float = 0.5):
  """(photo (H, W, 3) uint8, true landmarks (F, 68, 2) photo pixels, boxes (F, 4)).
  faces: ((x, y, box side), (pitch, yaw, roll)) each; identity, expression, skin and light are
  drawn from `seed`; `photometric` is the strength of `data.wild.photometric`'s jitter, blur
  and noise over the whole photo."""
  rng = np.random.default_rng(seed)
  photo = wild.random_background(rng, hw)
  landmarks, layers = [], []
  regions = render.model_regions(model3d)     # skin regions of the model, shared by every face
  # One tile size for every face (the largest face's, at most the renderer's 512 px): one
  # compilation of the renderer; smaller faces are scaled down when pasted.
  tile = int(min(512, max([32] + [round(side * BOX_SCALE) for (_, _, side), _ in faces])))
  for i, ((cx, cy, side), angles) in enumerate(faces):
    verts = shape(model3d, jnp.asarray(rng.standard_normal(model3d.num_id), jnp.float32),
                  jnp.asarray(np.clip(0.7 * rng.standard_normal(model3d.num_exp), -3, 3),
                              jnp.float32))
    pose = sampler.frame_pose(verts[model3d.landmarks_68], angles, BOX_SCALE)
    k1, k2 = jax.random.split(jax.random.fold_in(jax.random.key(seed), i))
    albedo = render.vertex_albedo(regions,
                                  render.random_albedo_params(k1, model3d.num_vertices))
    out = render.render(model3d, verts, pose, (tile, tile), light=render.random_light(k2),
                        albedo=albedo)
    lm = np.asarray(projection.to_pixels(projection.project(verts[model3d.landmarks_68], pose),
                                         (tile, tile)))
    # Tile pixel p -> photo pixel (p + 0.5) f - 0.5 + (x0, y0) (pixel centres on integers), f
    # so the box has `side`, (x0, y0) so the tile's centre (tile - 1) / 2 lands on (cx, cy).
    f = side * BOX_SCALE / tile
    x0, y0 = cx + 0.5 - tile * f / 2, cy + 0.5 - tile * f / 2
    layers.append((side, np.asarray(out.rgb), np.asarray(out.mask), f, x0, y0))
    landmarks.append((lm + 0.5) * f - 0.5 + np.array([x0, y0]))
  h, w = hw
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  for _, rgb, mask, f, x0, y0 in sorted(layers, key=lambda l: l[0]):   # small (far) faces first
    # Nearest tile pixel of every photo pixel (inverse of the mapping above).
    u = np.round((xx - x0 + 0.5) / f - 0.5).astype(int)
    v = np.round((yy - y0 + 0.5) / f - 0.5).astype(int)
    inside = (u >= 0) & (v >= 0) & (u < mask.shape[1]) & (v < mask.shape[0])
    uc, vc = np.clip(u, 0, mask.shape[1] - 1), np.clip(v, 0, mask.shape[0] - 1)
    on = inside & mask[vc, uc]
    photo = np.where(on[..., None], rgb[vc, uc], photo)
  photo = wild.photometric(rng, photo, photometric)
  landmarks = np.stack(landmarks) if landmarks else np.zeros((0, 68, 2), np.float32)
  boxes = np.concatenate([landmarks.min(1), landmarks.max(1)], -1)
  return (photo * 255.0 + 0.5).astype(np.uint8), landmarks.astype(np.float32), boxes


FLAGS = flags.FLAGS


def define_flags():
  # Claimed only when run as a script: importing the module (tests, notebooks, other
  # scripts) must not claim --config, which several scripts define.
  config_flags.DEFINE_config_file("config", "configs/quickstart.py",
                                  "Its model is rendered.")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.DEFINE_integer("seed", 0, "Identities, expressions, skin, light, background.")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  if not FLAGS.out:
    cli.fail(SCRIPT, f"--out is required (see {SCRIPT} --help)")
  model3d = cli.load_model(FLAGS.config)
  photo, landmarks, boxes = group_photo(model3d, seed=FLAGS.seed)
  os.makedirs(FLAGS.out, exist_ok=True)
  draw.save_png(os.path.join(FLAGS.out, "group.png"), photo)
  with open(os.path.join(FLAGS.out, "boxes.csv"), "w", encoding="utf-8") as f:
    f.write("image,x0,y0,x1,y1\n")
    for b in boxes:
      f.write("group.png," + ",".join(f"{v:.2f}" for v in b) + "\n")
  with open(os.path.join(FLAGS.out, "landmarks.json"), "w", encoding="utf-8") as f:
    json.dump({"group.png": np.round(landmarks, 2).tolist()}, f)
  print(f"{len(boxes)} faces -> {FLAGS.out}/group.png, boxes.csv, landmarks.json "
        "(the true landmarks)", file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.flags_parser(SCRIPT, __doc__))
