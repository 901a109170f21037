"""The template catalogue: every template's name, input keys, output type and parameters.

One catalogue, imported by the SDK (client-side checks before any request) and served by the
reference server's ``get-evals/``. Names, keys and output types of hosted templates follow
``../shared/TEMPLATES.md``. This module holds data only: the evaluators that compute the
templates live in ``fi_evals.server.evaluators``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fi_evals import _constants as C
from fi_evals._constants import SEMANTIC_MATCH_THRESHOLD
from fi_evals.protocol import TemplateConfig, TemplateInfo

__all__ = ["CATALOGUE", "CUSTOM_JUDGE", "Family", "InputKey", "Template", "get_template",
           "output_type_for", "template_names"]

Kind = Literal["string", "list"]
Family = Literal["deterministic", "local", "judge", "multimodal"]
"""``local``: computed in-process by a small bundled model (the ``models`` extra), no judge."""


@dataclass(frozen=True)
class InputKey:
    """One input key of a template.

    ``kind`` says what one item's value is: a string, or a list of strings (``context`` chunks).
    """

    name: str
    kind: Kind = "string"
    required: bool = True


@dataclass(frozen=True)
class Template:
    """A template as the catalogue describes it."""

    name: str
    description: str
    keys: tuple[InputKey, ...]
    output_type: str
    family: Family
    params: Mapping[str, Any] = field(default_factory=dict)
    """JSON schema (an ``object`` schema) of ``config.params``; empty when it takes none."""
    choices: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    eval_type_id: str | None = None

    @property
    def required_keys(self) -> tuple[str, ...]:
        """Every key the template reads (the hosted API's meaning of ``required_keys``)."""
        return tuple(k.name for k in self.keys)

    @property
    def mandatory_keys(self) -> tuple[str, ...]:
        """The keys a request must carry."""
        return tuple(k.name for k in self.keys if k.required)

    @property
    def optional_keys(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys if not k.required)

    def key(self, name: str) -> InputKey | None:
        for k in self.keys:
            if k.name == name:
                return k
        return None

    def to_info(self, *, evaluable: bool | None = None, unavailable_reason: str | None = None,
                approximation: str | None = None) -> TemplateInfo:
        """The ``get-evals/`` entry of this template.

        Args:
            evaluable: whether the server can run it (default: deterministic templates only).
            unavailable_reason: when it cannot, the one thing the operator must do.
            approximation: when a local model stands in for the LLM judge, which one.
        """
        return TemplateInfo(
            name=self.name,
            description=self.description,
            eval_tags=list(self.tags or (self.family,)),
            config=TemplateConfig(
                required_keys=list(self.required_keys),
                optional_keys=list(self.optional_keys),
                output=self.output_type,
                eval_type_id=self.eval_type_id or self.name,
                input_kinds={k.name: k.kind for k in self.keys},
                params=dict(self.params),
                choices=list(self.choices) if self.choices is not None else None,
                evaluable=self.family == "deterministic" if evaluable is None else evaluable,
                unavailable_reason=unavailable_reason,
                approximation=approximation,
            ),
        )


PASS_FAIL = "Pass/Fail"
SCORE = "score"
CHOICES = "choices"

_TEXT = (InputKey("text"),)
_OUT_EXP = (InputKey("output"), InputKey("expected"))
_REF_HYP = (InputKey("reference"), InputKey("hypothesis"))


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_CASE = {"type": "boolean", "default": False, "description": "Compare case-sensitively."}
_KEYWORDS = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
_INT = {"type": "integer", "minimum": 0}


def _det(name: str, description: str, keys: tuple[InputKey, ...], output: str,
         params: dict[str, Any] | None = None) -> Template:
    return Template(name, description, keys, output, "deterministic", params or _schema({}))


_DETERMINISTIC = (
    # Hosted names and keys.
    _det("is_json", "Passes when the text parses as JSON.", _TEXT, PASS_FAIL),
    _det("one_line", "Passes when the text holds no line break.", _TEXT, PASS_FAIL),
    _det("is_email", "Passes when the text is one syntactically valid e-mail address.",
         _TEXT, PASS_FAIL),
    _det("contains_valid_link",
         "Passes when the text holds at least one syntactically valid http(s) URL "
         "(syntax only: the server never fetches it).", _TEXT, PASS_FAIL),
    _det("fuzzy_match",
         "Sequence similarity of output and expected, 0 to 1 (case-insensitive by default).",
         _OUT_EXP, SCORE, _schema({"case_sensitive": _CASE})),
    _det("bleu_score", "Sentence BLEU (up to 4-grams, smoothed) of hypothesis against reference.",
         _REF_HYP, SCORE, _schema({"max_n": {"type": "integer", "minimum": 1, "maximum": 4,
                                             "default": 4}})),
    # fi-evals additions.
    _det("exact_match", "Passes when output equals expected (after trimming white space).",
         _OUT_EXP, PASS_FAIL,
         _schema({"case_sensitive": {**_CASE, "default": True},
                  "strip": {"type": "boolean", "default": True}})),
    _det("contains", "Passes when the text contains the keyword.", _TEXT, PASS_FAIL,
         _schema({"keyword": {"type": "string", "minLength": 1}, "case_sensitive": _CASE},
                 ("keyword",))),
    _det("contains_any", "Passes when the text contains at least one of the keywords.",
         _TEXT, PASS_FAIL, _schema({"keywords": _KEYWORDS, "case_sensitive": _CASE},
                                   ("keywords",))),
    _det("contains_all", "Passes when the text contains every keyword.", _TEXT, PASS_FAIL,
         _schema({"keywords": _KEYWORDS, "case_sensitive": _CASE}, ("keywords",))),
    _det("regex", "Passes when the pattern matches somewhere in the text (Python re syntax).",
         _TEXT, PASS_FAIL, _schema({"pattern": {"type": "string", "minLength": 1}}, ("pattern",))),
    _det("starts_with", "Passes when the text starts with the substring.", _TEXT, PASS_FAIL,
         _schema({"substring": {"type": "string", "minLength": 1}, "case_sensitive": _CASE},
                 ("substring",))),
    _det("ends_with", "Passes when the text ends with the substring.", _TEXT, PASS_FAIL,
         _schema({"substring": {"type": "string", "minLength": 1}, "case_sensitive": _CASE},
                 ("substring",))),
    _det("length_less_than", "Passes when the text has fewer than max_length characters.",
         _TEXT, PASS_FAIL, _schema({"max_length": _INT}, ("max_length",))),
    _det("length_greater_than", "Passes when the text has more than min_length characters.",
         _TEXT, PASS_FAIL, _schema({"min_length": _INT}, ("min_length",))),
    _det("length_between",
         "Passes when the text length lies between min_length and max_length (inclusive).",
         _TEXT, PASS_FAIL, _schema({"min_length": _INT, "max_length": _INT},
                                   ("min_length", "max_length"))),
    _det("json_schema", "Passes when the text is JSON that validates against the schema.",
         _TEXT, PASS_FAIL, _schema({"schema": {"type": "object"}}, ("schema",))),
    _det("levenshtein_similarity",
         "1 - normalised Levenshtein distance of output and expected, 0 to 1.",
         _OUT_EXP, SCORE, _schema({"case_sensitive": {**_CASE, "default": True}})),
    _det("rouge_score", "ROUGE F-measure of hypothesis against reference, 0 to 1.",
         _REF_HYP, SCORE,
         _schema({"rouge_type": {"enum": ["rouge1", "rouge2", "rougeL"], "default": "rougeL"}})),
    _det("numeric_similarity",
         "Closeness of the first number in output and expected: 1 - |a-b| / max(|a|, |b|).",
         _OUT_EXP, SCORE),
)


_LOCAL = (
    # fi-evals additions, computed by the offline sentence-embedding model (extra `models`).
    Template("embedding_similarity",
             "Cosine similarity of output and expected sentence embeddings, 0 to 1 "
             "(local model all-MiniLM-L6-v2).", _OUT_EXP, SCORE, "local", _schema({})),
    Template("semantic_list_contains",
             "Passes when the output says any (match_all: every) expected phrase, by meaning: "
             "embedding similarity of each phrase to the best span of the output.",
             (InputKey("output"), InputKey("expected", kind="list")), PASS_FAIL, "local",
             _schema({"similarity_threshold": {"type": "number", "minimum": 0, "maximum": 1,
                                               "default": SEMANTIC_MATCH_THRESHOLD},
                      "match_all": {"type": "boolean", "default": False}})),
)


def _judge(names: str, keys: tuple[InputKey, ...], output: str,
           choices: tuple[str, ...] | None = None) -> list[Template]:
    return [
        Template(n, f"Model-judged: {n.replace('_', ' ')}.", keys, output, "judge",
                 choices=choices)
        for n in names.split()
    ]


_O = InputKey("output")
_I = InputKey("input")
_I_OPT = InputKey("input", required=False)
_C = InputKey("context", kind="list")
_CONV = (InputKey("conversation"),)
_FREQ = ("never", "occasionally", "frequently", "always")

_JUDGED = [
    *_judge("content_moderation toxicity sexist data_privacy_compliance no_racial_bias "
            "no_gender_bias no_age_bias no_llm_reference no_apologies content_safety_violation "
            "no_harmful_therapeutic_guidance clinically_inappropriate_tone is_harmful_advice "
            "is_polite is_concise is_informal_tone contains_code cultural_sensitivity "
            "bias_detection is_compliant", (_O,), PASS_FAIL),
    *_judge("pii prompt_injection", (_I,), PASS_FAIL),
    *_judge("is_helpful answer_refusal task_completion is_good_summary "
            "evaluate_function_calling text_to_sql", (_I, _O), PASS_FAIL),
    *_judge("chunk_attribution", (_C, _O), PASS_FAIL),
    *_judge("groundedness detect_hallucination is_factually_consistent", (_O, _I_OPT, _C),
            PASS_FAIL),
    *_judge("ground_truth_match", (InputKey("generated_value"), InputKey("expected_value")),
            PASS_FAIL),
    *_judge("customer_agent_human_escalation", _CONV, PASS_FAIL),
    *_judge("context_adherence", (_O, _C), SCORE),
    *_judge("context_relevance", (_C, _I), SCORE),
    *_judge("chunk_utilization", (_C, _O), SCORE),
    *_judge("completeness summary_quality translation_accuracy", (_I, _O), SCORE),
    *_judge("prompt_adherence", (_I_OPT, _O), SCORE),
    *_judge("factual_accuracy", (_I_OPT, _O, _C), SCORE),
    *_judge("prompt_instruction_adherence", (_O, InputKey("prompt")), SCORE),
    *_judge("eval_ranking", (_I, _C), SCORE),
    *_judge("conversation_coherence conversation_resolution customer_agent_context_retention "
            "customer_agent_interruption_handling customer_agent_language_handling", _CONV, SCORE),
    *_judge("customer_agent_prompt_conformance", (InputKey("system_prompt"), *_CONV), SCORE),
    *_judge("tone", (_O,), CHOICES, ("neutral", "joy", "love", "fear", "surprise", "sadness",
                                     "anger", "annoyance", "confusion")),
    *_judge("customer_agent_conversation_quality", _CONV, CHOICES, ("1", "2", "3", "4", "5")),
    *_judge("customer_agent_clarification_seeking customer_agent_loop_detection "
            "customer_agent_objection_handling customer_agent_query_handling "
            "customer_agent_termination_handling", _CONV, CHOICES, _FREQ),
]


_CUSTOM_OUTPUT_TYPES = (PASS_FAIL, SCORE, CHOICES)

CUSTOM_JUDGE = Template(
    "custom_judge",
    "Model-judged against your own criteria (params: criteria, output_type Pass/Fail, score "
    "or choices, and choices for the last).",
    (_O, InputKey("input", required=False), InputKey("context", kind="list", required=False),
     InputKey("expected", required=False)),
    PASS_FAIL, "judge",
    _schema({
        "criteria": {"type": "string", "minLength": 1,
                     "maxLength": C.CUSTOM_JUDGE_MAX_CRITERIA_CHARS,
                     "description": "What the judge checks, in your words (what passes, what "
                                    "scores high, or what each choice means)."},
        "output_type": {"enum": list(_CUSTOM_OUTPUT_TYPES), "default": PASS_FAIL,
                        "description": "Pass/Fail (a verdict), score (0 to 1) or choices (labels "
                                       "from `choices`)."},
        "choices": {"type": "array", "minItems": 2, "maxItems": C.CUSTOM_JUDGE_MAX_CHOICES,
                    "uniqueItems": True, "items": {"type": "string", "minLength": 1},
                    "description": "The labels the judge picks from (output_type choices "
                                   "only)."},
        "multiple": {"type": "boolean", "default": False,
                     "description": "choices: several labels may apply (default: exactly "
                                    "one)."},
    }, ("criteria",)),
    tags=("judge", "custom"),
)
"""The rubric judge: the criteria and output type come with each request (``config.params``);
its output type is ``params["output_type"]`` (see :func:`output_type_for`)."""


def output_type_for(template: Template, params: Mapping[str, Any] | None = None,
                    output: Any = None) -> str:
    """The output type of ``template`` for these parameters: a template with an
    ``output_type`` parameter (``custom_judge``) outputs that type; without the parameters,
    the type is read from an ``output`` when one is given."""
    if "output_type" not in template.params.get("properties", {}):
        return template.output_type
    chosen = (params or {}).get("output_type")
    if isinstance(chosen, str) and chosen in _CUSTOM_OUTPUT_TYPES:
        return chosen
    if params is None and output is not None:
        if isinstance(output, list):
            return CHOICES
        if isinstance(output, (int, float)) and not isinstance(output, bool):
            return SCORE
    return template.output_type


def _mm(name: str, keys: str, output: str, list_keys: tuple[str, ...] = ()) -> Template:
    return Template(
        name, f"Multimodal or guard template {name} (listed for compatibility).",
        tuple(InputKey(k, kind="list" if k in list_keys else "string") for k in keys.split()),
        output, "multimodal",
    )


_MULTIMODAL = (
    _mm("caption_hallucination", "image caption", PASS_FAIL),
    _mm("protect_flash", "input", PASS_FAIL),
    _mm("image_instruction_adherence", "instruction images", SCORE, ("images",)),
    _mm("synthetic_image_evaluator", "image", SCORE),
    _mm("ocr_evaluation", "input_pdf json_content", SCORE),
    _mm("ASR/STT_accuracy", "audio generated_transcript", SCORE),
    _mm("TTS_accuracy", "text generated_audio", SCORE),
    _mm("audio_quality", "input_audio", SCORE),
)


class _Catalogue(Mapping[str, Template]):
    """Read-only name -> Template mapping, in a stable listing order."""

    def __init__(self, templates: list[Template]) -> None:
        self._by_name = {t.name: t for t in templates}
        if len(self._by_name) != len(templates):
            raise ValueError("duplicate template name in the catalogue")

    def __getitem__(self, name: str) -> Template:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"<Catalogue of {len(self)} templates>"


CATALOGUE: Mapping[str, Template] = _Catalogue([*_DETERMINISTIC, *_LOCAL, *_JUDGED,
                                                CUSTOM_JUDGE, *_MULTIMODAL])


def get_template(name: str) -> Template | None:
    """The catalogue's template of that name, or None."""
    return CATALOGUE.get(name)


def template_names() -> list[str]:
    return list(CATALOGUE)
