"""Converts a Hugging Face Llama directory (config.json, *.safetensors) into a GGUF file laid out
the way llama.cpp's convert_hf_to_gguf.py and llama-quantize lay it out, since no registry package
ships llama.cpp's converter:

- tensor names `token_embd`, `blk.N.attn_q`, ...; Q and K rows permuted into llama.cpp's
  interleaved rotary layout (each head's two halves woven into adjacent pairs);
- Llama-3 rope scaling as a `rope_freqs.weight` tensor of per-frequency divisors;
- `--type q8_0`: every matrix Q8_0; `--type q4_k_m`: llama.cpp's Q4_K_M mix (Q6_K for the tied
  embedding/output matrix and for attn_v / ffn_down in the layers `use_more_bits` picks, Q4_K
  elsewhere); `--type bf16`. Norms and rope factors stay f32.

Q8_0 is quantised by gguf-py. gguf-py has no Q4_K/Q6_K quantiser, so this file has simple ones
(per-group min/max and absmax, no search for the best scale as llama-quantize does): the files
are valid K-quant files that gguf-py's dequantiser reads back, a little less accurate than
llama-quantize's. The tokenizer metadata is copied from a GGUF with the same tokenizer
(`--tokenizer-from`), since the GGUF tokenizer schema is what llama.cpp derives from it.

    .venv/bin/python scripts/hf-to-gguf.py DIR --type q4_k_m --tokenizer-from FILE.gguf --out OUT
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

QK_K = 256


def permute(w, n_head):
    """HF's half-split rotary rows -> llama.cpp's interleaved pairs (llama.cpp's `permute`)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    """The inverse of `permute`: back to HF's layout."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def f16_bytes(x):
    return x.astype(np.float16).view(np.uint8).reshape(x.shape[0], 2)


def quantize_q4_k(rows):
    """Q4_K super-blocks of 256: eight groups of 32 with 6-bit scale and min, 4-bit codes."""
    n = rows.size // QK_K
    x = rows.reshape(n, 8, 32).astype(np.float32)
    lo = np.minimum(x.min(-1), 0.0)
    scale = (x.max(-1) - lo) / 15.0
    mins = -lo
    d = (scale.max(-1) / 63.0).astype(np.float16).astype(np.float32)
    dmin = (mins.max(-1) / 63.0).astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.round(scale / d[:, None]), 0).clip(0, 63).astype(np.uint8)
        m = np.where(dmin[:, None] > 0, np.round(mins / dmin[:, None]), 0).clip(0, 63).astype(np.uint8)
        step = (d[:, None] * sc)[..., None]
        offset = (dmin[:, None] * m)[..., None]
        q = np.where(step > 0, np.round((x + offset) / step), 0).clip(0, 15).astype(np.uint8)
    scales = np.concatenate(
        [
            sc[:, :4] | ((sc[:, 4:] >> 4) << 6),
            m[:, :4] | ((m[:, 4:] >> 4) << 6),
            (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4),
        ],
        axis=-1,
    )
    q = q.reshape(n, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(n, 128)
    return np.concatenate([f16_bytes(d), f16_bytes(dmin), scales, qs], axis=-1)


def quantize_q6_k(rows):
    """Q6_K super-blocks of 256: sixteen groups of 16 with an 8-bit scale, 6-bit codes."""
    n = rows.size // QK_K
    x = rows.reshape(n, 16, 16).astype(np.float32)
    scale = np.abs(x).max(-1) / 31.0
    d = (scale.max(-1) / 127.0).astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.round(scale / d[:, None]), 0).clip(-128, 127).astype(np.int8)
        step = (d[:, None] * sc)[..., None]
        q = (np.where(step > 0, np.round(x / step), 0).clip(-32, 31) + 32).astype(np.uint8)
    q = q.reshape(n, 2, 2, 64)
    ql = ((q[:, :, 0] & 0x0F) | ((q[:, :, 1] & 0x0F) << 4)).reshape(n, 128)
    q = q.reshape(n, 2, 4, 32)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    qh = np.bitwise_or.reduce(((q >> 4) & 0x03) << shifts, axis=2).reshape(n, 64)
    return np.concatenate([ql, qh, sc.view(np.uint8), f16_bytes(d)], axis=-1)


def quantize(w, qtype):
    """Row-major bytes of `w` (rows, cols) in `qtype`."""
    if qtype == T.F32:
        return w.astype(np.float32)
    if qtype in (T.Q8_0, T.BF16):
        return gguf.quants.quantize(w.astype(np.float32), qtype)
    kernel = {T.Q4_K: quantize_q4_k, T.Q6_K: quantize_q6_k}[qtype]
    rows, cols = w.shape
    return kernel(w).reshape(rows, cols // QK_K * gguf.GGML_QUANT_SIZES[qtype][1])


def use_more_bits(i, n):
    """llama.cpp's choice of the layers whose attn_v / ffn_down get more bits."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(gguf_name, layer, n_layers, ftype):
    if gguf_name.endswith("norm.weight") or gguf_name == "rope_freqs.weight":
        return T.F32
    if ftype == "q8_0":
        return T.Q8_0
    if ftype == "bf16":
        return T.BF16
    # q4_k_m
    if gguf_name in ("output.weight", "token_embd.weight"):
        return T.Q6_K
    if gguf_name.endswith(("attn_v.weight", "ffn_down.weight")) and use_more_bits(layer, n_layers):
        return T.Q6_K
    return T.Q4_K


FILE_TYPE = {"bf16": 32, "q8_0": 7, "q4_k_m": 15}  # llama_ftype

PARTS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    """(GGUF name, layer or -1) of a HF weight name."""
    fixed = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if hf in fixed:
        return fixed[hf], -1
    layer, part = hf.removeprefix("model.layers.").split(".", 1)
    return f"blk.{layer}.{PARTS[part]}", int(layer)


def rope_scaling(cfg):
    """The rope settings: `rope_scaling` + `rope_theta` (the hub's Llama-3.2 configs) or
    transformers 5's `rope_parameters`, which holds both."""
    return cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}


def rope_theta(cfg):
    return cfg.get("rope_theta") or rope_scaling(cfg).get("rope_theta") or 10000.0


def rope_factors(cfg):
    """Llama-3 rope scaling as llama.cpp stores it: a divisor per rotary frequency."""
    scaling = rope_scaling(cfg)
    if scaling.get("rope_type", scaling.get("type")) != "llama3":
        return None
    dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    base = rope_theta(cfg)
    factor = scaling.get("factor", 8.0)
    low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    old = scaling.get("original_max_position_embeddings", 8192)
    out = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * base ** (i / dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def hf_tensors(model_dir):
    """(name, f32 array) of every weight in the directory's model*.safetensors files."""
    from safetensors import safe_open

    for path in sorted(Path(model_dir).glob("model*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name).float().numpy()


def convert(model_dir, ftype, tokenizer_from, out):
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    n_head, n_kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    n_layers = cfg["num_hidden_layers"]
    tmp = Path(str(out) + ".partial")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(Path(model_dir).name)
    w.add_file_type(FILE_TYPE[ftype])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(n_layers)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-5))
    w.add_rope_freq_base(rope_theta(cfg))

    reader = gguf.GGUFReader(tokenizer_from)
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            value = field.contents()
            w.add_key_value(key, value, field.types[0], sub_type=sub)

    factors = rope_factors(cfg)
    if factors is not None:
        w.add_tensor("rope_freqs.weight", factors)
    counts = {}
    for name, t in hf_tensors(model_dir):
        if name.endswith("rotary_emb.inv_freq"):
            continue
        g, layer = gguf_name(name)
        if g.endswith("attn_q.weight"):
            t = permute(t, n_head)
        elif g.endswith("attn_k.weight"):
            t = permute(t, n_kv)
        qtype = tensor_type(g, layer, n_layers, ftype)
        if qtype != T.F32 and (t.ndim != 2 or t.shape[1] % gguf.GGML_QUANT_SIZES[qtype][0]):
            qtype = T.F32
        data = quantize(t, qtype)
        w.add_tensor(g, data, raw_dtype=qtype)  # byte rows: gguf-py derives the shape
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.rename(out)  # never a half-written file under the final name
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--type", choices=sorted(FILE_TYPE), default="q8_0")
    ap.add_argument("--tokenizer-from", required=True, type=Path,
                    help="a GGUF file with the same tokenizer, whose tokenizer.* metadata is copied")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t = time.time()
    counts = convert(args.model_dir, args.type, args.tokenizer_from, args.out)
    size = args.out.stat().st_size / 2**20
    print(f"{args.out}: {size:.0f} MiB, tensors {counts}, {time.time() - t:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
