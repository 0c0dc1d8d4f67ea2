"""The real-photo check on the smoke pipeline (conftest's `smoke_workdir`), on a photo built to
be its own mirror image: a rendered face beside its mirrored copy. Fitting the mirrored photo
at the mirrored box is then fitting the second face of the same photo, so each face's flip
consistency follows from the two faces' plain fits; the NME is checked against a NumPy loop
over the annotated points and box."""

import csv
import json

import cv2
import numpy as np
import pytest

from cprfa_jax import cli
from cprfa_jax.data import sampler
from cprfa_jax.data.datasets import set_config
from cprfa_jax.predict.predictor import BOX_SCALE, Predictor
from cprfa_jax.studies import real_photos as rp

pytestmark = pytest.mark.slow     # the smoke pipeline is trained first (shared with test_pipeline)


@pytest.fixture(scope="module")
def checked(smoke_workdir, tmp_path_factory):
  from pipeline_fixtures import ROOT  # pylint: disable=import-outside-toplevel
  config = cli.load_config(str(ROOT / "configs" / "smoke.py"))
  model3d = cli.load_model(config)
  pred = Predictor.from_workdir(config, str(smoke_workdir), model3d)
  s = config.data.image_size
  ex = sampler.generate(model3d, [3], set_config("synth-aflw", s), 4242)[0]
  f, pad = 3, 20
  face = np.repeat(np.repeat(ex["image"], f, 0), f, 1)
  half = np.full((s * f + 2 * pad, s * f + 2 * pad, 3), 90, np.uint8)
  half[pad:pad + s * f, pad:pad + s * f] = face
  photo = np.concatenate([half, half[:, ::-1]], 1)          # its own mirror image
  w = photo.shape[1]
  c, r = np.array([pad + s * f / 2] * 2), s * f / BOX_SCALE / 2
  box = np.array([c[0] - r, c[1] - r, c[0] + r, c[1] + r])
  gt = (ex["landmarks"] + 0.5) * f - 0.5 + pad               # the render's points in the photo
  d = tmp_path_factory.mktemp("photos")
  cv2.imwrite(str(d / "pair.png"), photo[..., ::-1])
  ann = {"pair.png": [{"landmarks_68": gt.tolist(), "box": box.tolist(), "annotation": "truth"},
                      {"landmarks_68": rp.flip_landmarks(gt, w).tolist(),
                       "box": rp.flip_box(box, w).tolist(), "annotation": "truth"}]}
  (d / "landmarks.json").write_text(json.dumps(ann))
  out = tmp_path_factory.mktemp("real_photos")
  summary = rp.run(pred, str(d), rp.read_annotations(d / "landmarks.json"), str(out),
                   log=lambda s: None)
  return dict(pred=pred, photo=photo, box=box, gt=gt, w=w, out=out, summary=summary)


def test_flip_consistency_of_a_mirror_symmetric_photo_is_the_two_faces_disagreement(checked):
  st = checked
  boxes = np.stack([st["box"], rp.flip_box(st["box"], st["w"])])
  faces = st["pred"].faces(st["photo"], boxes)
  rows = list(csv.DictReader(open(st["out"] / "faces.csv")))
  assert len(rows) == 2
  for i in range(2):
    other = faces[1 - i]["landmarks_68"]
    want = rp.box_nme(rp.flip_landmarks(other, st["w"]), faces[i]["landmarks_68"], boxes[i])
    # float32 fits of the same crop in batches of different shapes: ~1e-4 px apart
    assert float(rows[i]["flip_nme"]) == pytest.approx(want, abs=1e-5)
  # The NME: the fit's mean distance to the annotated points over sqrt(w h) of the annotated box.
  lm = faces[0]["landmarks_68"]
  side = np.sqrt((st["box"][2] - st["box"][0]) * (st["box"][3] - st["box"][1]))
  want = np.mean([np.hypot(*(lm[k] - st["gt"][k])) for k in range(68)]) / side
  assert float(rows[0]["nme"]) == pytest.approx(want, rel=1e-4)
  assert st["summary"]["annotated"]["faces"] == 2 and st["summary"]["human"]["faces"] == 2


def test_every_picture_and_table_is_written(checked):
  out = checked["out"]
  for name in ("pair_overlay.png", "pair_dafi.png", "contact_sheet.png", "summary.md",
               "summary.json", "faces.csv"):
    assert (out / name).exists(), name
  sheet = cv2.imread(str(out / "contact_sheet.png"))
  assert sheet.shape[1] > 2 * rp.TILE                      # two faces, each crop + DAFI
  assert "| annotated | 2 |" in (out / "summary.md").read_text()
