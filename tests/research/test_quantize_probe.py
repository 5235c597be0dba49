"""research.quantize_probe on a tiny shape: every kernel runs and agrees with float32."""

from __future__ import annotations

import torch

from research import quantize_probe


def test_every_kernel_is_timed() -> None:
    results = quantize_probe.probe(repeats=1, shapes={"tiny": (32, 16, 8)})
    timings = results["tiny"]
    assert set(timings) == set(quantize_probe.kernels(32, 16, 8))
    assert all(isinstance(v, float) and v > 0 for v in timings.values()), timings


def test_int_mm_linear_matches_float() -> None:
    x, w = torch.randn(32, 16), torch.randn(8, 16)
    w_q, scale = quantize_probe.per_channel_int8(w)
    got = quantize_probe.int_mm_linear(x, w_q.T.contiguous(), scale)
    assert torch.allclose(got, x @ w.T, atol=0.05 * float((x @ w.T).abs().max()))
