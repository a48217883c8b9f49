#!/usr/bin/env python3
"""Checks the shape of the source tree that no compiler checks (issue 43's targets):

- no import circle between the files of a crate: `use crate::…`, `super::…` and paths written
  in the code are resolved, through `pub use` re-exports, to the file that defines the name,
  and the file graph must have no cycle (a parent's `mod child;` is not an edge);
- no non-test source file longer than 600 lines (a file's `#[cfg(test)] mod tests` block is
  not counted);
- every dependency between workspace crates points down the stack
  formats -> kernels -> llama -> subspace -> cli.

Prints what it finds and exits 1 on any violation. Usage: scripts/check-structure.py [ROOT]
"""

import re
import sys
from pathlib import Path

STACK = ["formats", "kernels", "llama", "subspace", "cli"]
MAX_LINES = 600
ITEM = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:unsafe\s+)?(?:const\s+fn|async\s+fn|fn|struct|enum|trait|type|const|static|mod|macro_rules!|union)\s+([A-Za-z_][A-Za-z0-9_]*)",
    re.M,
)
MACRO_EXPORT = re.compile(r"macro_rules!\s*([A-Za-z_][A-Za-z0-9_]*)")
USE = re.compile(r"\buse\s+([^;]+);", re.S)
PATH = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def non_test(text):
    """The file without its trailing `#[cfg(test)] mod …` block(s)."""
    m = re.search(r"^#\[cfg\(test\)\]\s*\n(?:\s*#\[[^\]]*\]\s*\n)*\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text, re.M)
    return text[: m.start()] if m else text


def module_files(src):
    """{module path tuple: file} for a crate's src/ (lib.rs or main.rs is the root)."""
    mods = {}
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        mods[tuple(parts)] = f
    return mods


def expand_use(tree):
    """`a::{b, c::{d, e as f}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, s):
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:i])
                start = i + 1
        parts.append(s[start:])
        for p in parts:
            if not p:
                continue
            if "{" in p:
                head, rest = p.split("{", 1)
                walk(prefix + head, rest[: rest.rfind("}")])
            else:
                out.append(prefix + p)

    walk("", tree)
    return out


def check_crate(name, src):
    mods = module_files(src)
    text = {m: strip_comments(f.read_text()) for m, f in mods.items()}
    body = {m: non_test(t) for m, t in text.items()}
    defined = {m: set(ITEM.findall(t)) | set(MACRO_EXPORT.findall(t)) for m, t in body.items()}
    reexports = {}
    for m, t in body.items():
        for u in USE.findall(t):
            if not re.search(r"\bpub(?:\([^)]*\))?\s+use\s+" + re.escape(u.strip()[:20]), t):
                continue
            for p in expand_use(u):
                reexports.setdefault(m, {})[p.split("::")[-1]] = resolve_path(m, p)

    def locate(path_parts, depth=0):
        """The file defining `crate::path_parts`, or None."""
        if depth > 10:
            return None
        # The longest prefix that is a module file.
        for cut in range(len(path_parts), -1, -1):
            mod = tuple(path_parts[:cut])
            if mod in mods:
                rest = path_parts[cut:]
                if not rest:
                    return mod
                name = rest[0]
                if name in defined.get(mod, ()):
                    return mod
                target = reexports.get(mod, {}).get(name)
                if target is not None and target[0] == "crate":
                    return locate(list(target[1:]) + rest[1:], depth + 1)
                return mod
        return None

    edges = {m: set() for m in mods}
    for m, t in body.items():
        refs = [p for u in USE.findall(t) for p in expand_use(u)] + PATH.findall(t)
        for p in refs:
            r = resolve_path(m, p)
            if r is None or r[0] != "crate":
                continue
            target = locate(list(r[1:]))
            if target is None or target == m:
                continue
            # A child naming its ancestor module only for a name the ancestor re-exports from
            # the child itself would be a false edge; resolved above. A parent's mod decl is
            # not an edge, nor is a child naming the folder module (mod.rs) for a submodule.
            if target == m[: len(target)] and len(r) - 1 <= len(target):
                continue
            edges[m].add(target)

    problems = []
    for cycle in cycles(edges):
        files = " -> ".join(str(mods[c].relative_to(src.parent.parent.parent)) for c in cycle)
        problems.append(f"{name}: import circle: {files}")
    for m, f in mods.items():
        n = non_test(f.read_text()).count("\n")
        if n > MAX_LINES:
            problems.append(f"{name}: {f.relative_to(src.parent.parent.parent)} has {n} non-test lines (> {MAX_LINES})")
    return problems


def resolve_path(mod, path):
    """A use path seen in module `mod`, as ('crate', …) or ('ext', …)."""
    parts = path.split("::")
    if parts[0] == "crate":
        return ("crate", *parts[1:])
    base = list(mod)
    if parts[0] not in ("super", "self"):
        return ("ext", *parts)
    while parts and parts[0] in ("super", "self"):
        if parts[0] == "super":
            if not base:
                return None
            base.pop()
        parts = parts[1:]
    return ("crate", *base, *parts)


def cycles(edges):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            strong(v)
    return out


def crate_arrows(root):
    problems = []
    for name in STACK:
        manifest = root / "crates" / name / "Cargo.toml"
        if not manifest.exists():
            continue
        deps = re.findall(r"^(\w+)\s*(?:\.workspace|=\s*\{[^}]*path)", manifest.read_text(), re.M)
        for d in deps:
            if d in STACK and STACK.index(d) >= STACK.index(name):
                problems.append(f"crates: {name} depends on {d}, which is not below it")
    return problems


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    problems = crate_arrows(root)
    for name in STACK:
        src = root / "crates" / name / "src"
        if src.exists():
            problems += check_crate(name, src)
    for p in problems:
        print(p)
    print(f"structure: {len(problems)} problem(s) in {', '.join(STACK)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
