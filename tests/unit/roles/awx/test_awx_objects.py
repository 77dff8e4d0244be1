# SPDX-License-Identifier: Apache-2.0
"""The AWX objects of roles/awx/defaults/main.yml obey AWX's own rules.

AWX rejects, at API time, schedules whose rrule lacks DTSTART or INTERVAL,
mixes COUNT with UNTIL, or uses SECONDLY; and survey specs that are not in its
format. These tests catch that before anyone talks to a controller.
"""

from __future__ import annotations

import re
import sys
import zoneinfo

import jinja2
import pytest
import yaml
from bm_awx import bm_awx_workflow_nodes
from dateutil import rrule as dateutil_rrule
from helpers import ROOT

VARS_FILE = ROOT / "roles" / "awx" / "defaults" / "main.yml"


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's !unsafe tag as a plain string."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))

AWX = yaml.load(VARS_FILE.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
TEMPLATE_NAMES = {t["name"] for t in AWX["awx_job_templates"]}
WORKFLOW_NAMES = {w["name"] for w in AWX["awx_workflows"]}
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice",
                "multiselect"}
RRULE_RE = re.compile(
    r"^DTSTART;TZID=(?P<tz>[A-Za-z_]+(?:/[A-Za-z_+-]+)*):(?P<start>\d{8}T\d{6}) "
    r"RRULE:(?P<rule>[A-Z]+=[^ ]+)$"
)


def render(text: str) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    return env.from_string(text).render(AWX)


def rrule_problems(rrule_text: str) -> list[str]:
    """What AWX would reject in an rrule string (empty list: acceptable)."""
    m = RRULE_RE.match(rrule_text)
    if not m:
        return ["must be 'DTSTART;TZID=<zone>:<YYYYMMDDTHHMMSS> RRULE:<rule>'"]
    problems = []
    try:
        zoneinfo.ZoneInfo(m["tz"])
    except zoneinfo.ZoneInfoNotFoundError:
        problems.append(f"unknown time zone {m['tz']}")
    parts = dict(p.split("=", 1) for p in m["rule"].split(";"))
    if parts.get("FREQ") not in {"MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"}:
        problems.append(f"FREQ {parts.get('FREQ')} is not allowed by AWX")
    if not parts.get("INTERVAL", "").isdigit() or int(parts["INTERVAL"]) < 1:
        problems.append("INTERVAL is required and must be a positive integer")
    if "COUNT" in parts and "UNTIL" in parts:
        problems.append("COUNT and UNTIL cannot both be set")
    if not problems:
        # The parser AWX itself uses must accept it and yield an occurrence.
        # AWX hands dateutil the DTSTART and RRULE lines separately.
        rule = dateutil_rrule.rrulestr(rrule_text.replace(" RRULE:", "\nRRULE:"))
        if rule[0] is None:
            problems.append("rule yields no occurrence")
    return problems


def survey_problems(survey: dict) -> list[str]:
    """What AWX would reject in a survey spec (empty list: acceptable)."""
    problems = []
    for key in ("name", "description", "spec"):
        if key not in survey:
            problems.append(f"survey lacks {key!r}")
    seen = set()
    for q in survey.get("spec", []):
        var = q.get("variable", "")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            problems.append(f"variable {var!r} is not a valid name")
        if var in seen:
            problems.append(f"variable {var!r} asked twice")
        seen.add(var)
        for key in ("question_name", "type", "required"):
            if key not in q:
                problems.append(f"{var}: lacks {key!r}")
        qtype = q.get("type")
        if qtype not in SURVEY_TYPES:
            problems.append(f"{var}: type {qtype!r} is not an AWX survey type")
        if not isinstance(q.get("required"), bool):
            problems.append(f"{var}: required must be true or false")
        if qtype in ("multiplechoice", "multiselect"):
            choices = q.get("choices")
            if not isinstance(choices, list) or not choices:
                problems.append(f"{var}: choices must be a non-empty list")
            elif q.get("default", "") not in ("", *choices):
                problems.append(f"{var}: default {q.get('default')!r} is not one of the choices")
        if qtype in ("text", "textarea", "password", "integer", "float"):
            lo, hi = q.get("min"), q.get("max")
            if lo is not None and hi is not None and lo > hi:
                problems.append(f"{var}: min {lo} is above max {hi}")
            default = q.get("default")
            if qtype in ("text", "textarea") and default and hi is not None and len(default) > hi:
                problems.append(f"{var}: default longer than max")
    return problems


@pytest.mark.parametrize("schedule", AWX["awx_schedules"], ids=lambda s: s["name"])
def test_schedule_rrules_obey_awx_rules(schedule):
    assert rrule_problems(render(schedule["rrule"])) == []


@pytest.mark.parametrize("schedule", AWX["awx_schedules"], ids=lambda s: s["name"])
def test_schedules_point_at_known_templates(schedule):
    assert schedule["template"] in TEMPLATE_NAMES | WORKFLOW_NAMES


def test_restore_survey_example_id_has_the_real_format():
    """The survey's example is what bmops-backup names a backup (copying it must work)."""
    sys.path.insert(0, str(ROOT / "roles" / "db_backup" / "files"))  # the backup tool's package
    from bmops_backup.infofile import MANIFEST_RE

    template = next(t for t in AWX["awx_job_templates"] if t["name"] == "bmops restore database")
    question = next(q for q in template["survey"]["spec"] if q["variable"] == "restore_backup_id")
    example = re.search(r"e\.g\. (\S+?)\)", question["question_description"]).group(1)
    assert MANIFEST_RE.match(f"{example}.json"), example


def test_quarterly_review_runs_on_the_first_monday_of_each_quarter():
    schedule = next(s for s in AWX["awx_schedules"] if s["template"] == "bmops quarterly review")
    rule = dateutil_rrule.rrulestr(render(schedule["rrule"]).replace(" RRULE:", "\nRRULE:"))
    runs = [rule[i] for i in range(4)]
    assert [(d.month, d.weekday()) for d in runs] == [(1, 0), (4, 0), (7, 0), (10, 0)]
    assert all(d.day <= 7 for d in runs)


@pytest.mark.parametrize(
    ("rrule_text", "problem"),
    [
        ("RRULE:FREQ=DAILY;INTERVAL=1", "must be"),
        ("DTSTART:20261201T000000Z RRULE:FREQ=DAILY;INTERVAL=1", "must be"),
        ("DTSTART;TZID=Asia/Tokyo:20261201T000000 RRULE:FREQ=DAILY", "INTERVAL"),
        ("DTSTART;TZID=Asia/Tokyo:20261201T000000 RRULE:FREQ=SECONDLY;INTERVAL=1", "SECONDLY"),
        ("DTSTART;TZID=Asia/Tokyo:20261201T000000 "
         "RRULE:FREQ=DAILY;INTERVAL=1;COUNT=2;UNTIL=20270101T000000Z", "COUNT and UNTIL"),
        ("DTSTART;TZID=Mars/Olympus:20261201T000000 RRULE:FREQ=DAILY;INTERVAL=1", "time zone"),
    ],
)
def test_rrule_checker_catches(rrule_text, problem):
    assert any(problem in p for p in rrule_problems(rrule_text))


SURVEYED = [t for t in AWX["awx_job_templates"] if "survey" in t]


def test_restore_is_surveyed():
    assert "bmops restore database" in {t["name"] for t in SURVEYED}


@pytest.mark.parametrize("template", SURVEYED, ids=lambda t: t["name"])
def test_survey_specs_obey_awx_format(template):
    assert survey_problems(template["survey"]) == []


@pytest.mark.parametrize(
    ("survey", "problem"),
    [
        ({"name": "x", "description": "", "spec": [
            {"question_name": "q", "variable": "a b", "type": "text", "required": True}]},
         "not a valid name"),
        ({"name": "x", "description": "", "spec": [
            {"question_name": "q", "variable": "a", "type": "multiplechoice", "required": True,
             "choices": ["x"], "default": "y"}]}, "not one of the choices"),
        ({"name": "x", "description": "", "spec": [
            {"question_name": "q", "variable": "a", "type": "select", "required": True}]},
         "not an AWX survey type"),
        ({"name": "x", "spec": []}, "lacks 'description'"),
        ({"name": "x", "description": "", "spec": [
            {"question_name": "q", "variable": "a", "type": "integer", "required": True,
             "min": 5, "max": 1}]}, "min 5 is above max 1"),
    ],
)
def test_survey_checker_catches(survey, problem):
    assert any(problem in p for p in survey_problems(survey))


@pytest.mark.parametrize("template", AWX["awx_job_templates"], ids=lambda t: t["name"])
def test_job_templates_run_playbooks_that_exist(template):
    assert (ROOT / template["playbook"]).is_file()
    # short names of roles/awx/vars/main.yml; vault is added by awx_vault_credential_enabled only
    assert set(template["credentials"]) <= {"machine", "smtp", "stack", "offsite", "eda"}


def test_job_template_names_unique():
    names = [t["name"] for t in AWX["awx_job_templates"]]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("workflow", AWX["awx_workflows"], ids=lambda w: w["name"])
def test_workflow_nodes(workflow):
    nodes = bm_awx_workflow_nodes(workflow["nodes"], "Default")
    assert {n["unified_job_template"]["name"] for n in nodes} <= TEMPLATE_NAMES
    assert nodes[0]["related"]["success_nodes"]


def test_workflow_filter_rejects_unknown_edge():
    with pytest.raises(ValueError, match="unknown node"):
        bm_awx_workflow_nodes([{"identifier": "a", "template": "t", "success": ["b"]}], "Org")


def test_smtp_credential_type_injects_environment():
    env = AWX["awx_smtp_credential_type_injectors"]["env"]
    assert env["BMOPS_SMTP_PASSWORD"] == "{{ password }}"  # noqa: S105 (a template)
    secret_fields = [f["id"] for f in AWX["awx_smtp_credential_type_inputs"]["fields"]
                     if f.get("secret")]
    assert secret_fields == ["password"]
