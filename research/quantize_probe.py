"""Which int8 matmul is fastest on this CPU at SASRec's shapes (one thread, as a serving worker).

Times y = x @ W.T + b for SASRec's linear layers (hidden 64: qkv 64 -> 192, ffn 64 -> 64) and
the item scoring (users x 3,266 items x 64), for one user (L = 200 rows) and a batch of 256
users (L = 50 each: 12,800 rows), with: float32 F.linear (what an int8 checkpoint dequantized
once at load runs); weight-only int8 (`aten._weight_int8pack_mm`, as gpt-fast); int8 x int8 ->
int32 (`torch._int_mm`) after quantizing the activations per row; fbgemm's dynamic int8 linear
(the kernel of the deprecated `quantize_dynamic`); bf16; and float32 on weights dequantized at
every call. Writes research/results/quantize_probe.json.

Example: .venv/bin/python research/quantize_probe.py --out research/results/quantize_probe.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F


def per_channel_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output row: (int8 weight, float32 scale per row)."""
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def int_mm_linear(x: torch.Tensor, w_t: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """Dynamic activation quantization per row, int8 matmul, rescale: (M, N) float32."""
    x_q, x_scale = per_channel_int8(x)
    return torch._int_mm(x_q, w_t).to(torch.float32) * x_scale[:, None] * w_scale[None, :]


def fbgemm_linear(
    x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """quantize_dynamic's kernel: per-channel qint8 weight prepacked for fbgemm."""
    _, scale = per_channel_int8(w)
    zeros = torch.zeros(len(scale), dtype=torch.int64)
    with warnings.catch_warnings():  # deprecated in this torch: measured here on purpose
        warnings.simplefilter("ignore", UserWarning)
        qweight = torch.quantize_per_channel(w, scale.double(), zeros, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(qweight, bias)
    return lambda: torch.ops.quantized.linear_dynamic(x, packed, False)


def median_us(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    """Median microseconds of `fn` over `repeats` runs after a warm-up."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1e6 * times[len(times) // 2]


def kernels(rows: int, k: int, n: int) -> dict[str, Callable[[], torch.Tensor]]:
    """Each candidate path for (rows, k) @ (n, k).T, keyed by name."""
    x, w = torch.randn(rows, k), torch.randn(n, k) * 0.02
    bias = torch.zeros(n)
    w_q, scale = per_channel_int8(w)
    w_q_t = w_q.T.contiguous()
    x_bf16, w_bf16 = x.to(torch.bfloat16), w.to(torch.bfloat16)
    scale_bf16 = scale.to(torch.bfloat16)
    return {
        "fp32 F.linear": lambda: F.linear(x, w, bias),
        "bf16 F.linear": lambda: F.linear(x_bf16, w_bf16),
        "int8 dynamic fbgemm linear_dynamic (the deprecated path)": fbgemm_linear(x, w, bias),
        "int8 weight-only _weight_int8pack_mm (bf16 x)": lambda: torch.ops.aten._weight_int8pack_mm(
            x_bf16, w_q, scale_bf16
        ),
        "int8 weight-only _weight_int8pack_mm (fp32 x)": lambda: torch.ops.aten._weight_int8pack_mm(
            x, w_q, scale
        ),
        "int8 dynamic _int_mm": lambda: int_mm_linear(x, w_q_t, scale),
        "fp32 on dequantized int8 (dequantize per call)": lambda: F.linear(
            x, w_q.to(torch.float32) * scale[:, None], bias
        ),
    }


SHAPES = {
    "qkv one user (200 x 64 -> 192)": (200, 64, 192),
    "ffn one user (200 x 64 -> 64)": (200, 64, 64),
    "qkv batch 256 (12800 x 64 -> 192)": (12800, 64, 192),
    "ffn batch 256 (12800 x 64 -> 64)": (12800, 64, 64),
    "scoring one user (1 x 64 -> 3266)": (1, 64, 3266),
    "scoring batch 256 (256 x 64 -> 3266)": (256, 64, 3266),
}


def probe(
    repeats: int, shapes: dict[str, tuple[int, int, int]] | None = None
) -> dict[str, dict[str, float | str]]:
    """Median microseconds per shape (rows, in, out) and kernel (or the error it raised)."""
    results: dict[str, dict[str, float | str]] = {}
    with torch.inference_mode():
        for shape, (rows, k, n) in (shapes or SHAPES).items():
            results[shape] = {}
            for name, fn in kernels(rows, k, n).items():
                try:
                    results[shape][name] = round(median_us(fn, repeats), 1)
                except RuntimeError as exc:
                    results[shape][name] = f"error: {str(exc).splitlines()[0][:120]}"
    return results


def main() -> None:
    """Run the probe with one thread and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("research/results/quantize_probe.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = probe(args.repeats)
    for shape, row in results.items():
        print(shape)
        for name, value in row.items():
            print(f"  {name:50} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "unit": "median microseconds, 1 torch thread",
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "results": results,
    }
    args.out.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
