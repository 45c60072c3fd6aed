"""Resource names: one resource however its name is cased or spaced, and its address.

Pure rules only. A resource is known by the normalised form of its name, the very rule
topics use (``digest.topics``), so "Keio  University" and "keio university" are one. Its
slug is the part of its page's address: lower case, words joined by hyphens, letters of any
script kept (a Japanese name keeps its characters), never empty.
"""

from __future__ import annotations

import re
import unicodedata

from digest.models import ORGANISATION, OTHER, PERSON, RESOURCE_KINDS
from digest.topics import clean_topic_name, topic_slug

#: The longest slug (the column is VARCHAR(200); a suffix for a clash must still fit).
MAX_SLUG = 80
#: How the import may spell a kind; the stored word is on the right.
_KIND_WORDS = {
    "person": PERSON,
    "people": PERSON,
    "organisation": ORGANISATION,
    "organization": ORGANISATION,
    "org": ORGANISATION,
    "other": OTHER,
}
_NOT_SLUG = re.compile(r"[^\w]+|_+")


def clean_name(name: str) -> str:
    """A resource's display name: the topic rule's cleaning (NFC, single spaces, trimmed)."""
    return clean_topic_name(name)


def name_key(name: str) -> str:
    """The identity of a name: cleaned and case-folded, exactly as a topic's."""
    return topic_slug(name)


def slugify(name: str) -> str:
    """The address form of a name: "Keio University" -> "keio-university"."""
    text = unicodedata.normalize("NFKD", clean_name(name).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    slug = _NOT_SLUG.sub("-", unicodedata.normalize("NFC", text)).strip("-")
    return slug[:MAX_SLUG].strip("-") or "resource"


def numbered_slug(base: str, n: int) -> str:
    """The ``n``-th candidate for a slug whose plain form is taken: "okano-2", "okano-3"."""
    return base if n <= 1 else f"{base}-{n}"


def parse_kind(value: str) -> str | None:
    """The stored kind for an import's word ("Organization" -> "organisation"), or None."""
    return _KIND_WORDS.get(" ".join(value.split()).casefold())


def kind_words() -> str:
    """The kinds an import may give, for error messages."""
    return ", ".join(RESOURCE_KINDS)
