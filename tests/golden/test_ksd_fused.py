"""The compiled fused IMQ KSD equals the eager chunked pass (compilation takes ~10-20 s)."""

from __future__ import annotations

import pytest
import torch

from benchmark.metrics.ksd import ksd_squared
from targets.base import make_generator


@pytest.mark.parametrize("dim", [1, 3])
def test_fused_imq_ksd_matches_the_eager_pass(dim):
    generator = make_generator(0)
    x = torch.randn(300, dim, generator=generator)
    score = -x + 0.3 * torch.randn(300, dim, generator=generator)  # not the target's score
    for statistic in ("v", "u"):
        eager = ksd_squared(x, score, statistic=statistic)
        fused = ksd_squared(x, score, statistic=statistic, fused=True)
        # float32 pair terms summed per row: agreement to float32 rounding of O(n^2) terms.
        assert float(fused) == pytest.approx(float(eager), rel=1e-4, abs=1e-7)


def test_fused_ksd_refuses_what_it_does_not_cover():
    x = torch.randn(10, 9)
    with pytest.raises(ValueError, match="dim <= 8"):
        ksd_squared(x, -x, fused=True)
    with pytest.raises(ValueError, match="IMQ"):
        ksd_squared(torch.randn(10, 2), torch.randn(10, 2), kernel="rbf", fused=True)
