"""Entities named in a memory's text, found by rules: offline, no model, linear in the text.

What counts as an entity (each becomes ``Entity(key, name)``: ``key`` the normalised form that
links memories, ``name`` the text as written, for display):

- names: runs of capitalised words ("Alice", "New York", "Lord of the Rings"), joined by single
  spaces and the connectors ``of``/``the``/``de``/``van``/...; a title ("Dr.", "Mrs.") or an
  initial ("J.") before a name is kept in the name (a title is dropped from the key). A
  capitalised word alone at the start of a sentence is taken only when it is not a common
  opener (``STARTERS``, the BM25 stop words), a gerund, an adverb in -ly or a contraction;
- dates: "May 7, 2023", "7 May 2023" and ``2023-05-07`` (key ``2023-05-07``), a month with a
  year ("May 2023": ``2023-05``), a year alone (``1900``-``2099``), a month name ("in June"),
  a weekday ("on Friday");
- quoted titles: up to 80 characters between double quotes (straight or curly) that start with
  a capital letter or a digit ("Becoming", "The Name of the Wind");
- amounts: a number with a unit or a currency ("5 km", "$40", "20%").

Keys are case-folded (NFKC), possessives stripped ("Alice's" -> ``alice``), a leading "the"
dropped. Every regular expression here is linear in its input: character classes, fixed
alternatives and bounded repeats, no nested quantifiers (``tests/security/
test_entities_hostile.py`` times near-miss inputs against ordinary text of the same size). A text
gives at most ``MAX_ENTITIES`` entities of at most ``MAX_NAME`` characters each.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from memvault.retrieval.text import STOP_WORDS

__all__ = ["MAX_ENTITIES", "MAX_NAME", "STARTERS", "Entity", "extract", "normalize"]

MAX_ENTITIES = 32
MAX_NAME = 80
_MAX_SPAN = 6  # words in one name

# Words: letters, digits, apostrophes and hyphens ("O'Brien", "Alice's"); edges stripped after.
_TOKEN = re.compile("[\\w'\u2019\\-]+")
_EDGES = "'\u2019-_"
_QUOTED = re.compile('["\u201c]([^"\u201c\u201d\n]{1,80})["\u201d]')
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_AMOUNT = re.compile(
    r"(?:[$€£]\s?\d[\d,]{0,15}(?:\.\d{1,4})?)"
    r"|(?:\b\d[\d,]{0,15}(?:\.\d{1,4})?\s?(?:%|percent\b|km\b|kilometers\b|kilometres\b|miles?\b"
    r"|mi\b|kg\b|kilos?\b|lbs?\b|pounds\b|dollars\b|euros?\b|usd\b|eur\b|gbp\b|hours?\b"
    r"|minutes?\b|k\b))",
    re.IGNORECASE,
)

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
# Month names that are also common words: a month only next to a number.
_AMBIGUOUS_MONTHS = frozenset({"may", "march", "mar", "jan", "dec", "sep", "oct", "nov", "aug"})
_WEEKDAYS = frozenset(
    {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
)
_TITLES = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "sir", "madam", "miss", "mx"})
_CONNECTORS = frozenset({"of", "the", "de", "del", "da", "van", "von", "der", "la", "le"})
_OPENERS = "\"'\u201c\u201d\u2018\u2019([*-"
_SENTENCE_END = frozenset(".!?\n\r:;\u2026")

# Capitalised words that open sentences without naming anything: greetings, fillers, pronouns,
# common verbs and adjectives of chat (the BM25 stop words are added below).
_STARTER_WORDS = """
    yes yeah yep nope no ok okay oh ah aw aww wow hey hi hello thanks thank sure great nice cool
    awesome amazing glad sorry well so just really totally absolutely definitely haha lol omg
    congrats congratulations good bad love like please let lets let's anyway btw also actually
    maybe perhaps hmm um uh exactly right true indeed cheers bye goodbye welcome dear hope
    thinking think know knew guess wish went go going gone got get getting had have having made
    make making did do doing done been being was were is are am will would could should can
    want wanted need needed tried try trying took take taking saw see seeing look looking
    looked check checked tell told said say saying feel felt feeling keep kept started start
    finally recently lately today tonight tomorrow yesterday sometimes often always never
    last next first then now later soon after before since when where what why how who which
    whose whom there here these those this that it its they them their he she his her we our
    you your my me mine i i'm i've i'll i'd it's that's what's there's here's let's don't
    can't won't didn't isn't wasn't aren't haven't hasn't couldn't wouldn't shouldn't
    happy sad excited exciting interesting fun funny beautiful lovely cute wonderful fantastic
    incredible super pretty kind sweet proud busy tired sounds sound seems seem looks
    definitely honestly seriously wait speaking talking anyway anyways plus still even
    every each some many much more most any all both either neither another other such
    new old big small little lot lots one two three four five six seven eight nine ten
    appreciate agreed enjoy believe remember cherish catch stay talk chat hang show change
    care reminds makes feels gotta yup yay yum woah whoa woohoo oof bet lucky crazy tough hard
    best impressive together besides almost whenever everyone everybody someone something
    anything nothing nobody people family life time way long nature art music moments events
    challenges setbacks books pets dance mental
    """
STARTERS = frozenset(_STARTER_WORDS.split()) | STOP_WORDS
# Contractions that open a sentence ("How're", "It'll"): never names.
_CONTRACTIONS = ("'re", "'ll", "'ve", "'d", "'m", "n't", "\u2019re", "\u2019ll", "\u2019ve")


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity of a text: ``key`` links memories (case-folded, normalised), ``name`` is how
    the text wrote it."""

    key: str
    name: str


def normalize(name: str) -> str:
    """The key of an entity name: NFKC, case-folded, possessive and a leading "the" dropped,
    spaces collapsed. Empty when nothing is left."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    parts = folded.replace("\u2019", "'").split()
    if parts and parts[-1].endswith("'s"):
        parts[-1] = parts[-1][:-2]
    elif parts and parts[-1].endswith("s'"):
        parts[-1] = parts[-1][:-1]
    while parts and parts[0] in ("the", "a", "an"):
        parts = parts[1:]
    while parts and parts[0].rstrip(".") in _TITLES and len(parts) > 1:
        parts = parts[1:]
    return " ".join(p for p in parts if p)[:MAX_NAME]


def _clean(name: str) -> str:
    """The display form: a trailing possessive dropped."""
    for suffix in ("'s", "\u2019s"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _sentence_start(text: str, start: int) -> bool:
    """Whether the word at ``start`` opens a sentence: the text before it (spaces and quotes
    skipped, at most 8 characters looked at) is empty or ends a sentence."""
    i = start - 1
    stop = max(-1, start - 9)
    while i > stop and (text[i].isspace() or text[i] in _OPENERS):
        i -= 1
    if i <= stop:  # the start of the text, or nothing but spaces and quotes before it
        return True
    if text[i] != ".":
        return text[i] in _SENTENCE_END
    # "Dr. Smith": a title's period does not end the sentence.
    j = i - 1
    while j >= 0 and i - j <= 5 and text[j].isalpha():
        j -= 1
    return not _abbreviation(text[j + 1 : i])


def _abbreviation(word: str) -> bool:
    """A word whose period does not end a sentence: a title ("Dr.") or an initial ("J.")."""
    return word.casefold() in _TITLES or (len(word) == 1 and word.isupper())


def _common_opener(folded: str) -> bool:
    """A sentence's first word that is a gerund, an adverb or a contraction: not a name."""
    return folded.endswith(("ing", "ly")) or folded.endswith(_CONTRACTIONS)


def _capitalised(word: str) -> bool:
    return word[:1].isupper()


class _Found:
    def __init__(self) -> None:
        self.items: dict[str, Entity] = {}

    def add(self, key: str, name: str) -> None:
        if key and len(self.items) < MAX_ENTITIES and key not in self.items:
            try:
                key.encode()
                name.encode()
            except UnicodeEncodeError:  # a lone surrogate: nothing to link it by
                return
            self.items[key] = Entity(key, name[:MAX_NAME])


def _number(word: str) -> int | None:
    return int(word) if word.isascii() and word.isdigit() and len(word) <= 4 else None


def _dates(words: list[tuple[str, int, int]], found: _Found, used: set[int]) -> None:
    """Month-day-year, day-month-year, month-year, lone months, weekdays and years."""
    for i, (word, _start, _end) in enumerate(words):
        folded = word.casefold()
        month = _MONTHS.get(folded)
        if month is not None and _capitalised(word):
            after = [_number(w) for w, _, _ in words[i + 1 : i + 3]]
            before = _number(words[i - 1][0]) if i > 0 else None
            day = year = None
            if after and after[0] is not None and 1 <= after[0] <= 31:
                day = after[0]
                if len(after) > 1 and after[1] is not None and 1900 <= after[1] <= 2099:
                    year = after[1]
            elif after and after[0] is not None and 1900 <= after[0] <= 2099:
                year = after[0]
            if day is None and before is not None and 1 <= before <= 31:
                day = before
                if after and after[0] is not None and 1900 <= after[0] <= 2099:
                    year = after[0]
            if day is None and year is None and folded in _AMBIGUOUS_MONTHS:
                continue
            used.add(i)
            full = next(name for name, n in _MONTHS.items() if n == month)
            if year is not None and day is not None:
                found.add(f"{year:04d}-{month:02d}-{day:02d}", f"{full.title()} {day}, {year}")
            elif year is not None:
                found.add(f"{year:04d}-{month:02d}", f"{full.title()} {year}")
            elif day is not None:
                found.add(f"--{month:02d}-{day:02d}", f"{full.title()} {day}")
            else:
                found.add(full, full.title())
        elif folded in _WEEKDAYS and _capitalised(word):
            used.add(i)
            found.add(folded, folded.title())
        else:
            number = _number(word)
            if number is not None and len(word) == 4 and 1900 <= number <= 2099:
                found.add(word, word)


def _names(text: str, words: list[tuple[str, int, int]], found: _Found, used: set[int]) -> None:
    """Runs of capitalised words joined by single spaces (and connectors inside)."""
    i = 0
    while i < len(words):
        word, start, _end = words[i]
        if i in used or not _capitalised(word):
            i += 1
            continue
        span = [i]
        j = i + 1
        while j < len(words) and len(span) < _MAX_SPAN:
            gap = text[words[j - 1][2] : words[j][1]]
            if gap not in (" ", ". ") or (gap == ". " and not _abbreviation(words[j - 1][0])):
                break
            candidate = words[j][0]
            if j not in used and _capitalised(candidate):
                span.append(j)
                j += 1
                continue
            # "Lord of the Rings": connectors count only when a capitalised word follows.
            k = j
            while (
                k < len(words)
                and words[k][0].casefold() in _CONNECTORS
                and text[words[k - 1][2] : words[k][1]] == " "
                and k - j < 2
            ):
                k += 1
            if (
                k > j
                and k < len(words)
                and k not in used
                and _capitalised(words[k][0])
                and text[words[k - 1][2] : words[k][1]] == " "
            ):
                span.extend(range(j, k + 1))
                j = k + 1
                continue
            break
        i = j
        # Leading openers and titles are not names by themselves.
        first = span[0]
        if _sentence_start(text, start):
            while span and words[span[0]][0].casefold() in STARTERS:
                span = span[1:]
        while span and words[span[0]][0].casefold() in _CONNECTORS:
            span = span[1:]
        while span and words[span[-1]][0].casefold() in _CONNECTORS | STOP_WORDS:
            span = span[:-1]
        if not span:
            continue
        if len(span) == 1:
            word = words[span[0]][0]
            folded = word.casefold()
            if len(word) == 1 or (span[0] == first and folded in STOP_WORDS):
                continue  # "I", "A" mid-sentence, a lone initial
            if span[0] == first and _sentence_start(text, start) and _common_opener(folded):
                continue  # "Finding ...", "Hopefully ...", "How're ..."
        if all(words[k][0].casefold() in _TITLES for k in span):
            continue
        name = _clean(text[words[span[0]][1] : words[span[-1]][2]])
        found.add(normalize(name), name)


def extract(text: str) -> list[Entity]:
    """The entities of ``text`` (at most ``MAX_ENTITIES``), in the order first found.

    >>> [e.key for e in extract("Alice moved to New York on May 7, 2023.")]
    ['2023-05-07', '2023', 'alice', 'new york']
    """
    found = _Found()
    for match in _ISO_DATE.finditer(text):
        year, month, day = (int(part) for part in match.groups())
        if 1 <= month <= 12 and 1 <= day <= 31:
            found.add(f"{year:04d}-{month:02d}-{day:02d}", match.group(0))
    words = []
    for match in _TOKEN.finditer(text):
        raw = match.group(0)
        word = raw.strip(_EDGES)
        if word:
            start = match.start() + raw.index(word)
            words.append((word, start, start + len(word)))
    used: set[int] = set()
    _dates(words, found, used)
    _names(text, words, found, used)
    for match in _QUOTED.finditer(text):
        title = match.group(1).strip()
        if (title[:1].isupper() or title[:1].isdigit()) and len(title.split()) <= 8:
            found.add(normalize(title), title)
    for match in _AMOUNT.finditer(text):
        amount = " ".join(match.group(0).split())
        found.add(amount.casefold().replace(",", ""), amount)
    return list(found.items.values())
