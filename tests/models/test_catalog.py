"""Catalog items, their text, and the loaders: small written files and the real MovieLens lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.catalog import CatalogItem, item_text, load_catalog, split_title_year

GENRES = "unknown|0\nAction|1\nComedy|2\n"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write a file (parents created) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding, newline="")
    return path


def test_item_text_order_and_format() -> None:
    item = CatalogItem(
        item_id="1",
        title=" Trail shoe ",
        description="Grippy.",
        categories=["shoes/running", "outdoor"],
        attributes={"waterproof": True, "brand": "Acme", "weight_g": 280},
        price=89.9,
    )
    assert item_text(item) == (
        "Trail shoe. shoes/running. outdoor. brand: Acme. waterproof: true. weight_g: 280. Grippy."
    )


def test_item_text_skips_empty_parts() -> None:
    assert item_text(CatalogItem(item_id="x")) == ""
    assert item_text(CatalogItem(item_id="x", title="", description="  ", categories=[""])) == ""
    assert item_text(CatalogItem(item_id="x", description="only")) == "only"


def test_item_text_is_deterministic() -> None:
    one = CatalogItem(item_id="a", attributes={"b": 1, "a": 2})
    two = CatalogItem(item_id="a", attributes={"a": 2, "b": 1})
    assert item_text(one) == item_text(two) == "a: 2. b: 1"


def test_defaults_are_not_shared() -> None:
    first, second = CatalogItem(item_id="a"), CatalogItem(item_id="b")
    first.categories.append("x")
    first.attributes["k"] = "v"
    assert (second.categories, second.attributes) == ([], {})


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Toy Story (1995)", ("Toy Story", 1995)),
        ("Heidi Fleiss: Hollywood Madam (1995) ", ("Heidi Fleiss: Hollywood Madam", 1995)),
        ("Death Note: Desu nôto (2006–2007)", ("Death Note: Desu nôto", 2006)),
        ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", (
            "City of Lost Children, The (Cité des enfants perdus, La)", 1995)),
        ("Babylon 5", ("Babylon 5", None)),
        ("(1995)", ("(1995)", None)),
        ("Land Before Time III (1995) (V)", ("Land Before Time III (1995) (V)", None)),
    ],
)  # fmt: skip
def test_title_year(title: str, expected: tuple[str, int | None]) -> None:
    assert split_title_year(title) == expected


def test_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path / "items.csv",
        "\ufeffItemID,title,description,categories,price,active,colour,size\n"
        'a,Mug,"Big, red\nmug",kitchen|mugs,9.5,,red,\n'
        "b,,,,,false,,L\n"
        "\n",
    )
    assert load_catalog(path) == [
        CatalogItem(
            item_id="a",
            title="Mug",
            description="Big, red\nmug",
            categories=["kitchen", "mugs"],
            attributes={"colour": "red"},
            price=9.5,
        ),
        CatalogItem(item_id="b", attributes={"size": "L"}, active=False),
    ]


@pytest.mark.parametrize("id_column", ["item_id", "itemid", "movieId", "id"])
def test_csv_id_columns(tmp_path: Path, id_column: str) -> None:
    path = write(tmp_path / "items.csv", f"{id_column},genres\n7,A|B\n")
    assert load_catalog(path) == [CatalogItem(item_id="7", categories=["A", "B"])]


def test_tsv(tmp_path: Path) -> None:
    path = write(tmp_path / "items.tsv", "id\ttitle\tbrand\n1\tMug\tAcme\n")
    assert load_catalog(path) == [
        CatalogItem(item_id="1", title="Mug", attributes={"brand": "Acme"})
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("title\nMug\n", "line 1: no item id column"),
        ("id,id\n1,2\n", "line 1: repeated column names"),
        ("id,title\n1,Mug\n2,Cup,extra\n", "line 3: 3 fields, the header has 2"),
        ("id,title\n1,Mug\n,Cup\n", "line 3: empty item id"),
        ("id,price\n1,cheap\n", "line 2: price 'cheap' is not a number"),
        ("id,price\n1,-2\n", "line 2: price '-2' is not a finite number >= 0"),
        ("id,price\n1,nan\n", "line 2: price 'nan' is not a finite number >= 0"),
        ("id,active\n1,maybe\n", "line 2: active 'maybe' is not true/false"),
        ('id,title\n1,"Mug\n', "line 2"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "items.csv", text)
    with pytest.raises(ValueError, match=message) as raised:
        load_catalog(path)
    assert str(path) in str(raised.value)


def test_non_utf8_csv_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes(b"id,title\n1,Caf\xe9\n")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        load_catalog(path)


def test_jsonl(tmp_path: Path) -> None:
    full = {
        "item_id": "a",
        "title": "Mug",
        "description": "Big\u2028mug",
        "categories": ["kitchen"],
        "attributes": {"colour": "red", "litres": 0.5, "handle": True, "year": 2020},
        "price": 9,
        "active": False,
    }
    path = write(
        tmp_path / "items.jsonl", json.dumps(full, ensure_ascii=False) + "\n\n" + '{"item_id": 7}\n'
    )
    first, second = load_catalog(path)
    assert first == CatalogItem(**{**full, "price": 9.0})
    assert isinstance(first.price, float)
    assert second == CatalogItem(item_id="7")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1]", "expected a JSON object"),
        ('{"title": "x"}', "no item_id"),
        ('{"item_id": ""}', "item_id must be a non-empty string"),
        ('{"item_id": "a", "colour": "red"}', r"unknown fields \['colour'\]"),
        ('{"item_id": "a", "title": 5}', "title must be a string"),
        ('{"item_id": "a", "categories": "x"}', "categories must be a list of strings"),
        ('{"item_id": "a", "attributes": []}', "attributes must be an object"),
        ('{"item_id": "a", "attributes": {"k": {"n": 1}}}', "attribute 'k'"),
        ('{"item_id": "a", "attributes": {"k": null}}', "attribute 'k'"),
        ('{"item_id": "a", "attributes": {"k": NaN}}', "attribute 'k'"),
        ('{"item_id": "a", "price": "9"}', "price must be a number"),
        ('{"item_id": "a", "price": Infinity}', "price must be a finite number"),
        ('{"item_id": "a", "active": "yes"}', "active must be true or false"),
    ],
)
def test_bad_jsonl_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path / "items.jsonl", '{"item_id": "ok"}\n' + line + "\n")
    with pytest.raises(ValueError, match=message) as raised:
        load_catalog(path)
    assert f"{path}, line 2" in str(raised.value)


def test_ml100k(tmp_path: Path) -> None:
    lines = [  # flags: unknown, Action, Comedy
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|1|1",
        "2|unknown||||1|0|0",
        "3|Café (1996) |01-Jan-1996||http://y|0|0|1",
    ]
    write(tmp_path / "u.item", "\n".join(lines) + "\n", encoding="latin-1")
    write(tmp_path / "u.genre", GENRES + "\n")
    assert load_catalog(tmp_path) == [
        CatalogItem("1", "Toy Story", categories=["Action", "Comedy"], attributes={"year": 1995}),
        CatalogItem("2", "unknown"),
        CatalogItem("3", "Café", categories=["Comedy"], attributes={"year": 1996}),
    ]
    assert load_catalog(tmp_path / "u.item") == load_catalog(tmp_path)


def test_ml100k_bad_flags(tmp_path: Path) -> None:
    write(tmp_path / "u.genre", GENRES)
    write(tmp_path / "u.item", "1|A (1995)|||x|0|1\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"u.item, line 1: expected id\|title"):
        load_catalog(tmp_path)


def test_ml1m(tmp_path: Path) -> None:
    text = "1::Toy Story (1995)::Animation|Children's\n2::Café, Le (2000)::Drama\n"
    write(tmp_path / "movies.dat", text, encoding="latin-1")
    assert load_catalog(tmp_path) == [
        CatalogItem(
            "1", "Toy Story", categories=["Animation", "Children's"], attributes={"year": 1995}
        ),
        CatalogItem("2", "Café, Le", categories=["Drama"], attributes={"year": 2000}),
    ]
    write(tmp_path / "movies.dat", "1::Toy Story (1995)\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"movies.dat, line 1: expected id::title::genres"):
        load_catalog(tmp_path)


def test_ml_latest_with_tags_in_the_description(tmp_path: Path) -> None:
    write(
        tmp_path / "movies.csv",
        "movieId,title,genres\r\n"
        '1,"American President, The (1995)",Comedy|Romance\r\n'
        "2,Babylon 5,(no genres listed)\r\n",
    )
    write(
        tmp_path / "tags.csv",
        "userId,movieId,tag,timestamp\n"
        "1,1,funny,1\n2,1,Boring,2\n3,1,funny,3\n4,1, pixar ,4\n5,2,,5\n",
    )
    assert load_catalog(tmp_path) == [
        CatalogItem(
            "1",
            "American President, The",
            description="Tags: Boring, funny, pixar",
            categories=["Comedy", "Romance"],
            attributes={"year": 1995},
        ),
        CatalogItem("2", "Babylon 5"),
    ]


def test_unknown_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no u\.item, movies\.dat, movies\.csv"):
        load_catalog(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_catalog(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"expected a \.csv"):
        load_catalog(write(tmp_path / "items.xml", "<items/>"))


@pytest.mark.dataset
@pytest.mark.parametrize(
    ("name", "count"), [("ml-100k", 1682), ("ml-1m", 3883), ("ml-latest-small", 9742)]
)
def test_real_movielens(data_dir: Path, name: str, count: int) -> None:
    if not (data_dir / name).is_dir():
        pytest.skip(f"{name} not in {data_dir}")
    items = load_catalog(data_dir / name)
    assert len(items) == count == len({item.item_id for item in items})
    toy_story = items[0]
    assert (toy_story.item_id, toy_story.title) == ("1", "Toy Story")
    assert toy_story.attributes["year"] == 1995
    assert "Animation" in toy_story.categories
    assert all(item.title for item in items)
    assert sum("year" in item.attributes for item in items) > 0.99 * count
    assert all(text == text.strip() for item in items for text in item.categories)
