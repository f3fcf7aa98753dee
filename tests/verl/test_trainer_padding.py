"""The teacher rows SGCD / SDPO score are padded to a multiple of the data-parallel size."""

from __future__ import annotations

import pytest
from verl_required import verl  # noqa: F401

from adapters.verl.trainer import pad_to_multiple


@pytest.mark.parametrize(("rows", "multiple", "expected"), [
    ([], 4, []),
    ([3], 1, [3]),
    ([3], 2, [3, 3]),
    ([1, 4, 6], 2, [1, 4, 6, 1]),
    ([1, 4], 4, [1, 4, 1, 4]),
    ([0, 1, 2, 3], 4, [0, 1, 2, 3]),
])
def test_rows_are_repeated_cyclically_up_to_a_multiple(rows, multiple, expected):
    assert pad_to_multiple(rows, multiple) == expected


def test_every_rank_gets_a_row_and_the_originals_come_first():
    for n in range(1, 7):
        for dp in range(1, 5):
            padded = pad_to_multiple(list(range(n)), dp)
            assert len(padded) % dp == 0 and len(padded) >= dp and padded[:n] == list(range(n))


def test_a_multiple_below_one_is_refused():
    with pytest.raises(ValueError, match="multiple must be >= 1"):
        pad_to_multiple([1], 0)
