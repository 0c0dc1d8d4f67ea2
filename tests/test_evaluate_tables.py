"""Table 1's scoring (evaluate.table1), §2.2's vertex selection (train.selection) and Table 2's
rows (evaluate.methods) on hand-built decoded sets, against naive loops: no trained pipeline.

Tables round to 0.01 %; the naive references run in float64 and the code in float32, so a value
may round to the other side of a last digit: compare to 0.01 (plus float32's share)."""

import math

import numpy as np
import pytest

from cprfa_jax.evaluate import methods, table1
from cprfa_jax.mm import synthetic_model
from cprfa_jax.train import selection

DIGIT = 0.01 + 1e-4
YAW = np.array([10.0, -20.0, 25.0, 40.0, -50.0, 55.0, 70.0, -80.0, 85.0])   # 3 per |yaw| bin


def _bin(yaw):
  a = abs(yaw)
  return 0 if a <= 30 else (1 if a <= 60 else 2)


def _decoded(rng, n_vertices=30):
  """A decoded set: every image's landmarks span a 40 x 10 px box (normaliser 20 px)."""
  n = len(YAW)
  lm = np.zeros((n, 68, 2))
  lm[:, :, 0] = np.linspace(0, 40, 68)
  lm[:, :, 1] = np.linspace(0, 10, 68)
  gt = rng.uniform(0, 64, (n, n_vertices, 2))
  pred = gt + rng.normal(0, 1.5, gt.shape)
  det = rng.random((n, n_vertices)) < 0.6
  det[4] = False                          # an image where nothing is detected
  pred[2, 3] = gt[2, 3] + [30.0, 0.0]     # a gross mismatch: image 2 fails on NME
  det[2, 3] = True
  return {"pred": pred.astype(np.float32), "gt": gt.astype(np.float32), "detected": det,
          "landmarks": lm.astype(np.float32), "yaw": YAW}


def _naive_row(dec, subset):
  nme, rate = [], []
  for i in range(len(YAW)):
    d = [v for v in subset if dec["detected"][i, v]]
    rate.append(len(d) / len(subset))
    err = [math.dist(dec["pred"][i, v], dec["gt"][i, v]) for v in d]
    nme.append(sum(err) / len(err) / 20.0 if err else math.nan)
  bins = [[j for j in range(len(YAW)) if _bin(YAW[j]) == b] for b in range(3)]
  nme_bins = [np.nanmean([nme[j] for j in b]) for b in bins]
  adr_bins = [np.mean([rate[j] for j in b]) for b in bins]
  fail = [not (e <= 0.1) or r < 0.1 for e, r in zip(nme, rate)]
  return {"nme_bins": [100 * x for x in nme_bins], "nme_mean": 100 * np.mean(nme_bins),
          "nme_std": 100 * np.std(nme_bins), "adr_bins": [100 * x for x in adr_bins],
          "adr_mean": 100 * np.mean(adr_bins), "failure": 100 * np.mean(fail),
          "images_without_detection": sum(math.isnan(e) for e in nme)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_table1_row_is_the_naive_per_bin_score(seed):
  dec = _decoded(np.random.default_rng(seed))
  subset = np.arange(5, 25)
  got = table1.subset_table(dec, subset)
  want = _naive_row(dec, subset)
  for key in ("nme_bins", "adr_bins"):
    np.testing.assert_allclose(got[key], want[key], atol=DIGIT, err_msg=key)
  for key in ("nme_mean", "nme_std", "adr_mean", "failure"):
    assert abs(got[key] - want[key]) <= DIGIT, (key, got[key], want[key])
  assert got["images_without_detection"] == want["images_without_detection"] == 1
  assert got["bin_count"] == [3, 3, 3] and got["num_vertices"] == 20


def test_table1_landmark_row_scores_the_landmark_network():
  rng = np.random.default_rng(3)
  dec = _decoded(rng)
  dec["lm_pred"] = (dec["landmarks"] + rng.normal(0, 0.8, dec["landmarks"].shape)).astype(np.float32)
  got = table1.landmark_table(dec)
  per_image = [np.mean(np.linalg.norm(dec["lm_pred"][i] - dec["landmarks"][i], axis=-1)) / 20.0
               for i in range(len(YAW))]
  bins = [np.mean([per_image[j] for j in range(len(YAW)) if _bin(YAW[j]) == b]) for b in range(3)]
  np.testing.assert_allclose(got["nme_bins"], 100 * np.array(bins), atol=DIGIT)
  assert abs(got["nme_mean"] - 100 * np.mean(bins)) <= DIGIT
  assert got["adr_mean"] == 100.0 and got["failure"] == 0.0


def test_selection_keeps_the_always_detected_accurate_vertices_of_each_half():
  # The mean shape's x decides the half; errors are normalised by the landmark box (20 px) before
  # the accuracy threshold: 0.8 px is 0.04 of it, accurate at tau = 0.05 (unnormalised it would
  # not be), the others' 4.2 px (0.21) are not.
  model = synthetic_model(num_vertices=600, num_id=3, num_exp=2, seed=0)
  x = np.asarray(model.mean_Vx3)[:, 0]
  left_v, right_v = np.flatnonzero(x > 0), np.flatnonzero(x <= 0)   # x > 0: the subject's left
  good = np.concatenate([left_v[:4], right_v[:4]])
  r = 12
  rng = np.random.default_rng(0)
  gt = rng.uniform(0, 64, (r, model.num_vertices, 2))
  pred = gt + 3.0                                 # 4.2 px off: inaccurate
  det = rng.random(gt.shape[:2]) < 0.5
  det[:, good] = True
  pred[:, good] = gt[:, good] + [0.8, 0.0]        # accurate, and always detected
  lm = np.zeros((r, 68, 2))
  lm[:, :, 0], lm[:, :, 1] = np.linspace(0, 40, 68), np.linspace(0, 10, 68)
  dec = {"pred": pred, "gt": gt, "detected": det, "landmarks": lm}
  sel = selection.select_vertices(dec, model, 8, 0.05, seed=0)
  assert set(sel["selected"]) == set(good)
  assert set(sel["left"]) == set(left_v[:4]) and set(sel["right"]) == set(right_v[:4])
  np.testing.assert_allclose(sel["p1"][good], 1.0)
  np.testing.assert_allclose(sel["p2"][good], 1.0)
  assert sel["layout"].shape == (3, 4)


@pytest.mark.parametrize("seed", [0, 1])
def test_table2_row_is_the_naive_per_bin_score(seed):
  rng = np.random.default_rng(seed)
  nme = rng.gamma(2.0, 0.03, len(YAW))
  nme[1] = 0.25                                   # a failure
  got = methods.table_row(nme, YAW, 0.1)
  bins = [np.mean([nme[j] for j in range(len(YAW)) if _bin(YAW[j]) == b]) for b in range(3)]
  np.testing.assert_allclose(got["nme_bins"], 100 * np.array(bins), atol=DIGIT)
  assert abs(got["nme_mean"] - 100 * np.mean(bins)) <= DIGIT
  assert abs(got["nme_std"] - 100 * np.std(bins)) <= DIGIT
  assert abs(got["nme_overall"] - 100 * nme.mean()) <= DIGIT
  assert got["failure"] == pytest.approx(100 * np.mean(nme > 0.1), abs=0.005)
  # AUC of the CED on [0, 10 %]: the mean over images of max(0, 1 - e / 0.1), to 1e-4.
  assert got["auc"] == pytest.approx(np.mean(np.clip(1 - nme / 0.1, 0, 1)), abs=1e-4)


def test_table2_row_without_a_bin_and_without_yaw():
  nme = np.array([0.02, 0.04, 0.03, 0.05])
  got = methods.table_row(nme, np.array([5.0, 10.0, 40.0, 50.0]), 0.1)   # no |yaw| > 60
  assert got["bin_count"] == [2, 2, 0] and math.isnan(got["nme_bins"][2])
  assert abs(got["nme_mean"] - 100 * np.mean([0.03, 0.04])) <= DIGIT    # the bins it has
  no_yaw = methods.table_row(nme, None, 0.1)                           # COFW: mean over images
  assert abs(no_yaw["nme_mean"] - 3.5) <= DIGIT and no_yaw["nme_std"] is None
