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
