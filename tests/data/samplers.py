"""What the sampler tests share: the cut ids of each batch, and the restore check."""

from __future__ import annotations

import copy
from typing import Callable


def batches(sampler) -> list[list[str]]:
    return [[c.id for c in b] for b in sampler]


def assert_restore_continues(make: Callable, taken: int, epoch: int = 1) -> None:
    """A sampler restored from the state of one that yielded ``taken`` batches yields the rest of the epoch of
    an uninterrupted one."""
    whole = make()
    whole.set_epoch(epoch)
    expected = batches(whole)
    run = make()
    run.set_epoch(epoch)
    it = iter(run)
    head = [[c.id for c in next(it)] for _ in range(taken)]
    resumed = make()
    resumed.load_state_dict(copy.deepcopy(run.state_dict()))
    assert head + batches(resumed) == expected
