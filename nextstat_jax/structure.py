"""Sparsity of the NLL Hessian, derived from the model's layout.

Two parameters interact in the Hessian only if they change a common main bin
(constraint terms are diagonal).  A parameter whose bins all lie in one channel
is *local* to that channel; the others (the POI, lumi, systematics shared by
channels) are *global*.  Locals that share no bin, even indirectly, never meet
in the Hessian: grouped by these connected components (packed into blocks of
the largest component's size) the Hessian is block-arrow: a block per group,
a small global block, and the coupling between them.  This module computes,
once per layout (static, cached):

* the seed matrix ``V`` (P, n_seeds) for compressed Hessian-vector products:
  one unit seed per global parameter and one seed per colour of a distance-2
  colouring of the local parameters (Curtis-Powell-Reid compression), so
  ``Y = H V`` determines every nonzero of H exactly;
* index maps that assemble the channel blocks ``A`` (C, m, m), the coupling
  ``Bc`` (C, m, g) and the global block ``D`` (g, g) from ``Y``, and the dense
  ``H`` (P, P).

Without any sparsity (one channel) this degenerates to P unit seeds and a
single dense block, i.e. the ordinary dense Hessian.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._layout import Layout

__all__ = ["HessianStructure", "hessian_structure"]


@dataclass(frozen=True, eq=False)
class HessianStructure:
    n_params: int
    seeds: np.ndarray  # (P, n_seeds) float64 0/1
    glob: np.ndarray  # (g,) parameter index of each global parameter
    local: np.ndarray  # (C, m) parameter index of each local slot, P = padding
    local_valid: np.ndarray  # (C, m) bool
    a_col: np.ndarray  # (C, m, m) column of Y holding A[c, a, b] (or -1 = zero)
    dense_row: np.ndarray  # (P, P) row of Y for H[i, j]
    dense_col: np.ndarray  # (P, P) column of Y for H[i, j], -1 = structural zero

    # indices into Y.reshape(-1) (entry (i, j) at i * n_seeds + j), -1 where
    # the entry is a structural zero (column -1) or padding (row P): see
    # solver._entries
    def _flat(self, rows, cols):
        rows, cols = np.broadcast_arrays(rows, cols)
        valid = (rows < self.n_params) & (cols >= 0)
        return np.where(valid, rows * self.n_seeds + cols, -1).astype(np.int32)

    @functools.cached_property
    def flat_a(self) -> np.ndarray:  # (C, m, m)
        rows = np.broadcast_to(self.local[:, :, None], self.a_col.shape)
        return self._flat(rows, self.a_col)

    @functools.cached_property
    def flat_b(self) -> np.ndarray:  # (C, m, g)
        g = self.n_global
        rows = np.broadcast_to(self.local[:, :, None], self.local.shape + (g,))
        cols = np.broadcast_to(np.arange(g), self.local.shape + (g,))
        return self._flat(rows, cols)

    @functools.cached_property
    def flat_d(self) -> np.ndarray:  # (g, g)
        g = self.n_global
        return self._flat(np.repeat(self.glob[:, None], g, 1), np.tile(np.arange(g), (g, 1)))

    @functools.cached_property
    def flat_dense(self) -> np.ndarray:  # (P, P)
        return self._flat(self.dense_row, self.dense_col)

    @functools.cached_property
    def flat_diag(self) -> np.ndarray:  # (P,) diagonal of H
        i = np.arange(self.n_params)
        return self._flat(self.dense_row[i, i], self.dense_col[i, i])

    @functools.cached_property
    def inverse(self) -> np.ndarray:
        """(P,) position of each parameter in concat(local.ravel(), glob, [pad])."""
        pos = np.full(self.n_params, self.local.size + self.n_global, np.int32)
        flat = self.local.reshape(-1)
        for k, p in enumerate(flat):
            if p < self.n_params:
                pos[p] = k
        for k, p in enumerate(self.glob):
            pos[p] = self.local.size + k
        return pos

    @property
    def n_seeds(self) -> int:
        return self.seeds.shape[1]

    @property
    def n_global(self) -> int:
        return self.glob.shape[0]


def _param_bins(layout: Layout) -> list[set]:
    """Main bins each parameter changes (structurally)."""
    P = layout.n_params
    bins: list[set] = [set() for _ in range(P)]
    K, S, B = layout.mult_idx.shape
    ns_par = layout.ns_par
    for k in range(K):
        idx = layout.mult_idx[k]
        for s in range(S):
            for b in range(B):
                i = int(idx[s, b])
                if i < P:
                    bins[i].add(b)
                elif i < P + ns_par.shape[0]:
                    bins[int(ns_par[i - P])].add(b)
    for p, b in zip(layout.hs_par, layout.hs_bin):
        bins[int(p)].add(int(b))
    return bins


def _components(per_chan: list, nbrs: list, is_global: list) -> list[list[int]]:
    """Connected components of the local parameters (two locals are linked
    when they share a bin), channel by channel: parameters of different
    components never meet in the Hessian."""
    comps = []
    for ps in per_chan:
        seen: set = set()
        for p in ps:
            if p in seen:
                continue
            comp, todo = [], [p]
            seen.add(p)
            while todo:
                q = todo.pop()
                comp.append(q)
                for r in nbrs[q]:
                    if not is_global[r] and r not in seen:
                        seen.add(r)
                        todo.append(r)
            comps.append(sorted(comp))
    return comps


def _pack(comps: list[list[int]]) -> list[list[int]]:
    """Components packed first-fit (largest first) into blocks as large as
    the largest component: few blocks, each block-diagonal inside (a channel
    whose locals all share its bins stays one block; a staterror-only channel
    becomes blocks of single parameters)."""
    if not comps:
        return []
    size = max(len(c) for c in comps)
    blocks: list[list[int]] = []
    for comp in sorted(comps, key=lambda c: (-len(c), c[0])):
        for blk in blocks:
            if len(blk) + len(comp) <= size:
                blk.extend(comp)
                break
        else:
            blocks.append(list(comp))
    return [sorted(b) for b in sorted(blocks, key=lambda b: b[0])]


@functools.lru_cache(maxsize=256)
def hessian_structure(layout: Layout) -> HessianStructure:
    P = layout.n_params
    bins = _param_bins(layout)
    chan_of_bin = np.concatenate([np.full(n, c) for c, n in enumerate(layout.channel_nbins)])
    chans = [set(int(chan_of_bin[b]) for b in bs) for bs in bins]
    is_global = [len(cs) != 1 for cs in chans]
    glob = [p for p in range(P) if is_global[p]]
    C = len(layout.channels)
    per_chan: list[list[int]] = [[] for _ in range(C)]
    for p in range(P):
        if not is_global[p]:
            per_chan[next(iter(chans[p]))].append(p)

    # adjacency among parameters through shared bins
    bin_params: dict[int, list[int]] = {}
    for p, bs in enumerate(bins):
        for b in bs:
            bin_params.setdefault(b, []).append(p)
    nbrs: list[set] = [set() for _ in range(P)]
    for ps in bin_params.values():
        for p in ps:
            nbrs[p].update(ps)
    for p in range(P):
        nbrs[p].add(p)

    # distance-2 colouring of locals (paths through global rows do not matter:
    # global rows/columns come from their own unit seeds)
    color = {}
    for c in range(C):
        for p in per_chan[c]:
            banned = set()
            for q in nbrs[p]:
                if is_global[q]:
                    continue
                if q in color:
                    banned.add(color[q])
                for r in nbrs[q]:
                    if not is_global[r] and r in color:
                        banned.add(color[r])
            k = 0
            while k in banned:
                k += 1
            color[p] = k
    n_colors = 1 + max(color.values()) if color else 0
    g = len(glob)
    seeds = np.zeros((P, g + n_colors))
    col_of = np.full(P, -1)
    for k, p in enumerate(glob):
        seeds[p, k] = 1.0
        col_of[p] = k
    for p, k in color.items():
        seeds[p, g + k] = 1.0
        col_of[p] = g + k

    blocks = _pack(_components(per_chan, nbrs, is_global))
    m = max([len(l) for l in blocks] + [0])
    local = np.full((max(len(blocks), 1), max(m, 1)), P, np.int32)
    for c, ps in enumerate(blocks):
        local[c, : len(ps)] = ps
    C = local.shape[0]
    local_valid = local < P
    m = local.shape[1]
    a_col = np.full((C, m, m), -1, np.int32)
    for c in range(C):
        for a in range(m):
            for b in range(m):
                i, j = local[c, a], local[c, b]
                if i < P and j < P and j in nbrs[i]:
                    a_col[c, a, b] = col_of[j]

    dense_row = np.zeros((P, P), np.int32)
    dense_col = np.full((P, P), -1, np.int32)
    for i in range(P):
        for j in nbrs[i]:
            if is_global[j]:
                dense_row[i, j], dense_col[i, j] = i, col_of[j]
            elif is_global[i]:
                dense_row[i, j], dense_col[i, j] = j, col_of[i]
            else:
                dense_row[i, j], dense_col[i, j] = i, col_of[j]
    return HessianStructure(P, seeds, np.asarray(glob, np.int32), local, local_valid, a_col, dense_row, dense_col)
