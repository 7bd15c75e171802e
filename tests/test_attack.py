"""ATT&CK tags become the service's tactics and techniques, offline."""

from __future__ import annotations

from deployer.alertrule import ATTACK_TACTICS
from deployer.attack import TACTICS, map_tags, techniques_table


def test_the_seed_rule_tags_become_command_and_control_and_three_techniques() -> None:
    mapping = map_tags(
        ["attack.command-and-control", "attack.t1102", "attack.t1090", "attack.t1572"]
    )
    assert mapping.tactics == ("CommandAndControl",)
    assert mapping.techniques == ("T1102", "T1090", "T1572")
    assert mapping.sub_techniques == ()
    assert mapping.errors == ()


def test_every_tactic_spelling_is_in_the_services_enum() -> None:
    assert set(TACTICS.values()) <= set(ATTACK_TACTICS)


def test_attack_v18_stealth_and_defense_impairment_map_to_defense_evasion() -> None:
    assert map_tags(["attack.stealth"]).tactics == ("DefenseEvasion",)
    assert map_tags(["attack.defense-impairment"]).tactics == ("DefenseEvasion",)


def test_sub_techniques_are_kept_and_reduced_to_their_parent() -> None:
    mapping = map_tags(["attack.privilege-escalation", "attack.t1055.001"])
    assert mapping.techniques == ("T1055",)
    assert mapping.sub_techniques == ("T1055.001",)


def test_a_technique_without_its_tactic_brings_its_tactics_in_kill_chain_order() -> None:
    # T1078 Valid Accounts: defense-evasion, persistence, privilege-escalation, initial-access.
    mapping = map_tags(["attack.t1078"])
    assert set(mapping.tactics) == set(techniques_table()["T1078"].tactics)
    assert mapping.tactics == (
        "InitialAccess",
        "Persistence",
        "PrivilegeEscalation",
        "DefenseEvasion",
    )
    assert mapping.added_tactics


def test_a_technique_with_one_of_its_tactics_adds_nothing() -> None:
    mapping = map_tags(["attack.persistence", "attack.t1078"])
    assert mapping.tactics == ("Persistence",)
    assert mapping.added_tactics == ()


def test_a_tag_that_is_no_tactic_is_an_error_naming_it() -> None:
    mapping = map_tags(["attack.not-a-tactic", "attack.execution"])
    assert len(mapping.errors) == 1
    assert "attack.not-a-tactic" in mapping.errors[0]


def test_group_software_and_other_namespaces_are_not_tactics_and_not_errors() -> None:
    mapping = map_tags(["attack.g0032", "attack.s0002", "car.2013-05-002", "cve.2021-44228"])
    assert mapping == map_tags([])


def test_a_technique_newer_than_the_bundled_data_is_kept_with_a_warning() -> None:
    mapping = map_tags(["attack.execution", "attack.t9999"])
    assert mapping.techniques == ("T9999",)
    assert mapping.errors == ()
    assert "T9999" in mapping.warnings[0] and "cannot be checked" in mapping.warnings[0]


def test_a_revoked_technique_is_a_warning() -> None:
    revoked = next(t for t in techniques_table().values() if t.revoked)
    mapping = map_tags([f"attack.{revoked.technique_id.lower()}"])
    assert any("revoked" in w for w in mapping.warnings)
