"""Loading policies: the shipped packs, the schema, and one readable error per mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from labelgate.guard.policy import Policy, PolicyError, load_policy
from labelgate.guard.policy.cli import policy as policy_cli
from labelgate.guard.policy.schema import policy_schema

ROOT = Path(__file__).resolve().parents[1]
PACKS = sorted((ROOT / "policies").glob("*.yaml"))


def test_three_documented_packs_ship() -> None:
    names = {p.name for p in PACKS}
    assert {"default.yaml", "rag-confidentiality.yaml", "multi-agent-quarantine.yaml"} <= names


@pytest.mark.parametrize("path", PACKS, ids=lambda p: p.name)
def test_every_pack_validates_and_references_schema(path: Path) -> None:
    policy = load_policy(path)
    assert policy.sinks and policy.sources
    assert "$schema=policy.schema.json" in path.read_text().splitlines()[0]
    docs = (ROOT / "docs" / "policies.md").read_text()
    assert path.name in docs


def test_shipped_schema_is_up_to_date() -> None:
    shipped = json.loads((ROOT / "policies" / "policy.schema.json").read_text())
    assert shipped == policy_schema(), "run: labelgate policy schema -o policies/policy.schema.json"


def test_schema_rejects_what_the_model_rejects() -> None:
    schema = policy_schema()
    sink = schema["$defs"]["SinkRule"]
    assert set(sink["required"]) == {"id", "action"}
    assert sink["additionalProperties"] is False
    assert "lattice" in schema["properties"] and "declassify" in schema["properties"]


GOOD = """\
version: 1
lattice:
  confidentiality: [public, internal]
  integrity: [untrusted, trusted]
  categories: [pii]
sources:
  - id: web
    url: "https://*"
    label: {integrity: untrusted}
sinks:
  - id: a
    tool: send_email
    action: allow
  - id: b
    tool: post_*
    action: deny
"""


def _error(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml_text(text, "policies/x.yaml")
    return str(info.value)


def test_good_policy_loads() -> None:
    policy = Policy.from_yaml_text(GOOD, "x.yaml")
    assert [r.id for r in policy.sinks] == ["a", "b"]
    assert policy.lattice.conf("internal").rank == 1


def test_unknown_action_names_line_and_field() -> None:
    text = GOOD.replace("action: deny", "action: block")
    assert _error(text) == (
        "policies/x.yaml:16: sinks[1].action: must be one of allow, log, redact, ask, deny "
        "(got 'block')"
    )


def test_bad_level_name() -> None:
    text = GOOD.replace("label: {integrity: untrusted}", "label: {integrity: dodgy}")
    assert _error(text) == (
        "policies/x.yaml:9: sources[0].label.integrity: unknown integrity level 'dodgy' "
        "(known: untrusted, trusted)"
    )


def test_bad_level_in_condition_on_its_own_line() -> None:
    text = GOOD + "    when:\n      confidentiality_above: secret\n"
    assert _error(text).startswith(
        "policies/x.yaml:18: sinks[1].when.confidentiality_above: unknown confidentiality level"
    )


def test_wrong_type() -> None:
    text = GOOD.replace("  - id: b\n", "  - id: b\n    override_baseline: sometimes\n")
    msg = _error(text)
    assert msg.startswith("policies/x.yaml:15: sinks[1].override_baseline: input should be")
    assert "(got 'sometimes')" in msg


def test_unknown_key_with_hint() -> None:
    text = GOOD.replace("    tool: send_email\n", "    tool: send_email\n    acton: deny\n")
    assert (
        _error(text) == "policies/x.yaml:13: sinks[0].acton: unknown field (did you mean 'action'?)"
    )


def test_missing_field_points_at_its_rule() -> None:
    text = GOOD.replace("    action: allow\n", "")
    assert _error(text) == "policies/x.yaml:11: sinks[0].action: required field is missing"


def test_union_fields_report_one_error() -> None:
    text = GOOD.replace("tool: post_*", "tool: 3")
    assert (
        _error(text) == "policies/x.yaml:15: sinks[1].tool: input should be a valid string (got 3)"
    )
    text = GOOD.replace("  - id: b", "  - id: b\n    kind: tool")
    assert _error(text) == (
        "policies/x.yaml:15: sinks[1].kind: must be one of tool_call, response, egress, prompt "
        "(got 'tool')"
    )


def test_several_errors_are_counted() -> None:
    text = GOOD.replace("action: deny", "action: block").replace("action: allow", "action: x")
    assert _error(text).endswith("(got 'x') (and 1 more error)")


def test_unknown_category() -> None:
    text = GOOD.replace("{integrity: untrusted}", "{integrity: untrusted, categories: [hr]}")
    assert _error(text).startswith("policies/x.yaml:9: sources[0].label.categories[0]: unknown")


def test_bad_regex() -> None:
    text = GOOD.replace("tool: post_*", 'tool: "re:post_(("')
    msg = _error(text)
    assert msg.startswith("policies/x.yaml:15: sinks[1].tool: invalid regular expression")


def test_lattice_error() -> None:
    text = GOOD.replace("[public, internal]", "[public, public]")
    assert _error(text) == "policies/x.yaml:3: lattice.confidentiality: level names must be unique"


def test_yaml_syntax_error_has_line() -> None:
    text = GOOD.replace("    action: allow", "    action: [allow")
    assert _error(text) == (
        "policies/x.yaml:14: YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence)"
    )
    assert _error("a: b\n  c: d\n").startswith("policies/x.yaml:2: YAML syntax error")


def test_duplicate_key_and_duplicate_rule_id() -> None:
    dup_key = GOOD.replace("    action: allow\n", "    action: allow\n    action: deny\n")
    assert _error(dup_key) == "policies/x.yaml:14: sinks[0].action: duplicate key"
    dup_id = GOOD.replace("id: b", "id: a")
    assert _error(dup_id) == (
        "policies/x.yaml:14: sinks[1].id: duplicate rule id 'a' (first used at sinks[0].id)"
    )


def test_top_level_must_be_mapping_and_missing_file() -> None:
    assert _error("- 1\n- 2\n") == "policies/x.yaml:1: a policy must be a mapping of sections"
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy("/nonexistent/policy.yaml")


def test_cli_validate_ok_and_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("action: deny", "action: block"))
    runner = CliRunner()
    ok = runner.invoke(policy_cli, ["validate", *map(str, PACKS)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.count(": ok (") == len(PACKS)
    mixed = runner.invoke(policy_cli, ["validate", str(PACKS[0]), str(bad)])
    assert mixed.exit_code == 1
    assert f"{bad}:16: sinks[1].action: must be one of" in mixed.output


def test_cli_schema_writes_file(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    result = CliRunner().invoke(policy_cli, ["schema", "-o", str(out)])
    assert result.exit_code == 0
    assert json.loads(out.read_text()) == policy_schema()
    printed = CliRunner().invoke(policy_cli, ["schema"])
    assert json.loads(printed.output)["title"] == "labelgate policy"


def test_cookbook_snippets_in_docs_are_valid() -> None:
    import re

    text = (ROOT / "docs" / "policies.md").read_text()
    cookbook = text[text.index("## Cookbook") :]
    blocks = re.findall(r"```yaml\n(.*?)```", cookbook, re.S)
    assert len(blocks) >= 8
    for block in blocks:
        body = "sinks:\n" + block if block.startswith("  - id") else block
        Policy.from_yaml_text("lattice: {categories: [pii]}\n" + body, "cookbook.yaml")


def test_package_exports_resolve() -> None:
    import labelgate.guard.policy as pkg

    assert sorted(pkg.__all__) == sorted(pkg._EXPORTS)
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
    with pytest.raises(AttributeError):
        _ = pkg.nope


def test_policy_list_names_every_shipped_pack_and_validate_takes_a_name() -> None:
    listed = CliRunner().invoke(policy_cli, ["list"])
    assert listed.exit_code == 0, listed.output
    rows = dict(line.split("\t") for line in listed.output.splitlines())
    assert set(rows) == {p.stem for p in PACKS}
    assert all(Path(path).is_file() for path in rows.values())
    checked = CliRunner().invoke(policy_cli, ["validate", "tool-agents"])
    assert checked.exit_code == 0 and checked.output.startswith("tool-agents: ok")
