# SPDX-License-Identifier: Apache-2.0
"""Unit tests of the ansible-runner entry point's pure helpers."""

from __future__ import annotations

import json

import pytest

from bmops import cli, paths


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], {}),
        (["a=1"], {"a": 1}),
        (["flag=true", "name=db"], {"flag": True, "name": "db"}),
        (["list=[\"x\", 2]"], {"list": ["x", 2]}),
        (["s=hello world"], {"s": "hello world"}),
        (["empty="], {"empty": ""}),
        (["k=a=b"], {"k": "a=b"}),
    ],
)
def test_parse_extravars(pairs, expected):
    assert cli.parse_extravars(pairs) == expected


def test_parse_extravars_file(tmp_path):
    f = tmp_path / "vars.json"
    f.write_text(json.dumps({"restore_confirm": True}))
    assert cli.parse_extravars([f"@{f}", "x=1"]) == {"restore_confirm": True, "x": 1}


@pytest.mark.parametrize("bad", ["novalue", "=1"])
def test_parse_extravars_rejects(bad):
    with pytest.raises(ValueError, match="key=value"):
        cli.parse_extravars([bad])


def test_parse_extravars_file_must_be_object(tmp_path):
    f = tmp_path / "vars.json"
    f.write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        cli.parse_extravars([f"@{f}"])


def _ev(kind, **data):
    return {"event": kind, "event_data": data}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (_ev("playbook_on_play_start", play="Daily check"), "PLAY Daily check"),
        (_ev("runner_on_ok", host="h", task="t", res={"changed": False}), "  ok          h: t"),
        (_ev("runner_on_ok", host="h", task="t", res={"changed": True}), "  changed     h: t"),
        (_ev("runner_on_skipped", host="h", task="t"), "  skipped     h: t"),
        (_ev("verbose"), None),
        (_ev("playbook_on_task_start", task="t"), None),
    ],
)
def test_progress_line(event, expected):
    assert cli.progress_line(event) == expected


def test_progress_line_failure_shows_first_line_of_message():
    line = cli.progress_line(_ev("runner_on_failed", host="h", task="t",
                                 res={"msg": "success rate 80 % < 95 %\nmore"}))
    assert line.splitlines()[0] == "  FAILED      h: t"
    assert line.splitlines()[1].strip() == "success rate 80 % < 95 %"


def test_progress_line_failure_shows_the_first_argument_error():
    res = {"msg": "Validation of arguments failed:\nvalue of x must be one of: A, B, got: C",
           "argument_errors": ["value of x must be one of: A, B, got: C", "second"]}
    line = cli.progress_line(_ev("runner_on_failed", host="h", task="t", res=res))
    assert line.splitlines()[1].strip() == (
        "Validation of arguments failed: value of x must be one of: A, B, got: C")


def test_progress_line_failure_hides_no_log_message():
    line = cli.progress_line(_ev("runner_on_failed", host="h", task="t",
                                 res={"msg": "secret", "_ansible_no_log": True}))
    assert "secret" not in line


def test_summary_lines():
    stats = {"ok": {"h": 5}, "changed": {"h": 1}, "failures": {}, "dark": {}, "skipped": {"h": 2}}
    data = {"bmops_daily_check": {"status": "breach", "report": "/var/lib/bmops/r.md"}}
    assert cli.summary_lines(stats, data) == [
        "h: ok=5 changed=1 failed=0 unreachable=0 skipped=2",
        "bmops_daily_check: breach",
        "bmops_daily_check report: /var/lib/bmops/r.md",
    ]


def test_summary_lines_without_stats():
    assert cli.summary_lines(None, {}) == []


def test_procedures_lists_playbooks():
    playbook_dir = paths.find_project().playbook_dir
    assert cli.procedures() == sorted(p.stem for p in playbook_dir.glob("*.yml"))


def test_unknown_procedure_exits_2(capsys):
    assert cli.main(["run", "no_such_procedure"]) == 2
    assert "no procedure" in capsys.readouterr().err
