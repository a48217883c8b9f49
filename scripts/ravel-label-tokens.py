#!/usr/bin/env python3
"""How often would first-token labels misjudge a RAVEL pair? For each attribute: tokens per value
(with its leading space, as the prompts end) and the share of city pairs with *different* values
whose values start with the *same* token (a first-token score cannot tell them apart).
docs/history/RESULTS-sessions.md, "Why first-token labels". Needs .venv (transformers) and the default model:
    .venv/bin/python scripts/ravel-label-tokens.py
"""
import collections
import itertools
import json
import os

from transformers import AutoTokenizer

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tok = AutoTokenizer.from_pretrained(os.path.join(root, "data/models"), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
cities = json.load(open(os.path.join(root, "data/ravel/ravel_city_entity_attributes.json")))
print("| attribute | values | 1 / 2 / 3 / 4+ tokens | cities with a multi-token value | differing pairs sharing the first token | the collisions |")
print("| --- | --- | --- | --- | --- | --- |")
for attr in ["Country", "Continent", "Language"]:
    counts = collections.Counter(c[attr] for c in cities.values() if c.get(attr))
    ids = {v: tok.encode(" " + v, add_special_tokens=False) for v in counts}
    lengths = collections.Counter(min(len(i), 4) for i in ids.values())
    by_first = collections.defaultdict(list)
    for v, i in ids.items():
        by_first[i[0]].append(v)
    total = sum(counts.values())
    differing = total * total - sum(c * c for c in counts.values())
    shared = sum(counts[a] * counts[b] for vs in by_first.values() for a, b in itertools.permutations(vs, 2))
    multi = sum(c for v, c in counts.items() if len(ids[v]) > 1) / total
    groups = sorted((vs for vs in by_first.values() if len(vs) > 1), key=len, reverse=True)
    shown = "; ".join(f"{len(vs)} values starting '{tok.decode(ids[vs[0]][:1]).strip()}'" for vs in groups[:3]) or "none"
    print(f"| {attr} | {len(counts)} | {' / '.join(str(lengths[n]) for n in (1, 2, 3, 4))} | {multi:.2f} | "
          f"{shared / differing:.4f} | {shown} |")
