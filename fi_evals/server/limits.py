"""Limits at the door: cheap checks that turn abusive request shapes into a 400 naming the limit.

They run on the parsed body before anything recursive, costly or stored touches it:

- JSON nesting depth of any body (``max_json_depth``): ``json.loads``, ``json.dumps`` and
  jsonschema recurse per level, and a ``RecursionError`` is a 500 with a 300 KB traceback;
- lone surrogates (``"\\ud800"``): valid JSON escapes that no UTF-8 store or answer can encode;
- the ``json_schema`` template's ``schema`` parameter: its depth (``max_schema_depth``) and the
  regular expressions inside it;
- regular expressions (the ``regex`` template's ``pattern``, a schema's ``pattern`` and
  ``patternProperties``): length, group nesting and compile budget. The ``regex`` module unrolls
  nested counted repeats when it compiles, so ``(?:(?:a{1000}){1000}){1000}`` (27 bytes) asks
  for tens of gigabytes; :func:`pattern_problem` estimates that size without compiling;
- input length of the templates whose cost is the product of their input lengths
  (``max_quadratic_input_chars``).

Every check walks iteratively (no recursion of its own) and stops at the first problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fi_evals import _constants as C
from fi_evals.catalogue import Template
from fi_evals.server.errors import printable

__all__ = ["DoorLimits", "find_lone_surrogate", "json_depth", "param_problems",
           "pattern_problem", "quadratic_input_problem"]

_CONTAINERS = (dict, list)
_SCALARS = frozenset({str, int, float, bool, type(None)})
_QUANTIFIER = re.compile(r"\{(\d*)(?:,(\d*))?\}")
_SHOWN_PATH = 200  # characters of a field path quoted in a message


@dataclass(frozen=True, slots=True)
class DoorLimits:
    """The limits of one server (``ServerConfig`` fields of the same names)."""

    max_json_depth: int = C.DEFAULT_MAX_JSON_DEPTH
    max_schema_depth: int = C.DEFAULT_MAX_SCHEMA_DEPTH
    max_pattern_length: int = C.DEFAULT_MAX_PATTERN_LENGTH
    max_pattern_nesting: int = C.DEFAULT_MAX_PATTERN_NESTING
    max_pattern_expansion: int = C.DEFAULT_MAX_PATTERN_EXPANSION
    max_quadratic_input_chars: int = C.DEFAULT_MAX_QUADRATIC_INPUT_CHARS

    @classmethod
    def of(cls, config: Any) -> DoorLimits:
        """The limits of a ``ServerConfig`` (any object with these attributes)."""
        return cls(**{name: getattr(config, name) for name in cls.__slots__})


# --------------------------------------------------------------------------- JSON shape


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of lists and dicts in ``value`` (a scalar is 0, ``[]`` is 1).

    Counting stops as soon as the depth exceeds ``limit``, so the answer is exact up to
    ``limit`` and ``limit + 1`` means "deeper". A container holding only scalars is passed
    over at C speed (``set(map(type, ...))``), so a batch of 500 strings costs microseconds.
    """
    if type(value) not in _CONTAINERS:
        return 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 1
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
        children = node.values() if type(node) is dict else node
        if set(map(type, children)) <= _SCALARS:
            continue
        stack.extend((child, depth + 1) for child in children if type(child) in _CONTAINERS)
    return deepest


def _shown(text: str) -> str:
    """``text`` safe to put in an answer or a log line: surrogates and controls escaped."""
    shown = printable(text)
    return shown if len(shown) <= _SHOWN_PATH else shown[:_SHOWN_PATH - 1] + "…"


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def find_lone_surrogate(value: Any) -> str | None:
    """The path (``inputs.text[3]``) of the first string or key holding a lone surrogate.

    Paired surrogate escapes (``"\\ud83d\\ude00"``) decode to one character and pass.
    """
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if type(node) is str:
            if _has_surrogate(node):
                return path or "body"
        elif type(node) is dict:
            for key, child in node.items():
                child_path = f"{path}.{_shown(key)}" if path else _shown(key)
                if _has_surrogate(key):
                    return f"{child_path} (the key)"
                stack.append((child, child_path))
        elif type(node) is list:
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node))
    return None


# --------------------------------------------------------------------------- patterns


def _class_end(pattern: str, start: int) -> int:
    """Index just past the character class opening at ``start`` (``]`` first is literal)."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i + 1
        i += 1
    return len(pattern)


def _repeat_factor(low: str) -> int:
    # A repeat's body is compiled max(1, minimum) times; the maximum costs nothing.
    if len(low) > 9:
        return 10 ** 9
    return max(1, int(low or "0"))


def pattern_problem(pattern: str, limits: DoorLimits) -> str | None:
    """Why ``pattern`` is refused (too long, groups nested too deep, too costly to compile),
    or None. A cheap scan, not a parser: it only has to be right about size and nesting, and
    errs on the side of counting more (the compiler still rejects invalid syntax).
    """
    if len(pattern) > limits.max_pattern_length:
        return (f"is {len(pattern)} characters long, more than this server's "
                f"max_pattern_length {limits.max_pattern_length}")
    budget = limits.max_pattern_expansion
    sizes = [0]  # compiled size of each open group's content so far
    last = 0  # size of the last atom or group (what a quantifier repeats)
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" or c == "[":
            i = i + 2 if c == "\\" else _class_end(pattern, i)
            last = 1
            sizes[-1] += 1
            continue
        if c == "(":
            if pattern.startswith("(?#", i):  # a comment
                end = pattern.find(")", i)
                i = n if end < 0 else end + 1
                continue
            sizes.append(0)
            if len(sizes) - 1 > limits.max_pattern_nesting:
                return (f"nests groups more than {limits.max_pattern_nesting} deep (this "
                        f"server's max_pattern_nesting)")
            i += 1
            continue
        if c == ")":
            last = sizes.pop() if len(sizes) > 1 else 0
            sizes[-1] += last
            i += 1
            continue
        if c == "{":
            found = _QUANTIFIER.match(pattern, i)
            if found is not None and (found.group(1) or found.group(2)):
                factor = _repeat_factor(found.group(1))
                sizes[-1] += last * (factor - 1)
                last *= factor
                if sizes[-1] > budget:
                    return (f"would compile to more than this server's max_pattern_expansion "
                            f"{budget} (nested counted repeats such as (?:a{{1000}}){{1000}} "
                            f"are unrolled when the pattern is compiled)")
                i = found.end()
                continue
        if c not in "*+?|^$":
            last = 1
            sizes[-1] += 1
        i += 1
    if sum(sizes) > budget:
        return f"would compile to more than this server's max_pattern_expansion {budget}"
    return None


def _schema_patterns(schema: Any) -> Iterator[tuple[str, str]]:
    """(path, pattern) of every ``pattern`` string and ``patternProperties`` key in a schema."""
    stack: list[tuple[Any, str]] = [(schema, "")]
    while stack:
        node, path = stack.pop()
        if type(node) is dict:
            for key, child in node.items():
                child_path = f"{path}.{_shown(key)}"
                if key == "pattern" and type(child) is str:
                    yield child_path, child
                elif key == "patternProperties" and type(child) is dict:
                    for regex in child:
                        yield f"{child_path}[{_shown(regex)!r}]", regex
                stack.append((child, child_path))
        elif type(node) is list:
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node))


def param_problems(template: str, params: Mapping[str, Any],
                   limits: DoorLimits) -> dict[str, str]:
    """Problems of the parameters that reach a compiler: field -> message (empty when fine).

    Args:
        template: the template's name (``regex`` and ``json_schema`` have such parameters).
        params: its validated parameters.
        limits: the server's limits.
    """
    if template == "regex" and type(params.get("pattern")) is str:
        problem = pattern_problem(params["pattern"], limits)
        return {"config.params.pattern": f"the pattern {problem}"} if problem else {}
    if template == "json_schema" and "schema" in params:
        schema = params["schema"]
        depth = json_depth(schema, limits.max_schema_depth)
        if depth > limits.max_schema_depth:
            return {"config.params.schema": f"the schema nests arrays/objects more than "
                                            f"{limits.max_schema_depth} levels deep (this "
                                            f"server's max_schema_depth)"}
        for path, regex in _schema_patterns(schema):
            problem = pattern_problem(regex, limits)
            if problem:
                return {f"config.params.schema{path}": f"the pattern {problem}"}
    return {}


# --------------------------------------------------------------------------- inputs


def quadratic_input_problem(template: Template, inputs: Mapping[str, Any],
                            limits: DoorLimits) -> tuple[str, str] | None:
    """(field, message) of the first input longer than ``max_quadratic_input_chars`` in a
    template of :data:`~fi_evals._constants.QUADRATIC_TEMPLATES`, or None.

    Args:
        template: the template.
        inputs: the request's validated ``inputs``: per string-kind key a string, or a list
            of strings for a batch; per list-kind key a list of chunks, or one per item.
        limits: the server's limits.
    """
    if template.name not in C.QUADRATIC_TEMPLATES:
        return None
    cap = limits.max_quadratic_input_chars
    for key in template.keys:
        value = inputs.get(key.name)
        if value is None:
            continue
        column = [value] if type(value) is str else value
        measure = len if key.kind == "string" else _longest_chunk  # a str, or chunks
        if max(map(measure, column), default=0) <= cap:
            continue
        index = next(i for i, v in enumerate(column) if measure(v) > cap)
        field = f"inputs.{key.name}[{index}]" if type(value) is list else f"inputs.{key.name}"
        return field, (f"{field} is {measure(column[index])} characters long, more than this "
                       f"server's max_quadratic_input_chars {cap} for {template.name} (its "
                       f"cost grows with the product of the input lengths)")
    return None


def _longest_chunk(value: Any) -> int:
    if type(value) is str:
        return len(value)
    return max(map(len, value), default=0)
