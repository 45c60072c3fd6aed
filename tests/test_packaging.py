"""The package people install: an sdist, a wheel built from that sdist, installed with
``pip --target`` and run from empty folders, every file of the source tree out of bounds.

The build happens once per test session. Each command runs in a subprocess with the install
first on ``PYTHONPATH`` (its dependencies come from this venv) under an audit hook that stops
the process at the first file it opens or lists in the source tree (this venv excepted): so a
path relative to the checkout, anywhere in the package, fails here.
"""

from __future__ import annotations

import csv
import email
import email.policy
import json
import os
import queue
import re
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import digest

ROOT = Path(__file__).resolve().parent.parent
SECRET = "packaging-test-secret-key-0123456789abcdef"

#: Run in the subprocess before anything else: refuse every read of the source tree.
GUARD = r"""
import os, sys

FORBIDDEN = os.environ.pop("DIGEST_TEST_SOURCE_TREE")
ALLOWED = os.path.realpath(sys.prefix)  # the venv the dependencies come from may live there


def _inside(path, folder):
    return path == folder or path.startswith(folder + os.sep)


def _hook(event, args):
    if event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    target = args[0]
    if not isinstance(target, (str, bytes, os.PathLike)):
        return
    path = os.path.abspath(os.fsdecode(target))
    if _inside(path, FORBIDDEN) and not _inside(path, ALLOWED):
        sys.stderr.write(f"SOURCE TREE READ: {event} {path}\n")
        sys.stderr.flush()
        os._exit(70)


sys.addaudithook(_hook)

if sys.argv[1] == "--probe":
    import importlib.metadata, json
    from datetime import UTC, datetime

    import digest
    from digest import resources
    from digest.doctor import sample_issue
    from digest.render import Renderer

    rendered = Renderer().render_digest(sample_issue(3), cache=False)
    print(json.dumps({
        "digest": digest.__file__,
        "version": digest.__version__,
        "metadata_version": importlib.metadata.version("digest"),
        "resources": {name: str(resources.path(name)) for name in resources.PACKAGES},
        "subject": rendered.subject,
        "html": rendered.html,
        "text": rendered.text,
    }))
else:
    import runpy

    sys.argv = ["digest", *sys.argv[1:]]
    runpy.run_module("digest", run_name="__main__", alter_sys=True)
"""


@dataclass
class Installed:
    """A wheel installed into ``target``; ``run`` runs ``digest`` from it in ``cwd``."""

    target: Path
    wheel: Path
    sdist: Path
    guard: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DIGEST_", "PYTHON", "_DIGEST_"))
        }
        env.update(
            PYTHONPATH=str(self.target),
            PYTHONDONTWRITEBYTECODE="1",
            DIGEST_TEST_SOURCE_TREE=str(ROOT),
            DIGEST_SECRET_KEY=SECRET,
            **extra,
        )
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(self.guard), *args]

    def run(self, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        cwd.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            self.command(*args),
            cwd=cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
        )


def _check(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert "SOURCE TREE READ" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("package")
    dist = work / "dist"
    # python -m build makes the sdist, then the wheel from that sdist: what the sdist
    # leaves out, the wheel lacks
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("digest-*.whl")
    (sdist,) = dist.glob("digest-*.tar.gz")
    target = work / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
        + ["--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr
    guard = work / "guard" / "run_guarded.py"
    guard.parent.mkdir()
    guard.write_text(GUARD)
    return Installed(target=target, wheel=wheel, sdist=sdist, guard=guard)


def test_the_guard_stops_a_read_of_the_source_tree(installed: Installed, tmp_path: Path) -> None:
    """The check below can fail: the same run over the source tree is stopped at once."""
    env = installed.env()
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        installed.command("--version"), cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 70
    assert f"SOURCE TREE READ: open {ROOT}" in proc.stderr


def test_the_wheel_and_sdist_hold_every_shipped_file(installed: Installed) -> None:
    """Every tracked file of the package and of the shipped folders is in both."""
    in_wheel = set(zipfile.ZipFile(installed.wheel).namelist())
    with tarfile.open(installed.sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    shipped = {
        "templates": "digest/templates",
        "config": "digest/config",
        "examples": "digest/examples",
        "subscribers": "digest/subscribers",
        "digest": "digest",
    }
    tracked = subprocess.run(
        ["git", "ls-files", "--", *shipped], cwd=ROOT, capture_output=True, text=True
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: which files are the project's is unknown")
    files = [name for name in tracked.stdout.splitlines() if (ROOT / name).is_file()]
    assert len(files) > 50
    for name in files:
        top, _, rest = name.partition("/")
        assert f"{shipped[top]}/{rest}" in in_wheel, name
        assert name in in_sdist, name
    assert not [n for n in in_wheel if "__pycache__" in n or n.endswith(".pyc")]
    assert not [
        n
        for n in in_wheel
        if n.startswith("digest/subscribers/")
        and "example" not in n
        and not n.endswith(("README.md", "__init__.py"))
    ]


def test_the_installed_package_renders_from_its_own_files(
    installed: Installed, tmp_path: Path
) -> None:
    probe = json.loads(_check(installed.run(tmp_path / "empty", "--probe")).stdout)
    target = str(installed.target) + os.sep
    assert probe["digest"].startswith(target)
    for name, where in probe["resources"].items():
        assert where.startswith(target), (name, where)
    assert probe["version"] == probe["metadata_version"] == digest.__version__
    assert "Sample article 1" in probe["html"] and "Sample article 3" in probe["text"]
    assert probe["html"].lstrip().lower().startswith("<!doctype html")
    assert probe["subject"]


def test_version_and_completion_from_the_console_script(
    installed: Installed, tmp_path: Path
) -> None:
    script = installed.target / "bin" / "digest"
    env = installed.env()
    env.pop("DIGEST_TEST_SOURCE_TREE")
    version = subprocess.run(
        [str(script), "--version"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"digest, version {digest.__version__}"
    env["_DIGEST_COMPLETE"] = "bash_source"
    completion = subprocess.run(
        [str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert completion.returncode == 0, completion.stderr
    assert "_digest_completion" in completion.stdout
    assert "complete -o nosort -F _digest_completion digest" in completion.stdout


def test_demo_sends_every_sample_member_their_digest(installed: Installed, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    demo = _check(installed.run(folder, "demo"))
    with (ROOT / "subscribers" / "example.csv").open(newline="") as fh:
        members = {row["email"].lower() for row in csv.DictReader(fh)}
    assert len(members) >= 3
    assert f"sent {len(members)}, failed 0" in demo.stdout
    received: dict[str, int] = {}
    for eml in (folder / "data" / "demo-mail").glob("*.eml"):
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        to = email.utils.parseaddr(str(message["To"]))[1].lower()
        received[to] = received.get(to, 0) + 1
        assert message["List-Unsubscribe"]
    assert received == dict.fromkeys(members, 1)
    assert str(installed.target) in demo.stdout  # the sample files came from the install

    # and what one of them got renders again through the sending path
    match = re.search(r"digest preview --email (\S+) --edition (\S+) --format text", demo.stdout)
    assert match, demo.stdout
    preview = _check(
        installed.run(
            folder, "preview", "--email", match[1], "--edition", match[2], "--format", "text"
        )
    )
    assert "unsubscribe" in preview.stdout.lower()


def test_db_upgrade_and_templates_check(installed: Installed, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    upgrade = _check(installed.run(folder, "db", "upgrade"))
    assert "schema upgraded from empty to" in upgrade.stdout
    status = _check(installed.run(folder, "db", "status"))
    current, head = re.fullmatch(r"store: (\S+); this version: (\S+)\n", status.stdout).groups()
    assert current == head != "empty"
    check = _check(installed.run(folder, "templates", "check"))
    assert "built-in templates: every template compiles" in check.stdout


def test_init_writes_the_shipped_config_and_a_private_env(
    installed: Installed, tmp_path: Path
) -> None:
    folder = tmp_path / "empty"
    _check(installed.run(folder, "init", "site"))
    config = (folder / "site" / "digest.toml").read_text()
    assert "html_size_budget = 90000" in config  # the shipped reference config
    assert (folder / "site" / ".env").stat().st_mode & 0o777 == 0o600


def _lines(stream: Iterator[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_web_serves_subscribe_and_its_css(installed: Installed, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    proc = subprocess.Popen(
        installed.command("web", "--host", "127.0.0.1", "--port", "0"),
        cwd=folder,
        env=installed.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            url = found[1] if found else None
        assert url, "".join(seen)
        with urllib.request.urlopen(f"{url}/subscribe", timeout=30) as response:
            assert response.status == 200
            page = response.read().decode()
        assert "<form" in page and 'href="/static/site.css"' in page
        with urllib.request.urlopen(f"{url}/static/site.css", timeout=30) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/css")
            css = response.read()
        assert css == (ROOT / "templates" / "web" / "static" / "site.css").read_bytes()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    while not lines.empty():
        seen.append(lines.get())
    assert not [line for line in seen if "SOURCE TREE READ" in line], "".join(seen)


def test_the_service_unit_runs_the_installed_digest() -> None:
    """No checkout in the unit: it runs the venv's ``digest`` on ``digest init``'s files."""
    from digest import resources
    from digest.init_files import CONFIG_NAME, ENV_NAME

    unit = resources.read_text("config/digest.service")
    service: dict[str, list[str]] = {}
    section = ""
    for line in unit.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            service.setdefault(key, []).append(value)
    venv = re.search(r"python3 -m venv (\S+)", unit)
    init = re.search(r"digest init (\S+) --data-dir (\S+)", unit)
    assert venv and init
    assert service["ExecStart"] == [f"{venv[1]}/bin/digest serve"]
    assert service["EnvironmentFile"] == [f"{init[1]}/{ENV_NAME}"]
    assert f"DIGEST_CONFIG={init[1]}/{CONFIG_NAME}" in service["Environment"]
    assert service["WorkingDirectory"] == [init[2]] == service["ReadWritePaths"]
    for checkout in (".venv", "git clone", "pip install -e", "README.md"):
        assert checkout not in unit
