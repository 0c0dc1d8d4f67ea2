import os
import pathlib

import pytest

# Tests run on the CPU and must never reach the network.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TFDS_DATA_DIR", "/nonexistent-tfds-dir")

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
SFM_DIR = SHARED / "models" / "sfm"

requires_sfm = pytest.mark.skipif(
    not (SFM_DIR / "sfm_shape_3448.bin").exists(),
    reason="../shared/models/sfm is absent (the Surrey Face Model is not part of the project)")


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
  """The smoke config's pipeline, trained and evaluated once per session (~6 min on 2 cores);
  tests/test_pipeline.py and tests/test_predict.py read it."""
  from pipeline_fixtures import train_smoke  # pylint: disable=import-outside-toplevel
  return train_smoke(tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="session")
def smoke_workdir(request):
  """A trained smoke workdir for tests that only read it: $CPRFA_SMOKE_WORKDIR if set (to
  iterate on such tests without retraining), else the session's `smoke`."""
  given = os.environ.get("CPRFA_SMOKE_WORKDIR")
  return pathlib.Path(given) if given else request.getfixturevalue("smoke")[0]
