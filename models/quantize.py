"""int8 and fp16 forms of a trained model: smaller checkpoints that load and serve as any other.

What is compressed: SASRec's linear layers (every block's attention qkv and output projection,
feed-forward fc and proj) and the item matrix used for scoring (the tied item embedding); MF's
item factors (it has no linear layers; the fold-in's Gram matrix is computed from the loaded
factors in float32). Everything else (position embeddings, LayerNorms, biases, the empty-user
vector) stays float32.

- int8: symmetric, one float32 scale per output channel of a linear weight and per row of the
  item matrix: q = round(w / s), s = max|row| / 127, stored as plain int8 tensors with a
  `<name>_scale` tensor beside them (safetensors holds no packed quantized params).
- fp16: the same tensors in float16.

Either way the weights are dequantized to float32 once, at load: on this CPU (AVX-512 with
VNNI and AMX) every int8 kernel tried, `aten._weight_int8pack_mm` (weight-only, as gpt-fast),
`torch._int_mm` on dynamically quantized activations and fbgemm's `quantized::linear_dynamic`
(the deprecated `quantize_dynamic`'s kernel), was no faster, mostly slower, than float32 at
SASRec's shapes (64 wide) for one user and for 256 users, and so was int8 scoring of the
3,266-item matrix (research/quantize_probe.py, research/results/quantize_probe.json). So the
compression buys checkpoint size and load bandwidth, and the served model computes exactly what
the dequantized float model computes.

A quantized checkpoint's meta.json names the served model `<source>-<precision>` (e.g.
`sasrec-int8`), so the float and int8 versions load side by side as separate models, and keeps
the source model name, the precision and the source checkpoint under "quantized".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import torch

from models.base import History, Recommender, Times, Weights
from models.data import IdMap
from models.mf import ImplicitALS
from models.sasrec import SASRec

PRECISIONS = ("int8", "fp16")
SCALE_SUFFIX = "_scale"
# SASRec's tensors that are compressed (member prefixes of joined networks allowed).
_SASREC_TENSORS = re.compile(
    r"(member\d+\.)?(item_emb\.weight|blocks\.\d+\.(attn\.qkv|attn\.proj|ffn\.fc|ffn\.proj)\.weight)"
)
_MF_TENSORS = re.compile(r"item_factors")


class QuantizeError(ValueError):
    """A model or checkpoint that cannot be quantized as asked."""


class QuantizedRecommender(Recommender):
    """A trained model whose weights went through int8 or fp16: serves as its float source,
    dequantized at load; `state_tensors` gives the compressed form for the checkpoint."""

    name: ClassVar[str] = "quantized"
    source: ClassVar[str] = ""
    precision: ClassVar[str] = ""
    inner: Recommender  # the source's class, holding the dequantized float32 weights
    packed: dict[str, torch.Tensor]  # the checkpoint form: int8 + scales, or float16

    def __init__(self, num_items: int, config: Any | None = None) -> None:
        raise TypeError("build quantized models with quantize_model or load_checkpoint")

    @classmethod
    def wrapping(cls, inner: Recommender, packed: dict[str, torch.Tensor]) -> QuantizedRecommender:
        """The served model around `inner` (dequantized weights) with its compressed tensors."""
        model = cls.__new__(cls)
        model.inner, model.packed, model.config = inner, packed, inner.config
        return model

    @property
    def num_items(self) -> int:
        return self.inner.num_items

    @property
    def uses_times(self) -> bool:
        return self.inner.uses_times

    def fit(
        self, train: Any, valid: Any | None = None, times: Times = None, weights: Weights = None
    ) -> dict[str, Any]:
        raise QuantizeError("a quantized model is not trained: train the float one, quantize it")

    def user_vectors(
        self, histories: Sequence[History], times: Times = None, *, weights: Weights = None
    ) -> torch.Tensor:
        return self.inner.user_vectors(histories, times, weights=weights)

    def item_vectors(self) -> torch.Tensor:
        return self.inner.item_vectors()

    def explain(
        self, history: History, targets: torch.Tensor, k: int = 3, times: Any = None
    ) -> list[list[int]]:
        return self.inner.explain(history, targets, k, times)

    def config_dict(self) -> dict[str, Any]:
        return self.inner.config_dict()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.packed)

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.inner.load_tensors(dequantize(tensors))
        self.packed = dict(tensors)


@functools.cache
def quantized_class(source: str, precision: str) -> type[QuantizedRecommender]:
    """The QuantizedRecommender subclass served as `<source>-<precision>` (names are class
    attributes under the Recommender contract)."""
    attributes = {"name": f"{source}-{precision}", "source": source, "precision": precision}
    return cast(
        type[QuantizedRecommender],
        type(f"Quantized_{source}_{precision}", (QuantizedRecommender,), attributes),
    )


def compressed_names(model: Recommender) -> re.Pattern[str]:
    """Which state tensors of `model` are compressed; QuantizeError for a model without any."""
    if isinstance(model, QuantizedRecommender):
        raise QuantizeError(f"{model.name} is already quantized ({model.precision})")
    if model.reads_content:
        raise QuantizeError(f"{model.name} reads item content; only ID models are quantized")
    if isinstance(model, SASRec):
        return _SASREC_TENSORS
    if isinstance(model, ImplicitALS):
        return _MF_TENSORS
    raise QuantizeError(
        f"{model.name} cannot be quantized: only sasrec, mf and ials have linear layers or an "
        "item matrix this tool compresses"
    )


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row (output channel / item): (int8 (R, C), float32 scale (R,))."""
    weight = weight.detach().to(torch.float32)
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # an all-zero row keeps scale > 0
    quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return quantized.contiguous(), scale.contiguous()


def pack(
    tensors: Mapping[str, torch.Tensor], names: re.Pattern[str], precision: str
) -> dict[str, torch.Tensor]:
    """The checkpoint form: the matching tensors as int8 + `<name>_scale`, or as float16."""
    if precision not in PRECISIONS:
        raise QuantizeError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    packed: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if not names.fullmatch(name):
            packed[name] = tensor
        elif precision == "fp16":
            packed[name] = tensor.detach().to(torch.float16).contiguous()
        else:
            packed[name], packed[name + SCALE_SUFFIX] = int8_rows(tensor)
    return packed


def dequantize(packed: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float32 state tensors of a checkpoint form (`pack`'s inverse, up to rounding)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in packed.items():
        if name.endswith(SCALE_SUFFIX) and name.removesuffix(SCALE_SUFFIX) in packed:
            continue
        if tensor.dtype == torch.int8:
            scale = packed.get(name + SCALE_SUFFIX)
            if scale is None:
                raise ValueError(f"int8 tensor {name} has no {name + SCALE_SUFFIX}")
            tensors[name] = (
                tensor.to(torch.float32) * scale.to(torch.float32)[:, None]
            ).contiguous()
        elif tensor.dtype == torch.float16:
            tensors[name] = tensor.to(torch.float32).contiguous()
        else:
            tensors[name] = tensor
    return tensors


def quantize_model(model: Recommender, precision: str) -> QuantizedRecommender:
    """An int8 or fp16 copy of a trained in-memory model (the original is left as it was),
    served as `<name>-<precision>`; QuantizeError for a model or precision it cannot do."""
    names = compressed_names(model)
    packed = pack(model.state_tensors(), names, precision)
    inner = type(model).from_state(model.config_dict(), dequantize(packed))
    return quantized_class(model.name, precision).wrapping(inner, packed)


def rebuild(meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Recommender:
    """The model of a quantized checkpoint, from its meta.json and tensors (models.checkpoint)."""
    from models.zoo import get_model_class  # the zoo imports models lazily; so does this

    info = meta.get("quantized") or {}
    source, precision = str(info.get("source_model")), str(meta.get("precision"))
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    inner = get_model_class(source).from_state(meta["config"], dequantize(tensors))
    compressed_names(inner)  # a checkpoint claiming to quantize a model this tool cannot
    return quantized_class(source, precision).wrapping(inner, dict(tensors))


def save_quantized(
    model: QuantizedRecommender, directory: str | Path, item_ids: IdMap | list[str], **meta: Any
) -> Path:
    """save_checkpoint with what loading needs: the precision, the source model, what was
    compressed and how (`meta["quantized"]` adds to that, e.g. the source checkpoint)."""
    from models.checkpoint import save_checkpoint

    compressed = (torch.int8, torch.float16)
    info = {
        "source_model": model.source,
        "compressed": sorted(n for n, t in model.packed.items() if t.dtype in compressed),
        "scheme": SCHEMES[model.precision],
        **meta.pop("quantized", {}),
    }
    return save_checkpoint(
        model, directory, item_ids, precision=model.precision, quantized=info, **meta
    )


def quantize_checkpoint(
    source: str | Path,
    precision: str,
    out: str | Path,
    metrics_of: Callable[[Recommender, IdMap], dict[str, Any]] | None = None,
) -> Path:
    """Write the int8 or fp16 checkpoint of the checkpoint directory `source` to `out`;
    `metrics_of(model, item_ids)` gives the quantized model's own metrics (else it has none:
    the source's are kept as quantized.source_metrics)."""
    from models.checkpoint import load_checkpoint

    loaded = load_checkpoint(source)
    if isinstance(loaded.model, QuantizedRecommender) or loaded.meta.get("precision"):
        raise QuantizeError(f"{source} is already quantized ({loaded.meta.get('precision')})")
    quantized = quantize_model(loaded.model, precision)
    origin = {
        "source_path": str(Path(source).resolve()),
        "source_weights_sha256": loaded.meta["weights_sha256"],
        "source_metrics": loaded.meta.get("metrics"),
    }
    kept = {k: loaded.meta[k] for k in _KEPT_META if k in loaded.meta}
    if metrics_of is not None:
        kept["metrics"] = metrics_of(quantized, loaded.item_ids)
    return save_quantized(quantized, out, loaded.item_ids, quantized=origin, **kept)


SCHEMES = {
    "int8": "symmetric int8 per row (output channel, item), scale = max|row| / 127",
    "fp16": "float16",
}
# The source's meta.json fields a quantized checkpoint keeps: what it was trained on and how;
# its metrics are the float model's, so they stay under quantized.source_metrics.
_KEPT_META = ("data", "trained_on", "train_seconds", "refit_seconds", "seed", "fit")
