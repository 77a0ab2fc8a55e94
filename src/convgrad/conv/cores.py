"""A large convolution's batch split into parts that run at once, one per core (the gemm algorithm's);
and the running of any algorithm's parts (depthwise's are channels: :func:`forward`'s ``where``).

OpenBLAS runs each matrix product on every core, but the copies between products (im2col, col2im,
the layout changes) run on one, and rewrite cache lines the other core's BLAS thread has just read
(BENCHMARKS.md, "Handing data between cores"). Cut into one part per BLAS thread, each part runs the
whole algorithm on its own core, its products on that core's thread alone (``_blas.one_thread``),
into its slice of y and dx; dW and db are the parts' sums. Each part gets its share of the workspace
limit and, for the flat layout, of the im2col chunk (``gemm.chunk_limit``).

A split pays where a call copies much (the copies are what one core did alone) and computes enough
for one core's products to run well (the hand-over to the worker thread itself costs 30-50 µs):
each part at least ``PART_COPIES`` elements copied and ``PART_MACS`` multiply-adds. Measured on 2
cores, forward + backward against the same code unsplit
(two copies of the package in one process, alternating blocks, the median of the blockwise ratios):
cifar-16 0.76-0.89x, down-s2 0.83-0.88x, conv1d 0.87x, dil-2 0.88-0.95x, conv3d 0.90-0.92x, res-64
0.85-0.96x, (32, 32, 28, 28) with 64 3x3 filters 0.89-0.93x, stem-7x7 0.93-1.03x. Since the parts
are held on their cores (``_parallel.cores_for``), smaller calls gain too: res-128 0.82-0.85x (1.4
million copied and 151 million multiply-adds a part), (16, 64, 16, 16) with 64 filters 0.87-0.93x
(1.4 and 75 million), (32, 16, 32, 32) with 16 filters 0.84-0.87x (2.9 and 38 million), (256, 6,
12, 12) with 16 5x5 filters 0.89-0.96x (1.5 and 20 million), (64, 16, 16, 16) with 16 filters
0.93-0.96x (1.4 and 19 million), (32, 3, 32, 32) with 16 5x5 filters 0.92-1.01x (1.2 and 15
million); below the thresholds a split costs more than it saves: (16, 32, 16, 16) with 32 filters
1.16x (0.7 and 19 million), (8, 64, 16, 16) 1.01x (0.7 and 38 million), (128, 6, 12, 12) 0.97x (0.7
and 10 million, left whole), lenet-c2 1.58x, lenet-c1 1.33x. (Before, unheld, res-128 took
1.05-1.09x split and (16, 64, 16, 16) 1.09-1.76x.) ResNet-18's 3x3 layers (batch 16-32), all
split, take 0.77-0.96x the unsplit time. Parts take whole images: y and dx are written in place.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from .._args import interned
from .._blas import threads
from .._parallel import in_part, side_by_side, workers

PART_COPIES = 1_000_000  # a batch is split when each part copies this many elements (:func:`copies`)
PART_MACS = 15 * 10**6  # and its forward takes this many multiply-adds (res-128: 1.4 and 151 million a part)


def macs(g) -> int:
    """Multiply-adds of the forward of geometry ``g``."""
    return math.prod(g.y_shape) * g.in_channels // g.groups * math.prod(g.kernel)


def copies(g) -> int:
    """Elements of the forward's im2col matrix (every group's), x and y: the copying a call does, roughly."""
    columns = g.batch * math.prod(g.out_size) * g.in_channels * math.prod(g.kernel)
    return columns + math.prod(g.x_shape) + math.prod(g.y_shape)


def parts(g, least_copies: int | None = None, least_macs: int | None = None) -> tuple | None:
    """``((images, geometry), ...)``: slices covering the batch, one per BLAS thread, each with its
    part's geometry; None where the call runs whole (one thread, a small call: fewer than
    ``least_copies`` elements copied or ``least_macs`` multiply-adds per part, by default ``PART_COPIES``
    and ``PART_MACS``, symbolic arrays, or inside a part already), and where BLAS has more threads than
    the pool has workers (a machine with more cores than ``_parallel.WORKERS``: parts would leave
    BLAS's other threads idle)."""
    blas = threads()
    count = min(blas, g.batch)
    if count < 2 or blas > workers() or in_part():
        return None
    return _parts(g, count, PART_COPIES if least_copies is None else least_copies,
                  PART_MACS if least_macs is None else least_macs)


@functools.lru_cache(maxsize=256)
def _parts(g, count: int, least_copies: int, least_macs: int) -> tuple | None:
    """:func:`parts` for ``count`` parts, each with at least ``least_copies`` elements copied and
    ``least_macs`` multiply-adds; computed once."""
    if g.dtype == object or copies(g) < count * least_copies or macs(g) < count * least_macs:
        return None
    bounds = [g.batch * i // count for i in range(count + 1)]
    return tuple((slice(a, b), interned(dataclasses.replace(g, batch=b - a))) for a, b in zip(bounds, bounds[1:]))


def _images(piece: tuple) -> tuple:
    """(x's, y's and the weights' index) of a part of the batch (:func:`parts`): its images; every weight."""
    return (piece[0],), (piece[0],), ()


def forward(run, x, w, b, g, pieces: tuple | None, saved: dict | None, where=_images, copied: tuple = ()) -> np.ndarray:
    """y ``(N, C_out, *O)`` by ``run(x, w, b, geometry, saved, out=)`` on each part of ``pieces`` (:func:`parts`,
    or another algorithm's, whose ``where(piece)`` gives x's, y's and the weights' index), at once; by
    ``run(x, w, b, g, saved)`` whole where ``pieces`` is None. A training module's ``saved`` dict gets
    one dict per part, under ``"parts"``, holding its entries named in ``copied``."""
    if pieces is None:
        return run(x, w, b, g, saved)
    y = np.empty(g.y_shape, dtype=g.dtype)
    kept = _part_dicts(saved, len(pieces), copied)

    def part(i: int) -> None:
        x_index, y_index, w_index = where(pieces[i])
        target = y[y_index]
        _into(target, run(x[x_index], w[w_index], None if b is None else b[w_index], pieces[i][1], kept[i], out=target))

    side_by_side([functools.partial(part, i) for i in range(len(pieces))])
    return y


def backward(run, dy, x, w, g, pieces: tuple | None, need_dx: bool, need_dw: bool, need_db: bool,
             saved: dict | None, where=_images):
    """(dx or None, dw or None, db or None) by ``run(dy, x, w, geometry, need_dx, need_dw, need_db, saved, out=)``
    on each part of ``pieces`` (indexed as in :func:`forward`), with what :func:`forward` kept for each
    part; whole (no ``out``) where ``pieces`` is None."""
    if pieces is None:
        return run(dy, x, w, g, need_dx, need_dw, need_db, saved)
    kept = _taken_part_dicts(saved, len(pieces))
    dx = np.empty(g.x_shape, dtype=g.dtype) if need_dx else None

    def part(i: int) -> tuple:
        x_index, y_index, w_index = where(pieces[i])
        target = dx[x_index] if need_dx else None
        part_dx, dw, db = run(dy[y_index], None if x is None else x[x_index], w[w_index], pieces[i][1], need_dx,
                              need_dw, need_db, kept[i], out=target)
        if need_dx:
            _into(target, part_dx)
        return dw, db

    dws, dbs = zip(*side_by_side([functools.partial(part, i) for i in range(len(pieces))]))
    indices = [where(piece)[2] for piece in pieces]
    return dx, _whole(dws, indices, w.shape), _whole(dbs, indices, (g.out_channels,))


def _part_dicts(saved: dict | None, count: int, copied: tuple) -> list:
    """A training module's forward run in ``count`` parts: one dict per part (holding ``saved``'s
    entries named in ``copied``) for what each keeps, listed under ``saved["parts"]``; Nones without
    ``saved``."""
    if saved is None:
        return [None] * count
    saved["parts"] = [{key: saved[key] for key in copied if key in saved} for _ in range(count)]
    return saved["parts"]


def _taken_part_dicts(saved: dict | None, count: int) -> list:
    """What :func:`_part_dicts` listed (taken out of ``saved``), or Nones where the parts do not match."""
    kept = saved.pop("parts", None) if saved else None
    return kept if kept is not None and len(kept) == count else [None] * count


def _into(target: np.ndarray, result: np.ndarray) -> None:
    """A part's result where it belongs, unless the part wrote it there already (its ``out=``)."""
    if result is not target:
        target[...] = result


def _whole(grads: tuple, indices: list, shape: tuple) -> np.ndarray | None:
    """A weight gradient of the whole call from the parts' (None where it was not asked for): their sum
    where each part had every weight, else each one in its place."""
    if grads[0] is None:
        return None
    if indices[0] == ():
        return functools.reduce(np.add, grads)
    whole = np.empty(shape, dtype=grads[0].dtype)
    for grad, index in zip(grads, indices):
        whole[index] = grad
    return whole
