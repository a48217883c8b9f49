#!/usr/bin/env python3
"""Writes notebooks/kernel-stubs/: empty stand-ins for the crates that burn names but the
notebooks' kernel never compiles, and the [patch.crates-io] table that points cargo at them.

Why: evcxr runs rust-analyzer on the kernel's crate to infer each variable's type, and
rust-analyzer loads every package that `cargo metadata` reports. cargo metadata keeps optional
dependencies that are only named through weak features (`burn-cuda?/default` in burn-core), so it
reports 602 packages and 254 MB of sources (wgpu, CUDA, ROCm, LibTorch, turso...), of which the
kernel compiles 247 packages and 74 MB. Loading the rest cost ~20 s of every kernel start
(docs/history/BENCHMARKS-sessions.md, "The first cell, taken apart"). A stub has the real crate's name, version and
feature names but no code and no dependencies, so the whole subtree below it leaves the graph;
what is compiled is unchanged (the script checks it).

Run it after changing burn's version or the notebooks' dependencies:
    python3 scripts/make-kernel-stubs.py
It needs the crates' sources in ~/.cargo/registry (any build of the workspace fetches them).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUBS = os.path.join(ROOT, "notebooks", "kernel-stubs")
CONFIG = os.path.join(ROOT, "notebooks", ".cargo", "config.toml")
BEGIN = "# --- kernel stubs (scripts/make-kernel-stubs.py writes this table) ---"
# A subtree smaller than this is not worth a stub.
MIN_SUBTREE_BYTES = 1_000_000


def cargo(args, cwd):
    return subprocess.run(["cargo", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def host_triple():
    for line in subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout.splitlines():
        if line.startswith("host: "):
            return line.split()[1]
    sys.exit("rustc -vV printed no host triple")


def rs_bytes(manifest_path):
    total = 0
    for folder, _, files in os.walk(os.path.dirname(manifest_path)):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files if f.endswith(".rs"))
    return total


def graph(crate_dir):
    """(packages by id, resolve nodes by id, root id, set of compiled (name, version))."""
    meta = json.loads(cargo(["metadata", "--format-version", "1", "--filter-platform", host_triple()], crate_dir))
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    tree = cargo(["tree", "-e", "normal,build", "--prefix", "none", "-f", "{p}"], crate_dir)
    compiled = set()
    for line in tree.splitlines():
        name, version = line.split()[:2]
        compiled.add((name, version.lstrip("v")))
    return packages, nodes, meta["resolve"]["root"], compiled


def kernel_like_crate(tmp):
    """A crate that depends on subspace as the notebooks' first cell does."""
    os.makedirs(os.path.join(tmp, "src"))
    open(os.path.join(tmp, "src", "lib.rs"), "w").close()
    with open(os.path.join(tmp, "Cargo.toml"), "w") as f:
        f.write('[package]\nname = "kernel-graph"\nversion = "0.0.0"\nedition = "2024"\n\n')
        f.write(f'[dependencies]\nsubspace = {{ path = "{ROOT}/crates/subspace" }}\n')
    shutil.copy(os.path.join(ROOT, "Cargo.lock"), tmp)


def frontier(packages, nodes, compiled):
    """Never-compiled packages that a compiled package depends on, with their subtree's size."""
    is_compiled = lambda pid: (packages[pid]["name"], packages[pid]["version"]) in compiled
    compiled_names = {name for name, _ in compiled}
    out = {}
    for pid, node in nodes.items():
        if not is_compiled(pid):
            continue
        for dep in node["deps"]:
            target = dep["pkg"]
            if is_compiled(target) or all(k["kind"] == "dev" for k in dep["dep_kinds"]):
                continue
            # A patch replaces every version of a name: never stub a name that is compiled.
            if packages[target]["name"] in compiled_names:
                continue
            out[target] = None
    for pid in out:
        seen, stack = set(), [pid]
        while stack:
            p = stack.pop()
            if p in seen or is_compiled(p):
                continue
            seen.add(p)
            stack.extend(d["pkg"] for d in nodes[p]["deps"])
        out[pid] = sum(rs_bytes(packages[p]["manifest_path"]) for p in seen)
    return out


def write_stub(package):
    manifest = tomllib.load(open(package["manifest_path"], "rb"))
    features = set(manifest.get("features", {}))
    # An optional dependency is also a feature (unless only named as `dep:x`; harmless extra).
    tables = [manifest.get("dependencies", {})]
    tables += [t.get("dependencies", {}) for t in manifest.get("target", {}).values()]
    for table in tables:
        features.update(name for name, spec in table.items() if isinstance(spec, dict) and spec.get("optional"))
    folder = os.path.join(STUBS, package["name"])
    os.makedirs(os.path.join(folder, "src"))
    with open(os.path.join(folder, "Cargo.toml"), "w") as f:
        f.write("# An empty stand-in, never compiled: see scripts/make-kernel-stubs.py.\n")
        f.write(f'[package]\nname = "{package["name"]}"\nversion = "{package["version"]}"\nedition = "2021"\n')
        f.write("publish = false\n\n[features]\n")
        f.writelines(f'"{name}" = []\n' for name in sorted(features))
    open(os.path.join(folder, "src", "lib.rs"), "w").close()


def write_patch_table(names):
    text = open(CONFIG).read()
    if BEGIN in text:
        text = text[: text.index(BEGIN)].rstrip() + "\n"
    text += f"\n{BEGIN}\n"
    text += "# Empty stand-ins for crates burn names but the kernel never compiles, so that the kernel's\n"
    text += "# rust-analyzer does not load them (notebooks/kernel-stubs/README.md).\n[patch.crates-io]\n"
    text += "".join(f'{name} = {{ path = "kernel-stubs/{name}" }}\n' for name in sorted(names))
    tmp = CONFIG + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, CONFIG)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        kernel_like_crate(tmp)
        packages, nodes, _, compiled = graph(tmp)
        before = sum(rs_bytes(p["manifest_path"]) for p in packages.values())
        stubs = {pid: size for pid, size in frontier(packages, nodes, compiled).items() if size >= MIN_SUBTREE_BYTES}
        if os.path.isdir(STUBS):
            for entry in os.listdir(STUBS):
                if entry != "README.md":
                    shutil.rmtree(os.path.join(STUBS, entry))
        for pid in stubs:
            write_stub(packages[pid])
            print(f"stub {packages[pid]['name']} {packages[pid]['version']}: {stubs[pid] / 1e6:.1f} MB below it")
        write_patch_table(packages[pid]["name"] for pid in stubs)
        os.makedirs(os.path.join(tmp, ".cargo"))
        # The same table, with absolute paths, for the check below.
        with open(os.path.join(tmp, ".cargo", "config.toml"), "w") as f:
            f.write("[patch.crates-io]\n")
            f.writelines(f'{packages[p]["name"]} = {{ path = "{STUBS}/{packages[p]["name"]}" }}\n' for p in stubs)
        packages_after, _, _, compiled_after = graph(tmp)
        after = sum(rs_bytes(p["manifest_path"]) for p in packages_after.values())
        if compiled_after != compiled:
            sys.exit(f"the stubs changed what is compiled: {sorted(compiled ^ compiled_after)}")
        print(f"cargo metadata: {len(packages)} packages, {before / 1e6:.0f} MB of .rs -> "
              f"{len(packages_after)} packages, {after / 1e6:.0f} MB; compiled: {len(compiled)} packages, unchanged")


if __name__ == "__main__":
    main()
