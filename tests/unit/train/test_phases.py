"""The time breakdown of a run: phases add up to the whole, startup is the process's age."""

from __future__ import annotations

import time

from shoestring.train.phases import PhaseClock, process_age


def test_train_is_what_the_other_phases_leave():
    now = [0.0]
    phases = PhaseClock(lambda: now[0])
    with phases.phase("data"):
        now[0] += 2.0
    now[0] += 5.0                       # training
    phases.timed("eval", lambda: now.__setitem__(0, now[0] + 1.0))()
    with phases.phase("write"):
        now[0] += 0.5
    assert phases.breakdown(1.25) == {"startup": 1.25, "data": 2.0, "train": 5.0, "eval": 1.0,
                                      "write": 0.5}


def test_process_age_is_this_process_lifetime():
    age = process_age()
    assert age is not None and 0.0 <= age < time.monotonic() + 1.0
