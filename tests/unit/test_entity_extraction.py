"""Entities found by rules (``retrieval/entities.py``): names, dates, titles, amounts; keys
normalised so that two spellings of one entity link."""

from __future__ import annotations

import pytest

from memvault.retrieval.entities import MAX_ENTITIES, MAX_NAME, extract, normalize


def keys(text: str) -> list[str]:
    return [entity.key for entity in extract(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alice moved to New York.", {"alice", "new york"}),
        ("I met Dr. Smith at the clinic.", {"smith"}),
        ("We watched the Lord of the Rings with Bob.", {"lord of the rings", "bob"}),
        ("Hey Mel! How was the LGBTQ support group?", {"mel", "lgbtq"}),
        ("Thanks! Yeah, that sounds great.", set()),
        ("The Beatles played in Liverpool.", {"beatles", "liverpool"}),
        ("I may go, and we march on.", set()),  # modal verbs, not months
        ("She ran 5 km and paid $40 on Friday.", {"5 km", "$40", "friday"}),
        ('My favourite book is "The Name of the Wind".', {"name of the wind"}),
        ("He said \u201cyes\u201d quietly.", set()),  # a quoted word in lower case is no title
    ],
)
def test_entities_of_a_text(text: str, expected: set[str]) -> None:
    assert set(keys(text)) == expected


def test_dates_written_differently_share_a_key() -> None:
    for text in ("Due on May 7, 2023.", "Due on 7 May 2023.", "Due on 2023-05-07."):
        assert "2023-05-07" in keys(text), text
    assert "2022-03" in keys("It was in March 2022.")
    assert "2021" in keys("Back in 2021 it rained.")
    assert "june" in keys("See you in June!")


def test_possessives_case_and_titles_are_normalised() -> None:
    assert keys("Alice's cat") == keys("ALICE fed the cat") == ["alice"]
    assert normalize("The  Beatles\u2019s") == "beatles"
    assert normalize("Mrs. Dalloway") == "dalloway"
    assert normalize("\uff21lice") == "alice"  # NFKC: a full-width letter


def test_display_names_keep_the_text_as_written() -> None:
    found = {entity.key: entity.name for entity in extract("We saw Dr. Smith's dog in Lisbon.")}
    assert found == {"smith": "Dr. Smith", "lisbon": "Lisbon"}


def test_entities_are_bounded_in_number_and_length() -> None:
    many = " and ".join(f"Person{chr(65 + i % 26)}{i}" for i in range(500))
    assert len(extract(many)) == MAX_ENTITIES
    long_quote = '"' + "A" * 79 + '"'
    assert all(len(e.name) <= MAX_NAME for e in extract(long_quote + " " + "B" * 5000))


def test_openers_that_are_not_names_are_skipped() -> None:
    """Gerunds, adverbs and contractions opening a sentence; initials join a name."""
    text = "Finding time is hard. Hopefully soon! How're you? Jennings came with J. K. Rowling."
    assert keys(text) == ["jennings", "j. k. rowling"]
    assert keys("Nike and Gatorade sponsor it.") == ["nike", "gatorade"]
