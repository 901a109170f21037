"""Evaluators of the deterministic templates: computed in-process, no model, no network.

One function per template of family ``deterministic`` in :data:`fi_evals.catalogue.CATALOGUE`,
registered with :func:`_implements`; :func:`deterministic_evaluators` wraps each in a
:class:`DeterministicEvaluator` and refuses to start if the catalogue and this module disagree.

These run 100k+ times in benchmarks, so the hot paths avoid per-call set-up: compiled patterns
and JSON-schema validators are cached per pattern/schema, and the similarity scores use
rapidfuzz (C++) instead of pure-Python dynamic programming.

Choices worth knowing (each also shows in the outcome's ``reason``):

* ``fuzzy_match`` is difflib's ratio ``2*M / (len(a) + len(b))`` with M the longest common
  subsequence (rapidfuzz's normalised InDel similarity). It equals ``difflib.SequenceMatcher``
  on typical short strings; difflib's greedy block matching under-counts M on long texts, and
  its default "autojunk" heuristic scores unrelated-looking long texts 0.
* ``regex`` uses the ``regex`` module (a superset of Python ``re`` syntax) because ``re`` can
  neither be interrupted nor release the GIL: a catastrophic pattern such as ``(x+x+)+y`` would
  freeze the whole server. Each match runs with ``REGEX_TIMEOUT_SECONDS`` and without the GIL;
  patterns longer than ``REGEX_MAX_PATTERN_LENGTH`` are refused.
* ``bleu_score`` tokenises into words and punctuation marks, case-sensitively, and smooths
  zero n-gram matches with the "exp" method (precision 1 / (2^k * total)) over the effective
  order (no n-gram order beyond the hypothesis length).
* ``rouge_score`` compares case-folded ``\\w+`` tokens (Unicode-aware).
* ``json_schema`` picks the draft from ``$schema`` (default 2020-12), does not assert
  ``format`` (the JSON Schema default) and never retrieves remote ``$ref`` documents.
* Identical texts score 1.0 on every similarity template, two empty texts included.

Isolation (``fi_evals.server.isolation``): ``regex`` and ``json_schema`` run their parameter
checks and every item in the server's isolated child processes (a pattern or a schema is a
program: compiling ``(?:(?:a{1000}){1000}){1000}`` allocates without bound, ``re`` backtracks
for ever under a schema ``pattern`` while holding the GIL); the quadratic similarity templates
do so for items above the inline size cap.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

try:
    import jsonschema
    import referencing.exceptions
    import regex
    from rapidfuzz.distance import Indel, LCSseq, Levenshtein
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the deterministic evaluators need the server extra: pip install 'fi-evals[server]'"
    ) from exc

from fi_evals._constants import (
    OUTPUT_FAILED,
    OUTPUT_PASSED,
    REGEX_MAX_PATTERN_LENGTH,
    REGEX_TIMEOUT_SECONDS,
)
from fi_evals.catalogue import CATALOGUE, Template
from fi_evals.server.evaluators.base import (
    BaseEvaluator,
    EvaluationError,
    Isolation,
    ItemInputs,
    Outcome,
)

__all__ = ["DeterministicEvaluator", "deterministic_evaluators", "param_defaults"]

Params = Mapping[str, Any]
Compute = Callable[[ItemInputs, Params], Outcome]
ParamCheck = Callable[[Params], None]

_IMPLEMENTATIONS: dict[str, Compute] = {}
_PARAM_CHECKS: dict[str, ParamCheck] = {}
_CACHE_SIZE = 512
"""Distinct regex patterns / JSON schemas kept compiled (a benchmark uses a handful)."""
_QUOTE_LIMIT = 60
_ISOLATION: dict[str, Isolation] = {
    "regex": "always", "json_schema": "always",  # user-supplied programs
    **dict.fromkeys(("fuzzy_match", "levenshtein_similarity", "rouge_score", "bleu_score"),
                    "large"),  # quadratic (or, for BLEU's n-gram tables, large) in the text
}


def param_defaults(template: Template) -> dict[str, Any]:
    """The ``default`` of every parameter of the template's params schema that has one."""
    properties = template.params.get("properties", {})
    return {name: spec["default"] for name, spec in properties.items() if "default" in spec}


class DeterministicEvaluator(BaseEvaluator):
    """One deterministic template: a pure function of the item's inputs and the params.

    Stateless apart from module-level caches, so one instance serves every worker thread.
    """

    def __init__(self, template: Template, compute: Compute,
                 check: ParamCheck | None = None) -> None:
        self.template = template
        self._compute = compute
        self._check = check
        self._defaults = param_defaults(template)
        self.isolation = _ISOLATION.get(template.name)

    def check_params(self, params: Params) -> None:
        """Checks the schema cannot express (pattern compiles, schema is a valid schema...).

        Lets a server reject a bad request with a 400 before storing anything; ``evaluate``
        runs the same checks, so skipping this only turns the 400 into failed items.

        Args:
            params: ``config.params``, already valid against the template's params schema.

        Raises:
            EvaluationError: the parameters cannot work, with a message naming the problem.
        """
        if self._check is not None:
            self._check({**self._defaults, **params})

    def evaluate(self, inputs: ItemInputs, params: Params,
                 model: str | None = None) -> Outcome:
        """Evaluate one item (``model`` is ignored: nothing here is model-judged).

        Args:
            inputs: the item's inputs, keyed by the template's input keys.
            params: ``config.params``; missing parameters take the schema's defaults.
            model: unused.

        Returns:
            The outcome: "Passed"/"Failed" or a float in [0, 1], with a short reason.

        Raises:
            EvaluationError: the item cannot be evaluated (e.g. no number to compare).
        """
        if self._defaults:
            params = {**self._defaults, **params}
        return self._compute(inputs, params)


def deterministic_evaluators() -> list[BaseEvaluator]:
    """One evaluator per deterministic template of the catalogue, in catalogue order.

    Raises:
        RuntimeError: a deterministic template has no implementation here, or the other way
            round (the catalogue and this module drifted apart).
    """
    names = [t.name for t in CATALOGUE.values() if t.family == "deterministic"]
    missing = sorted(set(names) - set(_IMPLEMENTATIONS))
    unknown = sorted(set(_IMPLEMENTATIONS) - set(names))
    if missing or unknown:
        raise RuntimeError(f"deterministic templates without an evaluator: {missing}; "
                           f"evaluators without a deterministic template: {unknown}")
    return [DeterministicEvaluator(CATALOGUE[n], _IMPLEMENTATIONS[n], _PARAM_CHECKS.get(n))
            for n in names]


def _implements(name: str, check: ParamCheck | None = None) -> Callable[[Compute], Compute]:
    def register(compute: Compute) -> Compute:
        _IMPLEMENTATIONS[name] = compute
        if check is not None:
            _PARAM_CHECKS[name] = check
        return compute
    return register


# --------------------------------------------------------------------------- helpers


def _text(inputs: ItemInputs, key: str) -> str:
    """The string value of ``key``; a (nested) list of strings is joined by newlines.

    The server validates kinds before evaluating; lists are tolerated so that a caller
    skipping that validation gets a sensible answer instead of a TypeError.
    """
    value = inputs.get(key)
    if type(value) is str:
        return value
    if value is None:
        raise EvaluationError(f"missing input {key!r}")
    if isinstance(value, (list, tuple)):
        return "\n".join(_flatten(key, value))
    raise EvaluationError(f"input {key!r} must be a string, not {type(value).__name__}")


def _flatten(key: str, values: list[Any] | tuple[Any, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out.extend(_flatten(key, v))
        else:
            raise EvaluationError(f"input {key!r} holds a value of type {type(v).__name__}, "
                                  "not only strings")
    return out


def _q(text: str) -> str:
    """``text`` quoted for a reason, shortened: reasons stay one short line."""
    if len(text) > _QUOTE_LIMIT:
        text = text[:_QUOTE_LIMIT - 1] + "…"
    return repr(text)


def _verdict(passed: bool, reason: str) -> Outcome:
    return Outcome(OUTPUT_PASSED if passed else OUTPUT_FAILED, reason)


def _score(value: float, reason: str) -> Outcome:
    return Outcome(min(1.0, max(0.0, float(value))), reason)


def _fold(text: str, case_sensitive: bool) -> str:
    # casefold, not lower: "Straße" matches "STRASSE" as a reader expects.
    return text if case_sensitive else text.casefold()


# --------------------------------------------------------------------------- format checks


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Python's json accepts NaN/Infinity; RFC 8259 does not. One decoder, built once.
_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def _parse_json(text: str) -> tuple[Any, str | None]:
    """(value, None) when ``text`` is JSON, else (None, why not)."""
    try:
        return _JSON.decode(text), None
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg}: line {exc.lineno} column {exc.colno}"
    except ValueError as exc:  # a rejected constant, or an integer past the digit limit
        return None, str(exc)
    except RecursionError:
        return None, "JSON nested too deeply to parse"


def _describe_json(value: Any) -> str:
    if isinstance(value, dict):
        return f"object with {len(value)} key{'s' * (len(value) != 1)}"
    if isinstance(value, list):
        return f"array with {len(value)} item{'s' * (len(value) != 1)}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "number" if isinstance(value, (int, float)) else "string"


@_implements("is_json")
def _is_json(inputs: ItemInputs, params: Params) -> Outcome:
    value, error = _parse_json(_text(inputs, "text"))
    if error is not None:
        return _verdict(False, error)
    return _verdict(True, f"Parsed as JSON {_describe_json(value)}")


# Every boundary str.splitlines() knows, so "one line" means what Python means by a line.
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


@_implements("one_line")
def _one_line(inputs: ItemInputs, params: Params) -> Outcome:
    text = _text(inputs, "text")
    found = _LINE_BREAK.search(text)
    if found:
        return _verdict(False, f"Line break {found.group()!r} at character {found.start()}")
    return _verdict(True, f"Single line of {len(text)} characters")


_LABEL = r"(?:[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?)"
_TLD = r"(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)+{_TLD}", re.IGNORECASE)
_EMAIL_LOCAL = re.compile(r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*")


def _email_problem(address: str) -> str | None:
    """Why ``address`` is not one valid e-mail address, or None when it is."""
    if address.count("@") != 1:
        return "no '@'" if "@" not in address else "more than one '@'"
    local, domain = address.split("@")
    if not local or len(local) > 64 or not _EMAIL_LOCAL.fullmatch(local):
        return f"invalid local part {_q(local)}"
    if len(domain) > 253 or not _HOSTNAME.fullmatch(domain):
        return f"invalid domain {_q(domain)}"
    if len(address) > 254:
        return "longer than 254 characters"
    return None


@_implements("is_email")
def _is_email(inputs: ItemInputs, params: Params) -> Outcome:
    address = _text(inputs, "text").strip()
    problem = _email_problem(address)
    if problem:
        return _verdict(False, f"Not an e-mail address: {problem}")
    return _verdict(True, "Valid e-mail address")


_URL_CANDIDATE = re.compile(
    r"https?://(?:\[[0-9A-Fa-f:.]*\]|[^\s/?#<>\"'`\[\]{}|\\^])*(?:[/?#][^\s<>\"'`]*)?",
    re.IGNORECASE,
)
_TRAILING_PUNCTUATION = ".,;:!?*'\"»”’>"


def _trim_url(url: str) -> str:
    """Drop sentence punctuation after a URL; a ')' only when unbalanced (markdown links)."""
    while url:
        last = url[-1]
        unbalanced = last in ")]}" and url.count(last) > url.count("([{"[")]}".index(last)])
        if last in _TRAILING_PUNCTUATION or unbalanced:
            url = url[:-1]
        else:
            break
    return url


def _url_problem(url: str) -> str | None:
    """Why ``url`` is not a syntactically valid http(s) URL, or None when it is."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return str(exc)
    host = parts.hostname or ""
    if not host:
        return "no host"
    if host == "localhost" or _HOSTNAME.fullmatch(host.removesuffix(".")):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"invalid host {_q(host)}"
    return None


@_implements("contains_valid_link")
def _contains_valid_link(inputs: ItemInputs, params: Params) -> Outcome:
    candidates = [_trim_url(m.group()) for m in _URL_CANDIDATE.finditer(_text(inputs, "text"))]
    problems = []
    for url in candidates:
        problem = _url_problem(url)
        if problem is None:
            return _verdict(True, f"Valid link {_q(url)}")
        problems.append(f"{_q(url)}: {problem}")
    if not candidates:
        return _verdict(False, "No http(s) URL in the text")
    return _verdict(False, f"No valid link among {len(candidates)} URL(s); {problems[0]}")


@lru_cache(maxsize=_CACHE_SIZE)
def _schema_validator(canonical_schema: str) -> Any:
    schema = json.loads(canonical_schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise EvaluationError(f"invalid JSON schema at {exc.json_path}: {exc.message}") from None
    return cls(schema)


def _validator_for(params: Params) -> Any:
    # Schemas are dicts (unhashable): cache by their canonical JSON text.
    return _schema_validator(json.dumps(params["schema"], sort_keys=True))


def _check_schema(params: Params) -> None:
    _validator_for(params)


@_implements("json_schema", check=_check_schema)
def _json_schema(inputs: ItemInputs, params: Params) -> Outcome:
    validator = _validator_for(params)
    value, error = _parse_json(_text(inputs, "text"))
    if error is not None:
        return _verdict(False, f"Not JSON: {error}")
    try:
        problem = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except RecursionError:
        raise EvaluationError("JSON nested too deeply to validate") from None
    except referencing.exceptions.Unresolvable as exc:
        raise EvaluationError(f"cannot resolve a $ref of the schema: {exc}") from None
    if problem is None:
        return _verdict(True, "Valid against the schema")
    message = problem.message if len(problem.message) <= 200 else problem.message[:199] + "…"
    return _verdict(False, f"At {problem.json_path}: {message}")


# --------------------------------------------------------------------------- text checks


@_implements("exact_match")
def _exact_match(inputs: ItemInputs, params: Params) -> Outcome:
    output, expected = _text(inputs, "output"), _text(inputs, "expected")
    if params["strip"]:
        output, expected = output.strip(), expected.strip()
    output = _fold(output, params["case_sensitive"])
    expected = _fold(expected, params["case_sensitive"])
    if output == expected:
        return _verdict(True, "Output equals expected")
    at = next((i for i, (a, b) in enumerate(zip(output, expected)) if a != b),
              min(len(output), len(expected)))
    return _verdict(False, f"Output differs from expected at character {at}")


@_implements("contains")
def _contains(inputs: ItemInputs, params: Params) -> Outcome:
    keyword = params["keyword"]
    found = _fold(keyword, params["case_sensitive"]) in _fold(_text(inputs, "text"),
                                                               params["case_sensitive"])
    return _verdict(found, f"{_q(keyword)} {'found' if found else 'not found'}")


def _found_keywords(inputs: ItemInputs, params: Params) -> list[bool]:
    text = _fold(_text(inputs, "text"), params["case_sensitive"])
    return [_fold(k, params["case_sensitive"]) in text for k in params["keywords"]]


@_implements("contains_any")
def _contains_any(inputs: ItemInputs, params: Params) -> Outcome:
    keywords = params["keywords"]
    found = _found_keywords(inputs, params)
    if any(found):
        return _verdict(True, f"Found {_q(keywords[found.index(True)])}")
    return _verdict(False, f"None of the {len(keywords)} keywords found")


@_implements("contains_all")
def _contains_all(inputs: ItemInputs, params: Params) -> Outcome:
    keywords = params["keywords"]
    missing = [k for k, ok in zip(keywords, _found_keywords(inputs, params)) if not ok]
    if not missing:
        return _verdict(True, f"All {len(keywords)} keywords found")
    return _verdict(False, f"Missing {len(missing)} of {len(keywords)} keywords: "
                           + ", ".join(_q(k) for k in missing[:5]))


@lru_cache(maxsize=_CACHE_SIZE)
def _compiled(pattern: str) -> Any:
    if len(pattern) > REGEX_MAX_PATTERN_LENGTH:
        raise EvaluationError(f"pattern longer than {REGEX_MAX_PATTERN_LENGTH} characters")
    try:
        return regex.compile(pattern, regex.VERSION0)  # VERSION0: Python re semantics
    except regex.error as exc:
        raise EvaluationError(f"invalid regular expression: {exc}") from None


def _check_pattern(params: Params) -> None:
    _compiled(params["pattern"])


@_implements("regex", check=_check_pattern)
def _regex(inputs: ItemInputs, params: Params) -> Outcome:
    compiled = _compiled(params["pattern"])
    try:
        found = compiled.search(_text(inputs, "text"), timeout=REGEX_TIMEOUT_SECONDS,
                                concurrent=True)
    except TimeoutError:
        raise EvaluationError(f"regex match took over {REGEX_TIMEOUT_SECONDS} s "
                              "(the pattern may backtrack catastrophically)") from None
    if found is None:
        return _verdict(False, "Pattern not found")
    return _verdict(True, f"Matched {_q(found.group())} at character {found.start()}")


@_implements("starts_with")
def _starts_with(inputs: ItemInputs, params: Params) -> Outcome:
    substring = params["substring"]
    ok = _fold(_text(inputs, "text"), params["case_sensitive"]).startswith(
        _fold(substring, params["case_sensitive"]))
    return _verdict(ok, f"Text {'starts' if ok else 'does not start'} with {_q(substring)}")


@_implements("ends_with")
def _ends_with(inputs: ItemInputs, params: Params) -> Outcome:
    substring = params["substring"]
    ok = _fold(_text(inputs, "text"), params["case_sensitive"]).endswith(
        _fold(substring, params["case_sensitive"]))
    return _verdict(ok, f"Text {'ends' if ok else 'does not end'} with {_q(substring)}")


@_implements("length_less_than")
def _length_less_than(inputs: ItemInputs, params: Params) -> Outcome:
    n, limit = len(_text(inputs, "text")), params["max_length"]
    return _verdict(n < limit, f"Length {n} {'<' if n < limit else '>='} {limit}")


@_implements("length_greater_than")
def _length_greater_than(inputs: ItemInputs, params: Params) -> Outcome:
    n, limit = len(_text(inputs, "text")), params["min_length"]
    return _verdict(n > limit, f"Length {n} {'>' if n > limit else '<='} {limit}")


def _check_bounds(params: Params) -> None:
    if params["min_length"] > params["max_length"]:
        raise EvaluationError(f"min_length {params['min_length']} is greater than "
                              f"max_length {params['max_length']}")


@_implements("length_between", check=_check_bounds)
def _length_between(inputs: ItemInputs, params: Params) -> Outcome:
    _check_bounds(params)
    n, low, high = len(_text(inputs, "text")), params["min_length"], params["max_length"]
    ok = low <= n <= high
    return _verdict(ok, f"Length {n} {'within' if ok else 'outside'} [{low}, {high}]")


# --------------------------------------------------------------------------- similarity


@_implements("fuzzy_match")
def _fuzzy_match(inputs: ItemInputs, params: Params) -> Outcome:
    case_sensitive = params["case_sensitive"]
    a = _fold(_text(inputs, "output"), case_sensitive)
    b = _fold(_text(inputs, "expected"), case_sensitive)
    similarity = Indel.normalized_similarity(a, b)
    mode = "case-sensitive" if case_sensitive else "case-insensitive"
    return _score(similarity, f"Sequence similarity {similarity:.3f} ({mode})")


@_implements("levenshtein_similarity")
def _levenshtein(inputs: ItemInputs, params: Params) -> Outcome:
    case_sensitive = params["case_sensitive"]
    a = _fold(_text(inputs, "output"), case_sensitive)
    b = _fold(_text(inputs, "expected"), case_sensitive)
    longest = max(len(a), len(b))
    if longest == 0:
        return _score(1.0, "Both texts are empty")
    distance = Levenshtein.distance(a, b)
    return _score(1.0 - distance / longest, f"Edit distance {distance} over {longest} characters")


_BLEU_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(zip(*(tokens[i:] for i in range(n))))


def _empty_pair(reference: list[str], hypothesis: list[str]) -> Outcome | None:
    """The outcome when either side has no tokens, else None."""
    if reference and hypothesis:
        return None
    if not reference and not hypothesis:
        return _score(1.0, "Both texts have no tokens")
    return _score(0.0, f"{'Reference' if not reference else 'Hypothesis'} has no tokens")


@_implements("bleu_score")
def _bleu(inputs: ItemInputs, params: Params) -> Outcome:
    reference = _BLEU_TOKEN.findall(_text(inputs, "reference"))
    hypothesis = _BLEU_TOKEN.findall(_text(inputs, "hypothesis"))
    empty = _empty_pair(reference, hypothesis)
    if empty is not None:
        return empty
    order = min(params["max_n"], len(hypothesis))  # effective order, as sentence BLEU does
    precisions, log_sum, smoothing = [], 0.0, 1.0
    for n in range(1, order + 1):
        total = len(hypothesis) - n + 1
        matches = sum((_ngrams(hypothesis, n) & _ngrams(reference, n)).values())
        if matches == 0:
            smoothing *= 2.0
            precision = 1.0 / (smoothing * total)
        else:
            precision = matches / total
        precisions.append(precision)
        log_sum += math.log(precision)
    ratio = len(reference) / len(hypothesis)
    penalty = 1.0 if ratio < 1.0 else math.exp(1.0 - ratio)
    score = penalty * math.exp(log_sum / order)
    shown = "/".join(f"{p:.2f}" for p in precisions)
    return _score(score, f"BLEU-{order} {score:.3f} (precisions {shown}, "
                         f"brevity penalty {penalty:.2f})")


def _f_measure(overlap: int, hypothesis_total: int, reference_total: int) -> tuple[float, ...]:
    precision, recall = overlap / hypothesis_total, overlap / reference_total
    f = 0.0 if overlap == 0 else 2 * precision * recall / (precision + recall)
    return f, precision, recall


@_implements("rouge_score")
def _rouge(inputs: ItemInputs, params: Params) -> Outcome:
    rouge_type = params["rouge_type"]
    reference = _WORD.findall(_text(inputs, "reference").casefold())
    hypothesis = _WORD.findall(_text(inputs, "hypothesis").casefold())
    if rouge_type == "rougeL":
        empty = _empty_pair(reference, hypothesis)
        if empty is not None:
            return empty
        # rapidfuzz takes sequences of hashables: an LCS over tokens in C++, not O(n*m) Python.
        f, p, r = _f_measure(LCSseq.similarity(reference, hypothesis), len(hypothesis),
                             len(reference))
    else:
        n = 1 if rouge_type == "rouge1" else 2
        ref_grams, hyp_grams = _ngrams(reference, n), _ngrams(hypothesis, n)
        if not ref_grams or not hyp_grams:
            # Texts too short for n-grams: equal token lists still count as a perfect match.
            same = reference == hypothesis and not ref_grams and not hyp_grams
            return _score(1.0 if same else 0.0,
                          f"Too few tokens for {rouge_type}; texts {'' if same else 'not '}equal")
        f, p, r = _f_measure(sum((ref_grams & hyp_grams).values()),
                             sum(hyp_grams.values()), sum(ref_grams.values()))
    return _score(f, f"{rouge_type} F {f:.3f} (precision {p:.3f}, recall {r:.3f})")


# A sign counts only when not glued to a word ("COVID-19" is 19); thousands need 3-digit groups.
_NUMBER = re.compile(
    r"(?:(?<![\w.])[-+\u2212])?(?<![\d.])"
    r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
)


def _first_number(inputs: ItemInputs, key: str) -> float:
    found = _NUMBER.search(_text(inputs, key))
    if found is None:
        raise EvaluationError(f"no number in {key!r} to compare")
    number = float(found.group().replace(",", "").replace("\u2212", "-"))
    if not math.isfinite(number):
        raise EvaluationError(f"the number in {key!r} is too large to compare")
    return number


@_implements("numeric_similarity")
def _numeric_similarity(inputs: ItemInputs, params: Params) -> Outcome:
    a, b = _first_number(inputs, "output"), _first_number(inputs, "expected")
    largest = max(abs(a), abs(b))
    if largest == 0.0:
        return _score(1.0, "Both numbers are 0")
    # Computed as a / largest - b / largest so that huge values of opposite sign cannot overflow.
    difference = abs(a / largest - b / largest)
    return _score(1.0 - difference, f"{a:g} vs {b:g}: relative difference {difference:.3g}")
