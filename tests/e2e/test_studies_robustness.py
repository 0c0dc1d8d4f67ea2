"""The robustness study on the smoke pipeline (conftest's `smoke_workdir`), as a user runs it:
every method at every level of every corruption in the JSON, a curve per set and corruption,
and the study's own consistency: level 0 of every corruption is the same clean input, and the
landmark-only PnP-68 does not move with the DAFI."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cprfa_jax.data import corrupt

pytestmark = pytest.mark.slow     # the smoke pipeline is trained first (shared with test_pipeline)

METHODS = {"PnP-68", "PnP + DAFI(C)", "Online LM", "CPR(C)", "CPR-H", "CPRFA"}


@pytest.fixture(scope="module")
def study(smoke_workdir, tmp_path_factory):
  from pipeline_fixtures import ROOT  # pylint: disable=import-outside-toplevel
  out = tmp_path_factory.mktemp("robustness")
  run = subprocess.run(
      [sys.executable, "-m", "cprfa_jax.studies.robustness", "--config",
       str(ROOT / "configs/smoke.py"), "--workdir", str(smoke_workdir),
       f"--config.data.data_dir={smoke_workdir.parent / 'data'}", "--out", str(out),
       "--num", "3", "--sizes", "64,32", "--sets", "synth-cofw"],
      capture_output=True, text=True, timeout=1500, cwd=ROOT)
  assert run.returncode == 0, run.stderr[-3000:]
  with open(out / "robustness.json", encoding="utf-8") as f:
    return out, json.load(f), run


def test_every_method_at_every_level(study):
  out, res, run = study
  # One set keeps the suite's time (the loop over sets is the same code for both).
  assert set(res["sets"]) == {"synth-cofw"}
  assert "robustness.json" in run.stdout
  for name, by_kind in res["sets"].items():
    assert set(by_kind) == set(corrupt.LEVELS) | {"resolution"}
    for kind, by_level in by_kind.items():
      want = ([f"{l:g}" for l in corrupt.LEVELS[kind]] if kind != "resolution"
              else ["64", "32"])
      assert list(by_level) == want
      for level, nme in by_level.items():
        assert set(nme) == METHODS, (name, kind, level)
        assert all(np.isfinite(v) and v > 0 for v in nme.values()), (name, kind, level, nme)
      assert (out / f"robustness_{name}_{kind}.png").stat().st_size > 1000
    # The overview tiles the six panels (five corruptions and resolution) in rows of three.
    img = cv2.imread(str(out / f"robustness_{name}.png"))
    one = cv2.imread(str(out / f"robustness_{name}_holes.png"))
    assert img.shape == (2 * one.shape[0], 3 * one.shape[1], 3)
  assert "| CPRFA |" in (out / "robustness.md").read_text()
  assert set(res["trained_on"]) == {"cpr", "cpr_h", "capu"}
  assert res["trained_on"]["capu"] == "unet"     # the smoke config trains on the U-Net's DAFIs


def test_level_zero_is_one_clean_input_and_pnp68_ignores_the_dafi(study):
  _, res, _ = study
  for by_kind in res["sets"].values():
    clean = [by_kind[k]["0"] for k in corrupt.LEVELS]
    for other in clean[1:]:
      for m in METHODS:      # the same observations, deterministic methods: float equality
        assert other[m] == pytest.approx(clean[0][m], rel=1e-6, abs=1e-9), m
    # The resolution axis at the pipeline's own size (32 px) is that same clean input.
    for m in METHODS:
      assert by_kind["resolution"]["32"][m] == pytest.approx(clean[0][m], rel=1e-6, abs=1e-9), m
    pnp68 = {v["PnP-68"] for by_level in by_kind.values() for v in by_level.values()}
    assert max(pnp68) - min(pnp68) < 1e-9


def test_severe_corruption_hurts_the_dafi_fit(study):
  # PnP + DAFI(C) rests on the selected vertices alone: removing 90% of the face must cost it
  # (3 images; on the smoke pipeline its clean NME is ~10% and degrades to the NME-1 floor).
  _, res, _ = study
  for by_kind in res["sets"].values():
    assert by_kind["holes"]["0.9"]["PnP + DAFI(C)"] > by_kind["holes"]["0"]["PnP + DAFI(C)"]
