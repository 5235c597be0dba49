"""Versioned checkpoint directories (weights.safetensors + meta.json), written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from models.base import Recommender
from models.data import IdMap
from models.zoo import get_model_class

FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
META = "meta.json"
_REQUIRED_META = ("format_version", "model", "config", "item_ids", "tensors", "weights_sha256")


class CheckpointError(Exception):
    """A checkpoint directory is missing, corrupt, or does not match its metadata."""


@dataclass
class Checkpoint:
    """A loaded, validated checkpoint."""

    model: Recommender
    meta: dict[str, Any]
    item_ids: IdMap
    path: Path


def library_versions() -> dict[str, str]:
    """Versions that matter for reproducing a checkpoint."""
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": getattr(safetensors, "__version__", "unknown"),
        "python": platform.python_version(),
    }


def _sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _build_meta(
    model: Recommender, tensors: dict[str, torch.Tensor], item_ids: IdMap, meta: dict[str, Any]
) -> dict[str, Any]:
    """The meta.json content: format, model, config, ids, tensor shapes, caller's extra fields."""
    return {
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "config": model.config_dict(),
        "num_items": model.num_items,
        "item_ids": item_ids.to_json(),
        "tensors": {name: list(t.shape) for name, t in tensors.items()},
        "parameters": int(sum(t.numel() for t in tensors.values())),
        "versions": library_versions(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **meta,
    }


def _replace_dir(staged: Path, target: Path, overwrite: bool) -> None:
    """Move a fully written directory into place; an old version is removed only afterwards."""
    if not target.exists():
        os.replace(staged, target)
        return
    if not overwrite:
        shutil.rmtree(staged)
        raise CheckpointError(f"{target} already exists (pass overwrite=True to replace it)")
    retired = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, retired)
    os.replace(staged, target)
    shutil.rmtree(retired, ignore_errors=True)


def save_checkpoint(
    model: Recommender,
    directory: str | Path,
    item_ids: IdMap | list[str] | None = None,
    overwrite: bool = False,
    **meta: Any,
) -> Path:
    """Write a checkpoint directory atomically (temp dir in the same parent, then rename).

    `meta` adds fields such as user_ids, data ({fingerprint, interactions, users}), metrics
    ({val, test}) and train_seconds. Item ids default to "0".."I-1".
    """
    target = Path(directory)
    ids = (
        item_ids
        if isinstance(item_ids, IdMap)
        else IdMap(item_ids or map(str, range(model.num_items)))
    )
    if len(ids) != model.num_items:
        raise CheckpointError(f"{len(ids)} item ids for a model of {model.num_items} items")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_tensors().items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        safetensors.torch.save_file(tensors, str(staged / WEIGHTS), metadata={"model": model.name})
        content = _build_meta(model, tensors, ids, meta)
        content["weights_sha256"] = _sha256_file(staged / WEIGHTS)
        (staged / META).write_text(json.dumps(content, indent=1, default=_json_default))
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    _replace_dir(staged, target, overwrite)
    return target


def _json_default(value: Any) -> Any:
    """JSON for numpy scalars/arrays and paths inside metadata."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_meta(directory: str | Path) -> dict[str, Any]:
    """Parse and check meta.json of a checkpoint directory."""
    path = Path(directory) / META
    if not Path(directory).is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    if not path.is_file():
        raise CheckpointError(f"{directory}: missing {META}")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    missing = [key for key in _REQUIRED_META if key not in meta]
    if missing:
        raise CheckpointError(f"{path}: missing fields {missing}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {meta['format_version']} (this code reads {FORMAT_VERSION})"
        )
    return meta


def _read_tensors(directory: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Load weights.safetensors after checking its hash and its tensor names and shapes."""
    path = directory / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{directory}: missing {WEIGHTS}")
    if _sha256_file(path) != meta["weights_sha256"]:
        raise CheckpointError(f"{path}: sha256 differs from meta.json (corrupt or replaced)")
    try:
        tensors = safetensors.torch.load_file(str(path))
    except Exception as exc:  # the safetensors error type differs between versions
        raise CheckpointError(f"{path}: unreadable safetensors ({exc})") from exc
    shapes = {name: list(t.shape) for name, t in tensors.items()}
    if shapes != meta["tensors"]:
        raise CheckpointError(f"{path}: tensors {shapes} differ from meta.json {meta['tensors']}")
    return tensors


def _rebuild(meta: dict[str, Any], tensors: dict[str, torch.Tensor], where: Path) -> Recommender:
    """Instantiate the named model from config and tensors, checking it against the item ids;
    an int8/fp16 checkpoint ("precision" in meta.json) through models.quantize."""
    try:
        model_class = None if meta.get("precision") else get_model_class(str(meta["model"]))
    except (KeyError, ImportError) as exc:
        raise CheckpointError(f"{where}: unknown or unavailable model {meta['model']!r}") from exc
    try:
        if model_class is None:
            from models.quantize import rebuild  # it imports the model classes it compresses

            model = rebuild(meta, tensors)
        else:
            model = model_class.from_state(meta["config"], tensors)
    except Exception as exc:
        raise CheckpointError(
            f"{where}: config and tensors do not fit the {meta['model']} model ({exc})"
        ) from exc
    if model.num_items != len(meta["item_ids"]) or model.item_vectors().shape[0] != model.num_items:
        raise CheckpointError(
            f"{where}: model scores {model.item_vectors().shape[0]} items, "
            f"meta.json lists {len(meta['item_ids'])} item ids"
        )
    return model


def load_checkpoint(directory: str | Path) -> Checkpoint:
    """Load and validate a checkpoint; any problem raises CheckpointError naming it."""
    where = Path(directory)
    meta = read_meta(where)
    try:
        item_ids = IdMap.from_json(meta["item_ids"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: bad item_ids ({exc})") from exc
    model = _rebuild(meta, _read_tensors(where, meta), where)
    return Checkpoint(model=model, meta=meta, item_ids=item_ids, path=where)


def checkpoint_bytes(directory: str | Path) -> int:
    """Total size of the files in a checkpoint directory."""
    return sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())
