"""Fuzz the reference server from its own OpenAPI: no request may get a 5xx (issue 14, point 8).

schemathesis reads ``/openapi.json`` from a live server (real uvicorn on loopback, real SQLite)
and hypothesis draws requests for every operation, valid ones (``POSITIVE``) and ones that break
the schema (``NEGATIVE``), all sent with valid keys. Every answer goes through schemathesis'
``not_a_server_error`` check; instead of stopping at the first failure the run collects every
5xx, deduplicated by operation, status and error message, and fails listing each one with a
``curl`` command that replays it.

Three additions make the drawn requests reach past the first validation step:

- The served schema is right but generic where the server is dynamic: ``eval_name`` is any
  string and ``inputs`` any mapping, so most bodies would stop at the template lookup.
  :func:`widen` adds, next to the generic body, one body per runnable template built from the
  server's own ``get-evals/`` answer (name, input keys and kinds, the JSON schema of ``params``).
- Half of the status reads ask about stored ids (or a well-formed unknown one) instead of the
  drawn strings (:func:`draws`).
- One body in three carries a :data:`HOSTILE` value at a drawn position: the inputs the issue-14
  pass found dangerous (lone surrogates, deep nesting, huge numbers), planted deep inside an
  otherwise valid body where validators and evaluators see them.

Budget (environment variables, so that ``make fuzz`` runs the same test for longer):

- ``FI_FUZZ_EXAMPLES``: examples per operation and generation mode (``DEFAULT_EXAMPLES``);
  operations without a body or query get at most 5.
- ``FI_FUZZ_SECONDS``: a wall-clock cap on the whole run; past it nothing more is sent
  (``DEFAULT_SECONDS``).
- ``FI_FUZZ_SEED``: hypothesis' seed (``DEFAULT_SEED``): a run is reproducible.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from fi_evals import _constants as C

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup

DEFAULT_EXAMPLES = 100
DEFAULT_SECONDS = 45.0
DEFAULT_SEED = 14_2024
EXAMPLES = int(os.environ.get("FI_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
SECONDS = float(os.environ.get("FI_FUZZ_SECONDS", DEFAULT_SECONDS))
SEED = int(os.environ.get("FI_FUZZ_SEED", DEFAULT_SEED))
REQUEST_TIMEOUT_S = 30.0
SHOWN_PER_FINDING = 3
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
GET_EVAL = f"GET {C.PATH_NEW_EVAL}"
BULK_STATUS = f"POST {C.PATH_BULK_STATUS}"

# 5xx this fuzz finds that belong to still-open points of issue 14 (2: limits at the door,
# 3: no input yields a 500), as (operation, status) -> reason. While every finding is listed
# here the test xfails (strict=False) instead of failing; delete an entry when its fix lands.
KNOWN_OPEN: dict[tuple[str, int], str] = {}


# --------------------------------------------------------------------------- the schema


def _kind_schema(kind: str) -> dict[str, Any]:
    string = {"type": "string"}
    return string if kind == "string" else {"type": "array", "items": string}


def _template_body(template: Mapping[str, Any]) -> dict[str, Any]:
    """The request body of one template as JSON schema: its name, keys, kinds and params."""
    config = template["config"]
    kinds = config.get("input_kinds") or {}
    optional = config.get("optional_keys", [])
    keys = list(dict.fromkeys([*config["required_keys"], *optional]))
    required = [k for k in config["required_keys"] if k not in optional]

    def inputs(batch: bool) -> dict[str, Any]:
        def value(key: str) -> dict[str, Any]:
            one = _kind_schema(kinds.get(key, "string"))
            return {"type": "array", "items": one, "minItems": 2, "maxItems": 2} if batch else one

        return {"type": "object", "properties": {k: value(k) for k in keys},
                "required": required, "additionalProperties": False}

    params = config.get("params") or {"type": "object"}
    body = {
        "type": "object",
        "properties": {
            "eval_name": {"const": template["name"]},
            "inputs": {"anyOf": [inputs(batch=False), inputs(batch=True)]},
            "is_async": {"type": "boolean"},
            "model": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "config": {"type": "object", "properties": {"params": params},
                       "required": ["params"], "additionalProperties": False},
        },
        "required": ["eval_name", "inputs"],
        "additionalProperties": False,
    }
    if params.get("required"):
        body["required"].append("config")
    return body


def widen(spec: Mapping[str, Any], templates: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The served OpenAPI with one body per runnable template next to the generic body.

    Nothing is narrowed but ``eval_id`` of ``GET new-eval/``: served as an optional list, while
    the server reads exactly one (a list would draw empty or long lists only).
    """
    spec = copy.deepcopy(dict(spec))
    schemas = spec["components"]["schemas"]
    runnable = [t for t in templates if t["config"].get("evaluable", True)]
    schemas["NewEvalRequest"] = {"anyOf": [schemas["NewEvalRequest"],
                                           *(_template_body(t) for t in runnable)]}
    for parameter in spec["paths"][C.PATH_NEW_EVAL]["get"].get("parameters", []):
        if parameter["name"] == "eval_id":
            parameter["required"] = True
            parameter["schema"].update(minItems=1, maxItems=1)
    return spec


# --------------------------------------------------------------------------- the draws


def _nested(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = {"items": value} if i % 2 else [value]
    return value


# Values the issue-14 pass found dangerous, small enough to send by the thousand. Inputs whose
# cost grows with their size (the quadratic templates, regex bombs) are not drawn: their own
# bounded tests live with points 1 and 2.
HOSTILE = st.one_of(
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2).map(lambda s: f"a{s}b"),
    st.integers(100, 3000).map(lambda n: "[" * n + "]" * n),  # deep JSON as text
    st.integers(20, 300).map(_nested),  # deep JSON in the body (as a schema, params, inputs)
    st.sampled_from(["1e309", "-1e309", "NaN", "9" * 5000, "0." + "1" * 5000, "\x00",
                     "\u202e\u0000\r\n", "%0a%0d", "{" * 50 + '"', "(" * 40 + "a" + ")" * 40]),
)


@dataclass(frozen=True)
class Draw:
    """One request to send: a schemathesis case, plus what to change in it before sending.

    Changes are made on the request rather than on the case: schemathesis re-validates edited
    cases with a validator that cannot encode lone surrogates, and hypothesis-jsonschema folds
    ``anyOf: [{enum: ids}, {type: string}]`` into a plain string that never hits a real id.
    """

    case: Any
    ids: tuple[str, ...] | None = None
    hostile: tuple[tuple[Any, ...], Any] | None = None

    def request(self, base_url: str, keys: Mapping[str, str]) -> dict[str, Any]:
        """``requests.request`` keyword arguments for this draw."""
        kwargs = self.case.as_transport_kwargs(base_url=base_url, headers=dict(keys))
        label = self.case.operation.label
        if self.ids is not None and label == GET_EVAL:
            kwargs["params"] = {**kwargs.get("params", {}), "eval_id": list(self.ids[:1])}
        if self.ids is not None and label == BULK_STATUS and isinstance(kwargs.get("json"), dict):
            kwargs["json"] = {**kwargs["json"], "eval_ids": list(self.ids)}
        if self.hostile is not None and "json" in kwargs:
            position, value = self.hostile
            kwargs["json"] = _replace(kwargs["json"], position, value)
        return kwargs


def _positions(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every position inside a JSON value (containers and leaves), depth first."""
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, child in items:
        yield (*prefix, key)
        yield from _positions(child, (*prefix, key))


def _replace(value: Any, position: tuple[Any, ...], new: Any) -> Any:
    if not position:
        return new
    copied = copy.copy(value)
    copied[position[0]] = _replace(value[position[0]], position[1:], new)
    return copied


def draws(operation: Any, mode: GenerationMode, keys: Mapping[str, str],
          eval_ids: Sequence[str]) -> st.SearchStrategy[Draw]:
    """The requests drawn for one operation and generation mode (see the module docstring)."""
    cases = operation.as_strategy(generation_mode=mode, headers=dict(keys))
    known = st.sampled_from([*eval_ids, UNKNOWN_ID])

    @st.composite
    def draw(data: st.DrawFn) -> Draw:
        case = data(cases)
        ids = None
        if operation.label in (GET_EVAL, BULK_STATUS) and data(st.booleans()):
            ids = tuple(data(st.lists(known, min_size=1, max_size=5)))
        hostile = None
        positions = list(_positions(case.body)) if isinstance(case.body, (dict, list)) else []
        if ids is None and positions and data(st.integers(0, 2)) == 0:
            hostile = (data(st.sampled_from(positions)), data(HOSTILE))
        return Draw(case, ids, hostile)

    return draw()


# --------------------------------------------------------------------------- the run


def _curl(kwargs: Mapping[str, Any]) -> str:
    """A shell command replaying one request (the keys read from the environment)."""
    url = requests.Request(kwargs["method"], kwargs["url"],
                           params=kwargs.get("params")).prepare().url
    parts = ["curl", "-X", kwargs["method"], shlex.quote(str(url)),
             f'-H "{C.HEADER_API_KEY}: $FI_API_KEY"', f'-H "{C.HEADER_SECRET_KEY}: $FI_SECRET_KEY"']
    if "json" in kwargs:
        body = json.dumps(kwargs["json"])
        parts += ["-H 'Content-Type: application/json'", "--data-binary",
                  shlex.quote(body if len(body) < 1500 else body[:1500] + "...")]
    return " ".join(parts)


@dataclass
class Findings:
    """What the run saw: status counts per operation, and every 5xx (or request that got no
    answer) with how to replay it."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: dict[tuple[str, int, str], list[str]] = field(default_factory=dict)
    sent: int = 0

    def add_error(self, label: str, response: requests.Response | None, replay: str,
                  exc: Exception | None = None) -> None:
        """Record a 5xx answer (or, with ``exc``, no answer: status 0)."""
        if response is None:
            status, message = 0, f"no answer: {type(exc).__name__}: {exc}"[:160]
        else:
            status = response.status_code
            try:
                message = str(response.json().get("message", ""))[:160]
            except (ValueError, AttributeError):
                message = response.text[:160]
        replays = self.errors.setdefault((label, status, message), [])
        if len(replays) < SHOWN_PER_FINDING:
            replays.append(replay)

    def report(self) -> str:
        lines = [f"{len(self.errors)} distinct 5xx answer(s) in {self.sent} requests:"]
        for (label, status, message), replays in sorted(self.errors.items()):
            lines.append(f"- {label} -> {status}: {message}")
            lines += [f"    {replay}" for replay in replays]
        return "\n".join(lines)


@pytest.fixture
def fuzz_target(server_factory: Any) -> Iterator[tuple[Any, Any, list[str]]]:
    """A fresh server with a few stored evaluations, and its widened OpenAPI for schemathesis."""
    server = server_factory(access_log=False)
    keys = {C.HEADER_API_KEY: server.api_key, C.HEADER_SECRET_KEY: server.secret_key}
    with requests.Session() as session:
        served = session.get(server.url + "/openapi.json", timeout=REQUEST_TIMEOUT_S).json()
        templates = session.get(server.url + C.PATH_GET_EVALS, headers=keys,
                                timeout=REQUEST_TIMEOUT_S).json()["result"]
        stored = session.post(server.url + C.PATH_NEW_EVAL, headers=keys,
                              timeout=REQUEST_TIMEOUT_S, json={
                                  "eval_name": "is_json", "is_async": True,
                                  "inputs": {"text": ["{}", "no", "[1]"]}})
    eval_ids = [e["eval_id"] for block in stored.json()["result"] for e in block["evaluations"]]
    yield server, schemathesis.openapi.from_dict(widen(served, templates)), eval_ids


def _examples(operation: Any) -> int:
    """``EXAMPLES`` for operations with a body or query; a few for the others, whose requests
    differ only in headers."""
    return EXAMPLES if len(operation.body) or len(operation.query) else min(EXAMPLES, 5)


def run_fuzz(server: Any, schema: Any, eval_ids: Sequence[str]) -> Findings:
    """Send ``EXAMPLES`` drawn requests per operation and mode, within ``SECONDS``."""
    findings = Findings()
    keys = {C.HEADER_API_KEY: server.api_key, C.HEADER_SECRET_KEY: server.secret_key}
    stop_at = time.monotonic() + SECONDS
    operations = [result.ok() for result in schema.get_all_operations()]
    with requests.Session() as session:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for operation in operations:
                try:
                    _fuzz_one(operation, draws(operation, mode, keys, eval_ids), server.url,
                              keys, session, findings, stop_at)
                except Unsatisfiable:
                    # Nothing to break in an operation without parameters or body.
                    assert mode is GenerationMode.NEGATIVE, operation.label
    return findings


def _send(session: requests.Session, kwargs: Mapping[str, Any]) -> requests.Response:
    """Send one request; once more on a fresh connection if the pooled one was dropped.

    A server that closes a keep-alive connection after a failure (a 500 that escaped) makes
    the *next* request on it fail: that one is retried, so that a finding names the request
    that caused it. A request that gets no answer twice is a finding of its own.
    """
    try:
        return session.request(**kwargs, timeout=REQUEST_TIMEOUT_S)
    except requests.ConnectionError:
        return session.request(**kwargs, timeout=REQUEST_TIMEOUT_S)


def _fuzz_one(operation: Any, strategy: st.SearchStrategy[Draw], base_url: str,
              keys: Mapping[str, str], session: requests.Session, findings: Findings,
              stop_at: float) -> None:
    """One hypothesis run over one operation's draws, recording into ``findings``."""
    label = operation.label

    @seed(SEED)
    @settings(max_examples=_examples(operation), deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(draw=strategy)
    def send(draw: Draw) -> None:
        if time.monotonic() > stop_at:
            return  # the budget is spent: draw the rest without sending
        kwargs = draw.request(base_url, keys)
        findings.sent += 1
        try:
            response = _send(session, kwargs)
        except requests.RequestException as exc:  # no answer at all: worse than a 5xx
            findings.add_error(label, None, _curl(kwargs), exc)
            return
        findings.statuses[(label, response.status_code)] += 1
        try:
            draw.case.validate_response(response, checks=[not_a_server_error])
        except (AssertionError, FailureGroup):
            findings.add_error(label, response, _curl(kwargs))

    send()


@pytest.mark.slow
def test_no_request_gets_a_5xx(fuzz_target: tuple[Any, Any, list[str]]) -> None:
    server, schema, eval_ids = fuzz_target
    started = time.monotonic()
    findings = run_fuzz(server, schema, eval_ids)
    print(f"\nfuzz: {findings.sent} requests in {time.monotonic() - started:.1f}s "
          f"(seed {SEED}, {EXAMPLES} examples per operation and mode)")
    for (label, status), count in sorted(findings.statuses.items()):
        print(f"  {label:40} {status}: {count}")
    if findings.errors:
        print(findings.report())
    # The server still answers, and the fuzz reached the evaluators and the stored records.
    assert requests.get(server.url + C.PATH_HEALTH, timeout=REQUEST_TIMEOUT_S).status_code == 200
    for label in (f"POST {C.PATH_NEW_EVAL}", GET_EVAL, BULK_STATUS):
        assert findings.statuses[(label, 200)] > 0, (label, findings.statuses)
    open_ = {(label, status) for label, status, _ in findings.errors}
    if findings.errors and open_ <= set(KNOWN_OPEN):
        pytest.xfail("; ".join(sorted({KNOWN_OPEN[k] for k in open_})))
    assert not findings.errors, findings.report()
