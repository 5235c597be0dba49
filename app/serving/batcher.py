"""Coalesce concurrent user-vector computations into batched model calls on a worker thread.

Requests that miss the cache queue their histories; one worker thread encodes one model
version's queue at a time and scores the batch's ranked lists in one matrix product. For a
Transformer the per-call overhead dominates at batch size 1, so batching cuts the CPU per cold
request, and while the worker computes (torch releases the GIL inside its kernels) the event
loop keeps answering warm requests and reading histories, and the misses that arrive meanwhile
form the next batch. A lone request waits for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from app.serving.registry import LoadedModel
from app.serving.retrieval import retrieve


@dataclass(frozen=True)
class Encoded:
    """A history's user vector and the model's top list of the items not in it (exact, or
    re-scored candidates of the version's ANN index: app.serving.retrieval)."""

    vector: torch.Tensor  # (D,) float32
    ranked: np.ndarray  # (m,) int32 item indices, best first
    scores: np.ndarray  # (m,) float32
    ranked_over: int  # how many items the list was ranked over
    from_index: bool = False  # its candidates came from the version's ANN index


# Per waiting request: its history, the items to leave out of its list, its history's event
# weights (None: all 1), its items' event times (None: not known or not read by the model), and
# the future its row resolves.
Pending = list[
    tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, asyncio.Future[Encoded]]
]


def _encode(
    model: LoadedModel,
    histories: Sequence[np.ndarray],
    masked: Sequence[np.ndarray],
    limit: int,
    weights: Sequence[np.ndarray | None] = (),
    times: Sequence[np.ndarray | None] = (),
) -> list[Encoded]:
    """User vectors and their top-`limit` lists, the batch scored in one matrix product; runs
    on the worker thread, off the event loop. `weights`: per history, its items' event weights
    (None: all 1); with none at all the model folds in unweighted, as before. `times`: per
    history, its items' event times (None: not known), for a model that reads them."""
    weighted = None
    if any(w is not None for w in weights):
        weighted = [
            np.ones(len(h)) if w is None else w for h, w in zip(histories, weights, strict=True)
        ]
    with torch.inference_mode():  # thread-local: set here, not on the loop's thread
        vectors = _user_vectors(model, histories, weighted, times).to(torch.float32)  # (B, D)
    found = retrieve(model, vectors, masked, limit)  # the ANN index when the version has one
    items = int(model.item_vectors.shape[0])  # every row: indexed ones or scored beside them
    return [
        Encoded(v, r, s, items, approximate)
        for v, (r, s), approximate in zip(vectors, found.lists, found.from_index, strict=True)
    ]


def _user_vectors(
    model: LoadedModel,
    histories: Sequence[np.ndarray],
    weighted: list[np.ndarray] | None,
    times: Sequence[np.ndarray | None],
) -> torch.Tensor:
    """The model's user vectors (B, D); histories with times and those without (the model's
    "unknown" times) are encoded in separate calls, as a model reads a batch's times whole."""
    extra = {} if weighted is None else {"weights": weighted}
    stamps = [t for t in times if t is not None]
    if not stamps:
        return model.model.user_vectors(histories, **extra)
    if len(stamps) == len(histories):
        return model.model.user_vectors(histories, stamps, **extra)
    timed = [n for n, t in enumerate(times) if t is not None]
    untimed = [n for n, t in enumerate(times) if t is None]
    out = torch.empty(len(histories), model.dim)
    for rows, given in ((timed, stamps), (untimed, None)):
        part = {} if weighted is None else {"weights": [weighted[n] for n in rows]}
        encoded = model.model.user_vectors([histories[n] for n in rows], given, **part)
        out[torch.tensor(rows)] = encoded.to(torch.float32)
    return out


class EncodeBatcher:
    """Per model version, the histories waiting for the worker; the worker takes one version's
    queue (up to max_batch) at a time."""

    def __init__(
        self,
        max_batch: int = 64,
        on_batch: Callable[[int], None] | None = None,
        ranked_items: int = 100,
    ) -> None:
        self.max_batch, self.on_batch, self.ranked_items = max_batch, on_batch, ranked_items
        self.pending: dict[str, tuple[LoadedModel, Pending]] = {}
        # OpenMP thread counts are per thread: the worker takes the serving process's setting.
        self.executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="encode",
            initializer=torch.set_num_threads,
            initargs=(torch.get_num_threads(),),
        )
        self.busy = False

    async def encode(
        self,
        model: LoadedModel,
        history: np.ndarray,
        masked: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        times: np.ndarray | None = None,
    ) -> Encoded:
        """The user vector (D,) of one history of item indices (with their event weights and
        times), with its ranked list of the items not in `masked` (default: the history)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Encoded] = loop.create_future()
        entry = self.pending.get(model.cache_field)
        if entry is None:
            entry = self.pending[model.cache_field] = (model, [])
        entry[1].append((history, history if masked is None else masked, weights, times, future))
        if not self.busy:
            # The worker starts on the next loop iteration, so misses of this one join the batch.
            self.busy = True
            loop.call_soon(self._next)
        return await future

    def _next(self) -> None:
        """Hand the oldest queue to the worker, or go idle when nothing waits."""
        if not self.pending:
            self.busy = False
            return
        key = next(iter(self.pending))
        model, queued = self.pending[key]
        batch, rest = queued[: self.max_batch], queued[self.max_batch :]
        if rest:
            self.pending[key] = (model, rest)
        else:
            del self.pending[key]
        if self.on_batch is not None:
            self.on_batch(len(batch))
        loop = asyncio.get_running_loop()
        histories, masked = [h for h, *_ in batch], [m for _, m, *_ in batch]
        weights, times = [w for _, _, w, _, _ in batch], [t for _, _, _, t, _ in batch]
        work = loop.run_in_executor(
            self.executor, _encode, model, histories, masked, self.ranked_items, weights, times
        )
        work.add_done_callback(lambda done: self._resolve(done, batch))

    def _resolve(self, done: asyncio.Future[list[Encoded]], batch: Pending) -> None:
        """Give each waiter its row (or the error), then start the next batch."""
        error = done.exception()
        for row, (*_, future) in enumerate(batch):
            if future.done():  # the caller went away
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result()[row])
        self._next()

    def close(self) -> None:
        """Stop the worker thread (waiting for a batch in flight)."""
        self.executor.shutdown(wait=True)
