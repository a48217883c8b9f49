"""The RAVEL recipe's whole run (pairs, training, scoring) by the Rust CLI and by PyTorch doing
the same work, on the very same pairs, in one run; prints each phase's time, the ratios
Rust / PyTorch and both runs' scores, then one line of JSON.

    .venv/bin/python bench/ravel_run_pytorch.py [--methods das mdas] [--dtype bfloat16]

Rust runs `subspace ravel --method M --layer 15 --split-kind context --seed 0 --json
--export-pairs F` (its phases read from its progress lines). PyTorch then reads F and runs the
recipe as the Rust code computes it (`same_work.py`):

- the pass over every train pair (below the site, once per distinct prompt);
- the recipe's steps: minibatches of the trained pairs (the cause pairs for das; for mdas all
  of them, isolate pairs weighted by the recipe's isolate weight), reshuffled each epoch;
  Adam at the recipe's rate and schedule (mdas: 10 % warm-up, then linear decay) on torch's
  orthogonal parametrisation of a d x k frame (as the step bench in compare_pytorch.py);
- scoring: a pair is a hit when the patched run's most likely next token is its target; the
  train pairs from the training cache, val and test each after their own pass; on test also
  residual patching (the control), as the Rust run does.

The two runs' scores are not the same numbers (different random starts of the rotation,
different shuffles) but the same recipe: they are printed side by side as a check that the
PyTorch run trains what the Rust run trains.
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "subspace"
GGUF_DIR, GGUF = ROOT / "data" / "models", "SmolLM2-135M-Instruct.Q4_1.gguf"
ROTATION_DTYPE = "float32"
SCORING_BATCH = 128


def rust_run(method, layer, seed, pairs_file, env):
    """The Rust run, timed from outside; its phases from its `[  t s] phase` lines."""
    cmd = [str(BIN), "ravel", "--method", method, "--layer", str(layer), "--split-kind", "context",
           "--seed", str(seed), "--json", "--export-pairs", str(pairs_file)]
    t = time.perf_counter()
    r = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    out = json.loads(r.stdout.strip().splitlines()[-1])
    marks = {}
    for line in r.stderr.splitlines():
        m = re.match(r"\[\s*(\d+) s\] (.*)", line)
        if m:
            what = m.group(2)
            key = ("score_train" if what.startswith("scoring the") else "score_val" if what.startswith("scoring val")
                   else "score_test" if what.startswith("scoring test") else None)
            if key:
                marks[key] = float(m.group(1))
    steps = len(out["losses"])
    phases = {
        "train_s": out["train_seconds"],
        "pass_s": out["pass_seconds"],
        "step_s": out["steps_seconds"] / max(steps, 1),
        "score_train_s": marks["score_val"] - marks["score_train"],
        "score_val_s": marks["score_test"] - marks["score_val"],
        "score_test_s": wall - marks["score_test"],
        "total_s": wall,
    }
    return phases, out


def schedule(config, steps):
    """The learning rate's factor at each 0-based step, as `subspace::train::LrSchedule`: a
    linear warm-up over the first `warmup` fraction of the steps (from 1/(w+1) to 1), then
    constant, or linear or half-cosine to zero after the last step."""
    warmup = math.floor(config["warmup"] * steps + 0.5)

    def factor(step):
        if step < warmup:
            return (step + 1) / (warmup + 1)
        t = (step - warmup) / max(steps - warmup, 1)
        return {"constant": 1.0, "linear": 1.0 - t, "cosine": 0.5 * (1.0 + math.cos(math.pi * t))}[config["decay"]]

    return factor


def scores(rows, hits):
    cause = [h for r, h in zip(rows, hits) if r["role"] == "cause"]
    isolate = [h for r, h in zip(rows, hits) if r["role"] != "cause"]
    c = sum(cause) / max(len(cause), 1)
    i = sum(isolate) / max(len(isolate), 1)
    return {"cause": c, "isolate": i, "disentangle": (c + i) / 2}


def pytorch_run(model, exported, method, dtype, seed):
    """The recipe on `exported`'s pairs as the Rust run computes it; phase times and scores."""
    import torch
    from same_work import SameWork

    config, splits = exported["config"], exported["splits"]
    layer, k, batch, lr = config["layer"], config["dims"], config["batch"], config["lr"]
    iw = config["isolate_weight"]
    train = [dict(r, weight=1.0 if r["role"] == "cause" else iw) for r in splits["train"]]
    trained = [i for i, r in enumerate(train) if method == "mdas" or r["role"] == "cause"]
    steps = (math.ceil(config["epochs"] * len(trained) / batch) if config["epochs"] else config["steps"])
    factor = schedule(config, steps)
    run = SameWork(model, layer, dtype)
    times = {}

    t = time.perf_counter()
    cache = run.cache(train)
    times["pass_s"] = time.perf_counter() - t

    torch.manual_seed(seed)
    rotate = torch.nn.Linear(run.d, k, bias=False, dtype=getattr(torch, ROTATION_DTYPE))
    torch.nn.init.orthogonal_(rotate.weight)
    rotate = torch.nn.utils.parametrizations.orthogonal(rotate)
    opt = torch.optim.Adam(rotate.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed)
    order, losses = [], []
    t = time.perf_counter()
    for _ in range(steps):
        if len(order) < batch:
            order = [trained[i] for i in torch.randperm(len(trained), generator=shuffle).tolist()]
        which, order = order[:batch], order[batch:]
        for group in opt.param_groups:
            group["lr"] = lr * factor(len(losses))
        opt.zero_grad()
        with torch.no_grad():
            p = run.prepare_batch([train[i] for i in which], cache, which)
        loss = run.loss(p, rotate.weight.to(dtype))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    times["steps_s"] = time.perf_counter() - t
    times["step_s"] = times["steps_s"] / steps
    times["train_s"] = times["pass_s"] + times["steps_s"]

    with torch.no_grad():
        w_ = rotate.weight.to(dtype)
        subspace = lambda base, src: base + ((src - base) @ w_.T) @ w_
        residual = lambda base, src: src

        def hits(rows, cache_, patch):
            out = [False] * len(rows)
            for s in range(0, len(rows), SCORING_BATCH):
                which = list(range(s, min(s + SCORING_BATCH, len(rows))))
                p = run.prepare_batch([rows[i] for i in which], cache_, which)
                best = run.last_logits(p, patch).argmax(-1)
                for j, r in enumerate(p["order"]):
                    out[which[r]] = int(best[j]) == rows[which[r]]["target"]
            return out

        result = {}
        t = time.perf_counter()
        result["train"] = scores(train, hits(train, cache, subspace))
        times["score_train_s"] = time.perf_counter() - t
        del cache
        t = time.perf_counter()
        val = splits["val"]
        result["val"] = scores(val, hits(val, run.cache(val), subspace))
        times["score_val_s"] = time.perf_counter() - t
        t = time.perf_counter()
        test = splits["test"]
        test_cache = run.cache(test)
        result["test"] = scores(test, hits(test, test_cache, subspace))
        result["residual_test"] = scores(test, hits(test, test_cache, residual))
        times["score_test_s"] = time.perf_counter() - t
    times["total_s"] = times["train_s"] + times["score_train_s"] + times["score_val_s"] + times["score_test_s"]
    result["losses_last_10_mean"] = sum(losses[-10:]) / len(losses[-10:])
    return times, result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="+", default=["das", "mdas"], choices=["das", "mdas"])
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="PyTorch's dtype")
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), RAYON_NUM_THREADS=str(args.threads))

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(GGUF_DIR, gguf_file=GGUF, dtype=dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    # The kernel that ran is what the Rust run reports; SUBSPACE_KERNELS is only what was asked
    # (a CPU without it runs another body).
    report = {"cpu": cpu, "threads": args.threads, "torch": torch.__version__, "pytorch_dtype": args.dtype,
              "rust_kernels_asked": os.environ.get("SUBSPACE_KERNELS"), "rust_kernels": None, "runs": []}
    for method in args.methods:
        with tempfile.TemporaryDirectory() as tmp:
            pairs_file = Path(tmp) / "pairs.json"
            print(f"{method}: the Rust run", file=sys.stderr)
            rust_times, rust_out = rust_run(method, args.layer, args.seed, pairs_file, env)
            exported = json.loads(pairs_file.read_text())
        report["rust_kernels"] = rust_out.get("kernels", "unknown (a build before it was reported)")
        print(f"{method}: the PyTorch run", file=sys.stderr)
        py_times, py_out = pytorch_run(model, exported, method, dtype, args.seed)
        rust_scores = {s: {m: rust_out[s][m] for m in ("cause", "isolate", "disentangle")}
                       for s in ("train", "val")}
        rust_scores["test"] = {m: rust_out[m] for m in ("cause", "isolate", "disentangle")}
        rust_scores["residual_test"] = {m: rust_out["residual_test"][m] for m in ("cause", "isolate", "disentangle")}
        report["runs"].append({"method": method, "rust": rust_times, "pytorch": py_times,
                               "rust_scores": rust_scores, "pytorch_scores": py_out})

    print(f"CPU {cpu}, {args.threads} threads; Rust on the Q4_1 GGUF (flex, kernels {report['rust_kernels']}), PyTorch {torch.__version__} "
          f"in {args.dtype} on the same GGUF dequantised; the RAVEL recipe at layer {args.layer}, seed {args.seed}")
    print("| run | phase | Rust (s) | PyTorch same work (s) | Rust / PyTorch |")
    print("|---|---|---|---|---|")
    for r in report["runs"]:
        for key, name in [("train_s", "pairs' pass + training"), ("score_train_s", "scoring the train pairs"),
                          ("score_val_s", "val: pass + scoring"), ("score_test_s", "test: pass + scoring + control"),
                          ("total_s", "whole run")]:
            a, b = r["rust"][key], r["pytorch"][key]
            print(f"| {r['method']} | {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
        for key, name, digits in [("pass_s", "of which the pass before training", 2),
                                  ("step_s", "of which a step (mean)", 4)]:
            a, b = r["rust"][key], r["pytorch"][key]
            print(f"| {r['method']} | {name} | {a:.{digits}f} | {b:.{digits}f} | {a / b:.2f}x |")
    for r in report["runs"]:
        for side in ("rust_scores", "pytorch_scores"):
            s = r[side]
            print(f"{r['method']} {side.split('_')[0]:<7}: " + "  ".join(
                f"{split} {s[split]['cause']:.3f}/{s[split]['isolate']:.3f}/{s[split]['disentangle']:.3f}"
                for split in ("train", "val", "test", "residual_test")) + "  (cause/isolate/disentangle)")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
