"""Reference fixtures for the model families beside Llama, made with transformers.

    .venv/bin/python scripts/make_family_fixtures.py [mistral gemma2 gemma3 gemma3-270m]

- tiny random checkpoints (safetensors + config.json + tiny-llama's tokenizer.json), written by
  transformers from a fixed seed, with their logits at every position of the fixture prompts:
  Mistral (a sliding window of 4 tokens), Gemma 2 (soft-capping, alternating windows, four norms
  per block) and Gemma 3 (QK-norm, local and global rotary bases, linear scaling on the global
  layers, `query_pre_attn_scalar` unlike the head width);
- the real Gemma-3-270M (scripts/fetch-model.sh gemma3-270m), as transformers reads its GGUF:
  token ids of the tokenizer strings, last-position logits (a fixed subset of ids and the
  log-sum-exp over the whole vocabulary) of the prompts and of one prompt longer than the
  sliding window, and patches at every site made with PyTorch hooks.

Everything written is an independent reference: the Rust code is compared against it.
"""

import sys

import numpy as np
import torch
from safetensors.numpy import save_file

from make_fixtures import (LLAMA_FIX, MODEL_DIR, PROMPTS, TOKENIZER_STRINGS, block_output_patched, tiny_logits,
                           two_patches, write_json)

GEMMA_GGUF = "gemma-3-270m-q4_k_m.gguf"


def tiny_family(family):
    """A tiny random checkpoint of `family` and its logits at every position."""
    import transformers
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast.from_pretrained(LLAMA_FIX / "tiny-llama")
    common = dict(vocab_size=fast.vocab_size, hidden_size=64, intermediate_size=128,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6,
                  max_position_embeddings=256)
    if family == "mistral":
        config = transformers.MistralConfig(**common, num_hidden_layers=2, sliding_window=4,
                                            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                                            tie_word_embeddings=False)
        model_cls = transformers.MistralForCausalLM
    elif family == "gemma2":
        config = transformers.Gemma2Config(
            **common, num_hidden_layers=3, sliding_window=4, query_pre_attn_scalar=24,
            # Caps small enough to bite on a tiny random model (the real ones: 50 and 30).
            attn_logit_softcapping=1.5, final_logit_softcapping=3.0,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)
        model_cls = transformers.Gemma2ForCausalLM
    elif family == "gemma3":
        config = transformers.Gemma3TextConfig(
            **common, num_hidden_layers=3, sliding_window=4, query_pre_attn_scalar=24,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
            },
            hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)
        model_cls = transformers.Gemma3ForCausalLM
    else:
        raise ValueError(family)
    out = LLAMA_FIX / f"tiny-{family}"
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    torch.manual_seed(0)
    model = model_cls(config).eval()
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


# The real Gemma 3: a prompt longer than its 512-token window, and the sites patched.
LONG_PROMPT = "the quick brown fox jumps over the lazy dog " * 64 + "The city of Paris is in the country of"
BASE = "The city of Paris is in the country of"
SOURCE = "The city of Tokyo is in the country of"


def gemma3_270m():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GEMMA_GGUF)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GEMMA_GGUF, dtype=torch.float32).eval()
    out = LLAMA_FIX / "gemma3-270m"
    out.mkdir(parents=True, exist_ok=True)
    tokens = [{"text": s, "ids": tok(s)["input_ids"]} for s in TOKENIZER_STRINGS + PROMPTS]

    # A fixed subset of the vocabulary read at every compared run: 512 random ids, and each
    # run's own top 64 are checked to be among the model's top (the test reads the ids).
    rng = np.random.default_rng(0)
    subset = np.sort(rng.choice(model.config.vocab_size, 512, replace=False))
    tensors, runs = {}, []

    def record(name, logits, text, **extra):
        logits = logits.float()
        tensors[f"{name}.subset"] = logits[subset].numpy().astype(np.float32)
        top = torch.topk(logits, 16)
        tensors[f"{name}.top_values"] = top.values.numpy().astype(np.float32)
        runs.append({"name": name, "prompt": text, "lse": float(torch.logsumexp(logits, 0)),
                     "top_ids": top.indices.tolist(), **extra})

    with torch.no_grad():
        for i, p in enumerate(PROMPTS + [LONG_PROMPT]):
            ids = tok(p)["input_ids"]
            record(f"prompt.{i}", model(torch.tensor([ids])).logits[0, -1], p, n_tokens=len(ids))

        base_ids = torch.tensor([tok(BASE)["input_ids"]])
        src_ids = torch.tensor([tok(SOURCE)["input_ids"]])
        pieces = tok.convert_ids_to_tokens(base_ids[0])
        city = pieces.index("\u2581Paris")
        assert tok.convert_ids_to_tokens(src_ids[0])[city] == "\u2581Tokyo"
        hd = model.config.head_dim
        patches = []
        for layer in (3, 5):  # a sliding-window layer (local rotary base) and a global one
            blk = model.model.layers[layer]
            attn, mlp = blk.self_attn, blk.mlp
            # (site, module, reads its input?, head): the vectors the Rust sites name.
            # The query at the city only changes the city's own attention output (a faint
            # effect at the last token); the last token's query changes what it reads.
            cases = [
                ("block_input", blk, True, None),
                ("query", attn.q_proj, False, 1),
                ("key", attn.k_proj, False, 0),
                ("value", attn.v_proj, False, 0),
                ("head_output", attn.o_proj, True, 2),
                # What joins the stream: after Gemma's post-attention / post-feedforward norms.
                ("attention_output", blk.post_attention_layernorm, False, None),
                ("mlp_hidden", mlp.down_proj, True, None),
                ("mlp_output", blk.post_feedforward_layernorm, False, None),
                ("block_output", blk, False, None),
            ]
            for site, module, on_input, head in cases:
                position = base_ids.shape[1] - 1 if site == "query" else city
                sl = slice(None) if head is None else slice(head * hd, (head + 1) * hd)
                kept = {}

                def read_in(_m, args, kwargs):
                    x = args[0] if args else kwargs["hidden_states"]
                    kept["v"] = x[0, position, sl].clone()

                def read_out(_m, _a, o):
                    o = o[0] if isinstance(o, tuple) else o
                    kept["v"] = o[0, position, sl].clone()

                def write_in(_m, args, kwargs):
                    if args:
                        x = args[0].clone()
                        x[0, position, sl] = kept["v"]
                        return (x,) + tuple(args[1:]), kwargs
                    x = kwargs["hidden_states"].clone()
                    x[0, position, sl] = kept["v"]
                    return args, {**kwargs, "hidden_states": x}

                def write_out(_m, _a, o):
                    t = (o[0] if isinstance(o, tuple) else o).clone()
                    t[0, position, sl] = kept["v"]
                    return (t,) + tuple(o[1:]) if isinstance(o, tuple) else t

                if on_input:
                    h = module.register_forward_pre_hook(read_in, with_kwargs=True)
                else:
                    h = module.register_forward_hook(read_out)
                model(src_ids)
                h.remove()
                if on_input:
                    h = module.register_forward_pre_hook(write_in, with_kwargs=True)
                else:
                    h = module.register_forward_hook(write_out)
                try:
                    logits = model(base_ids).logits[0, -1]
                finally:
                    h.remove()
                name = f"patch.{site}.{layer}"
                record(name, logits, BASE, site=site, layer=layer, head=head, position=position)
                patches.append(name)

        # The attention pattern of the base prompt at layer 3 (eager attention).
        model.config._attn_implementation = "eager"
        for blk in model.model.layers:
            blk.self_attn.config._attn_implementation = "eager"
        tensors["pattern.3"] = model(base_ids, output_attentions=True).attentions[3][0].numpy().astype(np.float32)
        # The tutorial's residual patch on Gemma (subspace::tutorial::Setting::gemma3_270m): the
        # city's block output, "Paris is a city in the country of" <- "Rio ...", every layer.
        t_base = torch.tensor([tok("Paris is a city in the country of")["input_ids"]])
        t_src = torch.tensor([tok("Rio is a city in the country of")["input_ids"]])
        brazil = tok.encode(" Brazil", add_special_tokens=False)
        assert len(brazil) == 1
        sweep = []
        for blk in model.model.layers:
            patched = block_output_patched(model, blk, t_base, t_src, 1)
            sweep.append(float(patched.softmax(-1)[brazil[0]]))
    clean = next(r for r in runs if r["prompt"] == BASE)
    tensors["subset_ids"] = subset.astype(np.float32)
    save_file(tensors, str(out / "expected.safetensors"))
    write_json(out / "expected.json", {
        "model": GEMMA_GGUF, "source": SOURCE, "base": BASE, "tokens": tokens, "runs": runs,
        "clean": clean["name"], "patches": patches, "tutorial_residual_brazil_by_layer": sweep,
        "made_by": "scripts/make_family_fixtures.py gemma3-270m (transformers reading the GGUF, f32)",
    })


def family_gguf(family):
    """tiny-{family} (Qwen 2, Qwen 3 or Gemma 2) written as an f32 GGUF the way llama.cpp's
    converter lays it out for that architecture (no Q/K permutation: ggml rotates their halves;
    q/k/v biases as `attn_*.bias`, per-head norms as `attn_q_norm` / `attn_k_norm`; Gemma's four
    norms with their 1 added, its caps and window as metadata), with tiny-llama's byte-level BPE
    as `tokenizer.ggml.*`; and the reference logits (see below for which transformers run)."""
    import json

    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = LLAMA_FIX / f"tiny-{family}"
    out = LLAMA_FIX / f"tiny-{family}-gguf"
    out.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((src / "config.json").read_text())
    tok = json.loads((src / "tokenizer.json").read_text())
    from safetensors.numpy import load_file
    weights = load_file(str(src / "model.safetensors"))
    w = gguf.GGUFWriter(str(out / "model.gguf"), family)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    gemma = family == "gemma2"
    if gemma:
        w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
        w.add_sliding_window(cfg["sliding_window"])
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    special = {a["content"] for a in tok["added_tokens"] if a["special"]}
    w.add_token_types([3 if t in special else 1 for t, _ in vocab])
    w.add_token_merges([" ".join(m) for m in tok["model"]["merges"]])
    w.add_eos_token_id(0)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    parts = {"input_layernorm": "attn_norm",
             "post_attention_layernorm": "post_attention_norm" if gemma else "ffn_norm",
             "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
             "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for name, t in weights.items():
        if name in names:
            gname = names[name]
        else:
            rest = name.removeprefix("model.layers.")
            layer, part = rest.split(".", 1)
            part, kind = part.rsplit(".", 1)
            gname = f"blk.{layer}.{parts[part]}.{kind}"
        if gemma and name.endswith("norm.weight"):
            t = t + 1  # llama.cpp's converter stores Gemma's norm scales as 1 + w
        w.add_tensor(gname, t.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if family == "qwen2":
        tk = AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")
        model = AutoModelForCausalLM.from_pretrained(out, gguf_file="model.gguf", dtype=torch.float32).eval()
    elif gemma:
        # transformers 5.24 reads no caps from a gemma2 GGUF, and a GGUF has no
        # query_pre_attn_scalar: llama.cpp scales scores by head_dim^-1/2. The reference is the
        # source checkpoint with that scale, which is what the file means.
        tk = AutoTokenizer.from_pretrained(src)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32,
                                                     query_pre_attn_scalar=cfg["head_dim"]).eval()
    else:
        # transformers 5.24 reads no head width from a qwen3 GGUF (`key_length` is not
        # mapped; it assumes 128), so the reference is the checkpoint the file was written from.
        tk = AutoTokenizer.from_pretrained(src)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    tensors, meta = tiny_logits(model, tk)
    save_file(tensors, str(out / "expected_logits.safetensors"))
    write_json(out / "expected.json", meta)


if __name__ == "__main__":
    torch.set_num_threads(2)
    which = sys.argv[1:] or ["mistral", "gemma2", "gemma3", "gemma3-270m", "qwen2-gguf", "qwen3-gguf",
                             "gemma2-gguf"]
    for w in which:
        if w == "gemma3-270m":
            gemma3_270m()
        elif w.endswith("-gguf"):
            family_gguf(w.removesuffix("-gguf"))
        else:
            tiny_family(w)
