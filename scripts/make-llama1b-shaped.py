"""Writes a random checkpoint of Llama-3.2-1B's shape (16 layers, hidden 2048, 32 query / 8 key-value
heads of 64, MLP 8192, Llama-3 rope scaling, tied embeddings, bf16 safetensors) with SmolLM2's
tokenizer (so vocab 49152, ~2.2 GB), and the references the Rust tests compare against:
transformers' last-position logits and a residual patch at layer 8 made with a PyTorch hook.
Then GGUF copies in Q8_0 and Q4_K_M (scripts/hf-to-gguf.py), each with its own reference:
transformers' logits on the weights gguf-py's dequantiser reads back from that file.

Llama-3.2-1B's own weights need a hub token; its shape does not. Written at test/bench time to
data/models/llama-3.2-1b-shaped/ (git-ignored), never committed; skipped if already there.

    .venv/bin/python scripts/make-llama1b-shaped.py [--out DIR]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "data" / "models"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
VERSION = 1  # bump when the checkpoint or the references change
PARIS = "The city of Paris is in the country of"
RIO = "The city of Rio is in the country of"
LAYER, POSITION = 8, 3
GGUF_TYPES = ("q8_0", "q4_k_m")


def config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=49152,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        hidden_act="silu",
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=1,
        eos_token_id=2,
        dtype="bfloat16",
    )


def last_logits(model, ids, patch=None):
    """Last-position logits; `patch = (layer, position, vector)` replaces that block output."""
    handle = None
    if patch is not None:
        layer, position, vector = patch

        def hook(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden[:, position] = vector
            return output

        handle = model.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = model(ids, output_hidden_states=True)
    finally:
        if handle is not None:
            handle.remove()
    return out.logits[0, -1].float(), out.hidden_states


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=MODEL_DIR / "llama-3.2-1b-shaped")
    args = ap.parse_args()
    write_checkpoint(args.out)
    for ftype in GGUF_TYPES:
        write_gguf_copy(args.out, ftype)


def write_checkpoint(out):
    stamp = out / "made-by.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("version") == VERSION:
        print(f"{out}: already written")
        return
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(0)
    torch.set_num_threads(2)
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF)
    tok.save_pretrained(out)
    cfg = config()
    torch.set_default_dtype(torch.bfloat16)
    model = LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    # Random norms too (not all ones), so that a wrong norm weight cannot go unnoticed.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p, dtype=torch.float32))
    model.save_pretrained(out)
    print(f"checkpoint written in {time.time() - t:.0f} s", file=sys.stderr)

    ids = {p: tok(p, return_tensors="pt").input_ids for p in (PARIS, RIO)}
    refs = {}
    # bf16 compute: what a user of the bf16 checkpoint gets from transformers.
    refs["paris_last_logits_bf16"], _ = last_logits(model, ids[PARIS])
    # f32 compute on the same (exactly widened) weights: the precise reference.
    model = model.float()
    refs["paris_last_logits"], _ = last_logits(model, ids[PARIS])
    _, rio_hidden = last_logits(model, ids[RIO])
    # hidden_states[i + 1] is block i's output.
    vector = rio_hidden[LAYER + 1][0, POSITION].clone()
    refs["patched_last_logits"], _ = last_logits(model, ids[PARIS], (LAYER, POSITION, vector))
    refs["rio_layer8_position3"] = vector.float()
    save_file({k: v.contiguous() for k, v in refs.items()}, str(out / "reference.safetensors"))
    meta = {
        "version": VERSION,
        "what": "random weights of Llama-3.2-1B's shape; SmolLM2's tokenizer",
        "prompts": {p: ids[p][0].tolist() for p in ids},
        "patch": {"layer": LAYER, "position": POSITION, "base": PARIS, "source": RIO},
        "torch": torch.__version__,
    }
    stamp.write_text(json.dumps(meta, indent=1))
    print(f"{out}: written in {time.time() - t:.0f} s")


def gguf_weights(path, cfg):
    """The HF state dict that gguf-py's dequantiser reads back from a GGUF file (rows un-permuted
    back to HF's rotary layout): an independent reading of what the Rust loader reads."""
    import gguf
    import numpy as np

    converter = load_converter()
    names = {v: k for k, v in converter.PARTS.items()}
    state = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        if t.name == "rope_freqs.weight":
            continue
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if t.name == "token_embd.weight":
            hf = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            hf = "model.norm.weight"
        else:
            _, layer, part = t.name.split(".", 2)
            hf = f"model.layers.{layer}.{names[part]}"
            if part == "attn_q.weight":
                w = converter.unpermute(w, cfg.num_attention_heads)
            elif part == "attn_k.weight":
                w = converter.unpermute(w, cfg.num_key_value_heads)
        state[hf] = torch.from_numpy(np.ascontiguousarray(w))
    return state


def load_converter():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hf_to_gguf", ROOT / "scripts" / "hf-to-gguf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_gguf_copy(out, ftype):
    """`model-FTYPE.gguf` and `reference-FTYPE.safetensors`, the reference written last (and
    renamed into place), so that its presence means both are whole."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = out / f"model-{ftype}.gguf"
    ref = out / f"reference-{ftype}.safetensors"
    if ref.exists() and path.exists():
        print(f"{path}: already written")
        return
    t = time.time()
    counts = load_converter().convert(out, ftype, MODEL_DIR / GGUF, path)
    print(f"{path}: {path.stat().st_size / 2**20:.0f} MiB {counts} in {time.time() - t:.0f} s",
          file=sys.stderr)
    torch.set_num_threads(2)
    model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    state = gguf_weights(path, model.config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok(PARIS, return_tensors="pt").input_ids
    logits, hidden = last_logits(model, ids)
    refs = {"paris_last_logits": logits, "paris_layer8_last": hidden[LAYER + 1][0, -1].float()}
    partial = ref.with_suffix(".partial")
    save_file({k: v.contiguous() for k, v in refs.items()}, str(partial))
    partial.rename(ref)
    print(f"{ref}: written in {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
