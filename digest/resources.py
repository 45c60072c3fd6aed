"""The files that ship with digest, found through ``importlib.resources``, never the source tree.

Templates (email and web), static files, the demo's sample articles and members, the default
config and the Alembic migrations are package data: the folders people read and edit stay at
the top of the source tree (``templates/``, ``config/``, ``subscribers/``, ``examples/``) and
ship inside the package as ``digest.templates``, ``digest.config``, ... (``setup.py`` maps
them). So ``pip install .``, a wheel, an sdist, ``pipx install .`` and ``pip install -e .`` all
find the same files, from any working folder.

Every module asks here, by the file's place in the source tree ("templates/web/static",
"config/digest.toml", "subscribers/example.csv"): a template, static file or migration added
to those folders is found and shipped with no change elsewhere.

An operator's ``templates_dir`` (a folder laid out like ``templates/``) comes first: any file
in it replaces the built-in one of the same name, the others stay built-in.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import jinja2

#: First part of a shipped file's name in the source tree -> the package that holds it.
PACKAGES = {
    "templates": "digest.templates",
    "config": "digest.config",
    "subscribers": "digest.subscribers",
    "examples": "digest.examples",
    "migrations": "digest.migrations",
}


class ResourceMissing(FileNotFoundError):
    """A shipped file is not in the installed package: the install is broken or incomplete."""


def resource(name: str) -> Traversable:
    """A shipped file or folder by its place in the source tree, e.g. ``templates/web``."""
    top, _, rest = name.strip("/").partition("/")
    if top not in PACKAGES:
        raise ValueError(f"{name!r}: not a shipped folder (one of {', '.join(PACKAGES)})")
    found = files(PACKAGES[top])
    for part in (p for p in rest.split("/") if p):
        found = found.joinpath(part)
    if not (found.is_file() or found.is_dir()):
        raise ResourceMissing(f"{name}: not in the installed package {PACKAGES[top]}")
    return found


@functools.cache
def path(name: str) -> Path:
    """A shipped file or folder as a real path, for libraries that open paths themselves
    (Jinja's loader, Starlette's static files, Alembic, the importers).

    Installed from a wheel (or editable) that is the file itself; from a zipped package, a copy
    extracted once for the life of the process.
    """
    found = resource(name)
    if isinstance(found, Path):
        return found
    return _extracted(found, name)


def _extracted(found: Traversable, name: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="digest-resources-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    target = root / name
    _copy(found, target)
    return target


def _copy(source: Traversable, target: Path) -> None:
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for child in source.iterdir():
            _copy(child, target / child.name)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())


def read_text(name: str) -> str:
    """A shipped text file's content (UTF-8)."""
    return resource(name).read_text(encoding="utf-8")


# -- templates


def template_folders(templates_dir: str | Path = "", sub: str = "") -> list[Path]:
    """Where templates are looked for, first match wins: the operator's ``templates_dir``
    (when set) over the built-in ``templates/``; ``sub`` narrows both, e.g. ``"web"``."""
    builtin = path("templates")
    folders = []
    if str(templates_dir).strip():
        own = Path(templates_dir)
        if own.resolve() != builtin.resolve():
            folders.append(own / sub if sub else own)
    folders.append(builtin / sub if sub else builtin)
    return folders


def template_loader(templates_dir: str | Path = "", sub: str = "") -> jinja2.FileSystemLoader:
    """The Jinja loader over :func:`template_folders` (an override needs only the templates it
    changes)."""
    return jinja2.FileSystemLoader([str(folder) for folder in template_folders(templates_dir, sub)])


def static_folders(templates_dir: str | Path = "") -> list[Path]:
    """Folders the web app serves ``/static/`` from: the operator's ``web/static`` (if there
    is one) over the built-in files."""
    return [folder for folder in template_folders(templates_dir, "web/static") if folder.is_dir()]


def template_names(templates_dir: str | Path = "", sub: str = "") -> list[str]:
    """Every template name (``email/digest.mjml.j2``) under ``sub``, built-in or overridden."""
    prefix = f"{sub.strip('/')}/" if sub else ""
    return sorted(
        name for name in template_loader(templates_dir).list_templates() if name.startswith(prefix)
    )


def builtin_template_files() -> Iterator[tuple[str, Traversable]]:
    """Each built-in template and static file as (name, file), for copying to a new folder."""

    def walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
        for child in sorted(folder.iterdir(), key=lambda c: c.name):
            name = f"{prefix}{child.name}"
            if child.is_dir():
                if child.name != "__pycache__":
                    yield from walk(child, f"{name}/")
            elif not child.name.endswith((".py", ".pyc")):
                yield name, child

    yield from walk(resource("templates"), "")


def copy_templates(
    folder: str | Path, names: Sequence[str] = (), overwrite: bool = False
) -> list[Path]:
    """Copy built-in templates (all, or the ``names`` given, e.g. ``email/layout.mjml.j2``)
    into ``folder``, a start for an operator's ``templates_dir``; returns the files written.

    An unknown name is a ``ValueError``, an existing file a ``FileExistsError`` (unless
    ``overwrite``); both are raised before anything is written.
    """
    shipped = dict(builtin_template_files())
    wanted = [name.strip("/") for name in names] or list(shipped)
    unknown = [name for name in wanted if name not in shipped]
    if unknown:
        raise ValueError(
            f"no built-in template {', '.join(unknown)} "
            "(names as in the templates folder, e.g. email/layout.mjml.j2)"
        )
    target = Path(folder)
    existing = [target / name for name in wanted if (target / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: already exists")
    written = []
    for name in wanted:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(shipped[name].read_bytes())
        written.append(destination)
    return written
