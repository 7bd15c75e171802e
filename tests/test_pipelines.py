"""Our processing items, one defect each: the bare backend's output beside ours.

The "before" is computed live from the backend's own pipeline, so each test also shows that the
defect still exists upstream; when a backend release fixes one, its test says so by failing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sigma.backends.kusto.kusto import KustoBackend
from sigma.rule import SigmaRule

from deployer.build import BuildRequest, run_build
from deployer.config import load_config
from deployer.convert import OR_CHAIN, Converter
from deployer.errors import RuleConversionError
from deployer.model import ConvertedRule
from deployer.pipelines import backend_pipeline
from deployer.validate import QueryValidator

from conftest import rule_yaml


def bare(detection: str, pipeline: str, *, text: str | None = None) -> str:
    """The query of the backend as it ships (no trailing newline: it writes none)."""
    rule = SigmaRule.from_yaml(text or rule_yaml(detection=detection))
    return str(KustoBackend(backend_pipeline(pipeline)).convert_rule(rule)[0])


def bare_error(detection: str, pipeline: str) -> str:
    # Any exception type: which one the backend raises is part of the defect shown.
    with pytest.raises(Exception) as caught:
        bare(detection, pipeline)
    return f"{type(caught.value).__name__}: {caught.value}"


def ours(detection: str, pipeline: str, *, text: str | None = None) -> ConvertedRule:
    rule = SigmaRule.from_yaml(text or rule_yaml(detection=detection))
    return Converter().convert(rule, pipeline)


def refused(detection: str, pipeline: str, *, text: str | None = None) -> str:
    with pytest.raises(RuleConversionError) as caught:
        ours(detection, pipeline, text=text)
    return str(caught.value)


# --- field mappings -------------------------------------------------------------------------


def test_asim_original_file_name_maps_to_the_schemas_own_column() -> None:
    detection = "selection:\n    OriginalFileName: 'psexec.c'\ncondition: selection"
    assert "TargetProcessFilename" in bare_error(detection, "sentinel_asim")
    assert ours(detection, "sentinel_asim").query == (
        'imProcessCreate\n| where TargetProcessFileOriginalName =~ "psexec.c"\n'
    )


IMAGE_OR_ORIGINAL_NAME = (
    "selection:\n"
    "    - Image|endswith: '\\psexec.exe'\n"
    "    - OriginalFileName: 'psexec.c'\n"
    "condition: selection"
)


def test_an_alternative_on_a_missing_column_is_dropped_with_a_warning_naming_it() -> None:
    assert "OriginalFileName" in bare_error(IMAGE_OR_ORIGINAL_NAME, "azure_monitor")
    converted = ours(IMAGE_OR_ORIGINAL_NAME, "azure_monitor")
    assert converted.query == 'SecurityEvent\n| where NewProcessName endswith "\\\\psexec.exe"\n'
    assert converted.warnings == (
        "detection 'selection': the alternative(s) on OriginalFileName dropped (SecurityEvent "
        "has no such column); the rule matches only on the others",
    )


def test_an_alternative_under_not_is_never_dropped_since_the_rule_would_match_more() -> None:
    detection = (
        "selection:\n    CommandLine|contains: 'x'\n"
        "filter:\n    - Image|endswith: '\\a.exe'\n    - OriginalFileName: 'a.exe'\n"
        "condition: selection and not filter"
    )
    assert "OriginalFileName" in bare_error(detection, "azure_monitor")
    assert refused(detection, "azure_monitor") == (
        "SecurityEvent has no column for OriginalFileName, and the `not` around detection "
        "'filter' depends on it; use the fields the table has (azure_monitor schema)"
    )


def test_a_field_every_match_depends_on_is_refused_naming_field_and_table() -> None:
    detection = (
        "selection:\n    Image|endswith: '\\a.exe'\n    OriginalFileName: 'a.exe'\n"
        "condition: selection"
    )
    assert refused(detection, "azure_monitor") == (
        "SecurityEvent has no column for OriginalFileName, and every match of detection "
        "'selection' depends on it; use the fields the table has (azure_monitor schema)"
    )


def test_a_whole_detection_on_a_missing_column_goes_where_it_is_one_or_alternative() -> None:
    detection = (
        "selection_img:\n    Image|endswith: '\\hack.exe'\n"
        f"selection_hash:\n    Hashes|contains: '{IMPHASH}'\n"
        "filter:\n    CommandLine|contains: 'harmless'\n"
        "condition: 1 of selection_* and not filter"
    )
    assert bare_error(detection, "microsoft_xdr").startswith("InvalidHashAlgorithmError")
    converted = ours(detection, "microsoft_xdr")
    assert converted.query == (
        'DeviceProcessEvents\n| where (FolderPath endswith "\\\\hack.exe") and '
        '(not(ProcessCommandLine contains "harmless"))\n'
    )
    assert converted.warnings == (
        "detection 'selection_hash' dropped (DeviceProcessEvents has no column for Hashes "
        "(IMPHASH)); the rule matches only on the condition's other alternatives",
    )


@pytest.mark.parametrize(
    "condition", ["all of selection_*", "selection_img and selection_hash", "selection_hash"]
)
def test_a_whole_detection_every_match_needs_is_never_dropped(condition: str) -> None:
    detection = (
        "selection_img:\n    Image|endswith: '\\hack.exe'\n"
        f"selection_hash:\n    Hashes|contains: '{IMPHASH}'\n"
        f"condition: {condition}"
    )
    assert "every match of detection 'selection_hash'" in refused(detection, "microsoft_xdr")


def test_the_refusal_names_the_rules_field_beside_the_column_it_was_mapped_to() -> None:
    # LogonGuid maps to TargetUserSessionGuid, which the ASIM process schema lacks.
    detection = "selection:\n    LogonGuid: '{x}'\ncondition: selection"
    assert "LogonGuid (mapped to TargetUserSessionGuid)" in refused(detection, "sentinel_asim")


# --- Hashes ---------------------------------------------------------------------------------


def test_hashes_exists_means_any_hash_column_is_set() -> None:
    detection = "selection:\n    Hashes|exists: true\ncondition: selection"
    assert bare_error(detection, "sentinel_asim").startswith("AttributeError")
    assert ours(detection, "sentinel_asim").query == (
        "imProcessCreate\n| where isnotempty(TargetProcessMD5) or isnotempty(TargetProcessSHA1)"
        " or isnotempty(TargetProcessSHA256) or isnotempty(TargetProcessSHA512)"
        " or isnotempty(TargetProcessIMPHASH)\n"
    )
    assert ours(detection, "microsoft_xdr").query == (
        "DeviceProcessEvents\n| where isnotempty(MD5) or isnotempty(SHA1) or isnotempty(SHA256)\n"
    )


IMPHASH = "IMPHASH=0123456789ABCDEF0123456789ABCDEF"
SHA256 = "SHA256=" + "a" * 64


def test_an_imphash_only_rule_is_refused_where_the_table_has_no_imphash_column() -> None:
    detection = f"selection:\n    Hashes|contains: '{IMPHASH}'\ncondition: selection"
    assert bare_error(detection, "microsoft_xdr").startswith("InvalidHashAlgorithmError")
    assert refused(detection, "microsoft_xdr") == (
        "DeviceProcessEvents has no column for Hashes (IMPHASH), and every match of detection "
        "'selection' depends on it; use the fields the table has (microsoft_xdr schema)"
    )
    assert ours(detection, "sentinel_asim").query == (
        "imProcessCreate\n"
        '| where TargetProcessIMPHASH startswith "0123456789ABCDEF0123456789ABCDEF"\n'
    )


def test_an_imphash_beside_other_hashes_is_dropped_with_a_warning() -> None:
    detection = (
        f"selection:\n    Hashes|contains:\n        - '{IMPHASH}'\n        - '{SHA256}'\n"
        "condition: selection"
    )
    converted = ours(detection, "microsoft_xdr")
    # The backend drops the IMPHASH too, but silently.
    assert converted.query == bare(detection, "microsoft_xdr") + "\n"
    assert converted.warnings == (
        "detection 'selection': the alternative(s) on Hashes (IMPHASH) dropped "
        "(DeviceProcessEvents has no such column); the rule matches only on the others",
    )


def test_an_imphash_under_not_is_refused_where_the_backend_drops_it_silently() -> None:
    detection = (
        "selection:\n    CommandLine|contains: 'x'\n"
        f"filter:\n    Hashes|contains:\n        - '{IMPHASH}'\n        - '{SHA256}'\n"
        "condition: selection and not filter"
    )
    assert "IMPHASH" not in bare(detection, "microsoft_xdr")
    assert refused(detection, "microsoft_xdr") == (
        "DeviceProcessEvents has no column for Hashes (IMPHASH), and the `not` around detection "
        "'filter' depends on it; use the fields the table has (microsoft_xdr schema)"
    )


# --- values typed by their column -----------------------------------------------------------


def test_a_number_written_as_text_is_a_number_on_a_long_column() -> None:
    detection = "selection:\n    LogonId: '0x3e7'\ncondition: selection"
    assert bare(detection, "microsoft_xdr") == 'DeviceProcessEvents\n| where LogonId =~ "0x3e7"'
    assert ours(detection, "microsoft_xdr").query == (
        "DeviceProcessEvents\n| where LogonId == 999\n"
    )


def test_a_list_of_numbers_uses_in_which_kusto_defines_for_numbers() -> None:
    detection = "selection:\n    LogonId:\n        - '0x3e7'\n        - 1000\ncondition: selection"
    assert bare(detection, "microsoft_xdr") == (
        'DeviceProcessEvents\n| where LogonId in~ ("0x3e7", "1000")'
    )
    assert ours(detection, "microsoft_xdr").query == (
        "DeviceProcessEvents\n| where LogonId in (999, 1000)\n"
    )


def test_the_text_null_on_a_number_column_is_isnull() -> None:
    detection = (
        "selection:\n    CommandLine|contains: 'x'\n"
        "filter:\n    LogonId:\n        - '0x3e7'\n        - 'null'\n"
        "condition: selection and not filter"
    )
    assert 'LogonId in~ ("0x3e7", "null")' in bare(detection, "microsoft_xdr")
    assert ours(detection, "microsoft_xdr").query == (
        'DeviceProcessEvents\n| where ProcessCommandLine contains "x" and '
        "(not((LogonId == 999 or isnull(LogonId))))\n"
    )


def test_text_that_is_no_number_on_a_number_column_is_refused() -> None:
    detection = "selection:\n    LogonId: 'SYSTEM'\ncondition: selection"
    assert bare(detection, "microsoft_xdr") == 'DeviceProcessEvents\n| where LogonId =~ "SYSTEM"'
    assert refused(detection, "microsoft_xdr") == (
        "detection 'selection' compares the long column LogonId with the text 'SYSTEM', which "
        "can never match; use a number"
    )


def test_null_on_a_string_column_is_the_empty_string_since_kusto_strings_are_never_null() -> None:
    detection = (
        "selection:\n    Image|endswith: '\\a.exe'\n    CommandLine: null\ncondition: selection"
    )
    assert "isnull(TargetProcessCommandLine)" in bare(detection, "sentinel_asim")
    assert ours(detection, "sentinel_asim").query == (
        'imProcessCreate\n| where TargetProcessName endswith "\\\\a.exe" and '
        'TargetProcessCommandLine =~ ""\n'
    )


# --- wildcards and escaping -----------------------------------------------------------------

# SigmaHQ's rar_susp_greedy_compression: `?` is any one character, `\\` a backslash, `\*` a star.
GREEDY = (
    "selection:\n    CommandLine|contains:\n        - ' ?:\\\\\\*.'\n        - ' ?:\\\\\\\\\\*.'\n"
    "condition: selection"
)


def test_a_wildcard_inside_a_value_becomes_an_anchored_regex_and_keeps_every_backslash(
    queries: QueryValidator,
) -> None:
    before = bare(GREEDY, "sentinel_asim")
    # The backend splits at `?` (order lost), drops a backslash and writes an invalid escape.
    assert 'contains ":*."' in before
    assert 'contains ":\\*."' in before
    assert queries.diagnostics(before, "sentinel_asim")
    after = ours(GREEDY, "sentinel_asim").query
    assert after == (
        "imProcessCreate\n| where "
        'TargetProcessCommandLine matches regex "(?i)^.* .:\\\\\\\\\\\\*\\\\..*$" or '
        'TargetProcessCommandLine matches regex "(?i)^.* .:\\\\\\\\\\\\\\\\\\\\*\\\\..*$"\n'
    )
    assert queries.diagnostics(after, "sentinel_asim") == ()
    # Read back as Kusto reads the string literal, each regex matches exactly what Sigma means.
    patterns = [
        re.compile(m.encode().decode("unicode_escape"))
        for m in re.findall(r'matches regex "((?:[^"\\]|\\.)*)"', after)
    ]
    assert patterns[0].match("rar a x.rar C:\\*.docx")
    assert not patterns[0].match("rar a x.rar C:*.docx")
    assert not patterns[0].match("rar a x.rar C:\\a.docx")
    assert patterns[1].match("rar a x.rar c:\\\\*.doc")
    assert not patterns[1].match("rar a x.rar c:\\*.doc")


def test_an_escaped_star_at_the_end_stays_a_literal_star_in_contains() -> None:
    detection = "selection:\n    CommandLine|contains: ' /tn \\*'\ncondition: selection"
    expected = 'imProcessCreate\n| where TargetProcessCommandLine contains " /tn *"'
    assert bare(detection, "sentinel_asim") == expected
    assert ours(detection, "sentinel_asim").query == expected + "\n"


# --- rules the backend cannot write ---------------------------------------------------------


def test_a_keyword_rule_is_refused_with_the_reason() -> None:
    detection = "keywords:\n    - 'mimikatz'\n    - 'sekurlsa'\ncondition: keywords"
    assert bare(detection, "sentinel_asim") == 'imProcessCreate\n| where "mimikatz" or "sekurlsa"'
    assert refused(detection, "sentinel_asim").startswith(
        "detection 'keywords' has keywords (values without a field)"
    )


def test_a_field_reference_is_refused_with_the_reason() -> None:
    detection = "selection:\n    CommandLine|fieldref: ParentCommandLine\ncondition: selection"
    assert bare_error(detection, "microsoft_xdr").startswith("NotImplementedError")
    assert refused(detection, "microsoft_xdr") == (
        "detection 'selection' compares field CommandLine with another field (|fieldref), "
        "which the kusto backend cannot convert"
    )


# --- log sources ----------------------------------------------------------------------------


@pytest.mark.parametrize("product", ["linux", "macos"])
def test_a_non_windows_rule_is_refused_where_the_table_holds_windows_events_only(
    product: str,
) -> None:
    text = rule_yaml().replace("product: windows", f"product: {product}")
    assert bare("", "azure_monitor", text=text).startswith("SecurityEvent\n")
    assert refused("", "azure_monitor", text=text) == (
        f"log source (category: process_creation, product: {product}) has no table in the "
        "azure_monitor pipeline: it would read SecurityEvent, which holds Windows events only; "
        "use the sentinel_asim or microsoft_xdr pipeline"
    )
    # ASIM's imProcessCreate and Defender's DeviceProcessEvents hold Linux and macOS processes.
    assert ours("", "sentinel_asim", text=text).table == "imProcessCreate"
    assert ours("", "microsoft_xdr", text=text).table == "DeviceProcessEvents"


def test_a_log_source_without_a_table_is_refused_naming_it() -> None:
    text = rule_yaml().replace(
        "category: process_creation\n    product: windows", "product: aws\n    service: cloudtrail"
    )
    assert refused("", "sentinel_asim", text=text) == (
        "log source (product: aws, service: cloudtrail) has no table in the sentinel_asim pipeline"
    )


# --- long `or` chains -----------------------------------------------------------------------


@pytest.mark.parametrize("terms", [OR_CHAIN + 1, 1000, OR_CHAIN * OR_CHAIN + 5])
def test_a_long_or_chain_is_nested_so_kusto_language_analyses_it(
    queries: QueryValidator, terms: int
) -> None:
    values = "".join(f"\n        - 'v{n}x'" for n in range(terms))
    detection = f"selection:\n    CommandLine|contains:{values}\ncondition: selection"
    before = bare(detection, "sentinel_asim")
    if terms >= 1000:
        assert [d.code for d in queries.diagnostics(before, "sentinel_asim")] == ["KS245"]
    after = ours(detection, "sentinel_asim").query
    assert queries.diagnostics(after, "sentinel_asim") == ()
    # The same terms in the same order, only grouped.
    assert re.findall(r'contains "(v\d+x)"', after) == re.findall(r'contains "(v\d+x)"', before)
    assert after.count("(") == after.count(")") > 0


def test_an_integrity_level_is_the_sid_security_events_mandatory_label_holds() -> None:
    detection = (
        "selection:\n    Image|endswith: '\\cmd.exe'\n"
        "    IntegrityLevel:\n        - 'High'\n        - 'S-1-16-12288'\n        - 'System'\n"
        "condition: selection"
    )
    assert "IntegrityLevel" in bare_error(detection, "azure_monitor")
    assert ours(detection, "azure_monitor").query == (
        'SecurityEvent\n| where NewProcessName endswith "\\\\cmd.exe" and '
        '(MandatoryLabel in~ ("S-1-16-12288", "S-1-16-16384"))\n'
    )


def test_a_number_on_a_string_column_is_its_text() -> None:
    detection = "selection:\n    CommandLine: 4\ncondition: selection"
    assert bare(detection, "sentinel_asim") == (
        "imProcessCreate\n| where TargetProcessCommandLine == 4"
    )
    assert ours(detection, "sentinel_asim").query == (
        'imProcessCreate\n| where TargetProcessCommandLine =~ "4"\n'
    )


def test_a_windash_variant_with_a_wildcard_keeps_sigmas_case_insensitivity() -> None:
    detection = "selection:\n    CommandLine|windash|contains: ' -a?b'\ncondition: selection"
    # The backend's own regex for a lone value is case-sensitive: it matches less than Sigma.
    assert 'matches regex ".* -a.b.*"' in bare(detection, "sentinel_asim")
    after = ours(detection, "sentinel_asim").query
    assert 'matches regex "(?i)^.* -a.b.*$"' in after
    assert 'matches regex "(?i)^.* /a.b.*$"' in after


def test_a_cased_value_with_a_wildcard_becomes_a_case_sensitive_regex() -> None:
    detection = "selection:\n    CommandLine|cased: 'Ab?C'\ncondition: selection"
    assert bare_error(detection, "sentinel_asim").startswith("NotImplementedError")
    assert ours(detection, "sentinel_asim").query == (
        'imProcessCreate\n| where TargetProcessCommandLine matches regex "^Ab.C$"\n'
    )


def test_a_dropped_alternative_is_a_warning_on_the_rules_build_result(
    tmp_path: Path, queries: QueryValidator
) -> None:
    path = tmp_path / "r.yml"
    text = rule_yaml(detection=IMAGE_OR_ORIGINAL_NAME)
    path.write_text(text, encoding="utf-8")
    detection_line = text.splitlines().index("detection:") + 1
    config = load_config(None, cwd=tmp_path)
    request = BuildRequest(paths=(path,), pipeline="azure_monitor")
    [result] = run_build(config, request, queries=queries)
    assert result.status == "valid", result.problems
    dropped = [p for p in result.warnings if p.code == "convert"]
    assert [p.line() for p in dropped] == [
        f"{path}:{detection_line}: warning [Test Rule]: azure_monitor pipeline: detection "
        "'selection': the alternative(s) on OriginalFileName dropped (SecurityEvent has no such "
        "column); the rule matches only on the others"
    ]
