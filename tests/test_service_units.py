"""The shipped systemd units: hardened, Type=notify, and scored by systemd-analyze."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from digest import resources

UNITS = ("config/digest.service", "config/digest-worker@.service")


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("unit", UNITS)
def test_units_are_hardened_and_notify(unit: str) -> None:
    found = directives(resources.path(unit).read_text())
    assert found["Type"] == ["notify"] and found["NotifyAccess"] == ["main"]
    for key, value in {
        "NoNewPrivileges": "true",
        "PrivateDevices": "true",
        "PrivateTmp": "true",
        "ProtectSystem": "strict",
        "ProtectKernelTunables": "true",
        "ProtectKernelModules": "true",
        "UMask": "0077",
    }.items():
        assert found[key] == [value], key
    assert found["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "@system-service" in found["SystemCallFilter"]
    assert found["ExecStart"][0].split()[-1] in ("serve", "worker")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_scores_at_most_4(unit: str, tmp_path: Path) -> None:
    # an instance name for the template: systemd-analyze reads a unit file by its name
    name = Path(unit).name.replace("@.", "@1.")
    copy = tmp_path / name
    copy.write_text(resources.path(unit).read_text())
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 4.0, result.stdout
    assert match.group(2) == "OK"
