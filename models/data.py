"""Id maps, interaction tables, leave-one-out datasets, loaders for MovieLens and CSV/TSV files."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

# Column names accepted in a CSV/TSV header, mapped to the Interactions field they fill.
_HEADER_ALIASES = {
    "user_id": "user",
    "userid": "user",
    "user": "user",
    "item_id": "item",
    "itemid": "item",
    "movieid": "item",
    "item": "item",
    "timestamp": "timestamp",
    "ts": "timestamp",
    "time": "timestamp",
    "type": "type",
    "event_type": "type",
    "value": "value",
    "rating": "value",
}


def default_data_dir() -> Path:
    """Dataset root: $RECSYS_DATA_DIR, else ../shared/datasets next to the repository root."""
    env = os.environ.get("RECSYS_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def dataset_name(source: str | Path) -> str:
    """A dataset's name for reports: its path under `default_data_dir()`, else its last part
    (never an absolute path of this machine)."""
    path = Path(source)
    try:
        relative = path.resolve().relative_to(default_data_dir().resolve())
    except ValueError:
        return path.name or str(source)
    return relative.as_posix() if relative.parts else path.name


def _natural_key(ids: Sequence[str]) -> Any:
    """Sort key: numeric when every id is a decimal integer (MovieLens), else plain string."""
    if all(i.isdigit() for i in ids):
        return int
    return None


class IdMap:
    """A bijection between external string ids and contiguous indices 0..n-1."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = []
        self._index: dict[str, int] = {}
        for raw in ids:
            self.add(raw)

    @classmethod
    def sorted_from(cls, ids: Iterable[Any]) -> IdMap:
        """Map of the unique ids in natural order (numerically when all ids are integers)."""
        unique = np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, str))
        names = unique.tolist()
        return cls(sorted(names, key=_natural_key(names)))

    def add(self, raw: Any) -> int:
        """Index of `raw`, appending it if new."""
        key = str(raw)
        found = self._index.get(key)
        if found is not None:
            return found
        self._index[key] = len(self.ids)
        self.ids.append(key)
        return len(self.ids) - 1

    def index(self, raw: Any) -> int:
        """Index of a known id; KeyError for an unknown one."""
        return self._index[str(raw)]

    def get(self, raw: Any, default: int = -1) -> int:
        """Index of an id, or `default` when unknown."""
        return self._index.get(str(raw), default)

    def indices(self, raws: Iterable[Any], default: int | None = None) -> np.ndarray:
        """Indices of many ids as int64; unknown ids raise KeyError unless `default` is given."""
        values = raws if isinstance(raws, np.ndarray) else np.asarray(list(raws), dtype=str)
        unique, inverse = np.unique(values.astype(str), return_inverse=True)  # look up each id once
        if default is None:
            found = np.array([self._index[u] for u in unique.tolist()], dtype=np.int64)
        else:
            found = np.array([self._index.get(u, default) for u in unique.tolist()], dtype=np.int64)
        return found[inverse.reshape(-1)] if len(values) else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, raw: object) -> bool:
        return str(raw) in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self.ids == other.ids

    def __repr__(self) -> str:
        return f"IdMap({len(self)} ids)"

    def to_json(self) -> list[str]:
        """JSON-able form: the ids in index order."""
        return list(self.ids)

    @classmethod
    def from_json(cls, data: Sequence[str]) -> IdMap:
        """Inverse of `to_json`; duplicate ids are refused."""
        id_map = cls(data)
        if len(id_map) != len(data):
            raise ValueError("IdMap.from_json: duplicate ids")
        return id_map


@dataclass
class Interactions:
    """One row per event, in file order: string ids, int64 timestamps, optional type and value."""

    user_ids: np.ndarray  # (N,) str
    item_ids: np.ndarray  # (N,) str
    timestamps: np.ndarray  # (N,) int64; file row number when the source has no time column
    types: np.ndarray | None = None  # (N,) str, e.g. "view", "purchase"
    values: np.ndarray | None = None  # (N,) float64, e.g. the MovieLens rating
    # (N,) float64 training weight of each row (an event type's weight); None: every row 1,
    # so data without weights (MovieLens) trains exactly as before weights existed.
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.user_ids)

    def take(self, rows: np.ndarray) -> Interactions:
        """The rows selected by a boolean mask or an index array, in that order."""
        return Interactions(
            user_ids=self.user_ids[rows],
            item_ids=self.item_ids[rows],
            timestamps=self.timestamps[rows],
            types=None if self.types is None else self.types[rows],
            values=None if self.values is None else self.values[rows],
            weights=None if self.weights is None else self.weights[rows],
        )

    def fingerprint(self) -> str:
        """sha256 of the (user, item, timestamp) rows."""
        digest = hashlib.sha256()
        for column in (self.user_ids, self.item_ids):
            digest.update("\x1f".join(column.tolist()).encode())
            digest.update(b"\x1e")
        digest.update(np.ascontiguousarray(self.timestamps, dtype="<i8").tobytes())
        return digest.hexdigest()


@dataclass
class EvalSet:
    """Users to evaluate: each input history and its one held-out target item (-1: unknown item)."""

    histories: list[np.ndarray]
    targets: np.ndarray  # (U,) int64
    times: list[np.ndarray] | None = None  # each history item's timestamp, when known

    def __len__(self) -> int:
        return len(self.targets)

    def sample(self, max_users: int | None, seed: int = 0) -> EvalSet:
        """Itself, or a seeded sample of `max_users` of its users (in order) when it has more:
        full ranking over a large catalog for every user costs more than the training, and
        the same seed picks the same users (every epoch, both sides of a comparison)."""
        if max_users is None or len(self) <= max_users:
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self), max_users, replace=False))
        times = None if self.times is None else [self.times[r] for r in rows]
        return EvalSet([self.histories[r] for r in rows], self.targets[rows], times)


@dataclass
class LeaveOneOut:
    """Per-user chronological train histories with one validation and one test item each."""

    user_ids: IdMap
    item_ids: IdMap
    train: list[np.ndarray]  # per user index: chronological item indices, int64
    val: np.ndarray  # (U,) int64 item index
    test: np.ndarray  # (U,) int64 item index
    meta: dict[str, Any] = field(default_factory=dict)  # provenance: source path, filters
    # Timestamps (seconds) of each train item, same order, and of each val and test item, as
    # `Interactions.timestamps` gives them (row numbers for a source without a time column);
    # None when not known. For models of the time between events; not in the fingerprint.
    train_times: list[np.ndarray] | None = None
    val_times: np.ndarray | None = None  # (U,) int64
    test_times: np.ndarray | None = None  # (U,) int64
    # Training weight of each train item, same order, and of each val item (models.train's
    # refit trains on it); None: every weight 1. Models that use weights (mf, sasrec) scale an
    # interaction's part of the loss by it; not in the fingerprint.
    train_weights: list[np.ndarray] | None = None  # float64 per train history
    val_weights: np.ndarray | None = None  # (U,) float64

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_interactions(self) -> int:
        return sum(len(h) for h in self.train) + 2 * self.num_users

    def val_set(self, max_users: int | None = None, seed: int = 0) -> EvalSet:
        """Validation protocol: input history = train, target = val (`max_users`: a seeded
        sample of the users, EvalSet.sample)."""
        times = None if self.train_times is None else list(self.train_times)
        return EvalSet(list(self.train), self.val, times).sample(max_users, seed)

    def train_plus_val(self) -> list[np.ndarray]:
        """Histories extended by each user's validation item."""
        pairs = zip(self.train, self.val, strict=True)
        return [np.append(h, v) if v >= 0 else h for h, v in pairs]  # -1: item unknown to a model

    def train_plus_val_times(self) -> list[np.ndarray] | None:
        """The times of `train_plus_val()`'s items, None without times."""
        if self.train_times is None or self.val_times is None:
            return None
        pairs = zip(self.train_times, self.val_times, self.val, strict=True)
        return [np.append(t, vt) if v >= 0 else t for t, vt, v in pairs]

    def train_plus_val_weights(self) -> list[np.ndarray] | None:
        """The weights of `train_plus_val()`'s items (a missing val weight is 1), None without
        train weights."""
        if self.train_weights is None:
            return None
        val_weights = np.ones(len(self.val)) if self.val_weights is None else self.val_weights
        pairs = zip(self.train_weights, val_weights, self.val, strict=True)
        return [np.append(w, vw) if v >= 0 else w for w, vw, v in pairs]

    def test_set(self) -> EvalSet:
        """Test protocol: input history = train + val, target = test."""
        return EvalSet(self.train_plus_val(), self.test, self.train_plus_val_times())

    def item_popularity(self) -> np.ndarray:
        """Train interaction count per item: (I,) int64."""
        flat = np.concatenate(self.train) if self.train else np.zeros(0, np.int64)
        return np.bincount(flat, minlength=self.num_items).astype(np.int64)

    def fingerprint(self) -> str:
        """sha256 of the id maps and every split's item indices."""
        digest = hashlib.sha256()
        digest.update(json.dumps([self.user_ids.ids, self.item_ids.ids]).encode())
        lengths = np.array([len(h) for h in self.train], dtype="<i8")
        for array in (lengths, *self.train, self.val, self.test):
            digest.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
        return digest.hexdigest()

    def with_item_ids(self, item_ids: IdMap) -> LeaveOneOut:
        """The same data indexed by another item map (a checkpoint's): unknown items dropped
        from histories, unknown targets become -1 (a miss for the evaluator)."""
        if item_ids == self.item_ids:
            return self
        lookup = np.array([item_ids.get(i) for i in self.item_ids.ids], dtype=np.int64)
        train = [lookup[h] for h in self.train]
        times, weights = self.train_times, self.train_weights
        return LeaveOneOut(
            user_ids=self.user_ids,
            item_ids=item_ids,
            train=[h[h >= 0] for h in train],
            val=lookup[self.val],
            test=lookup[self.test],
            meta=dict(self.meta),
            train_times=None if times is None else _kept_times(times, train),
            val_times=self.val_times,
            test_times=self.test_times,
            train_weights=None if weights is None else _kept_times(weights, train),
            val_weights=self.val_weights,
        )

    @classmethod
    def from_rows(
        cls, train: Interactions, val: Interactions, test: Interactions | None
    ) -> LeaveOneOut:
        """Index the row tables (one val and one test row per user) into a LeaveOneOut; without
        a test table every test target is -1 (unknown)."""
        tables = [train, val] if test is None else [train, val, test]
        users = IdMap.sorted_from(np.concatenate([t.user_ids for t in tables]))
        items = IdMap.sorted_from(np.concatenate([t.item_ids for t in tables]))
        histories, train_times = _group_histories(train, users, items)
        val_items, val_times = _one_per_user(val, users, items, "val")
        train_weights = val_weights = None
        if train.weights is not None or val.weights is not None:  # weighted rows: keep them
            train_weights = _group_weights(train, users)
            val_weights = np.ones(len(users))
            if val.weights is not None:
                val_weights[users.indices(val.user_ids)] = val.weights
        unknown = np.full(len(users), -1, dtype=np.int64)
        test_items, test_times = (
            (unknown, None) if test is None else _one_per_user(test, users, items, "test")
        )
        return cls(
            user_ids=users,
            item_ids=items,
            train=histories,
            val=val_items,
            test=test_items,
            train_times=train_times,
            val_times=val_times,
            test_times=test_times,
            train_weights=train_weights,
            val_weights=val_weights,
        )


def _kept_times(times: list[np.ndarray], histories: list[np.ndarray]) -> list[np.ndarray]:
    """Each history's times (or weights) where its item is known (index >= 0)."""
    return [t[h >= 0] for t, h in zip(times, histories, strict=True)]


def _group_histories(
    rows: Interactions, users: IdMap, items: IdMap
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-user item indices ordered by timestamp, ties in row order; and their timestamps."""
    user_idx = users.indices(rows.user_ids)
    item_idx = items.indices(rows.item_ids)
    order = np.lexsort((rows.timestamps, user_idx))  # lexsort is stable: ties keep row order
    cuts = np.cumsum(np.bincount(user_idx, minlength=len(users)))[:-1]
    histories = [h.astype(np.int64) for h in np.split(item_idx[order], cuts)]
    times = [t.astype(np.int64) for t in np.split(rows.timestamps[order], cuts)]
    return histories, times


def _group_weights(rows: Interactions, users: IdMap) -> list[np.ndarray]:
    """Per-user row weights (1 without a weight column) in `_group_histories`' order."""
    user_idx = users.indices(rows.user_ids)
    weights = np.ones(len(rows)) if rows.weights is None else rows.weights.astype(np.float64)
    order = np.lexsort((rows.timestamps, user_idx))
    cuts = np.cumsum(np.bincount(user_idx, minlength=len(users)))[:-1]
    return list(np.split(weights[order], cuts))


def _one_per_user(
    rows: Interactions, users: IdMap, items: IdMap, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """(U,) item index and timestamp of each user's single row; every user must have one."""
    user_idx = users.indices(rows.user_ids)
    if len(rows) != len(users) or np.bincount(user_idx, minlength=len(users)).max() != 1:
        raise ValueError(f"{name}: expected exactly one row per user ({len(users)} users)")
    out = np.empty(len(users), dtype=np.int64)
    out[user_idx] = items.indices(rows.item_ids)
    times = np.empty(len(users), dtype=np.int64)
    times[user_idx] = rows.timestamps
    return out, times


def _open_text(path: Path) -> io.TextIOBase:
    """Open a plain or gzipped UTF-8 text file (MovieLens rating files are ASCII)."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")  # caller closes


def _base_name(path: Path) -> str:
    """File name without a trailing .gz."""
    return path.name[:-3] if path.name.endswith(".gz") else path.name


def _parse_timestamps(raw: Sequence[str]) -> np.ndarray:
    """Integer epoch seconds, or ISO-8601 strings converted to epoch seconds."""
    try:
        return np.asarray(raw, dtype=np.int64)
    except ValueError:
        return np.array([int(datetime.fromisoformat(t).timestamp()) for t in raw], dtype=np.int64)


def _split_fields(text: str, delimiter: str, width: int, source: Path) -> np.ndarray:
    """Delimited text -> (rows, width) str array; plain split when unquoted, else the csv module."""
    text = text.replace("\r\n", "\n").strip("\n")
    if not text:
        return np.zeros((0, width), dtype=str)
    if '"' in text:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r]
        if any(len(r) != width for r in rows):
            raise ValueError(f"{source}: rows do not all have {width} fields")
        return np.asarray(rows, dtype=str)
    fields = np.asarray(text.replace("\n", delimiter).split(delimiter), dtype=str)
    if fields.size % width or (text.count("\n") + 1) * width != fields.size:
        raise ValueError(f"{source}: rows do not all have {width} fields")
    return fields.reshape(-1, width)


def _from_columns(columns: dict[str, Any], source: Path) -> Interactions:
    """Build an Interactions table from string columns named user/item/timestamp/type/value."""
    for required in ("user", "item"):
        if required not in columns:
            raise ValueError(f"{source}: no {required} id column")
    n = len(columns["user"])
    stamps = columns.get("timestamp")
    return Interactions(
        user_ids=np.asarray(columns["user"], dtype=str),
        item_ids=np.asarray(columns["item"], dtype=str),
        timestamps=np.arange(n, dtype=np.int64) if stamps is None else _parse_timestamps(stamps),
        types=np.asarray(columns["type"], dtype=str) if "type" in columns else None,
        values=_parse_values(columns["value"]) if "value" in columns else None,
    )


def _parse_values(raw: Sequence[str]) -> np.ndarray:
    """Float values; an empty field (an event type without a value) is NaN."""
    text = np.asarray(raw, dtype=str)
    return np.where(text == "", "nan", text).astype(np.float64)


def _read_movielens(path: Path, separator: str) -> Interactions:
    """MovieLens `user<sep>item<sep>rating<sep>timestamp` without a header."""
    with _open_text(path) as f:
        text = f.read()
    if separator != "\t":
        text = text.replace(separator, "\t")
    table = _split_fields(text, "\t", 4, path)
    columns = dict(zip(("user", "item", "value", "timestamp"), table.T, strict=True))
    return _from_columns(columns, path)


def _read_header_table(path: Path) -> Interactions:
    """CSV/TSV with a header naming the columns (delimiter detected from the header line)."""
    with _open_text(path) as f:
        header = f.readline()
        delimiter = "\t" if "\t" in header else ";" if ";" in header and "," not in header else ","
        names = [
            _HEADER_ALIASES.get(n.strip().lower()) for n in header.strip("\r\n").split(delimiter)
        ]
        table = _split_fields(f.read(), delimiter, len(names), path)
    return _from_columns({n: c for n, c in zip(names, table.T, strict=True) if n}, path)


def load_interactions(path: str | Path) -> Interactions:
    """Rows of u.data, ratings.dat, ratings.csv or a headed CSV/TSV (.gz too), in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no interactions file at {path}")
    name = _base_name(path)
    if name.endswith(".data"):
        return _read_movielens(path, "\t")
    if name.endswith(".dat"):
        return _read_movielens(path, "::")
    return _read_header_table(path)


def _split_file(directory: Path, stem: str) -> Path:
    """The split file `stem`.tsv, .tsv.gz, .csv or .csv.gz in a directory."""
    for suffix in (".tsv", ".tsv.gz", ".csv", ".csv.gz"):
        candidate = directory / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{directory}: no {stem}.tsv[.gz] or {stem}.csv[.gz]")


def load_split_dir(path: str | Path) -> LeaveOneOut:
    """Read a leave-one-out split directory (train.tsv.gz, val.tsv, test.tsv as ml1m-half-loo)."""
    directory = Path(path)
    train, val, test = (
        load_interactions(_split_file(directory, s)) for s in ("train", "val", "test")
    )
    data = LeaveOneOut.from_rows(train, val, test)
    data.meta = {"source": str(directory), "format": "split-dir"}
    return data


def load_train_val(path: str | Path) -> LeaveOneOut:
    """A split directory's train and val only: the test file is never opened (for tuning).

    Users and items are indexed from train and val; every test target is -1 (unknown)."""
    directory = Path(path)
    train, val = (load_interactions(_split_file(directory, s)) for s in ("train", "val"))
    data = LeaveOneOut.from_rows(train, val, None)
    data.meta = {"source": str(directory), "format": "split-dir", "test": "not read"}
    return data


def is_split_dir(path: str | Path) -> bool:
    """True when `path` is a directory holding train/val/test split files."""
    try:
        _split_file(Path(path), "train")
    except FileNotFoundError:
        return False
    return True


def resolve_data_path(path: str | Path) -> Path:
    """`path` as given when it exists, else relative to the default data directory."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    under_root = default_data_dir() / candidate
    if under_root.exists():
        return under_root
    raise FileNotFoundError(f"no dataset at {candidate} nor {under_root}")
