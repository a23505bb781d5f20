"""NAS-Bench-201 networks: the exact stand-alone network of one arch, and the K-shot supernet.

Skeleton (NB201 `TinyNetwork`): stem conv3x3 + BN; 3 stages of N cells (C, 2C, 4C channels) with a
ResNet basic block (stride 2) between stages; BN-ReLU, global average pool, linear classifier.
Cell ops are ReLU-Conv-BN (1x1, 3x3), 3x3 average pooling (count_include_pad=False), identity, zero.

Both networks run a cell through `run_cell`, which computes only what reaches the output
(`search_space.nb201.live_edges`): `none` edges, and ops feeding nodes that cannot reach the output,
are never computed; the ReLU in front of the convs is computed once per source node. This is exact:
the output and every gradient equal those of the plain all-edges forward.
On the CPU paths for narrow networks (supernet/ops.py) the supernet runs its cells by source node instead
(`run_cell_by_source`: one op per source for all its out-edges, their convolutions stacked into one), the same
function to float rounding.
The supernet also skips ops whose input node is identically zero (exact there: BN without affine
maps a zero map to zero); the stand-alone network, whose BN has affine parameters, does not.

The K-shot supernet holds every parametric tensor as K copies `[K, ...]`; `forward(x, arch, code)`
merges the copies of the ops on the path with `code` (see `kshot.merge`) and keeps no arch state.
BN in the supernet uses batch statistics always (no running stats), affine off by default.
"""
from __future__ import annotations

import functools
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kshot_bench.search_space import nb201 as space
from kshot_bench.supernet.groups import GroupStack
from kshot_bench.supernet.kshot import conv_weight, copies_for, kshot_parameter, merge
from kshot_bench.supernet.ops import avg_pool3x3, batch_norm, conv2d, cpu_layout, is_narrow, stack_sources

CONV_KERNEL = {space.CONV1: 1, space.CONV3: 3}


def _add_into(nodes: list, owned: list, target: int, out: Tensor, fresh: bool) -> None:
    """Add an edge's output into its target node. `owned[t]`: node t is a fresh op output of its own, so later
    terms may be added into it in place (safe for autograd: BN and pooling do not keep their outputs for
    backward); `fresh` says whether `out` is one (not a skip's input, a shared pooling or a block of a stacked map)."""
    prev = nodes[target]
    if prev is None:
        nodes[target], owned[target] = out, fresh
    elif owned[target]:
        prev.add_(out)
    else:
        nodes[target], owned[target] = prev + out, True


def run_cell(x: Tensor, edges: Sequence[tuple], conv_bn: Callable[[int, int, Tensor], Tensor],
             share_relu: bool = True) -> Optional[Tensor]:
    """Compute a cell's output node from its live edges; None means the output is zero.

    `conv_bn(edge, op, relu_input)` applies the conv + BN of a parametric op to an already-ReLU'd input. The
    ReLU of a node is computed once for all its conv edges (`share_relu`), or once per edge like the official
    network's ReLU-conv-BN ops (the same result; activation-based proxies such as naswot count each ReLU).
    """
    nodes: List[Optional[Tensor]] = [x, None, None, None]
    relus: List[Optional[Tensor]] = [None, None, None, None]
    owned = [False] * space.NUM_NODES
    for e, target, source, op in edges:
        h = nodes[source]
        if h is None:  # only reached when zero is not a fixed point of the ops (affine BN)
            h = nodes[source] = torch.zeros_like(x)
        if op == space.SKIP:
            out = h
        elif op == space.POOL:
            out = avg_pool3x3(h)
        else:
            r = relus[source]
            if r is None:
                r = F.relu(h)
                if share_relu:
                    relus[source] = r
            out = conv_bn(e, op, r)
        _add_into(nodes, owned, target, out, op != space.SKIP)
    return nodes[space.NUM_NODES - 1]


@functools.lru_cache(maxsize=None)
def source_plan(edges: tuple) -> tuple:
    """Live edges (`live_edges`) as work per source node, in node order, for `run_cell_by_source`:
    ((source, ((op, ((edge, target), ...)), ...)), ...), the ops in the order of their first edge and the uses
    of an op in edge order. A node receives at most one edge from each source, so its terms are still added
    in edge order; and every edge into a node comes from a lower node, so a node is complete when read."""
    plan: dict = {}
    for e, target, source, op in edges:
        plan.setdefault(source, {}).setdefault(op, []).append((e, target))
    return tuple((source, tuple((op, tuple(uses)) for op, uses in by_op.items())) for source, by_op in sorted(plan.items()))


def run_cell_by_source(x: Tensor, plan: tuple, conv_bn_stacked: Callable[[int, Sequence[int], Tensor], Tensor]) -> Optional[Tensor]:
    """`run_cell` with each op run once per source node for all the edges that apply it there (`source_plan`):
    one ReLU, one pooling, and one convolution (the edges' filters stacked, then one BN over the stacked
    channels: BN is per channel, so this is the per-edge BN) per op and source. The same function as
    `run_cell`, to float rounding: fewer, wider kernels, which is what narrow maps on a CPU need (at C=5 a
    5-channel convolution leaves most of the core idle; docs/design.md "CPU speed at C=5").

    `conv_bn_stacked(op, edges, relu_input)` returns the conv + BN outputs of `edges` stacked on the channels,
    `len(edges) * C` of them in edge order. None means the output is zero."""
    c = x.shape[1]
    nodes: List[Optional[Tensor]] = [x, None, None, None]
    owned = [False] * space.NUM_NODES
    for source, works in plan:
        h = nodes[source]
        if h is None:  # only reached when zero is not a fixed point of the ops (affine BN)
            h = torch.zeros_like(x)
        elif not h.is_contiguous():  # a block of a stacked output: the CPU paths want dense maps
            h = h.contiguous()
        relu = None
        for op, uses in works:
            if op == space.SKIP:
                outs: Sequence[Tensor] = [h] * len(uses)
            elif op == space.POOL:
                outs = [avg_pool3x3(h)] * len(uses)
            else:
                relu = F.relu(h) if relu is None else relu
                y = conv_bn_stacked(op, [e for e, _ in uses], relu)
                outs = y.split(c, 1) if len(uses) > 1 else [y]
            fresh = op != space.SKIP and len(uses) == 1  # else shared with another edge or a view of a stacked map
            for (_, target), out in zip(uses, outs):
                _add_into(nodes, owned, target, out, fresh)
    out = nodes[space.NUM_NODES - 1]
    return None if out is None else out.contiguous()


def stage_channels(C: int) -> List[int]:
    return [C, 2 * C, 4 * C]


# ----------------------------------------------------------------------------- stand-alone network
class _ReLUConvBN(nn.Sequential):
    """ReLU is applied by the caller (`run_cell`), so this holds conv + BN."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int):
        super().__init__(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out))


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = _ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = _ReLUConvBN(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(F.relu(self.conv_a(F.relu(x))))


class _InferCell(nn.Module):
    def __init__(self, arch: space.Arch, C: int, prune: bool):
        super().__init__()
        self.edges_all = tuple((e, t, s, op) for e, ((t, s), op) in enumerate(zip(space.EDGES, arch)) if op != space.NONE)
        self.edges = space.live_edges(arch, False) if prune else self.edges_all
        self.ops = nn.ModuleDict({str(e): _ReLUConvBN(C, C, CONV_KERNEL[op], 1)
                                  for e, _, _, op in self.edges_all if op in CONV_KERNEL})

    def forward(self, x: Tensor) -> Tensor:
        out = run_cell(x, self.edges, lambda e, op, r: self.ops[str(e)](r), share_relu=False)
        return torch.zeros_like(x) if out is None else out


class NB201Network(nn.Module):
    """The NB201 network of one arch (default C=16, N=5): parameter counts equal the benchmark's.

    `prune=False` runs every non-`none` edge like the official code (the FLOPs convention counts
    them all); `prune=True` (default) skips what cannot reach the output, with the same result.
    """

    def __init__(self, arch: Sequence[int], num_classes: int = 10, C: int = 16, N: int = 5, prune: bool = True):
        super().__init__()
        arch = space.validate(arch)
        chans = stage_channels(C)
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: List[nn.Module] = []
        for s, c in enumerate(chans):
            if s > 0:
                layers.append(_ResBlock(chans[s - 1], c))
            layers.extend(_InferCell(arch, c, prune) for _ in range(N))
        self.layers = nn.Sequential(*layers)
        self.lastact = nn.BatchNorm2d(chans[-1])
        self.classifier = nn.Linear(chans[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.lastact(self.layers(self.stem(x))))
        return self.classifier(h.mean((2, 3)))


# ----------------------------------------------------------------------------- K-shot supernet
class KShotNB201(nn.Module):
    """K-shot NB201 supernet. `forward(x, arch, code)`: `code` is a `[K]` tensor on the simplex
    (ignored, and may be None, when K = 1)."""

    GROUPED_PASS = True  # forward_groups: the simplex-net step's m paths in one pass (supernet/groups.py)

    def __init__(self, k: int, num_classes: int = 10, C: int = 16, N: int = 5,
                 bn_affine: bool = False, init: str = "independent", copies: str = "all"):
        super().__init__()
        if not isinstance(k, int) or k < 1:
            from kshot_bench.errors import UserError
            raise UserError(f"K must be an integer >= 1, got {k!r}", fix="use K=1 for a one-shot supernet, K>=2 for K-shot")
        self.k, self.C, self.N, self.num_classes = k, C, N, num_classes
        self.bn_affine, self.init, self.copies = bn_affine, init, copies
        k_free = copies_for(k, copies, normalised=False)  # the copies of a weight no BN normalises (supernet/kshot.py)
        chans = stage_channels(C)
        self.stem = conv_weight(k, C, 3, 3, init)
        self.stem_bn = self._bn_params(C)
        self.cells = nn.ModuleList()
        self.reductions = nn.ModuleList()
        for s, c in enumerate(chans):
            if s > 0:
                red = nn.Module()
                red.conv_a = conv_weight(k, c, chans[s - 1], 3, init)
                red.bn_a = self._bn_params(c)
                red.conv_b = conv_weight(k, c, c, 3, init)
                red.bn_b = self._bn_params(c)
                red.down = conv_weight(k_free, c, chans[s - 1], 1, init)
                self.reductions.append(red)
            for _ in range(N):
                cell = nn.Module()
                cell.w = nn.ParameterDict({f"e{e}_{space.OPS[op]}": conv_weight(k, c, c, ks, init)
                                           for e in range(space.NUM_EDGES) for op, ks in CONV_KERNEL.items()})
                cell.bn = nn.ModuleDict({key: self._bn_params(c) for key in cell.w}) if bn_affine else None
                self.cells.append(cell)
        self.last_bn = self._bn_params(chans[-1])
        self.fc_w = kshot_parameter(k_free, (num_classes, chans[-1]), init, fan_in=chans[-1])
        self.fc_b = kshot_parameter(k_free, (num_classes,), init, fan_in=chans[-1])
        # plain lookup tables for the hot path (the parameters stay registered once, above)
        self._cell_w = [[{op: cell.w[f"e{e}_{space.OPS[op]}"] for op in CONV_KERNEL} for e in range(space.NUM_EDGES)]
                        for cell in self.cells]
        self._cell_bn = [[{op: (cell.bn[f"e{e}_{space.OPS[op]}"] if bn_affine else None) for op in CONV_KERNEL}
                          for e in range(space.NUM_EDGES)] for cell in self.cells]

    def computation_key(self, arch: Sequence[int]) -> tuple:
        """All of `arch` that its forward pass depends on: its live edges (`space.live_edges`, the only part of
        the arch `forward` reads). Archs with the same key and the same code compute the same function on the
        same ops, so scoring runs them once (`scoring.computation_groups`): the 15,625 archs have 9,445 keys."""
        return space.network_key(arch, self.bn_affine)

    @property
    def narrow(self) -> bool:
        """On a CPU it runs the paths for narrow networks (supernet/ops.py), where one thread computes the
        simplex-net step faster as one batched pass than path by path (train.resolve_simplex_step)."""
        return is_narrow(self.C)

    def _bn_params(self, c: int) -> Optional[nn.ParameterList]:
        if not self.bn_affine:
            return None
        k = copies_for(self.k, self.copies, normalised=False)
        return nn.ParameterList([kshot_parameter(k, (c,), self.init, fill=1.0),
                                 kshot_parameter(k, (c,), self.init, fill=0.0)])

    def _norm(self, x: Tensor, bn: Optional[nn.ParameterList], code: Optional[Tensor]) -> Tensor:
        if bn is None:
            return batch_norm(x)
        return batch_norm(x, merge(bn[0], code), merge(bn[1], code))

    def forward(self, x: Tensor, arch: Sequence[int], code: Optional[Tensor] = None) -> Tensor:
        if self.k > 1 and (code is None or code.shape != (self.k,)):
            raise ValueError(f"a K={self.k} supernet needs a code of shape ({self.k},), got "
                             f"{None if code is None else tuple(code.shape)}")
        edges = space.network_key(arch, self.bn_affine)  # what computation_key names
        plan = source_plan(edges) if stack_sources(x, self.C) else None
        x = cpu_layout(x, self.C)
        h = self._norm(conv2d(x, merge(self.stem, code)), self.stem_bn, code)
        cell_id = 0
        for s in range(3):
            if s > 0:
                h = self._reduce(h, self.reductions[s - 1], code)
            for _ in range(self.N):
                h = self._cell(h, cell_id, edges, plan, code)
                cell_id += 1
        h = F.relu(self._norm(h, self.last_bn, code)).mean((2, 3))
        return F.linear(h, merge(self.fc_w, code), merge(self.fc_b, code))

    def _cell(self, x: Tensor, cell_id: int, edges, plan: Optional[tuple], code: Optional[Tensor]) -> Tensor:
        """One cell: per edge (`run_cell`), or with `plan` per source node (`run_cell_by_source`)."""
        weights, bns = self._cell_w[cell_id], self._cell_bn[cell_id]

        def conv_bn(e: int, op: int, r: Tensor) -> Tensor:
            return conv_bn_stacked(op, (e,), r)

        def conv_bn_stacked(op: int, es: Sequence[int], r: Tensor) -> Tensor:
            y = conv2d(r, _stacked([weights[e][op] for e in es], code))
            if bns[es[0]][op] is None:
                return batch_norm(y)
            return batch_norm(y, _stacked([bns[e][op][0] for e in es], code), _stacked([bns[e][op][1] for e in es], code))

        out = run_cell(x, edges, conv_bn) if plan is None else run_cell_by_source(x, plan, conv_bn_stacked)
        return torch.zeros_like(x) if out is None else out

    def _reduce(self, x: Tensor, red: nn.Module, code: Optional[Tensor]) -> Tensor:
        a = self._norm(conv2d(F.relu(x), merge(red.conv_a, code), stride=2), red.bn_a, code)
        b = self._norm(conv2d(F.relu(a), merge(red.conv_b, code)), red.bn_b, code)
        return conv2d(F.avg_pool2d(x, 2, 2), merge(red.down, code)) + b

    # ------------------------------------------------------------------ m paths in one pass
    def forward_groups(self, x: Tensor, archs: Sequence[Sequence[int]], codes: Tensor) -> Tensor:
        """m paths at once (the simplex-net step; supernet/groups.py): `x` holds m equal groups of
        images (group j = rows j*g .. (j+1)*g), group j runs `archs[j]` with code `codes[j]`.
        Returns the logits `[m*g, classes]` in the same row order; equal, to float rounding, to
        `forward(x_j, archs[j], codes[j])` of each group on its own."""
        m = len(archs)
        if x.shape[0] % m:
            raise ValueError(f"{x.shape[0]} images do not split into {m} equal groups")
        if codes.shape != (m, self.k):
            raise ValueError(f"codes must have shape ({m}, {self.k}), got {tuple(codes.shape)}")
        gs = GroupStack(codes)
        plan = _group_plan(archs, not self.bn_affine, x.device)
        h = self._gnorm(gs, gs.conv(gs.stack(x), self.stem), self.stem_bn)
        cell_id = 0
        for s in range(3):
            if s > 0:
                red = self.reductions[s - 1]
                a = self._gnorm(gs, gs.conv(F.relu(h), red.conv_a, stride=2), red.bn_a)
                b = self._gnorm(gs, gs.conv(F.relu(a), red.conv_b), red.bn_b)
                h = gs.conv(F.avg_pool2d(h, 2, 2), red.down) + b
            for _ in range(self.N):
                h = self._cell_groups(gs, h, cell_id, plan)
                cell_id += 1
        feat = F.relu(self._gnorm(gs, h, self.last_bn)).mean((2, 3))
        return gs.linear(feat, self.fc_w, self.fc_b)

    @staticmethod
    def _gnorm(gs: GroupStack, t: Tensor, bn: Optional[nn.ParameterList]) -> Tensor:
        return gs.batch_norm(t) if bn is None else gs.batch_norm(t, bn[0], bn[1])

    def _cell_groups(self, gs: GroupStack, x: Tensor, cell_id: int, plan) -> Tensor:
        """`run_cell` for m groups. Nodes are held as channel blocks `[g, H, W, m, C]`
        (GroupStack.accumulate). Per source node, each kind of op runs once for all its uses: every
        (edge, group) pair whose live path runs that op from this node is one group of a single grouped
        convolution (or pooling), its output blocks then added into each edge's target node. A node is
        read (one gather for all its out-edges) only after every edge into it has been added."""
        weights, bns = self._cell_w[cell_id], self._cell_bn[cell_id]
        nodes: List[Optional[Tensor]] = [gs.blocks(x, gs.m), None, None, None]
        owned = [False] * space.NUM_NODES
        for source, works in plan:
            if nodes[source] is None:  # only with affine BN, where zero is not a fixed point of the ops
                nodes[source] = torch.zeros_like(nodes[0])
            parts = gs.gather(nodes[source], [idx for _, idx, _ in works])
            relu_all = None
            for (op, idx, uses), part in zip(works, parts):
                if op == space.POOL:
                    part = avg_pool3x3(part)
                elif op != space.SKIP:
                    if idx is None:  # one ReLU of the whole node serves every all-groups conv
                        relu_all = F.relu(part) if relu_all is None else relu_all
                        part = relu_all
                    else:
                        part = F.relu(part)
                    part = self._conv_bn_groups(gs, part, weights, bns, op, uses)
                pb = gs.blocks(part, gs.m if idx is None else len(idx))
                for e, target, lo, eidx in uses:
                    piece = pb.narrow(3, lo, gs.m if eidx is None else len(eidx))  # a view
                    nodes[target], owned[target] = gs.accumulate(nodes[target], owned[target], eidx, piece)
        out = nodes[space.NUM_NODES - 1]
        return torch.zeros_like(x) if out is None else gs.image(out)

    @staticmethod
    def _conv_bn_groups(gs: GroupStack, part: Tensor, weights, bns, op: int, uses) -> Tensor:
        """Conv + BN of one op for the (edge, group) pairs of `uses`, stacked in `part` in that order."""
        merged = [gs.merge(weights[e][op], eidx) for e, _, _, eidx in uses]
        y = gs.conv_merged(part, merged[0] if len(uses) == 1 else torch.cat(merged))
        bn = [bns[e][op] for e, _, _, _ in uses]
        if bn[0] is None:
            return gs.batch_norm_merged(y)
        gamma = torch.cat([gs.merge(b[0], eidx) for b, (_, _, _, eidx) in zip(bn, uses)])
        beta = torch.cat([gs.merge(b[1], eidx) for b, (_, _, _, eidx) in zip(bn, uses)])
        return gs.batch_norm_merged(y, gamma, beta)


def _stacked(thetas: Sequence[Tensor], code: Optional[Tensor]) -> Tensor:
    """The merged weights of several ops stacked on the output channels (one op: its merged weight)."""
    return merge(thetas[0], code) if len(thetas) == 1 else torch.cat([merge(t, code) for t in thetas])


def _group_plan(archs: Sequence[Sequence[int]], zero_is_fixed_point: bool, device) -> list:
    """The m paths' cell as work per source node, in node order: [(source, [(op, group ids, uses)])].
    A work runs one op once for every (edge, group) pair whose live path (`live_edges`) runs that op from
    this source: `uses` is [(edge, target, offset, group ids)], the work's group ids being the uses'
    concatenated (a group appears once per edge it runs the op on; None = all groups, in order, for a
    work of one edge that every group runs). `skip` stays one work per edge (nothing is computed).
    Edges into a node all come from lower nodes, so a node is complete when it is read.
    Equal for every cell of the network."""
    m = len(archs)
    uses: dict = {}
    for j, arch in enumerate(archs):
        for e, target, source, op in space.live_edges(tuple(arch), zero_is_fixed_point):
            uses.setdefault((source, e, target, op), []).append(j)
    works: dict = {}
    for (source, e, target, op), js in sorted(uses.items()):
        key = (source, op, e if op == space.SKIP else -1)
        works.setdefault(key, []).append((e, target, js))
    plan: dict = {}
    for (source, op, _), edges in sorted(works.items()):
        if len(edges) == 1 and len(edges[0][2]) == m:
            e, target, _ = edges[0]
            plan.setdefault(source, []).append((op, None, [(e, target, 0, None)]))
            continue
        work_uses, ids, lo = [], [], 0
        for e, target, js in edges:
            work_uses.append((e, target, lo, None if len(js) == m else torch.tensor(js, device=device)))
            ids += js
            lo += len(js)
        plan.setdefault(source, []).append((op, torch.tensor(ids, device=device), work_uses))
    return sorted(plan.items())
