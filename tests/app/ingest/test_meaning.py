"""The one rule of what an event means (app.ingest.meaning), and the database's copy of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.config import Settings
from app.db import repo
from app.db.history import HistoryReader
from app.db.session import make_engine, make_sessionmaker
from app.ingest.meaning import (
    HIDDEN,
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    TYPE_BITS,
    Marks,
    RatingRule,
    fold_marks,
    input_types,
    is_input,
    polarity,
)

WEIGHTS = Settings().event_weights


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("view", None, POSITIVE),
        ("purchase", 0.0, POSITIVE),  # only a rating's value means anything
        ("dislike", None, NEGATIVE),
        ("hide", 5.0, NEGATIVE),
        ("rating", None, POSITIVE),  # a rating without a value counts as positive
        ("rating", 5.0, POSITIVE),
        ("rating", 4.0, POSITIVE),
        ("rating", 3.0, NEUTRAL),
        ("rating", 2.0, NEGATIVE),
        ("rating", 1.0, NEGATIVE),
    ],
)
def test_polarity(kind: str, value: float | None, expected: int) -> None:
    assert polarity(kind, value) == expected


def test_thresholds_are_settings() -> None:
    rule = RatingRule.of(Settings(rating_positive_min=8, rating_negative_max=5))
    assert [polarity("rating", v, rule) for v in (9, 6, 5)] == [POSITIVE, NEUTRAL, NEGATIVE]


def test_model_input_is_weighted_and_never_negative() -> None:
    assert input_types(WEIGHTS) == ["view", "click", "add_to_cart", "purchase", "rating"]
    assert input_types({**WEIGHTS, "dislike": 1.0, "view": 0.0}) == [
        "click",
        "add_to_cart",
        "purchase",
        "rating",
    ]
    assert is_input("rating", 3.0, WEIGHTS) and not is_input("rating", 2.0, WEIGHTS)
    assert not is_input("dislike", None, {**WEIGHTS, "dislike": 1.0})
    assert not is_input("view", None, {**WEIGHTS, "view": 0.0})


def test_marks_fold_in_time_order() -> None:
    events = [
        ("a", "view", None),
        ("a", "dislike", None),  # after the view: hidden
        ("b", "hide", None),
        ("b", "click", None),  # a later positive event lifts the hide
        ("c", "dislike", None),
        ("c", "rating", 3.0),  # neutral: seen, but the dislike stays
        ("d", "rating", 1.0),  # acts as a dislike, and is not "seen"
        ("e", "purchase", None),
    ]
    marks = fold_marks(events)
    assert marks == {
        "a": TYPE_BITS["view"] | HIDDEN,
        "b": TYPE_BITS["click"],
        "c": TYPE_BITS["rating"] | HIDDEN,
        "d": HIDDEN,
        "e": TYPE_BITS["purchase"],
    }
    everything = Marks.of(marks, ["view", "click", "add_to_cart", "purchase", "rating"])
    assert everything.seen == {"a", "b", "c", "e"} and everything.hidden == {"a", "c", "d"}
    assert everything.masked(repeats=True) == {"a", "c", "d"}
    assert Marks.of(marks, ["purchase"]).masked(repeats=False) == {"a", "c", "d", "e"}


async def test_database_history_and_marks_follow_the_rule(settings: Settings) -> None:
    # The SQL of the hot path (asyncpg on Postgres, Core on SQLite) against the Python rule.
    kinds = ["view", "rating", "dislike", "rating", "click", "hide", "rating", "purchase"]
    values = [None, 1.0, None, 3.0, None, None, None, 2.5]
    items = [f"i{n % 5}" for n in range(len(kinds))]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    columns = repo.EventColumns(
        event_id=[f"m-{n}" for n in range(len(kinds))],
        user_id=["m"] * len(kinds),
        item_id=items,
        type=kinds,
        value=values,
        event_time=[start + timedelta(minutes=n) for n in range(len(kinds))],
        recommendation_id=[None] * len(kinds),
    )
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        await repo.insert_events(session=session, events=columns)
        await session.commit()
    await engine.dispose()
    reader = HistoryReader(
        make_engine(settings.database_url),
        connect_timeout_s=2,
        pool_size=2,
        input_types=input_types(WEIGHTS),
        negative_max=2.0,
    )
    await reader.start()
    try:
        events = list(zip(items, kinds, values, strict=True))
        expected = [item for item, kind, value in events if is_input(kind, value, WEIGHTS)]
        assert expected == ["i0", "i3", "i4", "i1", "i2"]
        assert await reader("m", 100) == expected
        assert await reader("m", 2) == expected[-2:]
        read = await reader.read("m", 100)
        assert read.history == expected
        assert fold_marks(read.marks or []) == fold_marks(events)
    finally:
        await reader.close()
        await reader.engine.dispose()
