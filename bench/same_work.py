"""The RAVEL recipe computed in PyTorch as the Rust code computes it: the peer "doing the same
work" that `compare_pytorch.py` (one training step) and `ravel_run_pytorch.py` (the whole run:
pass, training, scoring) time beside the Rust code.

- The pass before training is the Rust pass (`subspace::train::cache`): each distinct source
  prompt cut after its position run to the site (block `layer`'s output), each distinct base
  prompt below the site with its keys/values above it before its first patched token, prompts
  that begin alike running their shared beginning once (`prefix_groups`, the Rust grouping),
  in padded passes of near lengths (`passes_by_length`, the Rust cut).
- A minibatch is assembled from those states as the Rust step assembles it
  (`SiteCache::batch`): window groups (`window_groups`), each its own left-padded batch from
  its first patched column, after the cached keys/values before it.
- Block `layer`'s output is block `layer + 1`'s input: the site's own block runs in the pass
  and a batch enters at the next block, patched there (`train::cache::entry_site`).
- The blocks from there up run with the per-token parts (norms, projections, MLP) over all
  the groups' tokens at once and attention per group (`run::run_lanes`); the last block
  computes keys and values of every column and the rest at the last column only
  (`run::run_lanes_last`); the LM head runs at the last columns only.

torch is imported here at the top: import this module only where torch is wanted.
"""

import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

MIN_SHARED, GROUP_COST, TOKENS_PER_FORWARD, PASS_COST = 4, 16, 2048, 16


def left_padded(seqs, pad_id):
    """Token id lists left-padded into one batch: ids, attention mask, padding per row."""
    n = max(len(s) for s in seqs)
    pad = [n - len(s) for s in seqs]
    ids = torch.tensor([[pad_id] * p + s for p, s in zip(pad, seqs)])
    mask = torch.tensor([[0] * p + [1] * (n - p) for p in pad])
    return ids, mask, pad


def prefix_groups(prompts):
    """The Rust pass's grouping (`subspace::prefix::prefix_groups`): prompts sharing a
    beginning worth running once, as (shared length, members); length 0: run whole."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])

    def common(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    lcp = [common(prompts[a], prompts[b]) for a, b in zip(order, order[1:])]

    def best(run, cm):
        total = sum(len(prompts[i]) for i in run)
        if len(run) < 2:
            return total, [(0, list(run))]
        least = min(cm)
        ln = min(least, min(len(prompts[i]) for i in run) - 1)
        whole = (ln + (total - ln * len(run)) + GROUP_COST, ln) if ln >= MIN_SHARED else (total, 0)
        at = cm.index(least)
        lc, lg = best(run[:at + 1], cm[:at])
        rc, rg = best(run[at + 1:], cm[at + 1:])
        if lc + rc < whole[0]:
            return lc + rc, lg + rg
        return whole[0], [(whole[1], list(run))]

    groups = best(order, lcp)[1] if prompts else []
    alone = sorted(i for ln, m in groups if ln == 0 for i in m)
    return [(ln, m) for ln, m in groups if ln > 0] + ([(0, alone)] if alone else [])


def window_groups(windows, cost=8):
    """The Rust grouping by length (`batching::length_groups`; the step's window groups at
    `cost` 8): contiguous runs of the sorted distinct windows, minimising the columns run plus
    `cost` a group."""
    lengths = sorted(set(windows))
    counts = [windows.count(w) for w in lengths]
    best = [(0, 0)] * (len(lengths) + 1)
    for j in range(1, len(lengths) + 1):
        best[j] = min((best[i][0] + sum(counts[i:j]) * lengths[j - 1] + cost, i) for i in range(j))
    bounds, j = [], len(lengths)
    while j > 0:
        bounds.append(lengths[j - 1])
        j = best[j][1]
    bounds.reverse()
    groups = [[] for _ in bounds]
    for r, w in enumerate(windows):
        groups[next(g for g, bnd in enumerate(bounds) if w <= bnd)].append(r)
    return groups


def passes_by_length(items, length):
    """The Rust pass cut (`batching::passes_by_length`): `items` sorted by `length`, grouped by
    near lengths (`window_groups` at `PASS_COST`), each group cut into passes of at most
    `TOKENS_PER_FORWARD` tokens at its longest length."""
    order = sorted(items, key=length)
    lengths = [length(i) for i in order]
    passes = []
    for group in window_groups(lengths, PASS_COST):
        rows = max(1, TOKENS_PER_FORWARD // max(1, max(lengths[r] for r in group)))
        for c in range(0, len(group), rows):
            passes.append([order[r] for r in group[c:c + rows]])
    return passes


class Cache:
    """What the pass keeps for a list of example rows (`{"base", "source", "base_position",
    "source_position", ...}`): each row's source vector, and each distinct base prompt's states."""

    def __init__(self, sources, base_of, states):
        self.sources, self.base_of, self.states = sources, base_of, states


class SameWork:
    """A transformers Llama run the Rust way (see the module's text), at site `layer`."""

    def __init__(self, model, layer, dtype):
        cfg = model.config
        self.model, self.layer, self.dtype = model, layer, dtype
        self.d, self.nh, self.nkv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = getattr(cfg, "head_dim", None) or self.d // self.nh
        self.blocks = model.model.layers
        # Where a batch enters (`train::cache::entry_site`): block `layer`'s output is block
        # `layer + 1`'s input, so below the last block the site's own block runs in the pass.
        self.entry = layer + 1 if layer + 1 < len(self.blocks) else layer
        pad_id = cfg.pad_token_id or cfg.eos_token_id or 0
        self.pad_id = pad_id[0] if isinstance(pad_id, list) else pad_id
        self.neg = torch.finfo(dtype).min

    def run_block(self, blk, h, pos_ids, mask, past):
        """Block `blk` on new columns `h` after the cached keys/values `past`; returns the
        output and the keys/values of all columns."""
        nh, nkv, hd = self.nh, self.nkv, self.hd
        x = blk.input_layernorm(h)
        a = blk.self_attn
        b_, s_, _ = x.shape
        q = a.q_proj(x).view(b_, s_, nh, hd).transpose(1, 2)
        kk = a.k_proj(x).view(b_, s_, nkv, hd).transpose(1, 2)
        vv = a.v_proj(x).view(b_, s_, nkv, hd).transpose(1, 2)
        cos, sin = self.model.model.rotary_emb(vv, pos_ids)
        q, kk = apply_rotary_pos_emb(q, kk, cos, sin)
        if past is not None:
            kk, vv = torch.cat([past[0], kk], 2), torch.cat([past[1], vv], 2)
        scores = q @ repeat_kv(kk, nh // nkv).transpose(2, 3) * hd ** -0.5 + mask
        out = (scores.softmax(-1) @ repeat_kv(vv, nh // nkv)).transpose(1, 2).reshape(b_, s_, nh * hd)
        h = h + a.o_proj(out)
        return h + blk.mlp(blk.post_attention_layernorm(h)), (kk, vv)

    def causal(self, b, n_q, n_k, pads=None):
        """Additive mask: the last `n_q` of `n_k` columns as queries, causal, left padding out."""
        allowed = (torch.arange(n_k)[None] <= torch.arange(n_k - n_q, n_k)[:, None])[None].repeat(b, 1, 1)
        for r, p in enumerate(pads or []):
            allowed[r, :, :p] = False
        return torch.where(allowed, 0.0, self.neg).to(self.dtype)[:, None]

    def run_range(self, blks, x, pos, mask, pasts=None):
        kvs = []
        for j, blk in enumerate(blks):
            x, kv = self.run_block(blk, x, pos, mask, None if pasts is None else pasts[j])
            kvs.append(kv)
        return x, kvs

    def states(self, prompts, below, above_kept=None):
        """What the Rust pass computes for each prompt: the stream after blocks `..below` at
        every token and, given `above_kept[i]`, the keys/values of blocks `below..` of its first
        `above_kept[i]` tokens; shared beginnings run once (`prefix_groups`)."""
        blocks, embed = self.blocks, self.model.model.embed_tokens
        out = [None] * len(prompts)
        kept = above_kept or [0] * len(prompts)

        def repeated(kvs, b):
            return [(kk.expand(b, -1, -1, -1), vv.expand(b, -1, -1, -1)) for kk, vv in kvs]

        for ln, members in prefix_groups(prompts):
            if ln > 0:
                ids = torch.tensor([list(prompts[members[0]][:ln])])
                pos = torch.arange(ln)[None]
                m = self.causal(1, ln, ln)
                h_p, low = self.run_range(blocks[:below], embed(ids), pos, m)
                high = self.run_range(blocks[below:], h_p, pos, m)[1] if above_kept else None
                for chunk in passes_by_length(members, lambda i: len(prompts[i]) - ln):
                    tails = [list(prompts[i][ln:]) for i in chunk]
                    t, b = max(map(len, tails)), len(chunk)
                    ids = torch.tensor([x + [0] * (t - len(x)) for x in tails])
                    pos = torch.arange(ln, ln + t)[None].repeat(b, 1)
                    m = self.causal(b, t, ln + t)
                    h_t = self.run_range(blocks[:below], embed(ids), pos, m, repeated(low, b))[0]
                    own = max(max(kept[i] - ln, 0) for i in chunk)
                    hk = self.run_range(blocks[below:], h_t[:, :own], pos[:, :own], m[:, :, :own, :ln + own],
                                        repeated(high, b))[1] if own else None
                    for r, i in enumerate(chunk):
                        h = torch.cat([h_p[0], h_t[r, :len(tails[r])]])
                        if kept[i] == 0:
                            kv = []
                        elif kept[i] <= ln:
                            kv = [(kk[0, :, :kept[i]], vv[0, :, :kept[i]]) for kk, vv in high]
                        else:
                            kv = [(kk[r, :, :kept[i]], vv[r, :, :kept[i]]) for kk, vv in hk]
                        out[i] = (h, kv)
                continue
            for chunk in passes_by_length(members, lambda i: len(prompts[i])):
                ids, _attn, pad = left_padded([list(prompts[i]) for i in chunk], self.pad_id)
                b, n = ids.shape
                pos = torch.tensor([[max(c - p, 0) for c in range(n)] for p in pad])
                m = self.causal(b, n, n, pad)
                h = self.run_range(blocks[:below], embed(ids), pos, m)[0]
                lk = max(p + kept[i] for p, i in zip(pad, chunk))
                hk = self.run_range(blocks[below:], h[:, :lk], pos[:, :lk], m[:, :, :lk, :lk])[1] if lk else None
                for r, i in enumerate(chunk):
                    p = pad[r]
                    kv = [(kk[r, :, p:p + kept[i]], vv[r, :, p:p + kept[i]]) for kk, vv in hk] if kept[i] else []
                    out[i] = (h[r, p:], kv)
        return out

    def cache(self, rows):
        """The Rust pass over `rows` (no gradient): each row's source vector, and the states of
        each distinct base prompt (below the site at every token; keys/values above it before
        its first patched token)."""
        layer = self.layer
        with torch.no_grad():
            reads = sorted({tuple(r["source"][:r["source_position"] + 1]) for r in rows})
            read_of = {p: i for i, p in enumerate(reads)}
            vectors = [h[-1] for h, _ in self.states(reads, layer + 1)]
            sources = torch.stack([vectors[read_of[tuple(r["source"][:r["source_position"] + 1])]] for r in rows])
            bases = sorted({tuple(r["base"]) for r in rows})
            base_of = {p: i for i, p in enumerate(bases)}
            first = [0] * len(bases)
            for r in rows:
                i = base_of[tuple(r["base"])]
                first[i] = max(first[i], r["base_position"])
            return Cache(sources, base_of, self.states(bases, self.entry, first))

    def prepare(self, b, cache):
        """One window group of a minibatch, assembled from the per-prompt states as the Rust
        step assembles it (`SiteCache::batch`): left-padded, the stream from the group's first
        patched column, the cached keys/values before it (zeros for padding)."""
        d, nkv, hd = self.d, self.nkv, self.hd
        lens = [len(r["base"]) for r in b]
        n = max(lens)
        pad = [n - x for x in lens]
        cols = torch.tensor([r["base_position"] + p for r, p in zip(b, pad)])
        frm = int(cols.min())
        pos = torch.tensor([[max(c - p, 0) for c in range(n)] for p in pad])
        mask = self.causal(len(b), n - frm, n, pad)
        states = [cache.states[cache.base_of[tuple(row["base"])]] for row in b]
        hs, past = [], []
        for r, (h, _) in enumerate(states):
            hs.append(torch.cat([torch.zeros(max(pad[r] - frm, 0), d, dtype=h.dtype), h[max(frm - pad[r], 0):]]))
        for j in range(len(self.blocks) - self.entry):
            ks, vs = [], []
            for r, (_, kv) in enumerate(states):
                p = min(pad[r], frm)
                kk, vv = (kv[j][0][:, :frm - p], kv[j][1][:, :frm - p]) if frm > p else (None, None)
                z = torch.zeros(nkv, p, hd, dtype=self.dtype)
                ks.append(z if kk is None else torch.cat([z, kk], 1))
                vs.append(z if vv is None else torch.cat([z, vv], 1))
            past.append((torch.stack(ks), torch.stack(vs)))
        return {"h": torch.stack(hs), "past": past, "pos": pos[:, frm:], "mask": mask, "cols": cols - frm}

    def prepare_batch(self, b, cache, which):
        """Rows `b` (their indices `which` into the cache's rows) as the Rust step runs them:
        window groups, each its own left-padded batch; sources, targets and weights in the
        groups' order."""
        groups = window_groups([len(r["base"]) - r["base_position"] for r in b])
        gs = []
        for rows_ in groups:
            g = self.prepare([b[r] for r in rows_], cache)
            g["rows"] = torch.tensor(rows_)
            gs.append(g)
        order = [r for rows_ in groups for r in rows_]
        return {"groups": gs, "src": cache.sources[torch.tensor(which)],
                "order": order, "tgt": torch.tensor([b[r]["target"] for r in order]),
                "w": torch.tensor([b[r].get("weight", 1.0) for r in order], dtype=self.dtype)}

    def run_block_ragged(self, blk, hs, gs, j, last_only=False):
        """Block `blk` on every group at once, as the Rust step runs it (`run::run_lanes`): norms,
        projections and the MLP over all the groups' tokens laid end to end, attention per group
        after its cached keys/values. With `last_only` (the last block, as
        `Block::forward_ragged_last`): keys and values of every column, the rest at each group's
        last column only (`[rows, 1, hidden]` each)."""
        d, nh, nkv, hd = self.d, self.nh, self.nkv, self.hd
        shapes = [x.shape[:2] for x in hs]
        h = torch.cat([x.reshape(-1, d) for x in hs])
        x = blk.input_layernorm(h)
        a = blk.self_attn
        k_all, v_all = a.k_proj(x), a.v_proj(x)
        if last_only:
            sizes = [b_ * s_ for b_, s_ in shapes]

            def last(t):
                return torch.cat([p.view(b_, s_, -1)[:, -1] for p, (b_, s_) in zip(t.split(sizes), shapes)])

            h, x = last(h), last(x)
        q_all = a.q_proj(x)
        outs, off, qoff = [], 0, 0
        for (b_, s_), g in zip(shapes, gs):
            n, sq = b_ * s_, 1 if last_only else s_
            q = q_all[qoff:qoff + b_ * sq].view(b_, sq, nh, hd).transpose(1, 2)
            kk = k_all[off:off + n].view(b_, s_, nkv, hd).transpose(1, 2)
            vv = v_all[off:off + n].view(b_, s_, nkv, hd).transpose(1, 2)
            cos, sin = self.model.model.rotary_emb(vv, g["pos"])
            q = apply_rotary_pos_emb(q, q, cos[:, -sq:], sin[:, -sq:])[0]
            kk = apply_rotary_pos_emb(kk, kk, cos, sin)[1]
            past = g["past"][j]
            kk, vv = torch.cat([past[0], kk], 2), torch.cat([past[1], vv], 2)
            scores = q @ repeat_kv(kk, nh // nkv).transpose(2, 3) * hd ** -0.5 + g["mask"][:, :, -sq:]
            outs.append((scores.softmax(-1) @ repeat_kv(vv, nh // nkv)).transpose(1, 2).reshape(b_ * sq, nh * hd))
            off, qoff = off + n, qoff + b_ * sq
        h = h + a.o_proj(torch.cat(outs))
        h = h + blk.mlp(blk.post_attention_layernorm(h))
        parts, off = [], 0
        for b_, s_ in shapes:
            sq = 1 if last_only else s_
            parts.append(h[off:off + b_ * sq].view(b_, sq, d))
            off += b_ * sq
        return parts

    def last_logits(self, p, patch):
        """Next-token logits `[rows, vocab]` (in the groups' order) of a prepared minibatch `p`
        with block `layer`'s output at each row's patched column replaced by
        `patch(base_vectors, source_vectors)`."""
        gs = p["groups"]

        def patched(hs):
            out = []
            for h, g in zip(hs, gs):
                rows_ = torch.arange(h.shape[0])
                base = h[rows_, g["cols"]]
                h = h.clone()
                h[rows_, g["cols"]] = patch(base, p["src"][g["rows"]]).to(h.dtype)
                out.append(h)
            return out

        # Entering after the site's block, the patch is on the stream entering the first block
        # run; otherwise after that block (the site is the last block's output), which then runs
        # whole.
        hs = [g["h"] for g in gs]
        if self.entry > self.layer:
            hs = patched(hs)
        blocks = self.blocks[self.entry:]
        for j, blk in enumerate(blocks):
            prune = j == len(blocks) - 1 and self.entry > self.layer
            hs = self.run_block_ragged(blk, hs, gs, j, last_only=prune)
            if self.entry == self.layer and j == 0:
                hs = patched(hs)
        model = self.model
        return model.lm_head(model.model.norm(torch.cat([h[:, -1] for h in hs])))

    def loss(self, p, w_):
        """The recipe's loss: the weighted mean cross-entropy of the targets with the subspace
        spanned by the rows of `w_` (`[k, d]`, orthonormal) taken from the sources."""
        logits = self.last_logits(p, lambda base, src: base + ((src - base) @ w_.T) @ w_)
        ce = torch.nn.functional.cross_entropy(logits, p["tgt"], reduction="none")
        return (ce * p["w"]).sum() / p["w"].sum()

    def full_loss(self, b, src, w_):
        """The same loss from a whole forward of the padded batch with a hook (the tutorial's
        way): the check that this path computes what it should."""
        ids, attn, pad = left_padded([r["base"] for r in b], self.pad_id)
        cols = torch.tensor([r["base_position"] + q for r, q in zip(b, pad)])

        def hook(_m, _i, o):
            hs = o[0] if isinstance(o, tuple) else o
            rows_ = torch.arange(hs.shape[0])
            base = hs[rows_, cols]
            hs = hs.clone()
            hs[rows_, cols] = base + ((src - base) @ w_.T) @ w_
            return (hs,) + tuple(o[1:]) if isinstance(o, tuple) else hs

        hk = self.blocks[self.layer].register_forward_hook(hook)
        try:
            logits = self.model(ids, attention_mask=attn,
                                position_ids=(attn.cumsum(-1) - 1).clamp(min=0)).logits[:, -1]
        finally:
            hk.remove()
        tgt = torch.tensor([r["target"] for r in b])
        w = torch.tensor([r.get("weight", 1.0) for r in b], dtype=self.dtype)
        return (torch.nn.functional.cross_entropy(logits, tgt, reduction="none") * w).sum() / w.sum()
