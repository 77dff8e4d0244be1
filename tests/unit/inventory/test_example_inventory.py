# SPDX-License-Identifier: Apache-2.0
"""inventory/example parses without any vault password, as AWX's inventory sync needs.

AWX's inventory source has no vault credential: one wholly encrypted vars file
fails the whole sync. Inline !vault values do not: ansible-inventory passes them
on as ciphertext, and only a job that reads one needs the vault password. These
tests run the real ansible-inventory with no vault password or vault id set.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

EXAMPLE = ROOT / "inventory" / "example"
BIN = Path(sys.executable).parent


def no_vault_env() -> dict[str, str]:
    """The environment without any vault password, vault id or inventory setting."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("ANSIBLE_VAULT", "ANSIBLE_INVENTORY"))
            and k not in ("ANSIBLE_ASK_VAULT_PASS", "DEFAULT_VAULT_ID_MATCH")}


def inventory(path: Path, *extra: str) -> subprocess.CompletedProcess:
    # From the repository root, so its ansible.cfg applies as it does in AWX.
    return subprocess.run([str(BIN / "ansible-inventory"), "-i", str(path), "--list", *extra],
                          cwd=ROOT, env=no_vault_env(), capture_output=True, text=True,
                          check=False, timeout=120)


def test_ansible_cfg_sets_no_vault_password():
    cfg = (ROOT / "ansible.cfg").read_text(encoding="utf-8")
    assert "vault_password_file" not in cfg
    assert "vault_identity" not in cfg


@pytest.mark.parametrize("extra", [(), ("--export",)], ids=["list", "export"])
def test_example_inventory_parses_without_a_vault_password(extra):
    result = inventory(EXAMPLE, *extra)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "backup-mgmt-01.example.com" in data["bm_app"]["hosts"]
    assert "monitoring-01.example.com" in data["bm_monitoring"]["hosts"]
    assert {"bm_app", "bm_monitoring"} <= set(data["all"]["children"])


def test_example_inventory_has_its_settings_without_a_vault_password():
    data = json.loads(inventory(EXAMPLE).stdout)
    hostvars = data["_meta"]["hostvars"]["backup-mgmt-01.example.com"]
    assert hostvars["bm_domain"] == "backup-mgmt.example.com"
    assert hostvars["ansible_user"] == "admin"


def test_no_file_of_the_example_is_wholly_encrypted():
    for path in sorted(p for p in EXAMPLE.rglob("*") if p.is_file()):
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        assert not first.startswith("$ANSIBLE_VAULT;"), f"{path} is a wholly encrypted vault file"


@pytest.fixture(scope="module")
def vaulted(tmp_path_factory):
    """A copy of the example with an inline !vault value, and its vault password file."""
    tmp = tmp_path_factory.mktemp("inventory")
    site = tmp / "site"
    shutil.copytree(EXAMPLE, site)
    password_file = tmp / "vault-password"
    password_file.write_text(secrets.token_urlsafe(16), encoding="utf-8")
    password_file.chmod(0o600)
    value = "v" + secrets.token_urlsafe(20)  # never a leading "-" (an option to argparse)
    encrypted = subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(password_file),
         "--name", "bm_offsite_password", value],
        env=no_vault_env(), capture_output=True, text=True, check=True, timeout=60).stdout
    with (site / "group_vars" / "all" / "vault.yml").open("a", encoding="utf-8") as f:
        f.write(encrypted)
    return site, password_file, value


def test_inline_vault_value_parses_without_the_password(vaulted):
    site, _password_file, value = vaulted
    result = inventory(site, "--export")
    assert result.returncode == 0, result.stderr
    exported = json.loads(result.stdout)["all"]["vars"]["bm_offsite_password"]
    assert exported["__ansible_vault"].startswith("$ANSIBLE_VAULT;")
    assert value not in result.stdout


def test_job_with_the_password_reads_the_synced_inline_value(vaulted, tmp_path):
    """What the sync stored, given back as a script inventory, decrypts with the password."""
    site, password_file, value = vaulted
    listed = inventory(site)
    script = tmp_path / "synced.py"
    script.write_text(f"#!{sys.executable}\nprint({listed.stdout!r})\n", encoding="utf-8")
    script.chmod(0o700)
    result = subprocess.run(
        [str(BIN / "ansible"), "-i", str(script), "backup-mgmt-01.example.com", "-c", "local",
         "-m", "ansible.builtin.debug", "-a", "var=bm_offsite_password",
         "--vault-password-file", str(password_file)],
        cwd=ROOT, env=no_vault_env(), capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert value in result.stdout


def test_wholly_encrypted_file_fails_the_sync(vaulted, tmp_path):
    """Why the example keeps none: the same inventory with its vars file encrypted."""
    site, password_file, _value = vaulted
    broken = tmp_path / "broken"
    shutil.copytree(site, broken)
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file",
                    str(password_file), str(broken / "group_vars" / "all" / "main.yml")],
                   env=no_vault_env(), capture_output=True, check=True, timeout=60)
    result = inventory(broken)
    assert result.returncode != 0
    assert "no vault secrets" in result.stderr
