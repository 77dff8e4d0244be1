# SPDX-License-Identifier: Apache-2.0
"""Every answer a survey of roles/awx offers passes the playbook's own checks.

For each question of each job template survey, its default, its choices, its
integer bounds and the example in its description are turned into the role
parameter the playbook passes on (the play's `vars:`, e.g. db_backup_restore_backup_id:
"{{ restore_backup_id | default('') }}"), then checked against that role's
meta/argument_specs.yml with Ansible's own argument spec validator (type,
choices) and against the `that:` expressions of the role's tasks/preflight.yml
that can be evaluated on their own. AWX survey questions have no regular
expression field (a text answer is bounded by its length only), so the backup
id example is held to the backup tool's own pattern here instead.
"""

from __future__ import annotations

import re
import sys

import jinja2
import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.parsing.convert_bool import boolean
from helpers import ROOT
from helpers.ansible_tree import role_uses
from jinja2.nativetypes import NativeEnvironment

ROLES = ROOT / "roles"


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's !unsafe tag as a plain string."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506


AWX = load(ROLES / "awx" / "defaults" / "main.yml")
SURVEYED = [t for t in AWX["awx_job_templates"] if "survey" in t]

ENV = NativeEnvironment(undefined=jinja2.StrictUndefined)
ENV.filters["bool"] = lambda v: boolean(v, strict=False)
ENV.tests["match"] = lambda v, pattern: re.match(pattern, str(v)) is not None


def play_vars(playbook: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for play in load(ROOT / playbook):
        out.update(play.get("vars") or {})
    return out


def playbook_roles(playbook: str) -> list[tuple[str, str]]:
    return [(role, entry or "main") for role, entry in role_uses(load(ROOT / playbook))]


def parameter(playbook: str, variable: str) -> tuple[str, str]:
    """(role parameter, the play's expression that makes it) for a survey variable."""
    for name, expr in play_vars(playbook).items():
        if isinstance(expr, str) and re.search(rf"\b{variable}\b", expr):
            return name, expr
    return variable, "{{ " + variable + " }}"


def option_spec(playbook: str, name: str) -> tuple[str, dict]:
    """(role, argument spec of the option) among the roles and entry points the playbook uses."""
    for role, entry in playbook_roles(playbook):
        specs = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
        options = specs.get(entry, specs["main"]).get("options", {})
        if name in options:
            return role, options[name]
    raise AssertionError(f"{playbook}: no role it uses declares {name}")


def answers(question: dict) -> list:
    """Every answer the survey offers or shows: default, choices, bounds, the example."""
    values = [question["default"]] if "default" in question else []
    values += question.get("choices", [])
    if question["type"] == "integer":
        values += [question[k] for k in ("min", "max") if k in question]
    example = re.search(r"e\.g\. (\S+?)\)", question.get("question_description", ""))
    if example:
        values.append(example.group(1))
    return values


def to_parameter(expr: str, variable: str, value):
    return ENV.from_string(expr).render({variable: value})


def preflight_checks(role: str, playbook: str | None = None) -> list[tuple[str, dict]]:
    """(expression, the assert task's own vars) of every assert in the role's preflight,
    when the entry point the playbook uses runs it (main, or one that imports it)."""
    path = ROLES / role / "tasks" / "preflight.yml"
    if not path.is_file():
        return []
    entries = {e for r, e in playbook_roles(playbook) if r == role} if playbook else {"main"}
    tasks = ROLES / role / "tasks"
    if entries and "main" not in entries and not any(
            "preflight.yml" in (tasks / f"{e.removesuffix('.yml')}.yml").read_text()
            for e in entries):
        return []
    out = []
    for task in load(path):
        assert_args = task.get("ansible.builtin.assert")
        if assert_args:
            that = assert_args["that"]
            exprs = that if isinstance(that, list) else [that]
            out += [(expr, task.get("vars") or {}) for expr in exprs]
    return out


def plain_defaults(role: str) -> dict:
    """The argument spec defaults of a role that are not templates (for the preflight's context)."""
    out = {}
    for entry in load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"].values():
        for name, spec in entry.get("options", {}).items():
            if "default" in spec and "{{" not in str(spec["default"]):
                out[name] = spec["default"]
    return out


def evaluate(expr: str, context: dict) -> bool | None:
    """The expression's truth, or None when it needs more than the context has."""
    try:
        return bool(ENV.from_string("{{ (" + expr + ") | bool }}").render(context))
    except (jinja2.UndefinedError, jinja2.TemplateSyntaxError, jinja2.TemplateAssertionError):
        return None


def cases():
    for template in SURVEYED:
        for question in template["survey"]["spec"]:
            for value in answers(question):
                yield pytest.param(template, question, value,
                                   id=f"{template['name']}:{question['variable']}={value!r}")


@pytest.mark.parametrize(("template", "question", "value"), list(cases()))
def test_survey_answer_passes_the_argument_spec(template, question, value):
    name, expr = parameter(template["playbook"], question["variable"])
    _role, spec = option_spec(template["playbook"], name)
    wanted = {k: spec[k] for k in ("type", "choices", "elements") if k in spec}
    result = ArgumentSpecValidator({name: wanted}).validate(
        {name: to_parameter(expr, question["variable"], value)})
    assert result.error_messages == []


@pytest.mark.parametrize(("template", "question", "value"), list(cases()))
def test_survey_answer_passes_the_preflight(template, question, value):
    """The preflight checks that read this parameter alone (the others at their defaults)."""
    name, expr = parameter(template["playbook"], question["variable"])
    role, _spec = option_spec(template["playbook"], name)
    context = plain_defaults(role)
    survey_params = {parameter(template["playbook"], q["variable"])[0]
                     for q in template["survey"]["spec"]}
    for check, task_vars in preflight_checks(role, template["playbook"]):
        others = {p for p in survey_params - {name} if re.search(rf"\b{p}\b", check)}
        if re.search(rf"\b{name}\b", check) and not others:
            answer = to_parameter(expr, question["variable"], value)
            ok = evaluate(check, {**context, **task_vars, name: answer})
            assert ok is not False, f"{role} preflight refuses {name}={value!r}: {check}"


@pytest.mark.parametrize("template", SURVEYED, ids=lambda t: t["name"])
def test_survey_defaults_together_pass_the_preflight(template):
    """All defaults at once (the restart survey's "exactly one kind of restart")."""
    values = {}
    for question in template["survey"]["spec"]:
        name, expr = parameter(template["playbook"], question["variable"])
        values[name] = to_parameter(expr, question["variable"], question.get("default", ""))
    roles = {option_spec(template["playbook"], name)[0] for name in values}
    for role in roles:
        for check, task_vars in preflight_checks(role, template["playbook"]):
            ok = evaluate(check, {**plain_defaults(role), **task_vars, **values})
            assert ok is not False, f"{role} preflight refuses the defaults {values}: {check}"


def test_preflight_evaluation_covers_the_surveyed_checks():
    """The checks above really evaluate (a typo would make every check 'not applicable')."""
    checks = dict.fromkeys(c for c, _v in preflight_checks("log_level"))
    level = next(c for c in checks if "log_level_value in" in c)
    levels = next(v for c, v in preflight_checks("log_level") if c == level)
    assert evaluate(level, {**levels, "log_level_value": "DEBUG"}) is True
    assert evaluate(level, {**levels, "log_level_value": "TRACE"}) is False
    one = next(c for c, _v in preflight_checks("service_restart") if "select" in c)
    base = plain_defaults("service_restart")
    assert evaluate(one, {**base, "service_restart_service": "backend"}) is True
    both = {**base, "service_restart_service": "backend", "service_restart_full": True}
    assert evaluate(one, both) is False


def test_restore_confirmation_default_refuses_and_yes_confirms():
    """The restore's confirmation (roles/db_backup/tasks/restore.yml) refuses its default."""
    restore = load(ROLES / "db_backup" / "tasks" / "restore.yml")
    check = next(t for t in restore if "ansible.builtin.assert" in t)
    check = check["ansible.builtin.assert"]["that"]
    question = next(q for q in SURVEYED[0]["survey"]["spec"] if q["variable"] == "restore_confirm")
    name, expr = parameter("playbooks/restore_db.yml", "restore_confirm")

    def confirmed(answer):
        value = to_parameter(expr, "restore_confirm", answer)
        return evaluate(check, {name: value, "ansible_check_mode": False})

    assert confirmed(question["default"]) is False
    assert confirmed("yes") is True


def test_restore_backup_id_answers_have_the_tools_format():
    """No regex in an AWX survey: the default (empty: latest) and the example follow the tool."""
    sys.path.insert(0, str(ROLES / "db_backup" / "files"))  # the backup tool's package
    from bmops_backup.infofile import MANIFEST_RE

    template = next(t for t in SURVEYED if t["playbook"] == "playbooks/restore_db.yml")
    question = next(q for q in template["survey"]["spec"] if q["variable"] == "restore_backup_id")
    assert "regex" not in question  # not an AWX survey field: its text type has min / max only
    for value in answers(question):
        assert value == "" or MANIFEST_RE.match(f"{value}.json"), value
        assert question["min"] <= len(value) <= question["max"]
    assert question["min"] == 0  # empty restores the latest verified backup
