import os
import pathlib
import shutil
import tempfile

import pytest

# Tests run on the CPU and must never reach the network.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TFDS_DATA_DIR", "/nonexistent-tfds-dir")

# One persistent XLA compilation cache for the whole session: both xdist workers and every
# train.py / evaluate.py / predictor / multi-host subprocess a test starts inherit it, so a
# program one process compiled (the smoke pipeline's train steps, its U-Net and regressors
# in evaluate.py, the predictor) is loaded, not compiled again, by the next process that runs
# it: the suite's time is mostly single-threaded compilation (issue 23). It is made here, in
# the controller, before the workers start, and removed at the session's end: no run reads
# another run's entries. The key covers the program, the compile options, the devices and the
# jax/jaxlib version, so a hit is the same executable; a damaged entry is compiled again.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="cprfa-jax-cache-")

# The tests' own programs (this process's) compile at XLA's CPU level 2 instead of its default 3;
# the programs the tests start as users run them (train.py, evaluate.py, the predictor's CLI,
# the device check, the multi-host workers: subprocesses) keep the default, so the end-to-end
# tests run exactly what users run. Level 3 spends most of a small program's compile in LLVM:
# an eager Flax init of a 6-layer CprEncoder compiled its kernels in 14.0 s at level 3 and
# 1.2 s at level 2 (benchmarks/RESULTS.md), and the suite compiles ~3,800 programs in-process
# (issue 23). Level 2 runs the same program with less of LLVM's optimisation: its machine code
# may round differently in the last bits, and the tests compare with float32 tolerances. XLA
# reads XLA_FLAGS once, when this process's CPU backend starts (here), so the level is set
# only for that moment and the environment the subprocesses inherit is left as it was.
# tests/test_nets_initialise.py compiles its reference at level 3 explicitly.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=2"


def _start_backend_at_test_level():
  import jax  # pylint: disable=import-outside-toplevel
  given = os.environ.get("XLA_FLAGS")
  os.environ["XLA_FLAGS"] = f"{given} {TEST_XLA_FLAGS}" if given else TEST_XLA_FLAGS
  try:
    jax.block_until_ready(jax.jit(lambda x: x + 1)(0))     # the backend and XLA's flags, now
  finally:
    if given is None:
      del os.environ["XLA_FLAGS"]
    else:
      os.environ["XLA_FLAGS"] = given


_start_backend_at_test_level()

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
SFM_DIR = SHARED / "models" / "sfm"

requires_sfm = pytest.mark.skipif(
    not (SFM_DIR / "sfm_shape_3448.bin").exists(),
    reason="../shared/models/sfm is absent (the Surrey Face Model is not part of the project)")


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
  """The smoke config's pipeline, trained and evaluated once per session (~6 min on 2 cores);
  tests/e2e/test_pipeline.py and tests/e2e/test_predict.py read it."""
  from pipeline_fixtures import train_smoke  # pylint: disable=import-outside-toplevel
  return train_smoke(tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="session")
def smoke_workdir(request):
  """A trained smoke workdir for tests that only read it: $CPRFA_SMOKE_WORKDIR if set (to
  iterate on such tests without retraining), else the session's `smoke`."""
  given = os.environ.get("CPRFA_SMOKE_WORKDIR")
  return pathlib.Path(given) if given else request.getfixturevalue("smoke")[0]


# pytest-xdist (`-n 2 --dist loadfile` in pyproject.toml) runs each file on one worker, so a
# file's module fixtures are built once; these files read the session's trained smoke pipeline
# and run on one worker together, so the session trains it once. Heaviest first: a worker that
# starts the smoke pipeline last would run it alone at the end.
SMOKE_FILES = ("tests/e2e/test_pipeline.py", "tests/e2e/test_predict.py",
               "tests/e2e/test_studies_robustness.py", "tests/e2e/test_real_photos_check.py")
# Then the other files that take longest (seconds in the suite at 7763b18, benchmarks/
# RESULTS.md), so that the last files to start are short ones and neither worker ends alone.
HEAVY_FILES = SMOKE_FILES + (
    "tests/test_benchmarks_device_check.py",    # 166
    "tests/test_nets_regressor.py",             # 140
    "tests/e2e/test_multihost.py",              # 137
    "tests/e2e/test_real_pipeline.py",          # 104
    "tests/test_train_regressors.py",           # 93
    "tests/test_train_dafi.py",                 # 77
    "tests/test_evaluate_cli.py",               # 72
    "tests/test_data_sampler.py")               # 68


def _file(nodeid):
  return nodeid.split("::", 1)[0]


def pytest_itemcollected(item):
  uses_smoke = {"smoke", "smoke_workdir"} & set(getattr(item, "fixturenames", ()))
  if uses_smoke and _file(item.nodeid) not in SMOKE_FILES:
    raise pytest.UsageError(f"{item.nodeid} reads the smoke pipeline: add its file to "
                            "SMOKE_FILES in tests/conftest.py (else each worker trains it)")


def pytest_collection_modifyitems(config, items):
  del config
  rank = lambda item: (HEAVY_FILES.index(_file(item.nodeid))
                       if _file(item.nodeid) in HEAVY_FILES else len(HEAVY_FILES))
  items.sort(key=rank)   # stable: the order within a file, and of the other files, is kept


def pytest_xdist_make_scheduler(config, log):
  """--dist loadfile with the SMOKE_FILES as one scope. (xdist's loadgroup marks would do it,
  but pytest-xdist 3.8 cannot tag node ids under pytest 9.2, whose Node.nodeid is read-only.)"""
  if config.getvalue("dist") != "loadfile":
    return None
  from xdist.scheduler import LoadFileScheduling  # pylint: disable=import-outside-toplevel

  class SmokeFileScheduling(LoadFileScheduling):
    def _split_scope(self, nodeid):
      return "smoke" if _file(nodeid) in SMOKE_FILES else _file(nodeid)

  return SmokeFileScheduling(config, log)


def pytest_sessionfinish(session):
  # The controller (or a run without xdist) made the cache; a worker leaves it alone.
  if _OWN_CACHE and not hasattr(session.config, "workerinput"):
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
