"""Conversion fidelity on a folder of Sigma rules: converted and valid, per pipeline, and why not.

Each rule is converted alone with each pipeline (deployer.convert) and its query checked by one
Kusto.Language process against the pipeline's table schemas (deployer.kql). Prints, per
pipeline, how many rules converted and validated, how many of those carry a warning (an `or`
alternative dropped), and every other rule's reason, grouped.

    .venv/bin/python scripts/fidelity.py [FOLDER] [--pipeline NAME]... [--bare] [--json FILE]

--bare measures the backend and its pipelines as they ship, without our processing items.

FOLDER defaults to the SigmaHQ process_creation snapshot in ../shared/corpus.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

from deployer.convert import Converter
from deployer.errors import RuleConversionError
from deployer.kql import KqlLanguageService
from deployer.pipelines import PIPELINE_NAMES, table_columns
from deployer.rules import SigmaSource, load_rule
from deployer.validate import QueryValidator

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared/corpus/sigmahq/process_creation"
# What varies per rule in a reason: positions, lengths, quoted values.
_VARYING = (
    (re.compile(r"line \d+, column \d+"), "line #, column #"),
    (re.compile(r"'[^']*'"), "'…'"),
    (re.compile(r"\"[^\"]*\""), '"…"'),
    (re.compile(r"(?<![A-Za-z\d])\d+(?:,\d{3})*"), "#"),
)


def reason_group(message: str) -> str:
    for pattern, replacement in _VARYING:
        message = pattern.sub(replacement, message)
    return message[:110]


def measure(
    files: list[Path], pipeline: str, validator: QueryValidator, *, bare: bool
) -> dict[str, object]:
    converter = Converter(bare=bare)
    valid = warned = 0
    reasons: Counter[str] = Counter()
    start = time.monotonic()
    for path in files:
        source = load_rule(path)
        if not isinstance(source, SigmaSource):
            reasons["load: " + reason_group(source.problems[0].message)] += 1
            continue
        try:
            converted = converter.convert(source.rule, pipeline)
        except RuleConversionError as error:
            reasons["convert: " + reason_group(str(error))] += 1
            continue
        diagnostics = validator.diagnostics(converted.query, pipeline)
        if diagnostics:
            first = diagnostics[0]
            reasons[f"kql {first.code}: " + reason_group(first.message)] += 1
            continue
        valid += 1
        warned += bool(converted.warnings)
    return {
        "rules": len(files),
        "converted_and_valid": valid,
        "percent": round(100 * valid / len(files), 1) if files else 0.0,
        "valid_with_warnings": warned,
        "seconds": round(time.monotonic() - start, 1),
        "reasons": dict(reasons.most_common()),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--pipeline", action="append", choices=PIPELINE_NAMES)
    parser.add_argument("--bare", action="store_true", help="the backend without our items")
    parser.add_argument("--json", type=Path, help="also write the counts to this file")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"no rules folder at {args.folder}", file=sys.stderr)
        return 64
    files = sorted(p for p in args.folder.rglob("*") if p.suffix in (".yml", ".yaml"))

    results: dict[str, object] = {}
    with KqlLanguageService() as service:
        validator = QueryValidator(service, table_columns)
        for pipeline in args.pipeline or PIPELINE_NAMES:
            result = measure(files, pipeline, validator, bare=args.bare)
            results[pipeline] = result
            print(
                f"{pipeline}: {result['converted_and_valid']} of {result['rules']} converted "
                f"and valid ({result['percent']}%), {result['valid_with_warnings']} of them "
                f"with a warning; {result['seconds']} s"
            )
            reasons = result["reasons"]
            assert isinstance(reasons, dict)
            for reason, count in reasons.items():
                print(f"  {count:5}  {reason}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
