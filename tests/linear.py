"""The linear-time check shared by the triage tests: doubling a hostile input about doubles its cost.

A ratio of CPU times, never a time: process time ignores other processes, the garbage collector is
paused while measuring (its collections land in one size and not the other), and the least ratio of a
few attempts is taken, because a quadratic pass shows about four in every attempt while a busy machine
only inflates some. The input grows until it costs enough to stand above the timer's noise.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

BOUND = 3.5  # far below the ~4x of a quadratic pass, loose enough for a shared machine
_NOISE_FLOOR = 0.02  # seconds


def cost(work: Callable[[str], object], text: str, repeats: int = 3) -> float:
    """Median CPU seconds of `work(text)`."""
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            started = time.process_time()
            work(text)
            samples.append(time.process_time() - started)
    finally:
        gc.enable()
    return statistics.median(samples)


def doubling_ratio(work: Callable[[str], object], unit: str, size: int, attempts: int = 3) -> float:
    """cost(2n) / cost(n) for `unit` repeated to about `size` characters (grown past the noise floor)."""
    small = unit * max(size // len(unit), 1)
    while cost(work, small, 1) < _NOISE_FLOOR and len(small) < 16 * size:
        small += small
    ratios = []
    for _ in range(attempts):
        ratios.append(cost(work, small + small) / max(cost(work, small), 1e-6))
        if ratios[-1] < BOUND:
            break
    return min(ratios)
