"""Shipped files through ``digest.resources``: found by their place in the tree, never by a
path of the checkout; an operator's ``templates_dir`` over the built-in templates."""

from __future__ import annotations

import importlib.resources
import zipfile
from pathlib import Path

import pytest

from digest import resources

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "name",
    [
        "templates/email/digest.mjml.j2",
        "templates/web/subscribe.html",
        "templates/web/static/site.css",
        "config/digest.toml",
        "config/digest.service",
        "subscribers/example.csv",
        "examples/articles",
        "migrations/env.py",
    ],
)
def test_every_shipped_file_is_found_through_its_package(name: str) -> None:
    top, _, rest = name.partition("/")
    package = importlib.resources.files(resources.PACKAGES[top])
    assert resources.path(name) == Path(str(package.joinpath(*rest.split("/"))))
    assert resources.path(name).exists()


def test_a_missing_or_foreign_name_is_an_error_naming_it() -> None:
    with pytest.raises(resources.ResourceMissing, match="templates/email/nope.j2"):
        resources.resource("templates/email/nope.j2")
    with pytest.raises(ValueError, match="'tests/conftest.py': not a shipped folder"):
        resources.resource("tests/conftest.py")


def test_read_text_is_the_file_itself() -> None:
    assert resources.read_text("config/digest.toml") == (ROOT / "config/digest.toml").read_text()


def test_a_zipped_package_is_extracted_once_with_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package imported from a zip has no real folder: ``path`` extracts the whole tree."""
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zpkg/__init__.py", "")
        zf.writestr("zpkg/web/static/site.css", "body{}")
        zf.writestr("zpkg/web/page.html", "<p>hi</p>")
    monkeypatch.syspath_prepend(str(archive))
    monkeypatch.setitem(resources.PACKAGES, "zipped", "zpkg")
    resources.path.cache_clear()
    try:
        folder = resources.path("zipped/web")
        assert str(folder).startswith(str(Path(resources.tempfile.gettempdir())))
        assert (folder / "static" / "site.css").read_text() == "body{}"
        assert (folder / "page.html").read_text() == "<p>hi</p>"
        assert resources.path("zipped/web") == folder  # once per process
    finally:
        resources.path.cache_clear()


def test_template_folders_put_the_operators_first(tmp_path: Path) -> None:
    builtin = resources.path("templates")
    assert resources.template_folders() == [builtin]
    assert resources.template_folders("", "web") == [builtin / "web"]
    assert resources.template_folders(tmp_path, "web") == [tmp_path / "web", builtin / "web"]
    assert resources.template_folders(builtin) == [builtin]  # the built-in set named outright


def test_static_files_of_the_operator_come_first_when_there_are_some(tmp_path: Path) -> None:
    builtin = resources.path("templates/web/static")
    assert resources.static_folders(tmp_path) == [builtin]
    (tmp_path / "web" / "static").mkdir(parents=True)
    assert resources.static_folders(tmp_path) == [tmp_path / "web" / "static", builtin]


def test_template_names_list_overrides_and_built_ins_once(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "subject.txt.j2").write_text("x")
    (tmp_path / "email" / "extra.txt.j2").write_text("y")
    names = resources.template_names(tmp_path, "email")
    assert names.count("email/subject.txt.j2") == 1
    assert "email/extra.txt.j2" in names and "email/digest.mjml.j2" in names
    assert all(name.startswith("email/") for name in names)


def test_copy_templates_copies_the_named_ones_or_all(tmp_path: Path) -> None:
    written = resources.copy_templates(tmp_path / "a", ["email/layout.mjml.j2"])
    assert written == [tmp_path / "a" / "email" / "layout.mjml.j2"]
    assert written[0].read_bytes() == resources.path("templates/email/layout.mjml.j2").read_bytes()

    everything = resources.copy_templates(tmp_path / "b")
    names = {p.relative_to(tmp_path / "b").as_posix() for p in everything}
    assert {"email/digest.mjml.j2", "web/base.html", "web/static/site.css"} <= names
    assert not [n for n in names if n.endswith((".py", ".pyc"))]


def test_copy_templates_refuses_before_writing_anything(tmp_path: Path) -> None:
    target = tmp_path / "t"
    (target / "web").mkdir(parents=True)
    (target / "web" / "base.html").write_text("mine")
    with pytest.raises(FileExistsError, match="base.html"):
        resources.copy_templates(target, ["email/layout.mjml.j2", "web/base.html"])
    assert not (target / "email").exists()
    assert (target / "web" / "base.html").read_text() == "mine"
    with pytest.raises(ValueError, match="no built-in template email/nope"):
        resources.copy_templates(target, ["email/layout.mjml.j2", "email/nope"])
    assert not (target / "email").exists()
    resources.copy_templates(target, ["web/base.html"], overwrite=True)
    assert (target / "web" / "base.html").read_text() != "mine"


def test_no_module_reads_a_path_of_the_source_tree() -> None:
    """The cheap half of tests/test_packaging.py: no ``__file__``-relative path in the code."""
    offenders = []
    for source in (ROOT / "digest").rglob("*.py"):
        text = source.read_text()
        if "__file__" in text or "PROJECT_ROOT" in text:
            offenders.append(source.relative_to(ROOT).as_posix())
    assert offenders == []
