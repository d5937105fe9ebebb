"""Flag definitions in flagd's flag-definition JSON, both ways.

``export_flags`` writes a document that flagd (and the flagd provider's in-process and
file modes) evaluates exactly as the built-in provider does: the same variant for the
same context, percentage buckets included (bucketing.py computes flagd's ``fractional``).
A team can serve it with flagd unchanged.

The mapping: rules become one ``if`` (condition, variant, condition, variant, ...,
fallthrough); a condition is ``in`` over a list of values (wrapped in ``!`` for
``not_in``), or flagd's ``starts_with``/``ends_with`` (several values joined by ``or``);
several conditions are joined by ``and``; a rollout is the ``fractional`` shorthand, which
buckets by flag key and targeting key. List attributes (``LIST_ATTRIBUTES``) are tested
element by element with ``some``, which holds for no value but a list. JsonLogic's ``in``
over a list of strings and flagd's string operators hold only for strings, which is the
built-in evaluator's rule too (schemas.Condition). The description and
rule names travel in the flag's ``metadata``.

``import_flags`` reads back exactly that form, and flags without targeting. Anything else
(other JsonLogic, ``$evaluators``, relative weights, ...) is refused, naming the flag and
what is unsupported, instead of being imported with a different meaning.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..targeting import BOOLEAN_ATTRIBUTES, BOOLEAN_TEXTS, LIST_ATTRIBUTES, Condition
from .schemas import FlagDefinition, Rollout, Serve

SCHEMA_URL = "https://flagd.dev/schema/v0/flags.json"

_FLAG_FIELDS = frozenset({"state", "variants", "defaultVariant", "targeting", "metadata"})
_METADATA_FIELDS = frozenset({"description", "ruleNames"})
_STRING_OPERATORS = ("starts_with", "ends_with")

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """What is wrong, and where: the path in the document (``flags``, key, ...)."""

    location: Location
    message: str


class FlagdFormatError(ValueError):
    """The document cannot be imported; ``problems`` names each flag and what is wrong."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{_dotted(p.location)}: {p.message}" for p in problems))
        self.problems = problems


class _UnsupportedError(Exception):
    def __init__(self, location: Location, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


def _dotted(location: Location) -> str:
    return ".".join(str(part) for part in location)


# --------------------------------------------------------------------------- #
# Export
# --------------------------------------------------------------------------- #


def export_flags(definitions: Iterable[FlagDefinition]) -> dict[str, Any]:
    """A flagd flag-definition document holding ``definitions``."""
    return {
        "$schema": SCHEMA_URL,
        "flags": {definition.key: export_flag(definition) for definition in definitions},
    }


def export_flag(definition: FlagDefinition) -> dict[str, Any]:
    flag: dict[str, Any] = {
        "state": "ENABLED" if definition.enabled else "DISABLED",
        "variants": dict(definition.variants),
        "defaultVariant": definition.default_variant,
    }
    targeting = _export_targeting(definition)
    if targeting is not None:
        flag["targeting"] = targeting
    metadata: dict[str, str] = {}
    if definition.description:
        metadata["description"] = definition.description
    if any(rule.name for rule in definition.rules):
        # flagd's metadata values are scalars: the names go as one JSON-encoded list.
        metadata["ruleNames"] = json.dumps([rule.name for rule in definition.rules])
    if metadata:
        flag["metadata"] = metadata
    return flag


def _export_targeting(definition: FlagDefinition) -> dict[str, Any] | None:
    branches: list[Any] = []
    for rule in definition.rules:
        branches += [_export_conditions(rule.conditions), _export_serve(rule.serve)]
    if definition.fallthrough is not None:
        fallthrough = _export_rollout(definition.fallthrough)
        if not branches:
            return fallthrough
        branches.append(fallthrough)
    # No match and no fallthrough: ``if`` gives null, and flagd serves defaultVariant.
    return {"if": branches} if branches else None


def _export_serve(serve: Serve) -> Any:
    if serve.rollout is not None:
        return _export_rollout(serve.rollout)
    return serve.variant


def _export_rollout(rollout: Rollout) -> dict[str, Any]:
    return {"fractional": [[variant, weight] for variant, weight in rollout.weights.items()]}


def _export_conditions(conditions: list[Condition]) -> dict[str, Any]:
    tests = [_export_condition(condition) for condition in conditions]
    return tests[0] if len(tests) == 1 else {"and": tests}


def _export_condition(condition: Condition) -> dict[str, Any]:
    attribute = {"var": condition.attribute}
    each_element = condition.attribute in LIST_ATTRIBUTES
    # Inside ``some``, ``{"var": ""}`` is the element being tested.
    subject = {"var": ""} if each_element else attribute
    test: dict[str, Any]
    if condition.attribute in BOOLEAN_ATTRIBUTES:
        test = {"in": [subject, [BOOLEAN_TEXTS[value] for value in condition.values]]}
    elif condition.operator in ("in", "not_in"):
        test = {"in": [subject, list(condition.values)]}
    else:
        tests: list[dict[str, Any]] = [
            {condition.operator: [subject, value]} for value in condition.values
        ]
        test = tests[0] if len(tests) == 1 else {"or": tests}
    if each_element:
        test = {"some": [attribute, test]}
    return {"!": test} if condition.operator == "not_in" else test


# --------------------------------------------------------------------------- #
# Import
# --------------------------------------------------------------------------- #


def import_flags(document: object) -> list[FlagDefinition]:
    """The flags of a flagd document, or ``FlagdFormatError`` listing every problem."""
    if not isinstance(document, Mapping):
        raise FlagdFormatError([Problem((), "a flagd document is a JSON object")])
    problems: list[Problem] = []
    for name in sorted(set(document) - {"$schema", "flags"}):
        problems.append(Problem((name,), f"{name!r} is not supported: only $schema and flags"))
    schema = document.get("$schema", SCHEMA_URL)
    if schema != SCHEMA_URL:
        problems.append(Problem(("$schema",), f"expected {SCHEMA_URL!r}, not {schema!r}"))
    flags = document.get("flags")
    if not isinstance(flags, Mapping):
        problems.append(Problem(("flags",), "expected an object of flags by key"))
        raise FlagdFormatError(problems)
    definitions: list[FlagDefinition] = []
    for key, flag in flags.items():
        try:
            definitions.append(_import_flag(str(key), flag))
        except _UnsupportedError as exc:
            problems.append(Problem(("flags", key, *exc.location), exc.message))
    if problems:
        raise FlagdFormatError(problems)
    return definitions


def _import_flag(key: str, flag: object) -> FlagDefinition:
    if not isinstance(flag, Mapping):
        raise _UnsupportedError((), "a flag is a JSON object")
    unknown = sorted(set(flag) - _FLAG_FIELDS)
    if unknown:
        raise _UnsupportedError((unknown[0],), f"{unknown[0]!r} is not supported")
    state = flag.get("state")
    if state not in ("ENABLED", "DISABLED"):
        raise _UnsupportedError(("state",), f"state must be ENABLED or DISABLED, not {state!r}")
    variants = flag.get("variants")
    if not isinstance(variants, Mapping) or not variants:
        raise _UnsupportedError(("variants",), "a flag needs at least one variant")
    default_variant = flag.get("defaultVariant")
    if not isinstance(default_variant, str):
        raise _UnsupportedError(
            ("defaultVariant",),
            f"defaultVariant must name a variant, not {default_variant!r} "
            "(the caller's default is not supported)",
        )
    description, rule_names = _import_metadata(flag.get("metadata", {}))
    rules, fallthrough = _import_targeting(flag.get("targeting"))
    if rule_names is not None:
        if len(rule_names) != len(rules):
            raise _UnsupportedError(
                ("metadata", "ruleNames"),
                f"{len(rule_names)} rule names for {len(rules)} rules",
            )
        rules = [{**rule, "name": name} for rule, name in zip(rules, rule_names, strict=True)]
    data = {
        "key": key,
        "description": description,
        "type": _flag_type(variants),
        "enabled": state == "ENABLED",
        "variants": dict(variants),
        "default_variant": default_variant,
        "rules": rules,
        "fallthrough": fallthrough,
    }
    try:
        return FlagDefinition.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        location, rest = _flagd_location(tuple(error["loc"]), len(rules))
        message = _message(error["msg"])
        raise _UnsupportedError(location, f"{rest}: {message}" if rest else message) from exc


def _flagd_location(loc: Location, rules: int) -> tuple[Location, str]:
    """Where a definition's field came from in the flagd flag, and the part of the field's
    path that has no counterpart there (said in the message instead)."""
    match loc:
        case ("default_variant", *_):
            return ("defaultVariant",), ""
        case ("variants", *inner):
            return ("variants", *inner[:1]), ""
        case ("description", *_):
            return ("metadata", "description"), ""
        case ("rules", int(index), "conditions", *inner):
            return ("targeting", "if", 2 * index), _dotted(tuple(inner))
        case ("rules", int(index), *inner):
            return ("targeting", "if", 2 * index + 1), _dotted(tuple(inner))
        case ("fallthrough", *inner):
            where: Location = ("targeting", "if", 2 * rules) if rules else ("targeting",)
            return (*where, "fractional"), _dotted(tuple(inner))
        case ("key", *_):
            return (), "flag key"
    return (), _dotted(loc)


def _message(text: str) -> str:
    # pydantic prefixes the messages of model validators.
    return text.removeprefix("Value error, ")


def _flag_type(variants: Mapping[str, object]) -> str:
    types = set()
    for name, value in variants.items():
        if isinstance(value, bool):
            types.add("boolean")
        elif isinstance(value, str):
            types.add("string")
        elif isinstance(value, int | float):
            types.add("number")
        elif isinstance(value, Mapping):
            types.add("object")
        else:
            raise _UnsupportedError(
                ("variants", name),
                f"variants are booleans, strings, numbers or objects, not {type(value).__name__}",
            )
    if len(types) != 1:
        raise _UnsupportedError(("variants",), f"variants mix types: {sorted(types)}")
    return types.pop()


def _import_metadata(metadata: object) -> tuple[str, list[str] | None]:
    if not isinstance(metadata, Mapping):
        raise _UnsupportedError(("metadata",), "metadata is a JSON object")
    unknown = sorted(set(metadata) - _METADATA_FIELDS)
    if unknown:
        raise _UnsupportedError(
            ("metadata", unknown[0]),
            f"{unknown[0]!r} is not supported: only description and ruleNames",
        )
    description = metadata.get("description", "")
    if not isinstance(description, str):
        raise _UnsupportedError(("metadata", "description"), "description is a string")
    encoded = metadata.get("ruleNames")
    if encoded is None:
        return description, None
    try:
        names = json.loads(encoded) if isinstance(encoded, str) else None
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise _UnsupportedError(
            ("metadata", "ruleNames"), "ruleNames is a JSON-encoded list of names"
        )
    return description, names


def _operation(node: object, location: Location) -> tuple[str, Any]:
    """The operator and arguments of a JsonLogic operation ``{operator: arguments}``."""
    if not isinstance(node, Mapping) or len(node) != 1:
        raise _UnsupportedError(location, f"expected one JsonLogic operation, found {node!r}")
    ((operator, arguments),) = node.items()
    return str(operator), arguments


def _import_targeting(targeting: object) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    location: Location = ("targeting",)
    if targeting is None or targeting == {}:
        return [], None
    operator, arguments = _operation(targeting, location)
    if operator == "fractional":
        return [], _import_rollout(targeting, location)
    if operator != "if" or not isinstance(arguments, list) or len(arguments) < 2:
        raise _UnsupportedError(
            location,
            f"{operator!r} is not supported: targeting is an 'if' over the rules "
            "(condition, variant, ..., optional fractional), or one 'fractional'",
        )
    location += ("if",)
    rules = []
    pairs = len(arguments) // 2
    for index in range(pairs):
        rules.append(
            {
                "conditions": _import_conditions(arguments[2 * index], (*location, 2 * index)),
                "serve": _import_serve(arguments[2 * index + 1], (*location, 2 * index + 1)),
            }
        )
    fallthrough = None
    if len(arguments) % 2:
        last = arguments[-1]
        if not (isinstance(last, Mapping) and "fractional" in last):
            raise _UnsupportedError(
                (*location, len(arguments) - 1),
                f"an 'else' of {last!r} is not supported: end with a 'fractional', "
                "or leave it out to serve defaultVariant",
            )
        fallthrough = _import_rollout(last, (*location, len(arguments) - 1))
    return rules, fallthrough


def _import_serve(serve: object, location: Location) -> dict[str, Any]:
    if isinstance(serve, str):
        return {"variant": serve}
    if isinstance(serve, Mapping) and "fractional" in serve:
        return {"rollout": _import_rollout(serve, location)}
    raise _UnsupportedError(
        location, f"a rule serves a variant name or a 'fractional', not {serve!r}"
    )


def _import_rollout(node: object, location: Location) -> dict[str, Any]:
    _, arguments = _operation(node, location)
    location += ("fractional",)
    if not isinstance(arguments, list) or not arguments:
        raise _UnsupportedError(location, "fractional takes [variant, weight] pairs")
    if not isinstance(arguments[0], list):
        raise _UnsupportedError(
            location,
            "a bucketing expression is not supported: only the shorthand, which buckets by "
            "flag key and targeting key",
        )
    weights: dict[str, int] = {}
    for index, pair in enumerate(arguments):
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not isinstance(pair[1], int)
            or isinstance(pair[1], bool)
        ):
            raise _UnsupportedError(
                (*location, index), f"expected [variant, whole percent], not {pair!r}"
            )
        if pair[0] in weights:
            raise _UnsupportedError((*location, index), f"variant {pair[0]!r} appears twice")
        weights[pair[0]] = pair[1]
    try:
        Rollout(weights=weights)
    except ValidationError as exc:
        raise _UnsupportedError(
            location, _message(exc.errors(include_url=False)[0]["msg"])
        ) from exc
    return {"weights": weights}


def _import_conditions(node: object, location: Location) -> list[dict[str, Any]]:
    if isinstance(node, Mapping) and set(node) == {"and"}:
        tests = node["and"]
        if not isinstance(tests, list) or len(tests) < 2:
            raise _UnsupportedError((*location, "and"), "'and' joins two or more conditions")
        return [
            _import_condition(test, (*location, "and", index)) for index, test in enumerate(tests)
        ]
    return [_import_condition(node, location)]


def _import_condition(node: object, location: Location) -> dict[str, Any]:
    operator, arguments = _operation(node, location)
    negated = operator == "!"
    if negated:
        node = arguments[0] if isinstance(arguments, list) and len(arguments) == 1 else arguments
        location += ("!",)
        operator, arguments = _operation(node, location)
    if operator == "some":
        if not isinstance(arguments, list) or len(arguments) != 2:
            raise _UnsupportedError((*location, "some"), "'some' takes an attribute and a test")
        attribute = _variable(arguments[0], (*location, "some", 0))
        if attribute not in LIST_ATTRIBUTES:
            raise _UnsupportedError(
                (*location, "some"),
                f"{attribute!r} is not a list attribute ({sorted(LIST_ATTRIBUTES)}): "
                "test it without 'some'",
            )
        test_operator, values, subject = _comparison(arguments[1], (*location, "some", 1))
        if subject != "":
            raise _UnsupportedError(
                (*location, "some", 1), "inside 'some', test the element: var ''"
            )
    else:
        test_operator, values, attribute = _comparison(node, location)
        if attribute in BOOLEAN_ATTRIBUTES and test_operator == "in":
            values = [_boolean_text(value, location) for value in values]
        if attribute == "":
            raise _UnsupportedError(location, "name the attribute the condition tests")
        if attribute in LIST_ATTRIBUTES:
            raise _UnsupportedError(
                location,
                f"{attribute!r} holds a list: test its elements with 'some', as the export does",
            )
    if negated:
        if test_operator != "in":
            raise _UnsupportedError(location, "only 'in' can be negated (not_in)")
        test_operator = "not_in"
    return {"attribute": attribute, "operator": test_operator, "values": values}


def _boolean_text(value: object, location: Location) -> str:
    if not isinstance(value, bool):
        raise _UnsupportedError(
            (*location, "in"), f"a boolean attribute is compared with true or false, not {value!r}"
        )
    return "true" if value else "false"


def _variable(node: object, location: Location) -> str:
    operator, name = _operation(node, location)
    if operator != "var" or not isinstance(name, str):
        raise _UnsupportedError(location, f"expected a 'var' naming an attribute, not {node!r}")
    return name


def _comparison(node: object, location: Location) -> tuple[str, list[Any], str]:
    """``in`` over a list of strings, or ``starts_with``/``ends_with`` with one string
    each, several joined by ``or``: the operator, the values and the attribute tested
    (``""`` for the element inside ``some``)."""
    operator, arguments = _operation(node, location)
    if operator == "in":
        if (
            not isinstance(arguments, list)
            or len(arguments) != 2
            or not isinstance(arguments[1], list)
            or not arguments[1]
            or not all(isinstance(value, str | bool) for value in arguments[1])
        ):
            raise _UnsupportedError(
                (*location, "in"), "'in' takes the attribute and a list of strings (or booleans)"
            )
        return "in", list(arguments[1]), _variable(arguments[0], (*location, "in", 0))
    if operator != "or":
        test_operator, value, attribute = _string_comparison(node, location)
        return test_operator, [value], attribute
    if not isinstance(arguments, list) or len(arguments) < 2:
        raise _UnsupportedError((*location, "or"), "'or' joins two or more comparisons")
    found = [
        _string_comparison(test, (*location, "or", index)) for index, test in enumerate(arguments)
    ]
    if len({(test_operator, attribute) for test_operator, _, attribute in found}) != 1:
        raise _UnsupportedError(
            (*location, "or"),
            "'or' joins comparisons of one attribute, all starts_with or all ends_with",
        )
    test_operator, _, attribute = found[0]
    return test_operator, [value for _, value, _ in found], attribute


def _string_comparison(node: object, location: Location) -> tuple[str, str, str]:
    operator, arguments = _operation(node, location)
    if operator not in _STRING_OPERATORS:
        raise _UnsupportedError(
            location,
            f"{operator!r} is not supported: conditions use in, !, some, starts_with, "
            "ends_with, or and and",
        )
    if not isinstance(arguments, list) or len(arguments) != 2 or not isinstance(arguments[1], str):
        raise _UnsupportedError(
            (*location, operator), f"{operator!r} takes the attribute and a string"
        )
    return operator, arguments[1], _variable(arguments[0], (*location, operator, 0))
