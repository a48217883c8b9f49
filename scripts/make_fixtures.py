"""Reference fixtures for the Rust tests, made with the Python stack (transformers, torch, gguf).

Run from the repository root after `scripts/setup.sh` (needs the reference virtualenv):
    .venv/bin/python scripts/make_fixtures.py

Everything written here is an *independent* reference: the Rust code is compared against it,
never against its own output. Outputs are committed, so tests do not need Python.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "data" / "models"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_FIX = ROOT / "crates" / "llama" / "tests" / "fixtures"
SUBSPACE_FIX = ROOT / "crates" / "subspace" / "tests" / "fixtures"

torch.manual_seed(0)
torch.set_num_threads(2)

PROMPTS = [
    "The city of Paris is in the country of",
    "The city of Rio is in the country of",
    "The city of Paris is in the continent of",
    "The city of Paris is a city whose main language is",
    "Paris is in the country of",
    "The capital of Japan is",
    "The city of Tokyo is in the country of",
]

TOKENIZER_STRINGS = [
    "The city of Paris is in the country of",
    " Brazil",
    "Brazil",
    "  two  spaces   here",
    "\ttab\tand\nnewline\n\n",
    "12345 67 8.9 2024-11-27",
    "3.14159 and 1,000,000",
    "héllo wörld çava",
    "日本の首都は東京です",
    "Привет, мир!",
    "emoji 🙂🚀 ok",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "don't won't they're I'm we'll",
    "camelCaseWord snake_case_word kebab-case-word",
    "https://example.com/path?q=1&x=y",
    "fn main() { println!(\"hi\"); }",
    "    indented code",
    "MiXeD CaSe WORDS",
    "a",
    "",
    " ",
    "São Paulo is in the country of",
]


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
    print("wrote", path.relative_to(ROOT))


def smollm_logits_and_tokens():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF_NAME, dtype=torch.float32)
    model.eval()
    tensors, meta = {}, []
    with torch.no_grad():
        for i, p in enumerate(PROMPTS):
            ids = tok(p)["input_ids"]
            out = model(torch.tensor([ids]))
            logits = out.logits[0, -1].float().numpy()
            tensors[f"logits.{i}"] = logits.astype(np.float32)
            top = np.argsort(-logits)[:10].tolist()
            probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
            meta.append({
                "prompt": p,
                "ids": ids,
                "top10": top,
                "top10_tokens": [tok.decode([t]) for t in top],
                "top3_probs": [float(probs[t]) for t in top[:3]],
            })
    save_file(tensors, str(LLAMA_FIX / "smollm2_last_logits.safetensors"))
    write_json(LLAMA_FIX / "smollm2_logits.json", {
        "model": GGUF_NAME, "transformers": __import__("transformers").__version__,
        "torch": torch.__version__, "prompts": meta,
    })
    write_json(LLAMA_FIX / "smollm2_tokens.json", [
        {"text": s, "ids": tok(s)["input_ids"]} for s in TOKENIZER_STRINGS
    ])
    return tok, model


def residual_patch_fixture(tok, model):
    """The tutorial's residual patch, done with plain PyTorch hooks: the output of layer 9 at
    token 3 of each base prompt is replaced by the Rio prompt's."""
    layer, position = 9, 3
    source = "The city of Rio is in the country of"
    bases = [
        "The city of Paris is in the country of",
        "The city of Paris is in the continent of",
        "The city of Paris is a city whose main language is",
    ]
    with torch.no_grad():
        src_ids = torch.tensor([tok(source)["input_ids"]])
        src = model(src_ids, output_hidden_states=True).hidden_states[layer + 1][0, position].clone()
        tensors, meta = {}, []
        for i, base in enumerate(bases):
            def hook(_mod, _inp, out):
                hs = out[0] if isinstance(out, tuple) else out
                hs[0, position] = src
                return out
            h = model.model.layers[layer].register_forward_hook(hook)
            try:
                ids = tok(base)["input_ids"]
                logits = model(torch.tensor([ids])).logits[0, -1].float().numpy()
            finally:
                h.remove()
            tensors[f"patched.{i}"] = logits.astype(np.float32)
            probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
            top = np.argsort(-logits)[:5].tolist()
            meta.append({"base": base, "ids": ids, "top5": top,
                         "top5_tokens": [tok.decode([t]) for t in top],
                         "top5_probs": [float(probs[t]) for t in top]})
    SUBSPACE_FIX.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(SUBSPACE_FIX / "residual_patch_logits.safetensors"))
    write_json(SUBSPACE_FIX / "residual_patch.json", {
        "layer": layer, "position": position, "source": source, "cases": meta,
        "how": "register_forward_hook on model.model.layers[9] replacing output[0][0, 3] with the source run's hidden_states[10][0, 3]",
    })


def generation_fixture(tok, model):
    """Greedy generation with transformers' `generate`, plain and with the tutorial's residual
    patch (layer 9, token 3, from the Rio prompt) applied by a forward hook on the prompt's pass
    only: later steps see the patch through the cache, as nnsight's `generate` does."""
    layer, position, n = 9, 3, 12
    base = "The city of Paris is in the country of"
    source = "The city of Rio is in the country of"
    with torch.no_grad():
        src = model(torch.tensor([tok(source)["input_ids"]]), output_hidden_states=True)
        src = src.hidden_states[layer + 1][0, position].clone()
        ids = torch.tensor([tok(base)["input_ids"]])

        def greedy():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
            new = out[0, ids.shape[1]:].tolist()
            assert len(new) == n, new
            return new

        plain = greedy()

        def hook(_mod, _inp, out):
            hs = out[0] if isinstance(out, tuple) else out
            if hs.shape[1] > position:  # the prompt's pass, not a one-token decoding step
                hs[0, position] = src
            return out

        h = model.model.layers[layer].register_forward_hook(hook)
        try:
            patched = greedy()
        finally:
            h.remove()
    write_json(SUBSPACE_FIX / "generation.json", {
        "base": base, "source": source, "layer": layer, "position": position, "tokens": n,
        "greedy_ids": plain, "greedy_text": tok.decode(plain),
        "patched_ids": patched, "patched_text": tok.decode(patched),
        "how": "model.generate(do_sample=False, max_new_tokens=min_new_tokens=12); patched: forward hook on model.model.layers[9] replacing output[0][0, 3] with the source run's hidden_states[10][0, 3] on the prompt's pass",
    })


def inner_sites_fixture(tok, model):
    """Patches inside a block, done with plain PyTorch hooks on the modules whose inputs or
    outputs the Rust sites name: q_proj / k_proj / v_proj outputs (one head's slice), o_proj's
    input (one head's slice), down_proj's input (the MLP's hidden activation). Also the
    attention probabilities (eager attention), a span patch of a two-token city on the block
    output, and greedy generation with an edit held on every token that predicts a new one."""
    layer, position = 9, 3
    base = "The city of Paris is in the country of"
    source = "The city of Rio is in the country of"
    hd = model.config.head_dim
    attn = model.model.layers[layer].self_attn
    mlp = model.model.layers[layer].mlp
    cases = [
        # (name, module, hooks the input?, head or None)
        ("head_output", attn.o_proj, True, 4),
        ("query", attn.q_proj, False, 2),
        ("key", attn.k_proj, False, 1),
        ("value", attn.v_proj, False, 0),
        ("mlp_hidden", mlp.down_proj, True, None),
    ]
    tensors, meta = {}, []
    with torch.no_grad():
        src_ids = torch.tensor([tok(source)["input_ids"]])
        base_ids = torch.tensor([tok(base)["input_ids"]])
        clean = model(base_ids).logits[0, -1].float().numpy()
        tensors["clean"] = clean.astype(np.float32)
        for name, module, on_input, head in cases:
            captured = {}
            sl = slice(None) if head is None else slice(head * hd, (head + 1) * hd)

            def read(_m, inp, out=None):
                t = inp[0] if on_input else out
                captured["v"] = t[0, position, sl].clone()

            h = (module.register_forward_pre_hook(lambda m, i: read(m, i)) if on_input
                 else module.register_forward_hook(lambda m, i, o: read(m, i, o)))
            model(src_ids)
            h.remove()

            if on_input:
                def write(_m, inp):
                    x = inp[0].clone()
                    x[0, position, sl] = captured["v"]
                    return (x,) + tuple(inp[1:])
                h = module.register_forward_pre_hook(write)
            else:
                def write(_m, _i, out):
                    out = out.clone()
                    out[0, position, sl] = captured["v"]
                    return out
                h = module.register_forward_hook(write)
            try:
                logits = model(base_ids).logits[0, -1].float().numpy()
            finally:
                h.remove()
            tensors[f"patched.{name}"] = logits.astype(np.float32)
            meta.append({"site": name, "layer": layer, "head": head, "position": position,
                         "hook": ("forward_pre_hook on " if on_input else "forward_hook on ")
                         + type(module).__name__ + f" of layers[{layer}]",
                         "max_abs_logit_change": float(np.abs(logits - clean).max())})

        # Attention probabilities of the base prompt at the layer (eager attention).
        model.config._attn_implementation = "eager"
        for l in model.model.layers:
            l.self_attn.config._attn_implementation = "eager"
        out = model(base_ids, output_attentions=True)
        tensors["pattern"] = out.attentions[layer][0].float().numpy().astype(np.float32)
        model.config._attn_implementation = "sdpa"
        for l in model.model.layers:
            l.self_attn.config._attn_implementation = "sdpa"

        # A span: "New York" (base) <- "Rio de Janeiro" (source), last tokens aligned, on the
        # block output.
        span_base = "The city of New York is in the country of"
        span_source = "The city of Rio de Janeiro is in the country of"

        def span(text, words):
            enc = tok(text, return_offsets_mapping=True)
            start = text.index(words)
            end = start + len(words)
            return [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > start and a < end and b > a]

        bspan, sspan = span(span_base, "New York"), span(span_source, "Rio de Janeiro")
        n = min(len(bspan), len(sspan))
        bpos, spos = bspan[-n:], sspan[-n:]
        hs = model(torch.tensor([tok(span_source)["input_ids"]]), output_hidden_states=True)
        svec = hs.hidden_states[layer + 1][0, spos].clone()

        def span_hook(_m, _i, out):
            t = out[0] if isinstance(out, tuple) else out
            t[0, bpos] = svec
            return out
        h = model.model.layers[layer].register_forward_hook(span_hook)
        try:
            logits = model(torch.tensor([tok(span_base)["input_ids"]])).logits[0, -1].float().numpy()
        finally:
            h.remove()
        tensors["patched.span"] = logits.astype(np.float32)
        span_meta = {"base": span_base, "source": span_source, "base_span": bspan,
                     "source_span": sspan, "base_positions": bpos, "source_positions": spos,
                     "layer": layer, "site": "block_output"}

        # Generation with an edit held on every token that predicts a new one (the prompt's
        # last token, then each generated token): steering by adding (Rio − Paris) at the
        # block output of the layer, and replacing it by Rio's vector.
        hs_b = model(base_ids, output_hidden_states=True).hidden_states[layer + 1][0, position]
        hs_s = model(src_ids, output_hidden_states=True).hidden_states[layer + 1][0, position]
        steer = (hs_s - hs_b).clone()
        n_new = 12
        held = {}
        for name, fn in [("add", lambda t: t + steer), ("replace", lambda t: hs_s.clone())]:
            def hold(_m, _i, out, fn=fn):
                t = out[0] if isinstance(out, tuple) else out
                t[0, -1] = fn(t[0, -1])  # the prompt's last token, or the one new token
                return out
            h = model.model.layers[layer].register_forward_hook(hold)
            try:
                ids = model.generate(base_ids, attention_mask=torch.ones_like(base_ids),
                                     do_sample=False, max_new_tokens=n_new,
                                     min_new_tokens=n_new, pad_token_id=0)
            finally:
                h.remove()
            new = ids[0, base_ids.shape[1]:].tolist()
            held[name] = {"ids": new, "text": tok.decode(new)}
    save_file(tensors, str(SUBSPACE_FIX / "inner_sites_logits.safetensors"))
    write_json(SUBSPACE_FIX / "inner_sites.json", {
        "base": base, "source": source, "head_dim": hd, "cases": meta, "span": span_meta,
        "held": {"layer": layer, "position": position, "tokens": n_new, **held,
                 "how": "forward hook on model.model.layers[9] editing output[0][0, -1] on every pass of model.generate(do_sample=False): add (Rio − Paris at layer 9, token 3), or replace by Rio's"},
        "pattern": {"layer": layer, "how": "output_attentions with eager attention, [heads, seq, seq]"},
    })


def dequant_fixture():
    """A GGUF holding random blocks of every supported type, and the Python gguf package's
    dequantisation of each."""
    import gguf
    from gguf import GGMLQuantizationType as T

    rng = np.random.default_rng(7)
    # (type, byte offsets of f16 fields inside one block)
    kinds = {
        T.F32: None, T.F16: None, T.BF16: None,
        T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
        T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    }
    rows, cols = 3, 512
    writer = gguf.GGUFWriter(str(LLAMA_FIX / "dequant.gguf"), "llama")
    expected = {}
    for qt, f16_fields in kinds.items():
        name = qt.name.lower()
        if f16_fields is None:
            values = rng.standard_normal((rows, cols)).astype(np.float32)
            if qt == T.F32:
                raw = values
            elif qt == T.F16:
                raw = values.astype(np.float16)
            else:
                raw = gguf.quants.quantize(values, qt)
        else:
            block, size = gguf.GGML_QUANT_SIZES[qt]
            n_blocks = rows * cols // block
            raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
            for off in f16_fields:
                scale = (rng.standard_normal(n_blocks) * 0.05).astype(np.float16)
                raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
            raw = raw.reshape(rows, cols // block * size)
        writer.add_tensor(name, raw, raw_dtype=qt)
        deq = gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(rows, cols)
        expected[name] = deq
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(expected, str(LLAMA_FIX / "dequant_expected.safetensors"))
    print("wrote dequant fixtures")

    # The real model file: reference values for a few tensors of each type it uses.
    reader = gguf.GGUFReader(str(MODEL_DIR / GGUF_NAME))
    picks = {}
    for t in reader.tensors:
        if t.name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight", "output_norm.weight"):
            deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            flat = deq.reshape(-1)
            picks[t.name + ".head"] = flat[:4096].copy()
            picks[t.name + ".tail"] = flat[-4096:].copy()
            picks[t.name + ".sum"] = np.array([flat.astype(np.float64).sum()], dtype=np.float64)
    save_file(picks, str(LLAMA_FIX / "smollm2_dequant_samples.safetensors"))


def tiny_logits(model, fast):
    """A tiny checkpoint's logits at every position of the fixture prompts, and their ids."""
    tensors, meta = {}, []
    with torch.no_grad():
        for i, p in enumerate(PROMPTS[:4] + ["the quick brown fox jumps over the lazy dog " * 6]):
            ids = fast(p)["input_ids"]
            tensors[f"logits.{i}"] = model(torch.tensor([ids])).logits[0].float().numpy()
            meta.append({"prompt": p, "ids": ids})
    return tensors, meta


def tiny_llama():
    """A tiny random Llama in safetensors, made by transformers, with Llama-3 rope scaling and
    tied embeddings, plus its logits."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = LLAMA_FIX / "tiny-llama"
    out.mkdir(parents=True, exist_ok=True)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    corpus = [p for p in PROMPTS] + TOKENIZER_STRINGS * 3 + ["the quick brown fox jumps over the lazy dog"] * 5
    trainer = trainers.BpeTrainer(vocab_size=384, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"])
    tk.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>")
    fast.save_pretrained(out)

    config = LlamaConfig(
        vocab_size=tk.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
        rope_theta=10000.0, max_position_embeddings=256, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    model.save_pretrained(out, safe_serialization=True)
    tensors, meta = tiny_logits(model, fast)
    save_file(tensors, str(out / "expected_logits.safetensors"))
    write_json(out / "expected.json", meta)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"tiny-llama: {size / 1e6:.2f} MB")


def block_output_patched(model, block, base_ids, source_ids, position):
    """The base run's last-position logits with `block`'s output at token `position` replaced by
    the source run's there (a residual patch made with PyTorch forward hooks)."""
    kept = {}
    h = block.register_forward_hook(lambda m, a, o: kept.__setitem__("v", o[0, position].clone()))
    model(source_ids)
    h.remove()

    def put(m, a, o):
        o = o.clone()
        o[0, position] = kept["v"]
        return o
    h = block.register_forward_hook(put)
    try:
        return model(base_ids).logits[0, -1].float()
    finally:
        h.remove()


def two_patches(model, fast):
    """Two patches of a tiny checkpoint made with PyTorch hooks: block 0's output at token 2
    replaced by a source prompt's (`patch.residual`), and head 1 of layer 0's o_proj input
    (features 16..32) at token 2 (`patch.head_output`, at layer 0 so that it reaches the last
    position through layer 1's attention); each as the patched run's last-position logits."""
    out = {}
    with torch.no_grad():
        base = torch.tensor([fast("the quick brown fox jumps over")["input_ids"]])
        source = torch.tensor([fast("the lazy dog jumps over the")["input_ids"]])
        layer = model.model.layers[0]
        out["patch.residual"] = block_output_patched(model, layer, base, source, 2).numpy()
        o_proj = layer.self_attn.o_proj
        kept = {}
        h = o_proj.register_forward_pre_hook(lambda m, a: kept.__setitem__("head", a[0][0, 2, 16:32].clone()))
        model(source)
        h.remove()

        def put_head(m, a):
            x = a[0].clone()
            x[0, 2, 16:32] = kept["head"]
            return (x,)
        h = o_proj.register_forward_pre_hook(put_head)
        out["patch.head_output"] = model(base).logits[0, -1].float().numpy()
        h.remove()
    return out


def tiny_qwen(family="qwen2"):
    """A tiny random Qwen 2 (biases on q, k, v; none on o) or Qwen 3 (per-head norms of the
    queries and keys) in safetensors, made by
    transformers from a fixed seed with tiny-llama's tokenizer, plus its logits at every
    position and two patches done with PyTorch hooks: the block-0 output at token 2 replaced by a
    source prompt's (a residual patch), and head 1's input to layer 0's o_proj replaced (a
    head_output patch, at layer 0 so that it reaches the last position through layer 1's
    attention); each as the patched run's last-position logits."""
    import transformers
    from transformers import PreTrainedTokenizerFast

    name = {"qwen2": "Qwen2", "qwen3": "Qwen3"}[family]
    Config = getattr(transformers, f"{name}Config")
    Model = getattr(transformers, f"{name}ForCausalLM")
    out = LLAMA_FIX / f"tiny-{family}"
    out.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast.from_pretrained(LLAMA_FIX / "tiny-llama")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = Config(
        vocab_size=fast.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6,
        rope_theta=10000.0, max_position_embeddings=256, tie_word_embeddings=False,
        use_sliding_window=False,
    )
    model = Model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    model.save_pretrained(out, safe_serialization=True)
    tensors, meta = tiny_logits(model, fast)
    tensors.update(two_patches(model, fast))
    save_file(tensors, str(out / "expected_logits.safetensors"))
    write_json(out / "expected.json", meta)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"tiny-{family}: {size / 1e6:.2f} MB")
    # The same model in bf16 (the loader keeps bf16 weights packed, biases included), and
    # transformers' f32 logits on the bf16-rounded weights.
    out16 = LLAMA_FIX / f"tiny-{family}-bf16"
    out16.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out16)
    model.to(torch.bfloat16).save_pretrained(out16, safe_serialization=True)
    model.to(torch.float32)
    tensors, meta = tiny_logits(model, fast)
    save_file(tensors, str(out16 / "expected_logits.safetensors"))
    write_json(out16 / "expected.json", meta)


if __name__ == "__main__":
    which = set(sys.argv[1:]) or {"smollm", "dequant", "tiny", "qwen2", "qwen3", "generation", "inner"}
    if "dequant" in which:
        dequant_fixture()
    if "tiny" in which:
        tiny_llama()
    if "qwen2" in which:
        tiny_qwen("qwen2")
    if "qwen3" in which:
        tiny_qwen("qwen3")
    if "smollm" in which:
        tok, model = smollm_logits_and_tokens()
        residual_patch_fixture(tok, model)
    if which & {"generation", "inner"}:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF_NAME)
        model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF_NAME, dtype=torch.float32)
        model.eval()
        if "generation" in which:
            generation_fixture(tok, model)
        if "inner" in which:
            inner_sites_fixture(tok, model)
