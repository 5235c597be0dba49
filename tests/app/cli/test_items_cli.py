"""`recsys items import`: catalog files into the configured database, all or nothing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings

runner = CliRunner(env={"COLUMNS": "240"})  # wide enough that messages do not wrap


@pytest.fixture
def database(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A migrated SQLite file as the configured database; yields its path."""
    monkeypatch.setenv("RECSYS_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    yield Path(sqlite_url.split("///", 1)[1])
    get_settings.cache_clear()


def stored_items(path: Path) -> dict[str, dict[str, Any]]:
    """The items table, by item id, JSON columns decoded."""
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute("SELECT * FROM items").fetchall()
    items = {row["item_id"]: dict(row) for row in rows}
    for item in items.values():
        item["categories"] = json.loads(item["categories"])
        item["attributes"] = json.loads(item["attributes"])
    return items


def test_help_has_an_example() -> None:
    result = runner.invoke(cli, ["items", "import", "--help"])
    assert result.exit_code == 0 and "Example: recsys items import" in result.output


def test_import_csv(database: Path, tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "item_id,title,categories,price,brand\n"
        "a,Mug,kitchen|mugs,9.5,Acme\nb,Cup,,,\nc,Plate,,,\na,Big mug,,,\n"
    )
    result = runner.invoke(cli, ["items", "import", str(path), "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert "imported 3 items" in result.output  # "a" twice: the last entry wins
    items = stored_items(database)
    assert set(items) == {"a", "b", "c"}
    assert (items["a"]["title"], items["a"]["categories"], items["a"]["price"]) == (
        "Big mug",
        [],
        None,
    )
    assert (items["b"]["title"], items["b"]["attributes"], items["b"]["active"]) == ("Cup", {}, 1)


def test_import_jsonl_updates_what_is_stored(database: Path, tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    first = {"item_id": "a", "title": "Mug", "attributes": {"litres": 0.5, "handle": True}}
    path.write_text(json.dumps(first) + "\n")
    assert runner.invoke(cli, ["items", "import", str(path)]).exit_code == 0
    second = {**first, "description": "Red", "categories": ["kitchen"], "price": 3, "active": False}
    path.write_text(json.dumps(second) + "\n" + json.dumps({"item_id": 7}) + "\n")
    result = runner.invoke(cli, ["items", "import", str(path)])
    assert result.exit_code == 0 and "imported 2 items" in result.output, result.output
    item = stored_items(database)["a"]
    assert {k: item[k] for k in second} == {**second, "active": 0, "price": 3.0}


BAD_ITEMS: list[tuple[dict[str, Any], str]] = [
    ({"title": "a\x00b"}, "item 2 (item_id 'x'): title: Value error, NUL"),
    ({"title": "\ud800"}, "item 2 (item_id 'x'): title"),
    ({"categories": ["c" * 257]}, "item 2 (item_id 'x'): categories.0"),
    ({"attributes": {"a": "v" * 1025}}, "item 2 (item_id 'x'): attributes.a"),
    ({"item_id": "i" * 257}, "item 2 (item_id 'iii"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_ITEMS)
def test_a_bad_item_stops_the_import(
    database: Path, tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    path = tmp_path / "items.jsonl"
    bad = json.dumps({"item_id": "x", **fields})  # ASCII: a lone surrogate as its escape
    path.write_text('{"item_id": "ok"}\n{"item_id": "ok2"}\n' + bad + "\n")
    result = runner.invoke(cli, ["items", "import", str(path)])
    assert result.exit_code == 1
    assert message in result.output and "nothing imported" in result.output
    assert stored_items(database) == {}


def test_a_malformed_file_is_refused(database: Path, tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("id,title\n1,Mug\n2,Cup,extra\n")
    result = runner.invoke(cli, ["items", "import", str(path)])
    assert result.exit_code == 1
    assert "line 3: 3 fields" in result.output and "nothing imported" in result.output
    assert stored_items(database) == {}
    result = runner.invoke(cli, ["items", "import", str(tmp_path / "missing.csv")])
    assert result.exit_code == 1 and "missing.csv" in result.output
