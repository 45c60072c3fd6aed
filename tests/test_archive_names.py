"""Resource name rules: one resource however a name is cased or spaced; slugs; kinds."""

from __future__ import annotations

from digest.archive.names import name_key, numbered_slug, parse_kind, slugify
from digest.topics import topic_slug


def test_names_are_one_resource_by_the_topic_rule() -> None:
    assert name_key(" Keio  University ") == name_key("keio university") == "keio university"
    assert name_key("Straße") == topic_slug("STRASSE")


def test_slugs_are_readable_and_never_empty() -> None:
    assert slugify("Keio University") == "keio-university"
    assert slugify("Tomás Ibarra") == "tomas-ibarra"
    assert slugify("慶應義塾大学") == "慶應義塾大学"
    assert slugify("<script>alert(1)</script>") == "script-alert-1-script"
    assert slugify("../../etc/passwd") == "etc-passwd"
    assert slugify("!!!") == "resource"
    assert len(slugify("x" * 500)) == 80
    assert numbered_slug("okano", 1) == "okano" and numbered_slug("okano", 3) == "okano-3"


def test_kinds_in_either_spelling() -> None:
    assert parse_kind("Organization") == parse_kind(" organisation ") == "organisation"
    assert parse_kind("Person") == "person"
    assert parse_kind("robot") is None
