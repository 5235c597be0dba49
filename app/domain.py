"""The vocabulary the API, the database and the settings share: event types, ids, UTC times."""

from __future__ import annotations

import math
import typing
from datetime import UTC, datetime
from typing import Literal

# The one definition of the event types: the API's schema, the table's check constraint and the
# default training weights all derive from it.
EventType = Literal["view", "click", "add_to_cart", "purchase", "rating", "dislike", "hide"]
EVENT_TYPES: tuple[str, ...] = typing.get_args(EventType)
# "Not interested": the item leaves the user's lists until a later positive event on it.
NEGATIVE_TYPES: tuple[str, ...] = ("dislike", "hide")
# RECSYS_EVENT_WEIGHTS' default: every positive type is model input, with weight 1.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    kind: 1.0 for kind in EVENT_TYPES if kind not in NEGATIVE_TYPES
}
ID_LEN = 256  # longest user, item or event id
OVERRIDE = "override"  # the experiment variant of a request that names its model
# meta.json "source" of the checkpoints `recsys retrain` writes: they serve only once promoted,
# through their model_versions row, never as the newest directory on disk.
RETRAIN_SOURCE = "retrain"


def as_utc(moment: datetime) -> datetime:
    """A datetime as aware UTC: SQLite hands back naive ones, and everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def epoch_seconds(moment: datetime) -> int:
    """A stored time as whole epoch seconds (floored), the unit of the models' event times."""
    return math.floor(as_utc(moment).timestamp())
