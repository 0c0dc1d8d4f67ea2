#!/usr/bin/env bash
# The accelerator check of issue 23 in one command: at most ~8 minutes on one GPU, install
# included. Prints benchmarks/device_check.py's JSON (progress goes to stderr).
#
#   bash benchmarks/device_check.sh [--dry_run] [--seconds S] [--out FILE]
#   bash benchmarks/device_check.sh --fetch_wheels   # here, before going to a host with no network
#
# The Python: $PYTHON, else .venv/bin/python if it exists, else python3. When it cannot import
# what the check needs (jax with the accelerator's plugin, flax, optax, orbax-checkpoint, numpy,
# scipy, OpenCV, ml_collections, absl; not the data stack), they are installed first:
#   * from ./.whl/*.whl when that folder exists, into /tmp/cprfa-device-site (no network, no
#     dependencies resolved: for a host image that has jax and flax, e.g. a lent GPU, which lacks
#     ml-collections; `--fetch_wheels` downloads those wheels for its Python 3.12);
#   * else from PyPI into .venv-device: the project with its cuda12 extra, at the versions of
#     requirements-lock.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

NEEDS="import jax, flax, optax, orbax.checkpoint, numpy, scipy, cv2, ml_collections, absl"
# Wheels the lent GPU's image lacks (.library/device/KINDS.md lists what it has), pinned as the
# lock file pins them.
WHEELS="ml-collections"

if [ "${1:-}" = "--fetch_wheels" ]; then
  mkdir -p .whl
  for name in $WHEELS; do
    pin=$(grep -i -E "^${name//-/[-_.]}==" requirements-lock.txt || echo "$name")
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "$pin"
  done
  ls -l .whl
  exit 0
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "$NEEDS" 2>/dev/null; then
  if [ -d .whl ]; then
    echo "device_check: installing $(ls .whl | tr '\n' ' ')into /tmp/cprfa-device-site" >&2
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/cprfa-device-site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/cprfa-device-site"
  else
    echo "device_check: installing the project into .venv-device (requirements-lock.txt)" >&2
    python3 -m venv .venv-device
    .venv-device/bin/pip install -q -e '.[cuda12]' -c requirements-lock.txt
    PY=.venv-device/bin/python
  fi
  "$PY" -c "$NEEDS" || { echo "device_check: $PY still cannot run: $NEEDS" >&2; exit 1; }
fi
"$PY" -c "import jax; print('device_check: devices', jax.devices(), file=__import__('sys').stderr)"
exec "$PY" benchmarks/device_check.py "$@"
