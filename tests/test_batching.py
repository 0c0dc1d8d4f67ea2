"""batching.padded_batches: the kept rows of the padded batches are the set, once, in order."""

import numpy as np
from hypothesis import given, settings, strategies as st

from cprfa_jax.batching import padded_batches


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 300), batch_size=st.integers(1, 64), pow2=st.booleans())
def test_kept_rows_cover_the_set_once_and_batches_have_fixed_sizes(n, batch_size, pow2):
  kept, sizes = [], set()
  for lo, hi, idx in padded_batches(n, batch_size, pow2):
    assert 0 < hi - lo <= batch_size and len(idx) >= hi - lo
    np.testing.assert_array_equal(idx[:hi - lo], np.arange(lo, hi))
    assert (idx[hi - lo:] == hi - 1).all()          # padding repeats the batch's last row
    kept.extend(idx[:hi - lo])
    sizes.add(len(idx))
  assert kept == list(range(n))
  if pow2:
    # Each padded size is the next power of two of its batch (capped), so few shapes compile.
    assert all(s == batch_size or (s & (s - 1)) == 0 for s in sizes)
  else:
    assert sizes <= {batch_size}


def test_small_request_is_not_padded_to_the_full_batch():
  (lo, hi, idx), = padded_batches(3, 32, pow2=True)
  assert (lo, hi) == (0, 3) and idx.tolist() == [0, 1, 2, 2]
  (_, _, idx), = padded_batches(3, 32)
  assert len(idx) == 32
