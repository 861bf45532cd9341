"""JSON Schemas of the protocol: a registry over the files in schemas/ and compiled, cached validators.

The schema files are the single source of truth. `registry()` serves them to the Python `jsonschema`
engine (the reference); `validator()` compiles them with jsonschema-rs (the fast path used by the
stream reader and the reference gateway). Neither engine may touch the network: any `$ref` outside
the schema files fails closed.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import referencing
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "SCHEMA_BASE",
    "CompiledValidator",
    "SchemaCompileError",
    "SchemaError",
    "UnknownSchemaReference",
    "compile_schema",
    "reference_validator",
    "registry",
    "schema",
    "schema_dir",
    "schema_names",
    "status_error_types",
    "validator",
]

SCHEMA_BASE = "https://schemas.gateway-conformance.invalid/"

_MAX_MESSAGE_CHARS = 200


class SchemaCompileError(ValueError):
    """A schema that cannot be compiled (not valid JSON Schema, or a `$ref` that does not resolve)."""


class UnknownSchemaReference(SchemaCompileError, LookupError):
    """A `$ref` or schema name points outside the schema files (which are never fetched)."""


def schema_dir() -> Path:
    """The schemas/ directory: conformance/_schemas in an installed wheel, else the repository's schemas/."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_schemas", package.parent / "schemas"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no schemas directory at {package / '_schemas'} or {package.parent / 'schemas'}")


def _uri(name: str) -> str:
    return f"{SCHEMA_BASE}{name}.json"


@functools.cache
def _documents() -> Mapping[str, Mapping[str, Any]]:
    """Every schema file by logical name, parsed once."""
    root = schema_dir()
    documents: dict[str, Mapping[str, Any]] = {}
    for path in sorted(root.rglob("*.json")):
        name = path.relative_to(root).with_suffix("").as_posix()
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
        if not isinstance(document, dict):
            raise ValueError(f"{path}: a schema file must hold a JSON object")
        documents[name] = document
    return documents


def schema_names() -> tuple[str, ...]:
    """Logical names of every schema file, sorted ("anthropic/message", ...)."""
    return tuple(_documents())


def schema(name: str) -> dict[str, Any]:
    """A copy of the schema document with this logical name, e.g. "anthropic/messages-request"."""
    try:
        document = _documents()[name]
    except KeyError:
        raise UnknownSchemaReference(f"no schema named {name!r}; known: {', '.join(schema_names())}") from None
    return copy.deepcopy(dict(document))


@functools.cache
def registry() -> referencing.Registry[Any]:
    """An immutable registry of every schema file under its $id; unknown URIs are never retrieved."""
    resources = [
        (_uri(name), referencing.Resource.from_contents(copy.deepcopy(dict(doc)), default_specification=DRAFT202012))
        for name, doc in _documents().items()
    ]
    # The default retrieve function raises NoSuchResource: an unknown URI fails closed, offline.
    return referencing.Registry().with_resources(resources).crawl()


def _refuse_rs(uri: str) -> Any:
    raise UnknownSchemaReference(f"{uri} is not one of the schema files (network retrieval is disabled)")


@functools.cache
def _rs_registry() -> jsonschema_rs.Registry:
    resources = [(_uri(name), copy.deepcopy(dict(doc))) for name, doc in _documents().items()]
    return jsonschema_rs.Registry(resources, draft=jsonschema_rs.Draft202012, retriever=_refuse_rs)


@dataclass(frozen=True, slots=True)
class SchemaError:
    """One validation failure, located by a dotted instance path."""

    path: str
    message: str

    def describe(self) -> str:
        """The API's own style: "messages.0.content.0.text: <message>", or the message alone at the root."""
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True, slots=True)
class CompiledValidator:
    """A schema compiled by jsonschema-rs."""

    name: str
    _compiled: Any

    def is_valid(self, instance: object) -> bool:
        """Whether the instance conforms (fast path, stops at the first failure); False for a non-JSON value."""
        try:
            return bool(self._compiled.is_valid(instance))
        except ValueError:
            return False

    def errors(self, instance: object) -> tuple[SchemaError, ...]:
        """Every failure, deduplicated, most specific (deepest path) first, then by path and message."""
        try:
            found = {error for raw in self._compiled.iter_errors(instance) for error in _translate(raw)}
        except ValueError as exc:
            return (SchemaError("", f"Input is not a JSON value: {exc}"),)
        return tuple(sorted(found, key=_error_order))


def _error_order(error: SchemaError) -> tuple[int, str, str]:
    depth = error.path.count(".") + 1 if error.path else 0
    return (-depth, error.path, error.message)


@functools.cache
def validator(name: str) -> CompiledValidator:
    """The compiled validator for a logical schema name (compiled once, then cached)."""
    return compile_schema(schema(name), name=name)


def compile_schema(document: Mapping[str, Any], *, name: str = "<inline>") -> CompiledValidator:
    """Compile an ad-hoc schema whose $refs may point into the schema files (and nowhere else)."""
    try:
        compiled = jsonschema_rs.validator_for(dict(document), registry=_rs_registry(), retriever=_refuse_rs)
    except jsonschema_rs.ValidationError as exc:
        if isinstance(exc.kind, jsonschema_rs.ValidationErrorKind.Referencing):
            raise UnknownSchemaReference(f"schema {name!r}: {exc.message}") from exc
        raise SchemaCompileError(f"schema {name!r} is not a valid JSON Schema: {exc.message}") from exc
    return CompiledValidator(name=name, _compiled=compiled)


@functools.cache
def reference_validator(name: str) -> jsonschema.Draft202012Validator:
    """The same schema for the pure-Python `jsonschema` engine, resolving $refs through `registry()`."""
    import jsonschema  # imported here: only tests need the (slow to import) reference engine

    return jsonschema.Draft202012Validator(schema(name), registry=registry())


def status_error_types() -> dict[int, str]:
    """HTTP status -> Anthropic `error.type`, read from the `x-status-types` annotation of anthropic/error."""
    table = _documents()["anthropic/error"]["x-status-types"]
    return {int(status): str(error_type) for status, error_type in table.items()}


def _dotted(parts: list[str | int]) -> str:
    return ".".join(str(part) for part in parts)


def _join(base: list[str | int], leaf: str) -> str:
    return _dotted([*base, leaf])


def _literal(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value)


def _alternatives(values: list[str], conjunction: str) -> str:
    if len(values) <= 1:
        return "".join(values)
    return f"{', '.join(values[:-1])} {conjunction} {values[-1]}"


def _plural(count: object, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _translate(error: jsonschema_rs.ValidationError) -> list[SchemaError]:
    """The engine's error as API-style messages (pydantic wording, which the real API uses)."""
    kind = error.kind
    here = list(error.instance_path)
    path = _dotted(here)
    match kind:
        case jsonschema_rs.ValidationErrorKind.Required(prop):
            return [SchemaError(_join(here, prop), "Field required")]
        case jsonschema_rs.ValidationErrorKind.AdditionalProperties(unexpected):
            return [SchemaError(_join(here, extra), "Extra inputs are not permitted") for extra in unexpected]
        case jsonschema_rs.ValidationErrorKind.UnevaluatedProperties(unexpected):
            return [SchemaError(_join(here, extra), "Extra inputs are not permitted") for extra in unexpected]
        case jsonschema_rs.ValidationErrorKind.Type(types):
            return [SchemaError(path, f"Input should be a valid {_alternatives([str(t) for t in types], 'or')}")]
        case jsonschema_rs.ValidationErrorKind.Minimum(limit):
            return [SchemaError(path, f"Input should be greater than or equal to {limit}")]
        case jsonschema_rs.ValidationErrorKind.Maximum(limit):
            return [SchemaError(path, f"Input should be less than or equal to {limit}")]
        case jsonschema_rs.ValidationErrorKind.ExclusiveMinimum(limit):
            return [SchemaError(path, f"Input should be greater than {limit}")]
        case jsonschema_rs.ValidationErrorKind.ExclusiveMaximum(limit):
            return [SchemaError(path, f"Input should be less than {limit}")]
        case jsonschema_rs.ValidationErrorKind.MinLength(limit):
            return [SchemaError(path, f"String should have at least {_plural(limit, 'character')}")]
        case jsonschema_rs.ValidationErrorKind.MaxLength(limit):
            return [SchemaError(path, f"String should have at most {_plural(limit, 'character')}")]
        case jsonschema_rs.ValidationErrorKind.MinItems(limit):
            return [SchemaError(path, f"List should have at least {_plural(limit, 'item')}")]
        case jsonschema_rs.ValidationErrorKind.MaxItems(limit):
            return [SchemaError(path, f"List should have at most {_plural(limit, 'item')}")]
        case jsonschema_rs.ValidationErrorKind.Enum(options):
            choices = [_literal(option) for option in options]
            return [SchemaError(path, f"Input should be {_alternatives(choices, 'or')}")]
        case jsonschema_rs.ValidationErrorKind.Constant(expected):
            return [SchemaError(path, f"Input should be {_literal(expected)}")]
        case jsonschema_rs.ValidationErrorKind.Pattern(pattern):
            return [SchemaError(path, f"String should match pattern {pattern!r}")]
        case jsonschema_rs.ValidationErrorKind.FalseSchema():
            return [SchemaError(path, "Extra inputs are not permitted")]
        case jsonschema_rs.ValidationErrorKind.AnyOf() | jsonschema_rs.ValidationErrorKind.OneOfNotValid():
            return [SchemaError(path, "Input does not match any of the allowed shapes")]
        case jsonschema_rs.ValidationErrorKind.OneOfMultipleValid():
            return [SchemaError(path, "Input matches more than one of the allowed shapes")]
    message = error.message
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 3] + "..."
    return [SchemaError(path, message)]
