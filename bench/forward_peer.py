"""One forward pass for a next-token distribution, Rust against the best plain PyTorch for that
work, alternating fresh processes; prints medians and ratios Rust / PyTorch.

    cargo build --release -p subspace --example forward_bench
    .venv/bin/python bench/forward_peer.py [--model gemma3-270m] [--rounds 5] [--repeats 20]

The work: the prompt through every block and the LM head at its last token only. PyTorch
(transformers reading the same GGUF, weights dequantised as it does) runs it under
`torch.inference_mode()` with `logits_to_keep=1`, no KV cache, SDPA attention (transformers'
default), in f32 and in bf16 (weights cast once, outside the timing). Each round runs the Rust
example and then each PyTorch variant in its own fresh process; the table gives the medians over
rounds of each process's median forward, and the peak resident memory (after load and the
forwards). The CPU is named from /proc/cpuinfo.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "target" / "release" / "examples" / "forward_bench"
GGUF = {"default": "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "gemma3-270m": "gemma-3-270m-q4_k_m.gguf"}
PROMPT = "The city of Paris is in the country of"


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def child(model, dtype, repeats, threads):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    t = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(ROOT / "data" / "models", gguf_file=GGUF[model])
    lm = AutoModelForCausalLM.from_pretrained(ROOT / "data" / "models", gguf_file=GGUF[model],
                                              dtype=torch.float32).eval()
    if dtype == "bfloat16":
        lm = lm.to(torch.bfloat16)
    load_s = time.perf_counter() - t
    ids = torch.tensor([tok(PROMPT)["input_ids"]])

    def forward():
        with torch.inference_mode():
            return lm(ids, use_cache=False, logits_to_keep=1).logits[0, -1].float()

    forward()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        forward()
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load_s": load_s, "forward_s": statistics.median(times), "peak_rss_mib": peak,
                      "tokens": ids.shape[1], "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3-270m", choices=sorted(GGUF))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    if args.child:
        child(args.model, args.child, args.repeats, args.threads)
        return
    env_threads = {"RAYON_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    import os
    env = dict(os.environ, **env_threads)
    runs = {"rust": [], "float32": [], "bfloat16": []}
    for r in range(args.rounds):
        out = subprocess.run([str(EXAMPLE), args.model, str(args.repeats), PROMPT], env=env,
                             capture_output=True, text=True, check=True)
        runs["rust"].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for dtype in ("float32", "bfloat16"):
            out = subprocess.run([sys.executable, __file__, "--model", args.model, "--child", dtype,
                                  "--repeats", str(args.repeats), "--threads", str(args.threads)],
                                 env=env, capture_output=True, text=True)
            if out.returncode != 0:
                sys.stderr.write(out.stderr[-3000:])
                out.check_returncode()
            runs[dtype].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    med = lambda side, k: statistics.median(x[k] for x in runs[side])
    rust = runs["rust"][0]
    print(f"{args.model}: {rust['tokens']} tokens, Rust weights {rust['weights']}, {args.threads} threads, "
          f"CPU {cpu_name()}, torch {runs['float32'][0]['torch']}; medians of {args.rounds} alternating rounds")
    print("| measure | Rust | PyTorch f32 | PyTorch bf16 | Rust / f32 | Rust / bf16 |")
    print("|---|---|---|---|---|---|")
    for k, unit in (("forward_s", "s"), ("peak_rss_mib", "MiB"), ("load_s", "s")):
        a, b, c = med("rust", k), med("float32", k), med("bfloat16", k)
        f = (lambda v: f"{v:.0f} {unit}") if unit == "MiB" else (lambda v: f"{v:.4f} {unit}")
        print(f"| {k} | {f(a)} | {f(b)} | {f(c)} | {a / b:.2f}x | {a / c:.2f}x |")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
