"""Seed corpora for the fuzz targets, cut from real files (run from the repo root with the
project's .venv; needs the default model, scripts/fetch-model.sh).

Committed (fuzz/seeds/<target>): the dequantisation fixture (every supported tensor type), the
tiny test model's tokenizer as GGUF metadata, and files written by `subspace das --save
--checkpoint` on the tiny model.
Made from the default model (fuzz/seeds-model/<target>, git-ignored: the model is never
committed, not even in slices): SmolLM2's real header with its first tensors, the header cut at
64 KiB, and its real tokenizer metadata cut to the first 600 tokens and the merges among them
(a full vocabulary makes each run too slow to fuzz).
"""
import json
from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
MODEL_SEEDS = ROOT / "fuzz" / "seeds-model"
MODEL = ROOT / "data" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def copy_metadata(reader, writer, keep):
    for field in reader.fields.values():
        name = field.name
        if name.startswith("GGUF.") or name == "general.architecture" or not keep(name):
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            sub = field.types[1]
            vals = [field.parts[i] for i in field.data]
            if sub == gguf.GGUFValueType.STRING:
                writer.add_array(name, [bytes(v).decode("utf-8") for v in vals])
            else:
                writer.add_array(name, [v.tolist()[0] for v in vals])
        elif kind == gguf.GGUFValueType.STRING:
            writer.add_string(name, bytes(field.parts[field.data[0]]).decode("utf-8"))
        else:
            writer.add_key_value(name, field.parts[field.data[0]].tolist()[0], kind)


def tokenizer_gguf(path, tokens, merges, token_types, extra):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    for k, v in extra.items():
        if isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, int):
            w.add_uint32(k, v)
        else:
            w.add_string(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    for target in ("gguf_reader", "gguf_tokenizer"):
        (MODEL_SEEDS / target).mkdir(parents=True, exist_ok=True)
    (SEEDS / "gguf_reader" / "dequant.gguf").write_bytes(
        (ROOT / "crates/llama/tests/fixtures/dequant.gguf").read_bytes())

    r = gguf.GGUFReader(str(MODEL))
    f = r.fields
    tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    merges = [bytes(f["tokenizer.ggml.merges"].parts[i]).decode() for i in f["tokenizer.ggml.merges"].data]
    n = 600
    kept = set(tokens[:n])
    small_merges = [m for m in merges if all(p in kept for p in m.split(" ")) and m.replace(" ", "") in kept]
    extra = {"tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
             "tokenizer.ggml.padding_token_id": 2, "tokenizer.ggml.add_bos_token": False,
             "tokenizer.ggml.pre": "smollm"}
    tokenizer_gguf(MODEL_SEEDS / "gguf_tokenizer" / "smollm2_first600.gguf", tokens[:n], small_merges[:2000], types[:n], extra)
    extra3 = dict(extra, **{"tokenizer.ggml.pre": "llama-bpe", "tokenizer.ggml.add_bos_token": True})
    tokenizer_gguf(MODEL_SEEDS / "gguf_tokenizer" / "smollm2_first600_llama3.gguf", tokens[:n], small_merges[:2000], types[:n], extra3)

    tj = json.loads((ROOT / "crates/llama/tests/fixtures/tiny-llama/tokenizer.json").read_text())
    vocab = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
    toks = [t for t, _ in vocab]
    tmerges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    ttypes = [1] * len(toks)
    for added in tj.get("added_tokens", []):
        if added["id"] < len(ttypes):
            ttypes[added["id"]] = 3
    tokenizer_gguf(SEEDS / "gguf_tokenizer" / "tiny.gguf", toks, tmerges, ttypes,
                   {"tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.add_bos_token": True})

    # The reader also sees the real model's header and first few tensors (cut at 64 KiB: the
    # reader must refuse the truncated directory, and seeds stay small).
    head = MODEL.read_bytes()[: 64 * 1024]
    (MODEL_SEEDS / "gguf_reader" / "smollm2_head64k.gguf").write_bytes(head)
    # A valid file with the real model's llama.* / general.* metadata and real tensors: the
    # F32 norm, a few rows of a Q4_1 weight and of the Q8_0 embedding, raw bytes as stored.
    w = gguf.GGUFWriter(str(MODEL_SEEDS / "gguf_reader" / "smollm2_slice.gguf"), "llama")
    copy_metadata(r, w, lambda k: k.startswith("llama.") or k in ("general.name", "general.alignment"))
    by_name = {t.name: t for t in r.tensors}
    for name, rows in [("blk.0.attn_norm.weight", None), ("blk.0.attn_k.weight", 4), ("token_embd.weight", 3)]:
        t = by_name[name]
        data = np.array(t.data if rows is None else t.data[:rows])
        w.add_tensor(name, data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for p in sorted([*SEEDS.glob("*/*"), *MODEL_SEEDS.glob("*/*")]):
        print(p.relative_to(ROOT), p.stat().st_size)


if __name__ == "__main__":
    main()
