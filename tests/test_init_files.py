"""``digest init``: the commented config pointed at the folder, a private ``.env`` with new
secrets that are never printed, and no file replaced unless asked."""

from __future__ import annotations

import os
import stat
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest import resources
from digest.cli import main
from digest.init_files import plan_files, write_files
from digest.settings import SECRET_KEYS, load_settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def init(*args: str) -> tuple[int, str]:
    clean = {k: None for k in os.environ if k.startswith("DIGEST_")}
    result = CliRunner().invoke(main, ["init", *args], env=clean)
    return result.exit_code, result.output


def test_config_is_the_shipped_one_with_its_places_in_the_folder(tmp_path: Path) -> None:
    files = plan_files(tmp_path / "site", NOW)
    data = (tmp_path / "site" / "data").resolve()
    parsed = tomllib.loads(files.config_text)
    assert parsed["database_url"] == f"sqlite:///{data}/digest.db"
    assert parsed["data_dir"] == str(data)
    assert parsed["outbox_dir"] == str(data / "outbox")
    assert parsed["inbound_dir"] == str(data / "inbound")  # kept bounces and reports
    assert parsed["sns_certificate_dir"] == str(data / "sns-certificates")
    shipped = resources.read_text("config/digest.toml")
    # every comment and every other setting of the reference config is there
    places = ("database_url", "data_dir", "outbox_dir", "inbound_dir", "sns_certificate_dir")
    for line in shipped.splitlines()[1:]:
        if not line.startswith(places):
            assert line in files.config_text
    config = tmp_path / "c.toml"
    config.write_text(files.config_text)
    settings = load_settings(config, env={})
    assert settings.database_url == f"sqlite:///{data}/digest.db"
    assert settings.html_size_budget == load_settings(env={}).html_size_budget


def test_data_dir_elsewhere(tmp_path: Path) -> None:
    files = plan_files(tmp_path / "etc", NOW, data=tmp_path / "var")
    parsed = tomllib.loads(files.config_text)
    assert parsed["database_url"] == f"sqlite:///{(tmp_path / 'var').resolve()}/digest.db"


def test_env_has_the_config_generated_secrets_and_the_others_commented(tmp_path: Path) -> None:
    files = plan_files(tmp_path, NOW)
    env = {}
    for line in files.env_text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    assert env["DIGEST_CONFIG"] == str(tmp_path.resolve() / "digest.toml")
    assert len(env["DIGEST_SECRET_KEY"]) >= 43 and len(env["DIGEST_EDITOR_PASSWORD"]) >= 24
    assert env["DIGEST_SECRET_KEY"] != env["DIGEST_EDITOR_PASSWORD"]
    for key in SECRET_KEYS:  # every secret setting is named, filled in or commented out
        assert f"DIGEST_{key.upper()}=" in files.env_text
    assert "# DIGEST_SMTP_PASSWORD=\n" in files.env_text
    # what the environment gives, settings take
    settings = load_settings(env={k: v for k, v in env.items() if k != "DIGEST_CONFIG"})
    assert settings.secret_key == env["DIGEST_SECRET_KEY"]
    assert settings.editor_password == env["DIGEST_EDITOR_PASSWORD"]
    other = plan_files(tmp_path, NOW)
    assert other.env_text != files.env_text  # new secrets every time


def test_cli_writes_both_files_private_env_and_never_prints_a_secret(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "site"
    code, output = init(str(folder))
    assert code == 0, output
    env_file, config_file = folder / ".env", folder / "digest.toml"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o644
    values = read_env(env_file)
    for key in ("DIGEST_SECRET_KEY", "DIGEST_EDITOR_PASSWORD"):
        assert values[key] and values[key] not in output
    assert str(env_file) in output and str(config_file) in output
    assert load_settings(values["DIGEST_CONFIG"], env={}).database_url.endswith("/data/digest.db")
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".digest-init-")]


def test_cli_refuses_to_replace_either_file_unless_forced(tmp_path: Path) -> None:
    code, _ = init(str(tmp_path))
    assert code == 0
    before_env = (tmp_path / ".env").read_text()
    before = read_env(tmp_path / ".env")
    (tmp_path / "digest.toml").unlink()  # one left is enough to refuse both
    code, output = init(str(tmp_path))
    assert code == 2
    assert f"{tmp_path / '.env'}: already there" in output
    assert not (tmp_path / "digest.toml").exists()
    assert (tmp_path / ".env").read_text() == before_env
    assert before["DIGEST_SECRET_KEY"] not in output

    code, output = init(str(tmp_path), "--force")
    assert code == 0, output
    after = read_env(tmp_path / ".env")
    assert after["DIGEST_SECRET_KEY"] != before["DIGEST_SECRET_KEY"]
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert (tmp_path / "digest.toml").exists()


def test_forced_env_is_private_even_if_the_old_one_was_not(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OLD=1\n")
    os.chmod(tmp_path / ".env", 0o644)
    write_files(plan_files(tmp_path, NOW), overwrite=True)
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert "OLD=1" not in (tmp_path / ".env").read_text()


def test_a_folder_that_cannot_be_written_is_bad_input(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, output = init(str(blocker / "site"))
    assert code == 2
    assert "cannot write there" in output


def test_a_folder_with_spaces_is_quoted_and_one_with_a_newline_refused(tmp_path: Path) -> None:
    import subprocess

    code, _ = init(str(tmp_path / "my site"))
    assert code == 0
    env_file = tmp_path / "my site" / ".env"
    shell = subprocess.run(
        ["sh", "-c", f'set -a; . "{env_file}"; set +a; printf %s "$DIGEST_CONFIG"'],
        capture_output=True,
        text=True,
    )
    assert shell.stdout == str(tmp_path / "my site" / "digest.toml"), shell.stderr

    code, output = init(str(tmp_path / "evil\nname = 1"))
    assert code == 2 and "control characters" in output
    assert not (tmp_path / "evil\nname = 1").exists()


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_modes_do_not_depend_on_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        write_files(plan_files(tmp_path, NOW))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "digest.toml").stat().st_mode) == 0o644
