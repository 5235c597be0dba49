"""Catalog items and their text: loaders for CSV, JSONL and the MovieLens movie lists.

`item_text` is what the pretrained sentence encoder reads. Every content vector is a function
of it, so a change to its format changes (and invalidates) every stored content vector.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

AttributeValue = str | int | float | bool

# CSV header names (lower-cased) of the item id column.
ID_COLUMNS = ("item_id", "itemid", "movieid", "id")
# CSV header names (lower-cased) mapped to the field they fill; any other column is an attribute.
CSV_FIELDS = {
    "title": "title",
    "description": "description",
    "categories": "categories",
    "category": "categories",
    "genres": "categories",
    "price": "price",
    "active": "active",
}
# The ML-100K genre flags in column order, for a u.item without its u.genre.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
# Placeholder genres that say "none": no category.
NO_GENRE = {"unknown", "(no genres listed)"}
# "Title (1995)", also a series' "Title (2006–2007)": the first year is the year.
TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-–]\d{4})?\)\s*$")
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass
class CatalogItem:
    """One catalog entry, as `PUT /items` takes it."""

    item_id: str
    title: str | None = None
    description: str | None = None
    categories: list[str] = field(default_factory=list)  # "shoes/running" is one category
    attributes: dict[str, AttributeValue] = field(default_factory=dict)  # flat: name -> value
    price: float | None = None
    active: bool = True


def _value_text(value: AttributeValue) -> str:
    """An attribute value as the encoder reads it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def item_text(item: CatalogItem) -> str:
    """The text the sentence encoder embeds: title, categories, attributes, description.

    Parts in this order, each stripped, empty ones skipped, joined with ". ": the title, each
    category in order, each attribute as "name: value" sorted by name, the description; ""
    when there is nothing. Price and active are left out (not content). Changing this changes
    every content vector.
    """
    attributes = (
        f"{name}: {_value_text(value)}" for name, value in sorted(item.attributes.items())
    )
    parts = [item.title or "", *item.categories, *attributes, item.description or ""]
    return ". ".join(part for part in (p.strip() for p in parts) if part)


def split_title_year(title: str) -> tuple[str, int | None]:
    """'Toy Story (1995)' -> ('Toy Story', 1995); a title without a trailing year is kept."""
    match = TITLE_YEAR.match(title.strip())
    if match is None or not match["title"]:
        return title.strip(), None
    return match["title"], int(match["year"])


def movie_item(item_id: str, title: str, genres: list[str]) -> CatalogItem:
    """A MovieLens movie: the title without its year, genres as categories, `year` attribute."""
    name, year = split_title_year(title)
    categories = [g for g in genres if g and g not in NO_GENRE]
    attributes: dict[str, AttributeValue] = {} if year is None else {"year": year}
    return CatalogItem(item_id=item_id, title=name, categories=categories, attributes=attributes)


def _read_text(path: Path, encoding: str) -> str:
    """A whole text file; undecodable bytes are a ValueError naming the file."""
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as error:
        name = encoding.removesuffix("-sig").upper()
        raise ValueError(f"{path}: not {name} text (byte {error.start})") from None


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for the non-blank lines of a file, numbered from 1."""
    # Not str.splitlines: it also breaks at \x85 (a latin-1 byte) and U+2028 (valid in JSON).
    for number, line in enumerate(_read_text(path, encoding).split("\n"), start=1):
        if line.strip():
            yield number, line


def _ml100k_genres(directory: Path) -> list[str]:
    """Genre names by flag position from u.genre ('name|index' lines)."""
    genre_file = directory / "u.genre"
    if not genre_file.is_file():
        return list(ML100K_GENRES)
    names: dict[int, str] = {}
    for number, line in _lines(genre_file, "latin-1"):
        name, _, index = line.rpartition("|")
        if not name or not index.strip().isdigit():
            raise ValueError(f"{genre_file}, line {number}: expected 'name|index'")
        names[int(index)] = name
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{genre_file}: genre indices are not 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


def load_ml100k(directory: Path) -> list[CatalogItem]:
    """ML-100K's u.item: id|title|release|video release|url|one 0/1 flag per genre."""
    genres = _ml100k_genres(directory)
    path = directory / "u.item"
    items = []
    for number, line in _lines(path, "latin-1"):
        columns = line.split("|")
        flags = columns[5:]
        if len(columns) < 6 or len(flags) != len(genres) or set(flags) - {"0", "1"}:
            raise ValueError(
                f"{path}, line {number}: expected id|title|3 more fields|{len(genres)} 0/1 flags"
            )
        chosen = [name for name, flag in zip(genres, flags, strict=True) if flag == "1"]
        items.append(movie_item(_required_id(columns[0], path, number), columns[1], chosen))
    return items


def load_ml1m(directory: Path) -> list[CatalogItem]:
    """ML-1M's movies.dat: id::title::A|B genres, latin-1."""
    path = directory / "movies.dat"
    items = []
    for number, line in _lines(path, "latin-1"):
        columns = line.split("::")
        if len(columns) != 3:
            raise ValueError(f"{path}, line {number}: expected id::title::genres")
        item_id = _required_id(columns[0], path, number)
        items.append(movie_item(item_id, columns[1], columns[2].split("|")))
    return items


def _ml_tags(path: Path) -> dict[str, str]:
    """movieId -> its users' tags, unique, sorted (case-insensitively), comma-separated."""
    tags: dict[str, set[str]] = defaultdict(set)
    header, rows = _csv_table(path)
    if not {"movieId", "tag"} <= set(header):
        raise ValueError(f"{path}, line 1: expected movieId and tag columns")
    for _, row in rows:
        if row["tag"].strip():
            tags[row["movieId"].strip()].add(row["tag"].strip())
    return {
        movie: ", ".join(sorted(names, key=lambda t: (t.casefold(), t)))
        for movie, names in tags.items()
    }


def load_ml_latest(directory: Path) -> list[CatalogItem]:
    """ml-latest(-small)'s movies.csv; tags.csv's user tags go in the description."""
    path = directory / "movies.csv"
    tags_file = directory / "tags.csv"
    tags = _ml_tags(tags_file) if tags_file.is_file() else {}
    header, rows = _csv_table(path)
    if not {"movieId", "title", "genres"} <= set(header):
        raise ValueError(f"{path}, line 1: expected movieId, title, genres columns")
    items = []
    for number, row in rows:
        item = movie_item(
            _required_id(row["movieId"], path, number), row["title"], row["genres"].split("|")
        )
        if item.item_id in tags:
            item.description = f"Tags: {tags[item.item_id]}"
        items.append(item)
    return items


def _required_id(raw: str, path: Path, number: int) -> str:
    """A stripped, non-empty item id."""
    item_id = raw.strip()
    if not item_id:
        raise ValueError(f"{path}, line {number}: empty item id")
    return item_id


def _csv_table(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """A headed CSV (a .tsv is tab-separated), UTF-8: its header, and (line number, row by
    column name) for each non-blank row."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # newline="": quoted cells may hold line breaks; only \n, \r and \r\n end a line.
    reader = csv.reader(
        io.StringIO(_read_text(path, "utf-8-sig"), newline=""), delimiter=delimiter, strict=True
    )
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise ValueError(f"{path}: empty file, expected a header line") from None
    except csv.Error as error:
        raise ValueError(f"{path}, line 1: {error}") from None
    if len(set(header)) != len(header):
        raise ValueError(f"{path}, line 1: repeated column names")
    return header, _csv_rows(reader, header, path)


def _csv_rows(reader: Any, header: list[str], path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row by column name) for the non-blank rows a csv reader has left."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise ValueError(f"{path}, line {reader.line_num}: {error}") from None
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ValueError(
                f"{path}, line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
            )
        yield reader.line_num, dict(zip(header, row, strict=True))


def _parse_price(raw: str, path: Path, number: int) -> float | None:
    """A finite, non-negative price, or None for an empty cell."""
    if not raw.strip():
        return None
    try:
        price = float(raw)
    except ValueError:
        raise ValueError(f"{path}, line {number}: price {raw!r} is not a number") from None
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"{path}, line {number}: price {raw!r} is not a finite number >= 0")
    return price


def _parse_active(raw: str, path: Path, number: int) -> bool:
    """true/false, 1/0, yes/no (any case); an empty cell is active."""
    if not raw.strip():
        return True
    try:
        return BOOLEANS[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"{path}, line {number}: active {raw!r} is not true/false") from None


def _csv_item(row: dict[str, str], id_column: str, path: Path, number: int) -> CatalogItem:
    """One CSV row; columns that are not fields become string attributes (empty cells skipped)."""
    item = CatalogItem(item_id=_required_id(row[id_column], path, number))
    for name, raw in row.items():
        target = CSV_FIELDS.get(name.lower())
        if name == id_column:
            continue
        if target == "title" or target == "description":
            setattr(item, target, raw.strip() or None)
        elif target == "categories":
            item.categories = [c.strip() for c in raw.split("|") if c.strip()]
        elif target == "price":
            item.price = _parse_price(raw, path, number)
        elif target == "active":
            item.active = _parse_active(raw, path, number)
        elif raw.strip():
            item.attributes[name] = raw.strip()
    return item


def load_csv(path: Path) -> list[CatalogItem]:
    """A headed CSV/TSV: an id column, title, description, categories 'a|b', price, active;
    any other column is a string attribute."""
    header, rows = _csv_table(path)
    names = {name.lower(): name for name in header}
    found = [names[alias] for alias in ID_COLUMNS if alias in names]
    if not found:
        raise ValueError(f"{path}, line 1: no item id column ({', '.join(ID_COLUMNS)})")
    return [_csv_item(row, found[0], path, number) for number, row in rows]


def _json_id(value: Any, where: str) -> str:
    """A JSON item id: a non-empty string, or an integer written as one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: item_id must be a non-empty string")
    return value


def _check_json_types(data: dict[str, Any], where: str) -> None:
    """Refuse JSON values of the wrong type for their CatalogItem field."""
    for name in ("title", "description"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise ValueError(f"{where}: {name} must be a string or null")
    categories = data.get("categories", [])
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ValueError(f"{where}: categories must be a list of strings")
    attributes = data.get("attributes", {})
    if not isinstance(attributes, dict):
        raise ValueError(f"{where}: attributes must be an object")
    for name, value in attributes.items():
        finite = not isinstance(value, float) or math.isfinite(value)
        if not isinstance(value, AttributeValue) or not finite:
            raise ValueError(f"{where}: attribute {name!r} must be a string, number or boolean")
    price = data.get("price")
    if price is not None and (isinstance(price, bool) or not isinstance(price, int | float)):
        raise ValueError(f"{where}: price must be a number or null")
    if price is not None and not (math.isfinite(price) and price >= 0):
        raise ValueError(f"{where}: price must be a finite number >= 0")
    if not isinstance(data.get("active", True), bool):
        raise ValueError(f"{where}: active must be true or false")


def _json_item(line: str, path: Path, number: int) -> CatalogItem:
    """One JSONL line: an object with CatalogItem's fields."""
    where = f"{path}, line {number}"
    try:
        data = json.loads(line)
    except ValueError as error:
        raise ValueError(f"{where}: invalid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object")
    unknown = data.keys() - {f.name for f in fields(CatalogItem)}
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    if "item_id" not in data:
        raise ValueError(f"{where}: no item_id")
    _check_json_types(data, where)
    item_id = _json_id(data["item_id"], where)
    price = data.get("price")
    return CatalogItem(
        **{**data, "item_id": item_id, "price": None if price is None else float(price)}
    )


def load_jsonl(path: Path) -> list[CatalogItem]:
    """One JSON object a line with the CatalogItem fields; blank lines are skipped."""
    return [_json_item(line, path, number) for number, line in _lines(path, "utf-8-sig")]


def load_catalog(path: str | Path) -> list[CatalogItem]:
    """Catalog items in file order from a CSV/TSV, a JSONL file, or MovieLens: a directory (or
    the file itself) with ml-100k's u.item, ml-1m's movies.dat or ml-latest's movies.csv."""
    path = Path(path)
    if path.is_dir():
        for name, loader in MOVIELENS_FILES.items():
            if (path / name).is_file():
                return loader(path)
        raise ValueError(f"{path}: no {', '.join(MOVIELENS_FILES)} in this directory")
    if not path.is_file():
        raise FileNotFoundError(f"no catalog file at {path}")
    if path.name in MOVIELENS_FILES:
        return MOVIELENS_FILES[path.name](path.parent)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return load_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return load_csv(path)
    raise ValueError(f"{path}: expected a .csv, .tsv, .jsonl or .ndjson file, or a directory")


# The MovieLens movie lists by file name, in the order a directory is searched.
MOVIELENS_FILES: dict[str, Callable[[Path], list[CatalogItem]]] = {
    "u.item": load_ml100k,
    "movies.dat": load_ml1m,
    "movies.csv": load_ml_latest,
}
