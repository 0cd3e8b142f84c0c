"""The decision function (sandlot/permissions.py) on its own: patterns, precedence, presets, the
implied view of directories, and bad rules. No server."""

from __future__ import annotations

import pytest

from sandlot import Permission, PatternType, PermissionRule
from sandlot import permissions as P
from sandlot.runtimes.policy import SecurityPolicy, Workspace, rules_of, workspace_rules

NAMES = P.LEVEL_NAMES


def level(rules, path, is_dir=False):
    return NAMES[P.Permissions(rules).level(path, is_dir)]


def test_glob_segments():
    rules = [PermissionRule("**/*.py", Permission.READ)]
    assert level(rules, "/a.py") == level(rules, "/x/y/z.py") == "read"
    assert level(rules, "/a.pyc") == "none"
    anchored = [PermissionRule("*.txt", "read")]  # no leading / or **: the top level only
    assert level(anchored, "/a.txt") == "read" and level(anchored, "/d/a.txt") == "none"
    subtree = [PermissionRule("/secrets/**", "view")]
    assert level(subtree, "/secrets") == level(subtree, "/secrets/a/b") == "view"
    assert level(subtree, "/secretsx") == "none"
    star = [PermissionRule("/src/*", "read")]  # * never crosses a /
    assert level(star, "/src/a") == "read" and level(star, "/src/a/b") == "none"
    classes = [PermissionRule("/f[!0-9]", "read"), PermissionRule("/?.md", "write")]
    assert level(classes, "/fx") == "read" and level(classes, "/f1") == "none" and level(classes, "/f/") == "none"
    assert level(classes, "/a.md") == "write" and level(classes, "/ab.md") == "none"


def test_directory_and_file_types():
    rules = [PermissionRule("/docs/", "write", PatternType.DIRECTORY), PermissionRule("/config.yaml", "read", "file")]
    assert level(rules, "/docs") == level(rules, "/docs/a/b.md") == "write"
    assert level(rules, "/config.yaml") == "read" and level(rules, "/config.yaml.bak") == "none"


def test_precedence_priority_then_type_then_specificity_then_order():
    # 1. priority
    assert level([PermissionRule("/a", "read", "file"), PermissionRule("**/*", "none", priority=1)], "/a") == "none"
    # 2. type: file over directory over glob (at equal priority)
    assert level([PermissionRule("/d/", "none", "directory"), PermissionRule("/d/f", "read", "file")], "/d/f") == "read"
    assert level([PermissionRule("/d/**", "none"), PermissionRule("/d/", "read", "directory")], "/d/f") == "read"
    # 3. specificity among globs: anchored over floating, longer literal prefix, no wildcard
    assert level([PermissionRule("**/*", "read"), PermissionRule("/output/**", "write")], "/output/x") == "write"
    assert level([PermissionRule("/a/**", "read"), PermissionRule("/a/b/**", "none")], "/a/b/c") == "none"
    # 4. equal rank: the later rule (explicit rules come after a preset's)
    assert level([PermissionRule("**/*", "read"), PermissionRule("**/*", "view")], "/x") == "view"


def test_no_rule_means_none_and_the_root_is_always_listable():
    assert level([], "/anything") == "none"
    assert level([], "/", is_dir=True) == "view"


def test_a_hidden_directory_opens_for_what_outranks_it():
    rules = [PermissionRule("**/*", "read"), PermissionRule("/secrets/**", "none", priority=100),
             PermissionRule("/secrets/public.key", "read", priority=200)]
    decide = P.Permissions(rules)
    assert NAMES[decide.dir_level("/secrets")] == "view"
    assert NAMES[decide.level("/secrets/public.key")] == "read"
    assert NAMES[decide.level("/secrets/private.key")] == "none"
    # a lower rank does not reopen it: agent-safe's **/* read stays out of secrets/
    assert NAMES[P.Permissions.of("agent-safe").dir_level("/secrets")] == "none"
    # "everything else invisible" still lets you reach the .py files deep down
    only_py = P.Permissions([PermissionRule("**/*.py", "read"), PermissionRule("**/*", "none", priority=-1)])
    assert NAMES[only_py.dir_level("/src/pkg")] == "view" and NAMES[only_py.level("/src/pkg/x.py")] == "read"
    assert NAMES[only_py.level("/src/pkg/x.txt")] == "none"


@pytest.mark.parametrize("preset, expected", [
    ("view-only", {"/main.py": "view", "/.env": "view", "/output/x": "view"}),
    ("read-only", {"/main.py": "read", "/.env": "read", "/output/x": "read"}),
    ("agent-safe", {"/main.py": "read", "/.env": "none", "/.env.prod": "none", "/a/secrets/b": "none",
                    "/k.key": "none", "/c.pem": "none", "/credentials.json": "none", "/.git/config": "none",
                    "/output/x": "write", "/tmp/y": "write"}),
    ("development", {"/main.py": "write", "/.env": "none", "/secrets/x": "none", "/x.key": "none",
                     "/.git/config": "write"}),
    ("full-access", {"/main.py": "write", "/.env": "write"}),
])
def test_presets_mean_what_agentfense_says(preset, expected):
    decide = P.Permissions.of(preset)
    assert {path: NAMES[decide.level(path)] for path in expected} == expected


def test_presets_are_extended_by_explicit_rules():
    rules = rules_of("agent-safe", [{"pattern": "/data/**", "permission": "write"},
                                    {"pattern": "**/.env*", "permission": "read", "priority": 1000}])
    decide = P.Permissions(rules)
    assert NAMES[decide.level("/data/x")] == "write" and NAMES[decide.level("/.env")] == "read"
    assert rules_of() == P.PRESETS["view-only"]  # the default


def test_policy_caps_and_blocks_inside_the_workspace():
    ws = Workspace(None, "/workspace", rules_of("full-access"))
    rules = workspace_rules(ws, SecurityPolicy(allow_file_write=False, blocked_paths=("/workspace/private",)))
    decide = P.Permissions(rules)
    assert NAMES[decide.level("/main.py")] == "read"
    assert NAMES[decide.level("/private/x")] == "none" and NAMES[decide.level("/private")] == "none"


@pytest.mark.parametrize("bad", [{"pattern": "", "permission": "read"}, {"pattern": "/x", "permission": "admin"},
                                 {"pattern": "/x", "type": "regex"}, {"pattern": "/x", "priority": "high"},
                                 {"pattern": "/x", "colour": "red"}, "not a rule"])
def test_bad_rules_are_refused(bad):
    with pytest.raises(P.RuleError):
        P.Rule.from_json(bad)
    with pytest.raises(P.RuleError):
        P.resolve("no-such-preset")


def test_the_agentfense_dictionary_form_round_trips():
    rule = PermissionRule(pattern="/secrets/**", permission=Permission.NONE, priority=100)
    assert rule.to_json() == {"pattern": "/secrets/**", "permission": "none", "type": "glob", "priority": 100}
    assert P.Rule.from_json(rule.to_json()) == rule
