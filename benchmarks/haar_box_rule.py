"""Measures `predict.boxes.RULES`: how OpenCV's Haar face boxes relate to 68-landmark boxes.

Synthetic faces (`data.sampler.generate`, the default synthetic model, synth-aflw framing with
yaw over [-90, 90] degrees, roll and pitch narrowed, no occluders) are rendered, resized by a
random factor and pasted at a random place into a larger noisy canvas, so each face's true
landmark box is known in canvas pixels. Each cascade (`boxes.raw_detections`: frontal, profile,
profile on the mirror image) runs as `detect_faces` runs it (equalised grey, scaleFactor 1.1,
minNeighbors 4); a detection whose IoU with the true box is >= --min-iou is a pair. Per cascade
kind, least squares over the pairs fits the rule of `boxes.detector_to_landmark_box`:
landmark width = sx w, height = sy h, centre offset = (dx w, dy h). The two profile kinds are
fitted jointly (the mirrored one with its x offset negated). Fit on even faces, held-out IoU on
odd ones, then the rule refitted on all. Prints one JSON object.

Needs an OpenCV with CascadeClassifier and its cascade files (4.x; OpenCV 5's wheels have
neither): with none it prints {"cascades": "unavailable", ...} and exits.

    python benchmarks/haar_box_rule.py [--num 192] [--size 256]
"""

import argparse
import json
import platform
import sys
import time

import cv2
import numpy as np

from cprfa_jax import mm
from cprfa_jax.data import sampler
from cprfa_jax.data.datasets import set_config
from cprfa_jax.predict import boxes

KINDS = ("frontal", "profile", "profile_mirrored")


def canvases(model, num, size, seed):
  """[(canvas uint8 RGB, true landmark box, yaw)]: each face resized by 0.6-1.4 and pasted at a
  random place in a canvas twice its render size."""
  cfg = set_config("synth-aflw", size, occlusion="none", balanced_yaw=False, max_roll=10.0,
                   max_pitch=15.0, photometric=0.5)
  rng = np.random.default_rng(seed)
  out = []
  for lo in range(0, num, 32):
    for ex in sampler.generate(model, range(lo, min(lo + 32, num)), cfg, stream=seed):
      k = float(np.exp(rng.uniform(np.log(0.6), np.log(1.4))))
      side = int(round(size * k))
      face = cv2.resize(ex["image"], (side, side), interpolation=cv2.INTER_AREA if k < 1
                        else cv2.INTER_LINEAR)
      canvas_side = 2 * size
      canvas = rng.integers(60, 200, (canvas_side, canvas_side, 3)).astype(np.uint8)
      canvas = cv2.GaussianBlur(canvas, (0, 0), 3)
      x0, y0 = (int(v) for v in rng.integers(0, canvas_side - side + 1, 2))
      canvas[y0:y0 + side, x0:x0 + side] = face
      # Pixel centres: p_face = (p + 0.5) * side / size - 0.5, then shifted by the paste place.
      lm = (ex["landmarks"].astype(np.float64) + 0.5) * (side / size) - 0.5 + [x0, y0]
      out.append((canvas, boxes.landmark_box(lm), float(ex["yaw"])))
  return out


def pairs_of(samples, min_iou):
  """{kind: [(detector box, true box, yaw)]} and the count of unpaired detections per kind."""
  pairs, unpaired = {k: [] for k in KINDS}, {k: 0 for k in KINDS}
  for canvas, true_box, yaw in samples:
    gray = cv2.equalizeHist(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY))
    for kind in KINDS:
      for det, _ in boxes.raw_detections(gray, kind):
        if boxes.iou(det, true_box) >= min_iou:
          pairs[kind].append((det, true_box, yaw))
        else:
          unpaired[kind] += 1
  return pairs, unpaired


def fit(pairs, mirrored):
  """(sx, sy, dx, dy) by least squares; mirrored[i] negates pair i's x offset."""
  det = np.array([p[0] for p in pairs])
  true = np.array([p[1] for p in pairs])
  w, h = det[:, 2] - det[:, 0], det[:, 3] - det[:, 1]
  tw, th = true[:, 2] - true[:, 0], true[:, 3] - true[:, 1]
  ox = ((true[:, 0] + true[:, 2]) - (det[:, 0] + det[:, 2])) / 2 * np.where(mirrored, -1, 1)
  oy = ((true[:, 1] + true[:, 3]) - (det[:, 1] + det[:, 3])) / 2
  ls = lambda a, b: float((a * b).sum() / (a * a).sum())  # b = c a
  return ls(w, tw), ls(h, th), ls(w, ox), ls(h, oy)


def mapped_iou(pairs, kind, rule):
  saved = dict(boxes.RULES)
  try:
    boxes.RULES.update({"frontal": rule} if kind == "frontal" else
                       {"profile": rule, "profile_mirrored": rule[:2] + (-rule[2], rule[3])})
    return [boxes.iou(boxes.detector_to_landmark_box(d, k), t) for k, d, t in pairs]
  finally:
    boxes.RULES.clear()
    boxes.RULES.update(saved)


def summary(values):
  v = np.asarray(values, np.float64)
  if not len(v):
    return None
  return {"mean": round(float(v.mean()), 3), "median": round(float(np.median(v)), 3),
          "p10": round(float(np.percentile(v, 10)), 3)}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--num", type=int, default=192)
  ap.add_argument("--size", type=int, default=256)
  ap.add_argument("--seed", type=int, default=11)
  ap.add_argument("--min-iou", type=float, default=0.3)
  args = ap.parse_args()
  head = {"opencv": cv2.__version__, "python": platform.python_version(), "num": args.num,
          "size": args.size, "min_iou": args.min_iou}
  if not boxes.haar_available():
    print(json.dumps(dict(head, cascades="unavailable", note="this OpenCV has no "
                          "CascadeClassifier or cascade files; run with opencv-python-headless<5 "
                          "(e.g. pip install --target DIR, then PYTHONPATH=DIR)"), indent=1))
    return 0
  t0 = time.time()
  model = mm.load_model("synthetic")
  samples = canvases(model, args.num, args.size, args.seed)
  pairs, unpaired = pairs_of(samples, args.min_iou)
  result = dict(head, model=f"synthetic ({model.num_vertices} vertices)", kinds={})
  for group in ("frontal", "profile"):
    kinds = ("frontal",) if group == "frontal" else ("profile", "profile_mirrored")
    rows = [(k, i % 2, p) for k in kinds for i, p in enumerate(pairs[k])]
    entry = {"detections": {k: len(pairs[k]) for k in kinds},
             "unpaired_detections": {k: unpaired[k] for k in kinds}}
    yaws = np.abs([p[2] for _, _, p in rows])
    entry["abs_yaw_deg_of_detections"] = summary(yaws)
    if len(rows) >= 4:
      all_pairs = [p[:2] for _, _, p in rows]
      mirrored = np.array([k == "profile_mirrored" for k, _, _ in rows])
      train = np.array([half == 0 for _, half, _ in rows])
      rule_train = fit([p for p, t in zip(all_pairs, train) if t], mirrored[train])
      rule = fit(all_pairs, mirrored)
      test = [(k, p[0], p[1]) for k, half, p in rows if half == 1]
      entry.update(
          rule=dict(zip(("sx", "sy", "dx", "dy"), (round(v, 3) for v in rule))),
          iou_raw_detector_box=summary([boxes.iou(d, t) for _, d, t in test]),
          iou_heldout_after_rule=summary(mapped_iou(test, group, rule_train)),
          iou_all_after_rule=summary(mapped_iou([(k, p[0], p[1]) for k, _, p in rows], group,
                                                rule)))
    else:
      entry["rule"] = None
      entry["note"] = "too few detections to fit: the cascades rarely fire on these renders"
    result["kinds"][group] = entry
  result["faces_found_by_any"] = int(sum(
      any(boxes.iou(d, t) >= args.min_iou for k in KINDS for d, t, _ in pairs[k]
          if t is true_box) for _, true_box, _ in samples))
  result["seconds"] = round(time.time() - t0, 1)
  print(json.dumps(result, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
