"""Config files for batches (``fi-evals run --config FILE``): JSON or YAML, read into a dict.

- ``.yaml``/``.yml``: YAML (PyYAML, the ``yaml`` extra -- also in ``server``:
  ``pip install 'fi-evals[yaml]'``), read with the safe loader;
- ``.json``, or any other name: JSON.

The top level must be a mapping with string keys; a key given twice is an error (YAML and JSON
would otherwise keep the last one silently). Which keys are allowed is the caller's business
(``fi-evals run`` checks them against its own set). Errors are ``ValueError``\\ s naming the
file, and the line and column when the parser knows them::

    evals.yaml line 4 column 3: not valid YAML (expected <block end>, but found '-')
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fi_evals._extras import require

__all__ = ["YAML_SUFFIXES", "load_config"]

YAML_SUFFIXES = (".yaml", ".yml")


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON or YAML config file (by its suffix) into a dict.

    Args:
        path: a ``.json``, ``.yaml`` or ``.yml`` file (other names are read as JSON).

    Returns:
        The top-level mapping, keys as written (not checked against any key set).

    Raises:
        ValueError: the file does not exist or cannot be read, is not valid JSON/YAML (with
            the line and column), is empty, holds something other than a mapping at the top,
            or repeats a key.
        ImportError: a YAML file without PyYAML (``pip install 'fi-evals[yaml]'``).
    """
    name = os.fspath(path)
    file = Path(name)
    is_yaml = file.suffix.lower() in YAML_SUFFIXES
    yaml = require("yaml", "yaml", f"reading the YAML config {name} (PyYAML)") if is_yaml else None
    try:
        text = file.read_text("utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"no such config file: {name!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name}: cannot read the config file ({exc})") from None
    config = _parse_yaml(yaml, text, name) if yaml is not None else _parse_json(text, file, name)
    kind = "YAML" if is_yaml else "JSON"
    if config is None:
        raise ValueError(f"{name}: the config file is empty (expected a {kind} mapping of "
                         f"settings such as \"evals\")")
    if not isinstance(config, dict):
        found = type(config).__name__
        raise ValueError(f"{name}: expected a {kind} mapping of settings (such as "
                         f"\"evals\") at the top level, found a {_kind_of(found)}")
    bad_keys = [k for k in config if not isinstance(k, str)]
    if bad_keys:
        raise ValueError(f"{name}: top-level keys must be strings, not {bad_keys[0]!r}")
    return config


def _kind_of(type_name: str) -> str:
    return {"list": "list", "str": "string", "int": "number", "float": "number",
            "bool": "boolean"}.get(type_name, type_name)


# --------------------------------------------------------------------------- JSON


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse_json(text: str, file: Path, name: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise ValueError(f"{name}: the key {exc.args[0]!r} is given twice in one object") \
            from None
    except json.JSONDecodeError as exc:
        hint = "" if file.suffix.lower() == ".json" else \
            " (a YAML config needs a .yaml or .yml name)"
        raise ValueError(f"{name} line {exc.lineno} column {exc.colno}: not valid JSON "
                         f"({exc.msg}){hint}") from None


# --------------------------------------------------------------------------- YAML


def _parse_yaml(yaml: Any, text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=_strict_loader(yaml))  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name} line {mark.line + 1} column {mark.column + 1}" if mark else name
        problem = ": ".join(p for p in (exc.context, exc.problem) if p)
        raise ValueError(f"{where}: not valid YAML ({problem or exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{name}: not valid YAML ({exc})") from None


_LOADER: Any = None


def _strict_loader(yaml: Any) -> Any:
    """A ``SafeLoader`` that refuses a key given twice in one mapping (with its line).

    Keys brought in by a merge (``<<: *defaults``) may be overridden, as YAML intends.
    """
    global _LOADER
    if _LOADER is not None:
        return _LOADER

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"the key {key!r} is given twice", key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    _LOADER = StrictLoader
    return StrictLoader
