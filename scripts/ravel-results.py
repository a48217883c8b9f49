"""Prints the RAVEL tables of docs/history/RESULTS-sessions.md from data/results/ravel_sweep.jsonl.
    python3 scripts/ravel-results.py
"""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
runs = [json.loads(l) for l in (ROOT / "data/results/ravel_sweep.jsonl").read_text().splitlines() if l.strip()]


def fmt(v):
    return "n/a" if v is None else f"{v:.2f}"


print("### By layer (16 dims for neurons, DAS and MDAS), test split\n")
print("| layer | method | Cause | Isolate | Disentangle | val Disentangle | train s |")
print("|---|---|---|---|---|---|---|")
for r in sorted(runs, key=lambda r: (r["layer"], ["residual", "neurons", "das", "lowrank", "boundless", "mdas"].index(r["method"]), r["dims"] or 0)):
    if r["method"] != "residual" and r["dims"] != 16:
        continue
    print(f"| {r['layer']} | {r['method']} | {fmt(r['cause'])} | {fmt(r['isolate'])} | {fmt(r['disentangle'])} | "
          f"{fmt(r['val']['disentangle'])} | {r['train_seconds']:.0f} |")

print("\n### By dims (1, 4, 16, 64), DAS and MDAS, test split: Cause / Isolate / Disentangle\n")
print("| layer | method | 1 | 4 | 16 | 64 |")
print("|---|---|---|---|---|---|")
layers = sorted({r["layer"] for r in runs})
for layer in layers:
    for m in ("das", "mdas"):
        cells = []
        for d in (1, 4, 16, 64):
            r = next((r for r in runs if r["layer"] == layer and r["method"] == m and r["dims"] == d), None)
            cells.append("–" if r is None else f"{r['cause']:.2f} / {r['isolate']:.2f} / **{r['disentangle']:.2f}**")
        if any(c != "–" for c in cells):
            print(f"| {layer} | {m} | " + " | ".join(cells) + " |")

other = [r for r in runs if r["method"] in ("lowrank", "boundless")]
if other:
    print("\n### Low-rank and boundless DAS, test split\n")
    print("| layer | method | dims | Cause | Isolate | Disentangle | val Disentangle | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(other, key=lambda r: (r["layer"], r["method"])):
        print(f"| {r['layer']} | {r['method']} | {r['dims']} | {fmt(r['cause'])} | {fmt(r['isolate'])} | "
              f"{fmt(r['disentangle'])} | {fmt(r['val']['disentangle'])} | {r['train_seconds']:.0f} |")

def best_table(title, column, key, methods):
    """One row per method: the run with the highest val `key`, reported on test."""
    print(f"\n### {title}\n")
    print(f"| method | {column} | dims | Cause | Isolate | Disentangle |")
    print("|---|---|---|---|---|---|")
    for m in methods:
        cand = [r for r in runs if r["method"] == m]
        if not cand:
            continue
        best = max(cand, key=lambda r: r["val"][key])
        print(f"| {m} | {best['layer']} | {best['dims'] if best['dims'] is not None else '-'} | {fmt(best['cause'])} | "
              f"{fmt(best['isolate'])} | {fmt(best['disentangle'])} |")


best_table("Best layer per method, chosen on val, reported on test", "layer (by val Disentangle)",
           "disentangle", ["residual", "neurons", "das", "lowrank", "boundless", "mdas"])
best_table("Best Cause per method (the DAS target is Cause ≥ 0.9), chosen on val, reported on test",
           "layer", "cause", ["residual", "das", "lowrank", "boundless", "mdas"])

long_path = ROOT / "data/results/ravel_long.jsonl"
if long_path.exists():
    long_runs = [json.loads(l) for l in long_path.read_text().splitlines() if l.strip()]
    print("\n### Longer training (4× the steps, 4× the pairs), test split\n")
    print("| layer | method | dims | steps | train pairs | Cause | Isolate | Disentangle | val Cause | val Disentangle | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in long_runs:
        print(f"| {r['layer']} | {r['method']} | {r['dims']} | {r['steps']} | {r['train_pairs']} | {fmt(r['cause'])} | "
              f"{fmt(r['isolate'])} | {fmt(r['disentangle'])} | {fmt(r['val']['cause'])} | {fmt(r['val']['disentangle'])} | "
              f"{r['train_seconds']:.0f} |")
