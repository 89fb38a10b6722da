"""devices/backoff.py: the bounds of each delay, the jitter's range, a streak's reset."""

from __future__ import annotations

import random

import pytest

from devices.backoff import Backoff


def test_ceiling_doubles_from_base_to_cap():
    b = Backoff(0.2, 5.0, jitter=0.0)
    assert [b.ceiling(n) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert [b.delay(n) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]  # no jitter: exact
    assert b.ceiling(10_000) == 5.0  # no overflow however long the streak


@pytest.mark.parametrize("jitter", [1.0, 0.5, 0.25])
def test_jitter_stays_within_its_range_and_fills_it(jitter):
    b = Backoff(1.0, 300.0, jitter=jitter, rng=random.Random(7))
    for n in (1, 3, 9, 20):
        top = min(300.0, 2.0 ** (n - 1))
        delays = [b.delay(n) for _ in range(2000)]
        assert all(top * (1 - jitter) <= d <= top for d in delays), n
        # spread over the range: both ends reached within 5 % of its width
        width = top * jitter
        assert min(delays) < top * (1 - jitter) + 0.05 * width and max(delays) > top - 0.05 * width


def test_a_seeded_rng_repeats_the_delays():
    a = Backoff(0.1, 5.0, jitter=0.5, rng=random.Random(3))
    b = Backoff(0.1, 5.0, jitter=0.5, rng=random.Random(3))
    assert [a.delay(n) for n in range(1, 10)] == [b.delay(n) for n in range(1, 10)]


def test_streak_counts_failures_and_reset_starts_over():
    s = Backoff(0.1, 5.0, jitter=0.0).streak()
    assert [s.next() for _ in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert s.failures == 4
    s.reset()
    assert s.failures == 0 and s.next() == 0.1


@pytest.mark.parametrize(("kw", "names"), [
    ({"base_s": 0.0, "cap_s": 1.0}, "base_s"),
    ({"base_s": 2.0, "cap_s": 1.0}, "cap_s"),
    ({"base_s": 1.0, "cap_s": 2.0, "jitter": 1.5}, "jitter"),
    ({"base_s": 1.0, "cap_s": 2.0, "jitter": -0.1}, "jitter"),
])
def test_bad_parameters_are_named(kw, names):
    with pytest.raises(ValueError, match=names):
        Backoff(**kw)
