"""Dynamic sampling."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from algorithms.errors import ShapeError
from algorithms.sampling import mixed_groups, tasks_to_draw


def test_mixed_groups_hand_computed():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 1.0])
    g = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4])
    keep, met = mixed_groups(r, g)
    assert keep.tolist() == [True, True, False, False, False, False, False, False, False]
    assert met["sampling/groups_total"] == 5
    assert met["sampling/groups_kept"] == 1
    assert met["sampling/groups_dropped"] == 4
    assert met["sampling/groups_dropped_all_zero"] == 1
    assert met["sampling/groups_dropped_all_one"] == 2  # group 2 and the singleton group 4
    assert met["sampling/groups_dropped_other"] == 1
    assert met["sampling/samples_kept"] == 2


@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from([0.0, 0.5, 1.0])), min_size=1, max_size=30))
def test_mixed_groups_matches_definition(pairs):
    g = torch.tensor([p[0] for p in pairs])
    r = torch.tensor([p[1] for p in pairs])
    keep, met = mixed_groups(r, g)
    for i in range(len(pairs)):
        sib = r[g == g[i]]
        assert bool(keep[i]) == bool(sib.max() > sib.min())
    assert met["sampling/groups_kept"] + met["sampling/groups_dropped"] == len(set(g.tolist()))


def test_tasks_to_draw():
    assert tasks_to_draw(8, 8, oversample_factor=2.0, rounds_done=0, max_rounds=3) == 0
    assert tasks_to_draw(5, 8, oversample_factor=1.0, rounds_done=0, max_rounds=3) == 3
    assert tasks_to_draw(5, 8, oversample_factor=1.5, rounds_done=1, max_rounds=3) == 5  # ceil(4.5)
    assert tasks_to_draw(0, 8, oversample_factor=2.0, rounds_done=3, max_rounds=3) == 0  # limit hit
    with pytest.raises(ShapeError, match="oversample_factor"):
        tasks_to_draw(0, 8, oversample_factor=0.5, rounds_done=0, max_rounds=3)
    with pytest.raises(ShapeError, match="groups_needed"):
        tasks_to_draw(0, -1, oversample_factor=1.0, rounds_done=0, max_rounds=3)
