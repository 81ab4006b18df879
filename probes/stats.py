"""Small statistics for leak rates."""

from __future__ import annotations

import math

#: One-sided 95 % normal quantile.
Z_95 = 1.6448536269514722


def wilson_upper(leaking: int, trials: int, z: float = Z_95) -> float:
    """One-sided 95 % Wilson score upper bound of a leak rate (1.0 with no trials).

    With 0 leaks in n trials it is about 2.7 / n: "no leak in n trials" means the
    true rate is below that bound with 95 % confidence.
    """
    if trials <= 0:
        return 1.0
    rate = leaking / trials
    denominator = 1 + z * z / trials
    centre = rate + z * z / (2 * trials)
    spread = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials))
    return min(1.0, (centre + spread) / denominator)
