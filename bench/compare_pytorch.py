"""The same measurements as `subspace bench`, with PyTorch + transformers (and nnsight when
installed), on the same GGUF on the same machine, alternating with the Rust runs; prints the
figures and the ratios Rust / Python.

    scripts/venv.sh scripts/requirements-ref.txt
    .venv/bin/python bench/compare_pytorch.py [--rounds 3] [--threads 2]

At the tutorial's scale, on the Llama-3.2-1B-shaped checkpoint (scripts/make-llama1b-shaped.py;
bf16 safetensors, layer 8 as in the tutorial; PyTorch computes in f32 unless --dtype bfloat16):

    .venv/bin/python bench/compare_pytorch.py --model data/models/llama-3.2-1b-shaped \
        --layer 8 --batch 8 --rounds 1 --repeats 3

The tutorial's DAS step is timed as the tutorial writes it (a `d x d` rotation, a hook, the
whole forward; and through nnsight when installed) and as the Rust step computes it
(`das_step_same_work_s`: `same_work.SameWork` on the tutorial's pair, the layers below the site
once, a `d x 1` orthogonal parametrisation).

The RAVEL recipe's step (`ravel_recipe` in `subspace bench`: few-shot prompts, the MDAS recipe's
subspace size at layer 15, batches of 32) is run by PyTorch on the very same token ids and
settings, which the Rust bench writes to --ravel-examples; PyTorch trains as pyvene does (a d x k orthogonal
parametrisation, a hook on the layer's output, the whole padded batch forward and backward each
step, the sources' vectors read once without gradients), and again as the Rust code computes
it (`ravel_recipe_same_work`, with `same_work.py`: the Rust pass, the Rust minibatch assembly
and the Rust step, in PyTorch). --skip-ravel leaves both out. `ravel_run_pytorch.py` times the
recipe's whole run (pairs, training, scoring) on both sides the same way.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "data" / "models"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BIN = ROOT / "target" / "release" / "subspace"
PARIS = "The city of Paris is in the country of"
RIO = "The city of Rio is in the country of"
CITIES = ["Paris", "Rio", "Tokyo", "Berlin", "Madrid", "Rome", "Cairo", "Lima", "Oslo", "Seoul", "Delhi",
          "Toronto", "Sydney", "Moscow", "Nairobi", "Bangkok"]
LAYER, POS = 9, 3
BATCH = 32
# Where the model comes from: the default GGUF, or a Hugging Face directory (--model).
MODEL_PATH, LOAD_KWARGS = MODEL_DIR, {"gguf_file": GGUF}
DTYPE = "float32"
RAVEL_EXAMPLES = ROOT / "target" / "bench-ravel-examples.json"
SKIP_RAVEL = False


# The rotations stay in f32 whatever the model's dtype: torch has no bf16 CPU kernels for the QR
# and matrix exponential of its orthogonal parametrisation; a bf16 model's states are cast to
# f32 for the rotation and back. (A name, not the dtype: torch is imported in the child only.)
ROTATION_DTYPE_NAME = "float32"


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def python_bench(repeats, threads):
    """Runs in a child process so that its RSS is its own."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    out = {"threads": threads, "torch": torch.__version__}
    dtype = getattr(torch, DTYPE)
    out["dtype"] = DTYPE
    out["tokenizer_s"] = median_time(lambda: AutoTokenizer.from_pretrained(MODEL_PATH, **LOAD_KWARGS), min(repeats, 3))
    out["load_s"] = median_time(
        lambda: AutoModelForCausalLM.from_pretrained(MODEL_PATH, **LOAD_KWARGS, dtype=dtype), min(repeats, 3))
    tok = AutoTokenizer.from_pretrained(MODEL_PATH, **LOAD_KWARGS)
    model = AutoModelForCausalLM.from_pretrained(MODEL_PATH, **LOAD_KWARGS, dtype=dtype).eval()
    ids = torch.tensor([tok(PARIS)["input_ids"]])
    src_ids = torch.tensor([tok(RIO)["input_ids"]])
    with torch.no_grad():
        out["forward_s"] = median_time(lambda: model(ids).logits[0, -1].softmax(-1), repeats)
        src = model(src_ids, output_hidden_states=True).hidden_states[LAYER + 1][0, POS].clone()
    out["peak_rss_load_forward_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def hook(_m, _i, o):
        hs = o[0] if isinstance(o, tuple) else o
        hs[0, POS] = src
        return o

    with torch.no_grad():
        h = model.model.layers[LAYER].register_forward_hook(hook)
        out["patched_forward_s"] = median_time(lambda: model(ids).logits[0, -1].softmax(-1), repeats)
        h.remove()

    for p in model.parameters():
        p.requires_grad_(False)
    brazil = tok(" Brazil")["input_ids"][0]
    d = model.config.hidden_size

    def das_step_fn(bases, sources, positions, targets):
        """The tutorial's training step in plain torch: rotator with torch's orthogonal
        parametrisation (matrix_exp), patch the first dimension, cross-entropy, Adam."""
        rotator = torch.nn.Linear(d, d, bias=False, dtype=getattr(torch, ROTATION_DTYPE_NAME))
        torch.nn.init.orthogonal_(rotator.weight)
        rotator = torch.nn.utils.parametrizations.orthogonal(rotator)
        opt = torch.optim.Adam(rotator.parameters())
        with torch.no_grad():
            src_vecs = torch.stack([model(torch.tensor([tok(s)["input_ids"]]), output_hidden_states=True)
                                    .hidden_states[LAYER + 1][0, p] for s, p in zip(sources, positions[1])])
        enc = tok(bases, return_tensors="pt", padding=True) if len(bases) > 1 else None
        batch_ids = enc["input_ids"] if enc is not None else torch.tensor([tok(bases[0])["input_ids"]])
        mask = enc["attention_mask"] if enc is not None else None
        pad = [int((m == 0).sum()) for m in mask] if mask is not None else [0]
        tgt = torch.tensor(targets)

        def step():
            opt.zero_grad()

            def hook(_m, _i, o):
                hs = o[0] if isinstance(o, tuple) else o
                rows = torch.arange(hs.shape[0])
                cols = torch.tensor([pad[r] + positions[0][r] for r in range(hs.shape[0])])
                base = hs[rows, cols]
                rb, rs = rotator(base.to(getattr(torch, ROTATION_DTYPE_NAME))), rotator(src_vecs.to(getattr(torch, ROTATION_DTYPE_NAME)))
                mixed = torch.cat([rs[:, :1], rb[:, 1:]], dim=1)
                patched = (mixed @ rotator.weight).to(hs.dtype)  # the true inverse of x -> x W^T
                hs = hs.clone()
                hs[rows, cols] = patched
                return (hs,) + tuple(o[1:]) if isinstance(o, tuple) else hs

            h = model.model.layers[LAYER].register_forward_hook(hook)
            logits = model(batch_ids, attention_mask=mask).logits[:, -1]
            h.remove()
            loss = torch.nn.functional.cross_entropy(logits, tgt)
            loss.backward()
            opt.step()
        return step

    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    step = das_step_fn([PARIS], [RIO], ([POS], [POS]), [brazil])
    out["das_step_s"] = median_time(step, repeats)
    row = {"base": tok(PARIS)["input_ids"], "base_position": POS, "source": tok(RIO)["input_ids"],
           "source_position": POS, "target": brazil, "weight": 1.0}
    out["das_step_same_work_s"] = same_work_step_time(model, [row], 1, 1e-3, LAYER, repeats, dtype)
    bases, sources, bpos, spos = [], [], [], []
    for i in range(BATCH):
        a, b = CITIES[i % len(CITIES)], CITIES[(i * 7 + 3) % len(CITIES)]
        for lst, plist, city in ((bases, bpos, a), (sources, spos, b)):
            text = f"The city of {city} is in the country of"
            toks = [tok.decode([t]) for t in tok(text)["input_ids"]]
            lst.append(text)
            plist.append(toks.index(" is") - 1)
    france = tok(" France")["input_ids"][0]
    step = das_step_fn(bases, sources, (bpos, spos), [france] * BATCH)
    out["ravel_step_s"] = median_time(step, min(repeats, 5))

    if not SKIP_RAVEL and RAVEL_EXAMPLES.exists():
        out["ravel_recipe"] = ravel_recipe(model, repeats, dtype)
        out["ravel_same_work"] = ravel_recipe_same_work(model, repeats, dtype)

    try:
        import nnsight  # noqa: F401
        out["nnsight_das_step_s"] = nnsight_step(tok, repeats, brazil)
        out["nnsight"] = nnsight.__version__
    except ImportError:
        out["nnsight_das_step_s"] = None
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def orthogonal_frame(d, k, lr):
    """A d x k map under torch's orthogonal parametrisation (in the rotation's dtype, started
    orthogonal) and its Adam optimiser at `lr`: the subspace the PyTorch steps train."""
    import torch

    rotate = torch.nn.Linear(d, k, bias=False, dtype=getattr(torch, ROTATION_DTYPE_NAME))
    torch.nn.init.orthogonal_(rotate.weight)
    rotate = torch.nn.utils.parametrizations.orthogonal(rotate)
    return rotate, torch.optim.Adam(rotate.parameters(), lr=lr)


def hidden_at(model, layer, pad_id, seqs, positions):
    """Block `layer`'s output at token `positions[i]` of each of `seqs` (one padded forward)."""
    import torch
    from same_work import left_padded

    ids, mask, pad = left_padded(seqs, pad_id)
    pos_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    hs = model(ids, attention_mask=mask, position_ids=pos_ids, output_hidden_states=True).hidden_states[layer + 1]
    return hs[torch.arange(len(seqs)), torch.tensor([p + q for p, q in zip(positions, pad)])]


def ravel_recipe(model, repeats, dtype):
    """The RAVEL recipe's training step on the Rust bench's examples (same token ids) with the
    Rust bench's settings (layer, k rotated dimensions, batch, Adam's rate; `subspace ravel`'s
    MDAS recipe), weighted cross-entropy."""
    import torch
    from same_work import left_padded

    recipe = json.loads(RAVEL_EXAMPLES.read_text())
    rows = recipe["examples"]
    layer, k, batch, lr = recipe["layer"], recipe["dims"], recipe["batch"], recipe["lr"]
    d = model.config.hidden_size
    pad_id = model.config.pad_token_id or model.config.eos_token_id or 0
    if isinstance(pad_id, list):
        pad_id = pad_id[0]

    batches = [rows[i:i + batch] for i in range(0, len(rows), batch)]

    def sources_once():
        with torch.no_grad():
            return [hidden_at(model, layer, pad_id, [r["source"] for r in b], [r["source_position"] for r in b])
                    for b in batches]

    once_s = median_time(sources_once, min(repeats, 3))
    sources = sources_once()
    inputs = []
    for b in batches:
        ids, mask, pad = left_padded([r["base"] for r in b], pad_id)
        cols = torch.tensor([r["base_position"] + p for r, p in zip(b, pad)])
        inputs.append((ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), cols,
                       torch.tensor([r["target"] for r in b]), torch.tensor([r["weight"] for r in b], dtype=dtype)))
    rotate, opt = orthogonal_frame(d, k, lr)
    state = {"i": 0}

    def step():
        i = state["i"] % len(inputs)
        state["i"] += 1
        ids, mask, pos_ids, cols, tgt, w = inputs[i]
        src = sources[i]
        opt.zero_grad()

        def hook(_m, _i, o):
            hs = o[0] if isinstance(o, tuple) else o
            rows_ = torch.arange(hs.shape[0])
            base = hs[rows_, cols]
            w_ = rotate.weight.to(hs.dtype)  # k x d, orthonormal rows
            patched = base + ((src - base) @ w_.T) @ w_
            hs = hs.clone()
            hs[rows_, cols] = patched
            return (hs,) + tuple(o[1:]) if isinstance(o, tuple) else hs

        h = model.model.layers[layer].register_forward_hook(hook)
        logits = model(ids, attention_mask=mask, position_ids=pos_ids).logits[:, -1]
        h.remove()
        loss = (torch.nn.functional.cross_entropy(logits, tgt, reduction="none") * w).sum() / w.sum()
        loss.backward()
        opt.step()

    # An even number of timed steps covers both batches equally often.
    step_s = median_time(step, 2 * max(1, min(repeats, 5)))
    n = len(rows)
    return {"examples": n, "once_s": once_s, "once_s_per_example": once_s / n, "step_s": step_s,
            "step_pairs_per_s": batch / step_s,
            "epoch_pairs_per_s": n / (once_s + (n / batch) * step_s)}


def ravel_recipe_same_work(model, repeats, dtype):
    """The RAVEL recipe's step as the Rust step computes it, in PyTorch (`same_work.SameWork`):
    the same examples and settings as `ravel_recipe`, but everything below the site computed
    once, then each step runs only blocks `layer`.. over each window group's columns from its
    first patched one, patches block `layer`'s output there, and takes the LM head at the last
    columns only. The subspace is the same d x k orthogonal parametrisation as `ravel_recipe`
    (Rust evaluates torch's matrix exponential on the k patched rows instead; a small part of
    either step)."""
    import torch
    from same_work import SameWork

    recipe = json.loads(RAVEL_EXAMPLES.read_text())
    rows = recipe["examples"]
    layer, k, batch, lr = recipe["layer"], recipe["dims"], recipe["batch"], recipe["lr"]
    run = SameWork(model, layer, dtype)
    batches = [list(range(i, min(i + batch, len(rows)))) for i in range(0, len(rows), batch)]
    # The Rust pass: each distinct source prompt cut after its position run to the site, each
    # distinct base prompt below the site and its keys/values above it before its first
    # patched token, shared beginnings once.
    once_s = median_time(lambda: run.cache(rows), min(repeats, 3))
    cache = run.cache(rows)
    rotate, opt = orthogonal_frame(run.d, k, lr)
    state = {"i": 0}

    def prepared(i):
        return run.prepare_batch([rows[j] for j in batches[i]], cache, batches[i])

    with torch.no_grad():
        w0 = rotate.weight.to(dtype)
        first = prepared(0)
        src0 = cache.sources[torch.tensor(batches[0])]
        check = abs(float(run.loss(first, w0)) - float(run.full_loss([rows[j] for j in batches[0]], src0, w0)))

    def step():
        """One step as the Rust step runs it: the minibatch assembled from the cached states
        (`SiteCache::batch`), then the blocks from the site up, forward and backward."""
        i = state["i"] % len(batches)
        state["i"] += 1
        opt.zero_grad()
        with torch.no_grad():
            p = prepared(i)
        loss = run.loss(p, rotate.weight.to(dtype))
        loss.backward()
        opt.step()

    step_s = median_time(step, 2 * max(1, min(repeats, 5)))
    n = len(rows)
    return {"examples": n, "once_s": once_s, "once_s_per_example": once_s / n, "step_s": step_s,
            "step_pairs_per_s": batch / step_s,
            "epoch_pairs_per_s": n / (once_s + (n / batch) * step_s),
            "loss_vs_whole_forward_abs_diff": check}


def same_work_step_time(model, rows, k, lr, layer, repeats, dtype):
    """The median time of a DAS step over `rows` (one minibatch, assembled once) as the Rust step
    computes it (`same_work.SameWork`, its pass done once beforehand): a d x k orthogonal parametrisation
    patched at block `layer`'s output, Adam at `lr`. For the tutorial's pair, the same work as
    Rust's tutorial step (`subspace bench`'s `das_step_s`: k = 1, lr 1e-3)."""
    import torch
    from same_work import SameWork

    run = SameWork(model, layer, dtype)
    cache = run.cache(rows)
    rotate, opt = orthogonal_frame(run.d, k, lr)
    # One minibatch: assembled once, as the Rust objective keeps its only minibatch.
    with torch.no_grad():
        p = run.prepare_batch(rows, cache, list(range(len(rows))))
        w0 = rotate.weight.to(dtype)
        same, whole = float(run.loss(p, w0)), float(run.full_loss(rows, cache.sources, w0))
    # f32: equal but for the order of the sums; bf16: within two of its steps (one is at most
    # 2^-7 of the value).
    tol = 1e-4 if dtype == torch.float32 else 2.0 ** -6
    assert abs(same - whole) <= tol * max(1.0, abs(whole)), f"same-work loss {same} != hooked forward {whole}"

    def step():
        opt.zero_grad()
        loss = run.loss(p, rotate.weight.to(dtype))
        loss.backward()
        opt.step()

    return median_time(step, repeats)


def nnsight_step(tok, repeats, brazil):
    """One DAS step written as the tutorial writes it, through nnsight."""
    import nnsight
    import torch

    dtype = getattr(torch, DTYPE)
    model = nnsight.LanguageModel(str(MODEL_PATH), **LOAD_KWARGS, dtype=dtype, dispatch=True)
    for p in model.parameters():
        p.requires_grad_(False)
    d = model.config.hidden_size
    # transformers 5 decoder layers return the hidden states themselves (the tutorial, written
    # for transformers 4, indexes a tuple with [0]).
    with torch.no_grad():
        with model.trace(RIO):
            source_hidden = model.model.layers[LAYER].output.save()
    rotator = torch.nn.Linear(d, d, bias=False, dtype=getattr(torch, ROTATION_DTYPE_NAME))
    torch.nn.init.orthogonal_(rotator.weight)
    rotator = torch.nn.utils.parametrizations.orthogonal(rotator)
    opt = torch.optim.Adam(rotator.parameters())
    target = torch.tensor([brazil])

    def step():
        opt.zero_grad()
        with model.trace(PARIS):
            out0 = model.model.layers[LAYER].output
            base = out0[:, POS, :].clone()
            rb, rs = rotator(base.to(getattr(torch, ROTATION_DTYPE_NAME))), rotator(source_hidden[:, POS, :].to(getattr(torch, ROTATION_DTYPE_NAME)))
            patch = (torch.cat([rs[:, :1], rb[:, 1:]], dim=1) @ rotator.weight).to(base.dtype)
            out0[:, POS, :] = patch
            logits = model.lm_head.output[:, -1, :].save()
        loss = torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        opt.step()

    return median_time(step, repeats)


def first_answer_python():
    kw = ", ".join(f"{k}={v!r}" for k, v in LOAD_KWARGS.items())
    kw = f", {kw}" if kw else ""
    code = (
        "import torch; from transformers import AutoModelForCausalLM, AutoTokenizer;"
        f"t=AutoTokenizer.from_pretrained('{MODEL_PATH}'{kw});"
        f"m=AutoModelForCausalLM.from_pretrained('{MODEL_PATH}'{kw}, dtype=torch.{DTYPE});"
        f"p=m(torch.tensor([t('{PARIS}')['input_ids']])).logits[0,-1].softmax(-1);"
        "v,i=p.topk(3); print([(t.decode([int(j)]), float(x)) for x,j in zip(v,i)])"
    )
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t


def first_answer_rust():
    t = time.perf_counter()
    subprocess.run([str(BIN), "topk", "--prompt", PARIS, "--k", "3", *model_args()], check=True, capture_output=True)
    return time.perf_counter() - t


def model_args():
    return [] if LOAD_KWARGS else ["--model", str(MODEL_PATH)]


def rust_bench(repeats, env):
    ravel = ["--skip-ravel"] if SKIP_RAVEL else ["--ravel-examples", str(RAVEL_EXAMPLES)]
    r = subprocess.run([str(BIN), "bench", "--json", "--repeats", str(repeats), "--layer", str(LAYER),
                        "--batch", str(BATCH), *ravel, *model_args()], check=True, capture_output=True, text=True, env=env)
    return json.loads(r.stdout)


def configure(args):
    """Module-level settings from the command line (the child process gets the same flags)."""
    global MODEL_PATH, LOAD_KWARGS, LAYER, BATCH, DTYPE, RAVEL_EXAMPLES, SKIP_RAVEL
    if args.model:
        MODEL_PATH, LOAD_KWARGS = Path(args.model).resolve(), {}
    LAYER, BATCH, DTYPE = args.layer, args.batch, args.dtype
    RAVEL_EXAMPLES, SKIP_RAVEL = Path(args.ravel_examples).resolve(), args.skip_ravel


def settings(args):
    out = ["--layer", str(args.layer), "--batch", str(args.batch), "--dtype", args.dtype,
           "--ravel-examples", str(args.ravel_examples)] + (["--skip-ravel"] if args.skip_ravel else [])
    return out + (["--model", args.model] if args.model else [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--model", help="a Hugging Face directory instead of the default GGUF")
    ap.add_argument("--layer", type=int, default=9)
    ap.add_argument("--batch", type=int, default=32, help="pairs in the batched DAS step")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="PyTorch's dtype")
    ap.add_argument("--skip-first-answer", action="store_true")
    ap.add_argument("--skip-ravel", action="store_true", help="leave out the RAVEL recipe step")
    ap.add_argument("--ravel-examples", default=str(ROOT / "target" / "bench-ravel-examples.json"),
                    help="where the Rust bench writes the RAVEL step's token ids for PyTorch")
    args = ap.parse_args()
    configure(args)
    if args.child:
        print(json.dumps(python_bench(args.repeats, args.threads)))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), RAYON_NUM_THREADS=str(args.threads))
    rust, py, first_rs, first_py = [], [], [], []
    for r in range(args.rounds):
        rust.append(rust_bench(args.repeats, env))
        child = subprocess.run([sys.executable, __file__, "--child", "--repeats", str(args.repeats),
                                "--threads", str(args.threads), *settings(args)],
                               capture_output=True, text=True, env=env)
        if child.returncode != 0:
            # The PyTorch side failed: show why (its output is otherwise captured and lost).
            sys.stderr.write(child.stderr[-4000:])
            child.check_returncode()
        py.append(json.loads(child.stdout.strip().splitlines()[-1]))
        if not args.skip_first_answer:
            first_rs.append(first_answer_rust())
            first_py.append(first_answer_python())
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    keys = ["load_s", "tokenizer_s", "forward_s", "patched_forward_s", "das_step_s", "ravel_step_s",
            "peak_rss_load_forward_mib", "peak_rss_mib"]
    med = lambda runs, k: statistics.median([x[k] for x in runs if x.get(k) is not None]) if any(x.get(k) is not None for x in runs) else None
    rows = []
    for k in keys:
        a, b = med(rust, k), med(py, k)
        rows.append((k, a, b, a / b if a and b else None))
    if first_rs:
        rows.append(("first_answer_s (process)", statistics.median(first_rs), statistics.median(first_py),
                     statistics.median(first_rs) / statistics.median(first_py)))
    sw = med(py, "das_step_same_work_s")
    if sw:
        rows.append(("das_step_s vs PyTorch doing the same work", med(rust, "das_step_s"), sw,
                     med(rust, "das_step_s") / sw))
    nn = med(py, "nnsight_das_step_s")
    if nn:
        rows.append(("das_step_s vs nnsight", med(rust, "das_step_s"), nn, med(rust, "das_step_s") / nn))
    for k in ["step_s", "step_pairs_per_s", "once_s_per_example", "epoch_pairs_per_s"]:
        a = med([x["ravel_recipe"] for x in rust if x.get("ravel_recipe")], k) if any(x.get("ravel_recipe") for x in rust) else None
        b = med([x["ravel_recipe"] for x in py if x.get("ravel_recipe")], k) if any(x.get("ravel_recipe") for x in py) else None
        if a is not None and b is not None:
            rows.append((f"RAVEL recipe {k}", a, b, a / b))
        c = med([x["ravel_same_work"] for x in py if x.get("ravel_same_work")], k) if any(x.get("ravel_same_work") for x in py) else None
        if a is not None and c is not None:
            rows.append((f"RAVEL recipe {k} vs PyTorch doing the same work", a, c, a / c))
    print(f"model {rust[0]['model']}, layer {LAYER}, batch {BATCH}; Rust weights {rust[0]['weights']}, "
          f"PyTorch {DTYPE}")
    print(f"| measure | Rust ({rust[0]['backend']}) | Python | Rust / Python |")
    print("|---|---|---|---|")
    for k, a, b, ratio in rows:
        fmt = lambda v: "n/a" if v is None else (f"{v:.0f}" if "mib" in k else f"{v:.4f}")
        print(f"| {k} | {fmt(a)} | {fmt(b)} | {'n/a' if ratio is None else f'{ratio:.2f}x'} |")
    print(json.dumps({"rust": rust, "python": py, "first_answer_rust": first_rs, "first_answer_python": first_py}))


if __name__ == "__main__":
    main()
