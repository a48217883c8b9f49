"""Attribution patching in PyTorch, the reference for subspace's (crates/subspace/tests/attribution.rs).

    .venv/bin/python scripts/make_attribution_fixtures.py

transformers on the default GGUF (f32). The metric: log p(" Brazil") − log p(" France") at the
last token of "The city of Paris is in the country of". Every site of every layer gets a zero
tensor added by a hook (module outputs: q/k/v_proj, o_proj = the attention output, mlp, the
layer; module inputs: the layer = block input, o_proj = head outputs, down_proj = mlp_hidden);
one backward gives the metric's gradient at all of them (autograd). The source run ("... Rio ...",
same length) gives the activations; the estimate at each (layer, position) is
(a_source − a_base) · gradient, summed over the site's features (or one head's).

Written to crates/subspace/tests/fixtures/attribution.{json,safetensors}: the metric on both
runs; gradients at layers 0, 9, 23, 29, positions 3 (the city) and 8 (the last token), every
component; estimates for block_output and mlp_hidden at every (layer, position) and per head of
head_output at positions 3 and 8.
"""

import numpy as np
import torch
from safetensors.numpy import save_file

from make_fixtures import GGUF_NAME, MODEL_DIR, SUBSPACE_FIX, write_json

BASE = "The city of Paris is in the country of"
SOURCE = "The city of Rio is in the country of"
LAYERS, POSITIONS = [0, 9, 23, 29], [3, 8]


def main():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF_NAME, dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    brazil = tok.encode(" Brazil", add_special_tokens=False)[0]
    france = tok.encode(" France", add_special_tokens=False)[0]
    base = torch.tensor([tok(BASE)["input_ids"]])
    source = torch.tensor([tok(SOURCE)["input_ids"]])
    assert base.shape == source.shape

    def sites(layer):
        blk = model.model.layers[layer]
        a, m = blk.self_attn, blk.mlp
        # (component, module, on its input?)
        return [("block_input", blk, True), ("query", a.q_proj, False), ("key", a.k_proj, False),
                ("value", a.v_proj, False), ("head_output", a.o_proj, True),
                ("attention_output", a.o_proj, False), ("mlp_hidden", m.down_proj, True),
                ("mlp_output", m, False), ("block_output", blk, False)]

    def run(ids, tapped):
        """The metric, the activations at every site and (if tapped) the taps to read grads."""
        acts, taps, hooks = {}, {}, []
        for layer in range(len(model.model.layers)):
            for comp, module, on_input in sites(layer):
                key = (comp, layer)

                def pre(_m, args, kwargs, key=key):
                    x = args[0] if args else kwargs["hidden_states"]
                    acts[key] = x.detach()[0].clone()
                    if tapped:
                        taps[key] = torch.zeros_like(x, requires_grad=True)
                        x = x + taps[key]
                    if args:
                        return (x,) + tuple(args[1:]), kwargs
                    return args, {**kwargs, "hidden_states": x}

                def post(_m, _a, out, key=key):
                    t = out[0] if isinstance(out, tuple) else out
                    acts[key] = t.detach()[0].clone()
                    if tapped:
                        taps[key] = torch.zeros_like(t, requires_grad=True)
                        t = t + taps[key]
                    return (t,) + tuple(out[1:]) if isinstance(out, tuple) else t

                hooks.append(module.register_forward_pre_hook(pre, with_kwargs=True) if on_input
                             else module.register_forward_hook(post))
        try:
            logits = model(ids).logits[0, -1]
        finally:
            for h in hooks:
                h.remove()
        metric = logits[brazil] - logits[france]  # = the log-prob difference
        return metric, acts, taps

    with torch.no_grad():
        m_source, src_acts, _ = run(source, tapped=False)
    m_base, base_acts, taps = run(base, tapped=True)
    m_base.backward()
    grads = {k: t.grad[0] for k, t in taps.items()}
    n, hd = len(model.model.layers), model.config.head_dim
    tensors = {}
    for (comp, layer), g in grads.items():
        if layer in LAYERS:
            for p in POSITIONS:
                tensors[f"grad.{comp}.{layer}.{p}"] = g[p].numpy().astype(np.float32)
    prod = {k: (src_acts[k] - base_acts[k]) * grads[k] for k in grads}
    for comp in ("block_output", "mlp_hidden", "block_input", "attention_output", "mlp_output"):
        tensors[f"estimate.{comp}"] = np.array(
            [[float(prod[(comp, l)][p].sum()) for p in range(base.shape[1])] for l in range(n)], np.float32)
    for p in POSITIONS:
        tensors[f"estimate.head_output.at.{p}"] = np.array(
            [[float(prod[("head_output", l)][p, h * hd:(h + 1) * hd].sum())
              for h in range(model.config.num_attention_heads)] for l in range(n)], np.float32)
    save_file(tensors, str(SUBSPACE_FIX / "attribution.safetensors"))
    write_json(SUBSPACE_FIX / "attribution.json", {
        "base": BASE, "source": SOURCE, "target": " Brazil", "versus": " France",
        "metric_base": float(m_base), "metric_source": float(m_source),
        "layers": LAYERS, "positions": POSITIONS,
        "made_by": "scripts/make_attribution_fixtures.py (transformers on the GGUF, f32, autograd)",
    })


if __name__ == "__main__":
    main()
