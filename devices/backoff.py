"""Exponential backoff with jitter: the one formula of every retry loop (the MQTT consumer's
reconnects, the pipeline's store and write retries, the dispatcher's deliveries).

After the n-th failure in a row the ceiling is ``min(cap_s, base_s * 2**(n-1))``; the delay is
drawn uniformly from ``[ceiling * (1 - jitter), ceiling]``. ``jitter=1`` is "full jitter" (0 up
to the ceiling: many clients retrying together spread out most; the dispatcher), ``jitter=0.5``
keeps at least half the ceiling (a retry loop of one process never spins; the consumer and the
pipeline), ``jitter=0`` is plain doubling. Pass ``rng`` (a seeded ``random.Random``) to make the
delays reproducible in tests.

Stateless use: :meth:`Backoff.delay` ``(failures)``. A retry loop holds a :class:`Streak`:
:meth:`Streak.next` after each failure, :meth:`Streak.reset` after a success.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff", "Streak"]


@dataclass(frozen=True)
class Backoff:
    base_s: float
    cap_s: float
    jitter: float = 1.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"backoff: need 0 < base_s <= cap_s, got base_s={self.base_s!r}, "
                             f"cap_s={self.cap_s!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff: jitter must be within 0..1, got {self.jitter!r}")

    def ceiling(self, failures: int) -> float:
        """The longest delay after ``failures`` failures in a row (at least 1)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(max(failures, 1) - 1, 64))

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row."""
        top = self.ceiling(failures)
        return top - self.jitter * top * self.rng.random()

    def streak(self) -> Streak:
        return Streak(self)


@dataclass
class Streak:
    """The failures in a row of one retry loop, and the delay each one earns."""

    backoff: Backoff
    failures: int = 0

    def next(self) -> float:
        """Count a failure; the delay before the next attempt."""
        self.failures += 1
        return self.backoff.delay(self.failures)

    def reset(self) -> None:
        """A success (or a connection that lasted): the next failure starts from ``base_s``."""
        self.failures = 0
