# SPDX-License-Identifier: Apache-2.0
"""Which project `bmops` runs from, and where its runner artifacts go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import ROOT

from bmops import cli, paths


def make_project(path: Path, playbooks=("alpha", "beta")) -> Path:
    (path / "playbooks").mkdir(parents=True)
    (path / "ansible.cfg").write_text("[defaults]\n")
    for name in playbooks:
        (path / "playbooks" / f"{name}.yml").write_text("---\n")
    return path


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Five candidate projects; the installed copy and the checkout patched in."""
    made = {name: make_project(tmp_path / name, playbooks=(name,))
            for name in ("option", "env", "cwd", "shipped", "source")}
    monkeypatch.setattr(paths, "SHIPPED_DIR", made["shipped"])
    monkeypatch.setattr(paths, "SOURCE_DIR", made["source"])
    return made


def test_order_option_env_cwd_shipped_source(places, tmp_path):
    env = {paths.PROJECT_ENV: str(places["env"])}
    cwd = places["cwd"]
    assert paths.find_project(str(places["option"]), env, cwd) == paths.Project(
        places["option"], paths.ORIGIN_OPTION)
    assert paths.find_project(None, env, cwd) == paths.Project(places["env"], paths.ORIGIN_ENV)
    assert paths.find_project(None, {}, cwd) == paths.Project(places["cwd"], paths.ORIGIN_CWD)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert paths.find_project(None, {}, plain).origin == paths.ORIGIN_SHIPPED
    assert paths.find_project(None, {paths.PROJECT_ENV: ""}, plain).origin == paths.ORIGIN_SHIPPED


def test_checkout_when_nothing_is_installed(places, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SHIPPED_DIR", tmp_path / "absent")
    assert paths.find_project(None, {}, tmp_path) == paths.Project(
        places["source"], paths.ORIGIN_SOURCE)


def test_cwd_needs_both_ansible_cfg_and_playbooks(places, tmp_path):
    only_playbooks = tmp_path / "only_playbooks"
    (only_playbooks / "playbooks").mkdir(parents=True)
    assert paths.find_project(None, {}, only_playbooks).origin == paths.ORIGIN_SHIPPED
    only_cfg = tmp_path / "only_cfg"
    only_cfg.mkdir()
    (only_cfg / "ansible.cfg").write_text("")
    assert paths.find_project(None, {}, only_cfg).origin == paths.ORIGIN_SHIPPED


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_named_directory_must_be_a_project(tmp_path, how):
    option, env = (str(tmp_path), {}) if how == "option" else (None, {paths.PROJECT_ENV:
                                                                      str(tmp_path)})
    with pytest.raises(paths.ProjectError, match="not a bmops project"):
        paths.find_project(option, env, tmp_path)


def test_nothing_found(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SHIPPED_DIR", tmp_path / "a")
    monkeypatch.setattr(paths, "SOURCE_DIR", tmp_path / "b")
    with pytest.raises(paths.ProjectError, match="--project-dir"):
        paths.find_project(None, {}, tmp_path)


def test_this_checkout_is_a_project():
    project = paths.find_project(None, {}, ROOT)
    assert project.path == ROOT and project.origin == paths.ORIGIN_CWD
    assert {"daily_check", "site", "restore_db"} <= set(project.procedures())
    assert project.ansible_cfg == ROOT / "ansible.cfg"


def test_artifacts_env_wins(tmp_path):
    project = paths.Project(make_project(tmp_path / "p"), paths.ORIGIN_CWD)
    assert paths.default_artifacts(project, {paths.ARTIFACTS_ENV: "/x/y"}) == Path("/x/y")


def test_artifacts_in_a_writable_checkout(tmp_path):
    project = paths.Project(make_project(tmp_path / "p"), paths.ORIGIN_CWD)
    assert paths.default_artifacts(project, {}) == tmp_path / "p" / ".cache" / "runner"


def test_artifacts_never_in_the_installed_package(tmp_path):
    project = paths.Project(make_project(tmp_path / "p"), paths.ORIGIN_SHIPPED)
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert paths.default_artifacts(project, env) == tmp_path / "xdg" / "bmops" / "runner"
    assert paths.default_artifacts(project, {}) == Path.home() / ".cache" / "bmops" / "runner"


def test_artifacts_of_a_read_only_checkout_go_to_the_user_cache(tmp_path, monkeypatch):
    project = paths.Project(make_project(tmp_path / "p"), paths.ORIGIN_OPTION)
    monkeypatch.setattr(paths.os, "access", lambda path, mode: mode != os.W_OK)
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert paths.default_artifacts(project, env) == tmp_path / "xdg" / "bmops" / "runner"


def test_cli_list_with_project_dir(tmp_path, capsys):
    make_project(tmp_path / "p", playbooks=("zeta", "alpha"))
    assert cli.main(["list", "--project-dir", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.split() == ["alpha", "zeta"]


def test_cli_list_from_env(tmp_path, capsys, monkeypatch):
    make_project(tmp_path / "p", playbooks=("gamma",))
    monkeypatch.setenv(paths.PROJECT_ENV, str(tmp_path / "p"))
    assert cli.main(["list"]) == 0
    assert capsys.readouterr().out.split() == ["gamma"]


def test_cli_bad_project_dir_exits_2(tmp_path, capsys):
    assert cli.main(["list", "--project-dir", str(tmp_path)]) == 2
    assert "not a bmops project" in capsys.readouterr().err


def test_cli_run_unknown_procedure_names_the_project(tmp_path, capsys):
    make_project(tmp_path / "p")
    assert cli.main(["run", "nope", "--project-dir", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'p'} (--project-dir)" in err and "known: alpha, beta" in err
