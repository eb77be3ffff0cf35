"""Words for BM25: lower-cased, stop words dropped, English Snowball stems.

A turn of a conversation is short and its key words are often inflected differently in the
question ("painted" / "paint", "sunrise" / "sunrises"): stemming and a stop-word list larger than
usual (chat filler such as "yeah", "really") measurably help recall on LoCoMo (bench/locomo.py).
"""

from __future__ import annotations

import re
import unicodedata

import snowballstemmer

from memvault.lru import memoize

__all__ = ["normalize_for_dedup", "words"]

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)

STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren't",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "can't",
        "cannot",
        "could",
        "couldn't",
        "did",
        "didn't",
        "do",
        "does",
        "doesn't",
        "doing",
        "don't",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "get",
        "got",
        "had",
        "hadn't",
        "has",
        "hasn't",
        "have",
        "haven't",
        "having",
        "he",
        "he'd",
        "he'll",
        "he's",
        "her",
        "here",
        "here's",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "how's",
        "i",
        "i'd",
        "i'll",
        "i'm",
        "i've",
        "if",
        "in",
        "into",
        "is",
        "isn't",
        "it",
        "it's",
        "its",
        "itself",
        "just",
        "let's",
        "like",
        "me",
        "more",
        "most",
        "much",
        "must",
        "mustn't",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "oh",
        "ok",
        "okay",
        "on",
        "once",
        "only",
        "or",
        "other",
        "ought",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "really",
        "same",
        "shan't",
        "she",
        "she'd",
        "she'll",
        "she's",
        "should",
        "shouldn't",
        "so",
        "some",
        "such",
        "than",
        "that",
        "that's",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "there's",
        "these",
        "they",
        "they'd",
        "they'll",
        "they're",
        "they've",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "us",
        "very",
        "was",
        "wasn't",
        "we",
        "we'd",
        "we'll",
        "we're",
        "we've",
        "were",
        "weren't",
        "what",
        "what's",
        "when",
        "when's",
        "where",
        "where's",
        "which",
        "while",
        "who",
        "who's",
        "whom",
        "why",
        "why's",
        "will",
        "with",
        "won't",
        "would",
        "wouldn't",
        "yeah",
        "yes",
        "yep",
        "you",
        "you'd",
        "you'll",
        "you're",
        "you've",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "hey",
        "hi",
        "hello",
        "wow",
        "thanks",
        "thank",
        "gonna",
        "wanna",
        "lol",
        "um",
        "uh",
        "hmm",
        "sure",
        "definitely",
        "totally",
        "actually",
        "pretty",
        "quite",
        "lot",
        "lots",
        "thing",
        "things",
        "something",
        "anything",
        "everything",
        "one",
        "ones",
    ]
)

_stemmer = snowballstemmer.stemmer("english")


# Stems of words up to this length are cached (a byte-budgeted LRU shared by every tenant);
# a longer "word" (any run of letters, up to a whole 32 KB text) is stemmed each time, uncached.
MAX_CACHED_WORD = 64
_STEM_CACHE_BYTES = 8 * 1024 * 1024
_STEM_CACHE_ENTRIES = 4096


def _stem_word(word: str) -> str:
    return str(_stemmer.stemWord(word))


_stem = memoize(_stem_word, max_bytes=_STEM_CACHE_BYTES, max_entries=_STEM_CACHE_ENTRIES)


def words(text: str) -> list[str]:
    """Index terms of ``text``, in order, repeats kept (BM25 counts them)."""
    terms = []
    for match in _WORD.finditer(text.lower()):
        word = match.group().replace("'", "")
        if match.group() in STOP_WORDS or word in STOP_WORDS:
            continue
        terms.append(_stem(word) if len(word) <= MAX_CACHED_WORD else _stem_word(word))
    return terms


def normalize_for_dedup(text: str) -> str:
    """Two texts are duplicates when they are equal after NFKC, case folding and space folding."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
