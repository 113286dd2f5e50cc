"""95% intervals for the figures that are shares of a few test items: R@K over the queries,
accuracy over the test images.

With 20 queries one query is 5 points of R@K, so a figure printed without its interval claims more
than it shows. Wilson's score interval (from scipy), not the normal approximation, which leaves
[0, 100] and collapses to a point at 0% or 100%.
"""

from __future__ import annotations

CONFIDENCE = 0.95


def share_interval(hits: int, n: int, confidence: float = CONFIDENCE) -> list[float]:
    """``[low, high]`` in percent: the Wilson score interval of ``hits`` successes in ``n`` trials."""
    from scipy.stats import binomtest

    if n <= 0 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n and n > 0, got {hits} of {n}")
    ci = binomtest(int(hits), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(100.0 * ci.low), float(100.0 * ci.high)]
