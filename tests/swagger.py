"""Check alert-rule request bodies against the official Microsoft.SecurityInsights swagger.

Test-support module (not a test file). It reads the API description saved next to the
repository (``<repo>/../shared/reference/securityinsights``, or the folder named by the
environment variable ``SENTINEL_DEPLOYER_REFERENCE``). It turns the ``ScheduledAlertRule``
definition into a plain JSON Schema (Draft 7) and checks a body, as sent in
``PUT .../providers/Microsoft.SecurityInsights/alertRules/{id}``, against that schema with
``jsonschema``. A user's clone has no such folder: then ``reference_dir()`` returns ``None``
and the tests that need it skip.

How the Swagger 2.0 description becomes a JSON Schema:

* ``$ref`` -- each saved file has a *virtual path*: the path it has in the
  Azure/azure-rest-api-specs repository. A relative reference is joined to the virtual path of
  the file it appears in, normalised, and then looked up in a small table of saved files. So
  ``../../../common/2.0/types.json`` (from ``.../stable/2025-12-01/AlertRules.json``) leads to
  the saved ``common/2.0/types.json``. The ARM common types
  (``.../common-types/resource-management/v3|v5/types.json``) were not saved, so they are
  replaced by a stub. Its ``Resource`` and ``ProxyResource`` are objects with ``id``, ``name``,
  ``type`` and ``systemData``, all read-only. Every definition is inlined once it is
  resolved. A recursive definition raises ``SwaggerError``; there are none here.
* ``allOf`` -- the ``properties`` and ``required`` lists of each parent are merged into the
  child model. Inheritance is flattened instead of being turned into a JSON Schema ``allOf``,
  so that "which properties does this model declare" has a single answer.
* ``discriminator`` / ``x-ms-discriminator-value`` -- when a parent declares
  ``discriminator: kind``, the child pins that property with ``const`` set to its
  discriminator value. That value is ``x-ms-discriminator-value``, or the definition name as
  AutoRest does when there is none. The base model's enum (``AlertRuleKindEnum``) still
  applies. A *property* whose ``$ref`` points at a polymorphic base would need run-time
  dispatch. None exists on the scheduled-rule path, so such a reference raises
  ``SwaggerError`` instead of being checked loosely.
* ``readOnly: true`` (and ``x-ms-mutability`` without ``create``/``update``) -- the server
  sets these properties. Their schema is replaced with ``{"not": {}, "readOnly": true}``, so
  that sending one is an error. They are also dropped from ``required``.
* Unknown properties -- Swagger leaves out ``additionalProperties``, which JSON Schema takes to
  mean "anything goes". This validator exists mainly to catch a field the chosen API version
  lacks (``subTechniques`` on 2025-12-01, for example). So after ``allOf`` is merged, every
  object schema that declares ``properties`` but no ``additionalProperties`` gets
  ``additionalProperties: false``. Maps (``customDetails``: ``additionalProperties`` with no
  ``properties``) are left open.
* ``enum`` / ``x-ms-enum`` -- the ``enum`` list is enforced, including when
  ``modelAsString: true``. That flag makes generated SDKs accept any string, but this module
  checks what the tool sends against the documented values.
* ``format`` -- ``duration`` must be an ISO 8601 duration (``PT5H``, ``P1D``, ``PT1H30M``);
  ``int32``/``int64`` must be in range; ``date-time`` and ``uuid`` must parse. Other formats
  are not checked.
* Swagger 2.0's boolean ``exclusiveMinimum``/``exclusiveMaximum`` are converted to Draft 7
  numbers, and ``x-nullable: true`` adds ``null`` to the type. Siblings of a ``$ref`` are
  ignored, as Swagger 2.0 requires, except ``readOnly``, which AutoRest honours.

API versions: ``2025-12-01`` comes from ``stable-2025-12-01``. ``2025-10-01-preview`` comes
from ``preview-2025-10-01-preview/AlertRules.scheduled-excerpt.json``, which holds only some
of the preview definitions.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import posixpath
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

# jsonschema ships no type information; pyproject's mypy overrides set ignore_missing_imports.
from jsonschema import Draft7Validator, FormatChecker

__all__ = [
    "ENV_VAR",
    "SUPPORTED_API_VERSIONS",
    "SwaggerError",
    "is_iso8601_duration",
    "reference_dir",
    "scheduled_rule_errors",
    "scheduled_rule_schema",
]

JsonObject = dict[str, Any]

ENV_VAR: Final = "SENTINEL_DEPLOYER_REFERENCE"

# Virtual paths: where the saved files live in Azure/azure-rest-api-specs.
_SPEC: Final = "specification"
_RM: Final = f"{_SPEC}/securityinsights/resource-manager"
_STABLE_DIR: Final = f"{_RM}/Microsoft.SecurityInsights/stable/2025-12-01"
_PREVIEW_DIR: Final = f"{_RM}/Microsoft.SecurityInsights/preview/2025-10-01-preview"
_STABLE_RULES: Final = f"{_STABLE_DIR}/AlertRules.json"
_PREVIEW_RULES: Final = f"{_PREVIEW_DIR}/AlertRules.json"
_ARM_COMMON_TYPES: Final = frozenset(
    f"{_SPEC}/common-types/resource-management/{v}/types.json" for v in ("v3", "v5")
)

# Local files (relative to the reference folder).
_LOCAL_STABLE_RULES: Final = "stable-2025-12-01/AlertRules.json"
_LOCAL_STABLE_ALERT_TYPES: Final = "stable-2025-12-01/common/AlertTypes.json"
_LOCAL_COMMON_TYPES: Final = "common/2.0/types.json"
_LOCAL_PREVIEW_EXCERPT: Final = "preview-2025-10-01-preview/AlertRules.scheduled-excerpt.json"
_LOCAL_EXAMPLE: Final = "stable-2025-12-01/examples/alertRules/CreateScheduledAlertRule.json"

#: api-version -> virtual path of the AlertRules.json that describes it
SUPPORTED_API_VERSIONS: Final[Mapping[str, str]] = {
    "2025-12-01": _STABLE_RULES,
    "2025-10-01-preview": _PREVIEW_RULES,
}

_ROOT_DEFINITION: Final = "ScheduledAlertRule"

# Stand-in for the ARM common types, which were not saved: only what a request body needs.
_ARM_STUB: Final[JsonObject] = {
    "definitions": {
        "Resource": {
            "description": "STUB of the ARM common-types Resource (not saved locally).",
            "type": "object",
            "properties": {
                "id": {"type": "string", "readOnly": True},
                "name": {"type": "string", "readOnly": True},
                "type": {"type": "string", "readOnly": True},
                "systemData": {"type": "object", "readOnly": True},
            },
        },
        "ProxyResource": {
            "description": "STUB of the ARM common-types ProxyResource (not saved locally).",
            "type": "object",
            "allOf": [{"$ref": "#/definitions/Resource"}],
        },
    }
}

# Swagger keywords copied unchanged into the JSON Schema (validation and annotations).
_COPIED_KEYWORDS: Final = (
    "description",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
    "minProperties",
    "maxProperties",
    "x-ms-enum",
)


class SwaggerError(Exception):
    """The saved swagger can't be resolved, or uses a construct this module doesn't translate."""


# --------------------------------------------------------------------------- locating files


def reference_dir() -> Path | None:
    """Return the folder that holds the saved swagger, or ``None`` when it is unavailable.

    ``$SENTINEL_DEPLOYER_REFERENCE`` is tried first, then ``<repo>/../shared/reference/
    securityinsights`` (repo = parent of ``tests/``). A candidate only counts if it contains
    the stable ``AlertRules.json``.
    """
    candidates: list[Path] = []
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        candidates.append(Path(from_env).expanduser())
    repo = Path(__file__).resolve().parent.parent
    candidates.append(repo.parent / "shared" / "reference" / "securityinsights")
    for candidate in candidates:
        if (candidate / _LOCAL_STABLE_RULES).is_file():
            return candidate.resolve()
    return None


def _read_json(path: Path) -> JsonObject:
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise SwaggerError(f"{path}: expected a JSON object")
    return data


class _Documents:
    """The swagger files that make up one API version, looked up by virtual path."""

    def __init__(self, reference: Path) -> None:
        self._reference = reference
        self._cache: dict[str, JsonObject] = {}

    def get(self, virtual_path: str) -> JsonObject:
        if virtual_path not in self._cache:
            self._cache[virtual_path] = self._load(virtual_path)
        return self._cache[virtual_path]

    def _load(self, virtual_path: str) -> JsonObject:
        ref = self._reference
        if virtual_path in _ARM_COMMON_TYPES:
            return _ARM_STUB
        if virtual_path == _STABLE_RULES:
            return _read_json(ref / _LOCAL_STABLE_RULES)
        if virtual_path == f"{_STABLE_DIR}/common/AlertTypes.json":
            return _read_json(ref / _LOCAL_STABLE_ALERT_TYPES)
        if virtual_path == f"{_RM}/common/2.0/types.json":
            return _read_json(ref / _LOCAL_COMMON_TYPES)
        if virtual_path == _PREVIEW_RULES:
            # The excerpt holds only ScheduledAlertRule, ScheduledAlertRuleCommonProperties,
            # ScheduledAlertRuleProperties, SentinelEntitiesMappings, SentinelEntityMapping
            # and AlertProperty. ASSUMPTION: every other definition it refers to (AlertRule,
            # AlertRuleKindEnum, AlertRuleTriggerOperator, EventGroupingSettings,
            # EntityMappings, AlertDetailsOverride, IncidentConfiguration, ...) is the same in
            # the preview as in stable 2025-12-01, so it is taken from the stable file. Those
            # fallback definitions keep resolving ``#/definitions/...`` in the *preview*
            # document. For example, stable AlertPropertyMapping -> the excerpt's AlertProperty,
            # which includes SubTechniques.
            stable = _read_json(ref / _LOCAL_STABLE_RULES)
            excerpt = _read_json(ref / _LOCAL_PREVIEW_EXCERPT)
            return {"definitions": {**stable["definitions"], **excerpt["definitions"]}}
        if virtual_path == f"{_PREVIEW_DIR}/common/AlertTypes.json":
            # ASSUMPTION (stated by the excerpt itself, not verified): the preview's
            # common/AlertTypes.json has the same AlertSeverityEnum/AttackTactic as stable.
            return _read_json(ref / _LOCAL_STABLE_ALERT_TYPES)
        raise SwaggerError(f"$ref into a file that is not saved: {virtual_path}")

    def resolve(self, ref: str, base: str) -> tuple[str, str, Mapping[str, Any]]:
        """Resolve ``ref`` (relative to the document ``base``) to (document, pointer, node)."""
        file_part, _, pointer = ref.partition("#")
        if file_part:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(base), file_part))
        else:
            target = base
        if pointer and not pointer.startswith("/"):
            raise SwaggerError(f"unsupported $ref fragment {ref!r} in {base}")
        node: Any = self.get(target)
        for token in pointer.split("/")[1:]:
            key = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or key not in node:
                raise SwaggerError(f"unresolvable $ref {ref!r} in {base}")
            node = node[key]
        if not isinstance(node, Mapping):
            raise SwaggerError(f"$ref {ref!r} in {base} does not point at a schema")
        return target, pointer, node


# --------------------------------------------------------------------------- translation


def _is_read_only(node: Mapping[str, Any]) -> bool:
    if node.get("readOnly") is True:
        return True
    mutability = node.get("x-ms-mutability")
    return isinstance(mutability, list) and not {"create", "update"} & set(mutability)


def _scalar_keywords(node: Mapping[str, Any]) -> JsonObject:
    """Translate the keywords of one swagger schema that need no reference resolution."""
    out: JsonObject = {}
    for keyword in _COPIED_KEYWORDS:
        if keyword in node:
            out[keyword] = copy.deepcopy(node[keyword])
    if _is_read_only(node):
        out["readOnly"] = True
    for bound in ("Minimum", "Maximum"):  # Swagger 2.0 booleans -> Draft 7 numbers
        if node.get(f"exclusive{bound}") is True and bound.lower() in node:
            out[f"exclusive{bound}"] = out.pop(bound.lower())

    nullable = node.get("x-nullable") is True
    swagger_type = node.get("type")
    if swagger_type is None and ("properties" in node or "allOf" in node):
        swagger_type = "object"
    if isinstance(swagger_type, str):
        out["type"] = [swagger_type, "null"] if nullable else swagger_type
    if "enum" in node:
        values = list(node["enum"])
        out["enum"] = [*values, None] if nullable and None not in values else values
    return out


class _Translator:
    """Turn swagger schema objects into self-contained Draft 7 JSON Schema dicts."""

    def __init__(self, documents: _Documents) -> None:
        self._documents = documents
        self._models: dict[tuple[str, str], JsonObject] = {}
        self._in_progress: set[tuple[str, str]] = set()

    def definition(self, document: str, pointer: str) -> JsonObject:
        key = (document, pointer)
        if key in self._models:
            return self._models[key]
        if key in self._in_progress:
            raise SwaggerError(f"recursive definition {document}#{pointer} is not supported")
        self._in_progress.add(key)
        try:
            _, _, node = self._documents.resolve(f"#{pointer}", document)
            schema = self._translate(node, document, pointer.rsplit("/", 1)[-1])
        finally:
            self._in_progress.discard(key)
        self._models[key] = schema
        return schema

    def _referenced(self, ref: str, document: str, *, as_parent: bool) -> JsonObject:
        target_doc, pointer, target = self._documents.resolve(ref, document)
        if "discriminator" in target and not as_parent:
            raise SwaggerError(
                f"{ref!r} in {document} refers to the polymorphic base {pointer}; "
                "discriminator dispatch below the root is not implemented"
            )
        return self.definition(target_doc, pointer)

    def _translate(self, node: Mapping[str, Any], document: str, name: str) -> JsonObject:
        if "$ref" in node:
            schema = self._referenced(str(node["$ref"]), document, as_parent=False)
            if _is_read_only(node) and not schema.get("readOnly"):
                schema = {**schema, "readOnly": True}
            return schema

        out = _scalar_keywords(node)
        if "items" in node:
            out["items"] = self._translate(node["items"], document, f"{name}[]")

        additional = node.get("additionalProperties")
        if isinstance(additional, Mapping):
            out["additionalProperties"] = self._translate(additional, document, f"{name}{{}}")
        elif isinstance(additional, bool):
            out["additionalProperties"] = additional

        if "properties" in node or "allOf" in node:
            self._object(node, document, name, out)
        return out

    def _object(self, node: Mapping[str, Any], document: str, name: str, out: JsonObject) -> None:
        """Fill ``out`` with the allOf-merged, closed object schema of model ``name``."""
        properties: dict[str, JsonObject] = {}
        required: list[str] = []
        discriminator: str | None = None
        for parent_node in node.get("allOf", []):
            if "$ref" in parent_node:
                parent = self._referenced(str(parent_node["$ref"]), document, as_parent=True)
            else:
                parent = self._translate(parent_node, document, name)
            properties.update(parent.get("properties", {}))
            required.extend(parent.get("required", []))
            discriminator = parent.get("x-discriminator", discriminator)

        for prop, sub in node.get("properties", {}).items():
            schema = self._translate(sub, document, f"{name}.{prop}")
            properties[prop] = _read_only_marker(name) if schema.get("readOnly") else schema
        required.extend(node.get("required", []))

        if "discriminator" in node:
            out["x-discriminator"] = node["discriminator"]
        elif discriminator is not None:
            value = node.get("x-ms-discriminator-value", name)
            if discriminator not in properties:
                raise SwaggerError(f"{name}: discriminator {discriminator!r} is not a property")
            properties[discriminator] = {
                **properties[discriminator],
                "const": value,
                "x-ms-discriminator-value": value,
                "x-owner": name,
            }

        out["title"] = name
        out["properties"] = properties
        writable_required = [
            r for r in dict.fromkeys(required) if not properties.get(r, {}).get("readOnly")
        ]
        if writable_required:
            out["required"] = writable_required
        # Swagger objects are open by default; a request body must not carry undeclared fields.
        out.setdefault("additionalProperties", False)


def _read_only_marker(owner: str) -> JsonObject:
    return {"not": {}, "readOnly": True, "x-owner": owner}


# --------------------------------------------------------------------------- formats

_NUMBER = r"(\d+(?:[.,]\d+)?)"
_DURATION_RE: Final = re.compile(
    rf"P(?:{_NUMBER}W|(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}D)?"
    rf"(T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?)",
    re.ASCII,
)


def is_iso8601_duration(value: str) -> bool:
    """True for ISO 8601 durations such as ``PT5H``, ``P1D``, ``PT1H30M``, ``P2DT1H30M``.

    Designators must be upper case. ``PnW`` stands alone. At least one component is needed,
    and at least one after ``T``. Only the last component may have a fraction. Negative
    durations and the alternative format (``P0000-00-01T...``) are rejected.
    """
    match = _DURATION_RE.fullmatch(value)
    if match is None:
        return False
    weeks, years, months, days, time_part, hours, minutes, seconds = match.groups()
    components = [c for c in (weeks, years, months, days, hours, minutes, seconds) if c]
    if not components:
        return False
    if time_part is not None and not any((hours, minutes, seconds)):
        return False
    return not any(any(sep in c for sep in ".,") for c in components[:-1])


def _check_duration(instance: object) -> bool:
    return not isinstance(instance, str) or is_iso8601_duration(instance)


def _int_range(bits: int) -> Callable[[object], bool]:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def check(instance: object) -> bool:
        if isinstance(instance, bool) or not isinstance(instance, int):
            return True
        return low <= instance <= high

    return check


def _check_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    try:
        datetime.fromisoformat(instance)
    except ValueError:
        return False
    return "T" in instance.upper()


def _check_uuid(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    try:
        uuid.UUID(instance)
    except ValueError:
        return False
    return True


_FORMAT_CHECKER: Final[Any] = FormatChecker(formats=())
_FORMAT_CHECKER.checks("duration")(_check_duration)
_FORMAT_CHECKER.checks("int32")(_int_range(32))
_FORMAT_CHECKER.checks("int64")(_int_range(64))
_FORMAT_CHECKER.checks("date-time")(_check_date_time)
_FORMAT_CHECKER.checks("uuid")(_check_uuid)

_FORMAT_HINTS: Final[Mapping[str, str]] = {
    "duration": "is not an ISO 8601 duration (format: duration), e.g. PT5H, P1D, PT1H30M",
    "int32": "is outside the int32 range",
    "int64": "is outside the int64 range",
    "date-time": "is not an RFC 3339 date-time",
    "uuid": "is not a UUID",
}


# --------------------------------------------------------------------------- public API


@functools.lru_cache(maxsize=8)
def _compiled(api_version: str, reference: Path) -> tuple[JsonObject, Any]:
    if api_version not in SUPPORTED_API_VERSIONS:
        supported = ", ".join(SUPPORTED_API_VERSIONS)
        raise ValueError(f"unsupported api_version {api_version!r} (supported: {supported})")
    translator = _Translator(_Documents(reference))
    schema = translator.definition(
        SUPPORTED_API_VERSIONS[api_version], f"/definitions/{_ROOT_DEFINITION}"
    )
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", **schema}
    Draft7Validator.check_schema(schema)
    return schema, Draft7Validator(schema, format_checker=_FORMAT_CHECKER)


def _reference_or_fail(reference: Path | None) -> Path:
    found = reference if reference is not None else reference_dir()
    if found is None:
        raise FileNotFoundError(
            "Microsoft.SecurityInsights swagger not found: set "
            f"{ENV_VAR} or provide <repo>/../shared/reference/securityinsights"
        )
    return found.resolve()


def scheduled_rule_schema(
    *, api_version: str = "2025-12-01", reference: Path | None = None
) -> JsonObject:
    """Return (a copy of) the Draft 7 JSON Schema built for ``ScheduledAlertRule``."""
    schema, _ = _compiled(api_version, _reference_or_fail(reference))
    return copy.deepcopy(schema)


def scheduled_rule_errors(
    body: Mapping[str, Any],
    *,
    api_version: str = "2025-12-01",
    reference: Path | None = None,
) -> list[str]:
    """Validate a ``kind: Scheduled`` alert-rule PUT body; return error strings (``[]`` = ok).

    Each string reads ``<path>: <problem>``, for example
    ``properties.subTechniques: not a property of ScheduledAlertRuleProperties in 2025-12-01``.
    Raises ``ValueError`` for an unknown ``api_version`` and ``FileNotFoundError`` when the
    reference folder can't be found.
    """
    _, validator = _compiled(api_version, _reference_or_fail(reference))
    try:
        instance = json.loads(json.dumps(body, allow_nan=False))
    except (TypeError, ValueError) as exc:
        return [f"<body>: not JSON-serialisable ({exc})"]
    messages: dict[str, None] = {}
    for error in validator.iter_errors(instance):
        for message in _describe(error, api_version):
            messages[message] = None
    return sorted(messages)


# --------------------------------------------------------------------------- messages

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _render_path(path: Iterable[object]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and _IDENTIFIER.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "<body>"


def _describe(error: Any, api_version: str) -> list[str]:
    path: list[object] = list(error.absolute_path)
    keyword: object = error.validator
    schema: object = error.schema
    instance: object = error.instance
    here = _render_path(path)
    if not isinstance(schema, Mapping):
        return [f"{here}: {error.message}"]
    title = schema.get("title", "this object")

    if keyword == "additionalProperties" and schema.get("additionalProperties") is False:
        declared = schema.get("properties", {})
        extras = [k for k in instance if k not in declared] if isinstance(instance, dict) else []
        return [
            f"{_render_path([*path, k])}: not a property of {title} in {api_version}"
            for k in extras
        ]
    if keyword == "required" and isinstance(instance, dict):
        return [
            f"{_render_path([*path, r])}: required by {title} but missing"
            for r in schema.get("required", [])
            if r not in instance
        ]
    if keyword == "not" and schema.get("readOnly"):
        owner = schema.get("x-owner", "the model")
        return [f"{here}: read-only property of {owner}; must not be sent in a request body"]
    if keyword == "const" and "x-ms-discriminator-value" in schema:
        value = schema["x-ms-discriminator-value"]
        owner = schema.get("x-owner", "the model")
        return [f"{here}: {instance!r} does not select {owner} (discriminator value {value!r})"]
    if keyword == "format":
        hint = _FORMAT_HINTS.get(str(error.validator_value), str(error.message))
        return [f"{here}: {instance!r} {hint}"]
    if keyword == "enum":
        enum_name = schema.get("x-ms-enum", {}).get("name")
        suffix = f" (enum {enum_name})" if enum_name else ""
        return [f"{here}: {instance!r} is not one of {schema.get('enum')}{suffix}"]
    return [f"{here}: {error.message}"]
