"""``algorithm="gemm"``: im2col + one matrix multiply per group (BLAS), col2im by strided ``+=``.

The input is first copied into a channel-major layout: ``(C_in, N, *P)`` ("images inside", padded;
for a stride > 1 each dim stored phase by phase: :class:`Phased`),
``(C_in, *L, N)`` ("images innermost", its zero padding virtual: windows that reach into it copy
zeros) or ``(C_in, N·P₁·P₂·…)`` ("flat", stride 1: see :class:`Flat` and :func:`flat_grid`, whose
im2col matrix holds only the offsets of the last dims and which runs one product per kernel row on
shifted views of it). For a chunk of the work the im2col matrix is
``cols (C_in·K, columns)``, K = prod(kernel), one column per (image, output position) of the chunk:
row ``(c, offset)`` holds the input element that kernel ``offset`` of channel c meets there. It is
built by a loop over the K kernel offsets, each one strided slice copy (no fancy indexing, no
per-pixel Python; for short rows with images inside, in two copies through a stage:
:func:`_staged_im2col`). The rows of one group are contiguous, so per group and chunk there is a single
large matrix product:

    y_g   = W_g (C_out/G, C_in/G·K)  @ cols_g  (C_in/G·K, columns)
    dW_gᵀ += cols_g (C_in/G·K, columns) @ dy_gᵀ (columns, C_out/G)
    dcols_g = W_gᵀ (C_in/G·K, C_out/G) @ dy_g (C_out/G, columns),  then col2im: dxc[offset slices] += dcols

dW is computed transposed: OpenBLAS runs ``cols @ dyᵀ`` faster than ``dy @ colsᵀ``, the same product
(measured, ms per tile: (16, n=16384) x (144, n) 1.43 -> 0.65, (64, 4096) x (576, 4096) 2.14 -> 1.78,
(128, 2048) x (1152, 2048) 3.60 -> 3.27; forward + backward: cifar-16 18.0 -> 14.1, conv3d 84 -> 69,
lenet-c2 1.70 -> 1.53, down-s2 30.6 -> 27.9, medians of five alternating blocks in one process).

The layout is chosen for long copies (:func:`choose_layout`): each kernel offset copies runs of one
output row (images inside), of one output row times the batch (images innermost, which wins for
short rows, at the price of a transpose of the input and output, done as 2-D transposes in tiles
that stay in cache), or of a whole chunk of images (flat).

Where each image's product is small (images inside, a network's first layers: :func:`by_image`) and
OpenBLAS runs its AVX-512 kernels (:func:`avx512_kernels`), the products run image by image in its
small-matrix kernel, reading and writing y and dy in their own ``(N, C, *S)`` layout.

For a stride-1 convolution whose padded input is not much larger than its output, the input
gradient is computed instead as the notes derive it: a forward correlation of the padded dy with the
rotated kernel (another im2col and product, no col2im); :func:`correlate_input_grad` decides.

Chunks are sized to stay in cache (``CHUNK_BYTES`` of im2col per chunk) and never exceed the
workspace limit (:func:`convgrad.get_workspace_limit`). Scratch buffers are reused across chunks and
calls. The copies run on one core (:meth:`Layout.each_channel`: OpenBLAS's spinning worker holds the
other after each product); a group of 2 to 23 filters is computed as a multiple of 8
(:func:`product_rows`); a "same" convolution's backward arranges dy once for dW and dx
(:func:`shared_grad_output`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .._args import plain_geometry
from .._blas import available, kernels, matmul_add, transpose
from .._config import get_workspace_limit, sharing
from .._padding import pad
from .._parallel import over_channels
from .._windows import kernel_offsets
from .._workspace import aligned_empty, scratch
from . import cores
from .base import Algorithm, bias_grad, dilate, grid_made_nan, grouped, take_kept, unpadded

CHUNK_BYTES = 4 * 2**20  # im2col bytes per chunk: large enough for efficient products, small enough for cache
TRANSPOSE_TILE = 8192  # elements per tile of a transpose done as a 2-D one (32 KiB of float32, in cache both ways)
SPLIT_SLACK = 1.5  # a band of output rows grows by up to half rather than leave a short last band (lenet-c2 2.3 -> 1.9 ms)
KEEP_BYTES = 16 * 2**20  # a training module keeps an im2col matrix of one chunk (depthwise: x arranged) up to this size
FLAT_WASTE = 1.1  # the flat layout computes at most this many grid positions per output (measured: res-128, 9·8/8² = 1.125, flat 16.6 ms against 14.8 images innermost)
FEW_CHANNELS, FEW_CHANNELS_WASTE = (8, 32), 1.13  # ... or this many, for groups of 8 to 32 input channels (Flat.suits)
SPLIT_ROWS = 64  # a 1-D kernel is cut into rows only while each product keeps this many rows
PHASE_READS = 6  # a strided convolution is phased when its windows read each input element this often (Phased.suits)
SHORT_ROW = 40  # output rows shorter than this are copied with the images innermost (unless flat)
(SLOT_INPUT, SLOT_GRAD_OUTPUT, SLOT_COLS, SLOT_DCOLS, SLOT_DINPUT, SLOT_OUTPUT, SLOT_STAGE, SLOT_TILE,
 SLOT_GRAD_ROWS) = range(9)
PLANS = 512  # decisions cached per geometry (the layout, its tiles and runs, the dx correlation's geometry)
ALIASED_STRIDE = 512  # bytes: a transpose gathering along a multiple of this stride goes through a staged tile
BLAS_TRANSPOSE = 16384  # elements from which a transpose is BLAS's (_transposed)
GRAD_ROWS_FROM = 16  # dW's products read dy from a position-major copy when it has this many rows (_grad_operand)
AVX512_KERNELS = frozenset({"skylakex", "cooperlake", "sapphirerapids"})  # OpenBLAS's kernels with a small-matrix path (avx512_kernels)


@dataclass(frozen=True)
class Tile:
    """A piece of the work: images ``batch`` × output rows ``rows`` (first spatial dim); the flat layout's
    tiles read the range ``inputs`` of its rows (the row layouts' windows index the whole input)."""

    batch: slice
    rows: slice
    inputs: slice
    out_size: tuple[int, ...]
    span: int = 0  # the flat layout: columns of the tile's grid (its images end to end)

    @property
    def count(self) -> int:
        return self.batch.stop - self.batch.start

    @property
    def columns(self) -> int:
        """Columns of this tile's im2col matrix: images × output positions (grid positions, flat layout)."""
        return self.span or self.count * math.prod(self.out_size)


@dataclass(frozen=True)
class Layout:
    """Where the images go in a channel-major array: after the channels (``inside``) or last.

    A layout provides every step of the algorithm that depends on where the data lies: the padded
    copy of the input, the tiles, im2col and col2im, and the way back to ``(N, C, *S)``.
    """

    innermost: bool
    nd: int
    threads: bool = False  # whether copies are split across cores (see :meth:`each_channel`)

    def each_channel(self, job, channels: int, elements: int) -> None:
        """Run ``job(channel slice)`` over ``channels``: split across cores (``over_channels``) when
        ``threads``, else on this core at once.

        gemm's copies run on one core: they are memory-bound, and after each matrix product
        OpenBLAS's worker thread spins (about 0.1 s) on the other core. Measured: a padded copy
        after a product took 2.3 ms on two threads against 1.6 ms on one. Depthwise, whose copies
        follow no product, keeps them split (dw-3x3 18.9 against 22.2 ms)."""
        if self.threads:
            over_channels(job, channels, elements)
        else:
            job(slice(0, channels))

    def shape(self, channels: int, batch: int, spatial) -> tuple[int, ...]:
        return (channels,) + tuple(spatial) + (batch,) if self.innermost else (channels, batch) + tuple(spatial)

    def index(self, channels, batch, spatial) -> tuple:
        """Index of (channel slice, image slice, spatial slices) in this layout."""
        return (channels,) + tuple(spatial) + (batch,) if self.innermost else (channels, batch) + tuple(spatial)

    def arrange(self, array: np.ndarray, target: np.ndarray, channels: slice) -> None:
        """Copy ``array (N, C, *S)``'s channels into ``target`` (this layout; a whole buffer when innermost)."""
        source = array[:, channels]
        if not self.innermost:
            target[channels] = source.swapaxes(0, 1)
            return
        _transposed(_readable(source, source.shape[0]), _matrix(target[channels], -1, source.shape[0]))

    def restore(self, array: np.ndarray, target: np.ndarray) -> np.ndarray:
        """``target (N, C, *S)`` from ``array`` (this layout), channel by channel (:meth:`each_channel`)."""
        def job(c: slice) -> None:
            source = array[c]
            if not self.innermost:
                target[:, c] = source.swapaxes(0, 1)
                return
            _transposed(_readable(source, -1, target.shape[0]), _matrix(target[:, c], target.shape[0]))

        self.each_channel(job, target.shape[1], target.size)
        return target

    def arranged(self, x: np.ndarray, g, slot: int = SLOT_INPUT) -> np.ndarray:
        """x ``(N, C, *L)`` in this layout (:meth:`stored`), in one copy: unpadded where the zero padding
        is virtual, else padded (zeros around x, or pad()'s copies of x for the other modes)."""
        size, _ = self.stored(g)
        if g.padding_mode != "zeros":
            x = pad(x, g.pads, g.padding_mode)
        shape = self.shape(x.shape[1], x.shape[0], size)
        xc = scratch(math.prod(shape), g.dtype, slot).reshape(shape)
        centre = self.index(slice(None), slice(None), _centre(g, x.shape[2:], size))

        def job(c: slice) -> None:
            if x.shape[2:] != size:  # zeros around x
                xc[c].fill(0)
            self.arrange(x, xc[centre], c)

        self.each_channel(job, shape[0], xc.size)
        return xc

    def stored(self, g) -> tuple:
        """(spatial size, virtual padding) of the input as this layout stores it. Images innermost leave
        zero padding virtual: x unpadded (no padded copy: 5.3 MB less to write for down-s2), the
        windows that reach into the padding copy zeros (:func:`_window_indices`). Images inside pad
        (zeroing the cut windows there writes runs of a few elements: stem-7x7 lost 3 ms), as do the
        other padding modes, whose padding holds copies of x."""
        if g.padding_mode == "zeros" and self.innermost:
            return g.in_size, g.pads
        return g.padded_size, ((0, 0),) * g.nd

    def tiles(self, g, buffers: int = 1, limit: int | None = None) -> list[Tile]:
        """Split the work into tiles whose ``buffers`` im2col-sized buffers fit a chunk (or ``limit`` bytes).

        Images inside: chunks of whole images (bands of rows for an image too large on its own). Images
        innermost: bands of output rows over the whole batch, so that every copied run spans the batch.
        Bands of a chunk grow by up to ``SPLIT_SLACK`` (within the workspace limit) to make one tile.
        """
        row_bytes = buffers * g.in_channels * math.prod(g.kernel) * math.prod(g.out_size[1:]) * g.dtype.itemsize
        slack = SPLIT_SLACK if limit is None else 1  # a limit given is a bound, not a chunk size
        limit, rows = limit or chunk_limit(), g.out_size[0]
        per_image = max(1, row_bytes * rows)
        everything = slice(0, g.batch)
        if not self.innermost and per_image <= limit:
            step = limit // per_image
            return [Tile(slice(i, min(i + step, g.batch)), slice(0, rows), slice(None), g.out_size)
                    for i in range(0, g.batch, step)]
        images = g.batch if self.innermost else 1
        band = max(1, limit // max(1, row_bytes * images))
        if rows <= slack * band and rows * row_bytes * images <= get_workspace_limit():
            band = rows  # one tile rather than a short last one, whose calls cost more than the larger tile
        batches = [everything] if self.innermost else [slice(n, n + 1) for n in range(g.batch)]
        return [
            Tile(b, slice(r, r1), slice(None), (r1 - r,) + g.out_size[1:])
            for b in batches
            for r, r1 in ((r, min(rows, r + band)) for r in range(0, rows, band))
        ]

    def _windows(self, g, t: Tile) -> tuple:
        """:func:`_window_indices` of tile t."""
        return _window_indices(self, g.kernel, g.stride, g.dilation, self.stored(g), (t.batch.start, t.batch.stop),
                               t.rows.start, t.out_size)

    def im2col(self, xc: np.ndarray, g, t: Tile, slot: int | None = SLOT_COLS) -> np.ndarray:
        """The input ``xc`` (this layout, all of it) -> tile t's cols ``(G, C_in/G·K, columns)`` in a
        scratch buffer (a new array when ``slot`` is None); zeros where a window meets the padding."""
        cols_shape = (xc.shape[0],) + g.kernel + self.shape(1, t.count, t.out_size)[1:]
        cols = _buffer(cols_shape, g.dtype, slot)
        if _staged(self, g):
            self.each_channel(lambda c: _staged_im2col(xc, cols[c], g, t, c), cols_shape[0], cols.size)
            return cols.reshape(g.groups, -1, t.columns)
        windows = self._windows(g, t)

        def job(c: slice) -> None:
            for target, source, padding in windows:
                for zeros in padding:
                    cols[(c,) + zeros] = 0
                if source is not None:
                    cols[(c,) + target] = xc[(c,) + source]

        self.each_channel(job, cols_shape[0], cols.size)
        return cols.reshape(g.groups, -1, t.columns)

    def col2im(self, dcols: np.ndarray, dxc: np.ndarray, g, t: Tile) -> None:
        """Adjoint of :meth:`im2col`: tile t's dcols ``(G, C_in/G·K, columns)`` added into dxc (all of it;
        what fell on the padding is dropped)."""
        dcols = dcols.reshape((dxc.shape[0],) + g.kernel + self.shape(1, t.count, t.out_size)[1:])
        windows = self._windows(g, t)

        def job(c: slice) -> None:
            for target, source, _ in windows:
                if source is not None:
                    dxc[(c,) + source] += dcols[(c,) + target]

        self.each_channel(job, dxc.shape[0], dcols.size)

    def rows(self, g) -> int:
        """How many matrix products one tile takes (one per kernel row in the flat layout)."""
        return 1

    def parts(self, cols: np.ndarray, g, t: Tile) -> list:
        """The im2col matrix of each product, ``(G, C_in/G·K/rows, columns)`` (views of ``cols``)."""
        return [cols]

    def dcols_buffer(self, g, t: Tile) -> np.ndarray:
        """Scratch for the gradient of a tile's im2col matrix (filled by :meth:`parts` views)."""
        shape = (g.groups, g.in_channels // g.groups * math.prod(g.kernel), t.columns)
        return scratch(math.prod(shape), g.dtype, SLOT_DCOLS).reshape(shape)

    def tile_input(self, xc: np.ndarray, t: Tile) -> np.ndarray:
        """What tile t's im2col reads: all of ``xc`` (its windows are indices into the whole input)."""
        return xc

    def tile_output(self, yc: np.ndarray, t: Tile) -> np.ndarray:
        """The output rows tile t writes, all channels (this layout)."""
        return yc[self.index(slice(None), t.batch, (t.rows,) + (slice(None),) * (self.nd - 1))]

    def output_buffer(self, channels: int, g, slot: int) -> np.ndarray:
        """Scratch for the products' outputs (output positions of every image), this layout."""
        shape = self.shape(channels, g.batch, g.out_size)
        return scratch(math.prod(shape), g.dtype, slot).reshape(shape)

    def output(self, yc: np.ndarray, g, out: np.ndarray | None = None) -> np.ndarray:
        """y ``(N, C_out, *O)`` (``out``, or a new array) from the products' output ``yc``."""
        return self.restore(yc, _target(out, g.y_shape, g.dtype))

    def grad_output(self, dy: np.ndarray, g, channels: int) -> np.ndarray:
        """dy ``(N, C_out, *O)`` in this layout (scratch of ``channels`` ≥ C_out rows, zero past C_out)."""
        dyc = self.output_buffer(channels, g, SLOT_GRAD_OUTPUT)
        self.each_channel(lambda c: self.arrange(dy, dyc, c), g.out_channels, dyc.size)
        dyc[g.out_channels:] = 0
        return dyc

    def input_grad_buffer(self, g) -> np.ndarray:
        """Zeroed scratch for the (stored: :meth:`stored`) input's gradient, this layout."""
        shape = self.shape(g.in_channels, g.batch, self.stored(g)[0])
        dxc = scratch(math.prod(shape), g.dtype, SLOT_DINPUT).reshape(shape)
        self.each_channel(lambda c: dxc[c].fill(0), shape[0], dxc.size)
        return dxc

    def input_gradient(self, dxc: np.ndarray, g, out: np.ndarray | None = None) -> np.ndarray:
        """dx ``(N, C_in, *L)`` (a new array, or ``out`` where it can be) from :meth:`input_grad_buffer`'s:
        x's own positions restored (zero padding), or all restored and folded back by the padding's
        adjoint (the other modes)."""
        inner = g.in_size if g.padding_mode == "zeros" else g.padded_size
        return _gradient(self, dxc[self.index(slice(None), slice(None), _centre(g, inner, self.stored(g)[0]))], g, out)


@dataclass(frozen=True)
class Phased(Layout):
    """Images inside, each strided dim of the padded input stored phase by phase: position q of a dim
    with stride s at ``(q mod s)·Q + q div s`` (Q = ⌈padded length / s⌉). Kernel offset κ then reads,
    for consecutive outputs, consecutive elements ``(κd mod s)·Q + κd div s + o`` instead of every s-th:
    im2col and col2im copy runs of a whole output row (stem-7x7, stride 2: im2col 6.7 -> 4.3 ms with the
    phase split, col2im 17.8 -> 10.3). :meth:`arranged` copies each element of x once, by one strided
    copy per combination of phases; dx comes back from the phases the same way (:meth:`input_gradient`)."""

    @staticmethod
    def suits(g) -> bool:
        """A stride > 1 whose windows read each input element ``PHASE_READS`` times or more (K ≥
        PHASE_READS · Π stride): the split, a pass of strided reads over x, then pays. Measured, forward
        + backward, inside against phased (ms, medians of six alternating blocks): stem-7x7 (with dx) 78.1
        -> 69.3; first layers (no dx) 11x11/4 on (8, 3, 227, 227) 21.0 -> 20.1, 7x7/2 on (8, 16, 64, 64)
        15.6 -> 14.0, 5x5/2 on (8, 3, 128, 128) 4.8 -> 4.3; but 3x3/2 on (32, 3, 32, 32) 0.61 -> 0.73
        and on (8, 16, 160, 160) 34.4 -> 40.4."""
        return any(s > 1 for s in g.stride) and math.prod(g.kernel) >= PHASE_READS * math.prod(g.stride)

    def stored(self, g) -> tuple:
        return tuple(s * _quotient(p, s) for p, s in zip(g.padded_size, g.stride)), ((0, 0),) * g.nd

    def arranged(self, x: np.ndarray, g, slot: int = SLOT_INPUT) -> np.ndarray:
        """x ``(N, C, *L)`` padded as ``g`` says (zeros around it, or pad()'s copies), split into phases."""
        source, lows = _phase_source(x, g)
        shape = self.shape(g.in_channels, g.batch, self.stored(g)[0])
        xc = scratch(math.prod(shape), g.dtype, slot).reshape(shape)
        copies = _phase_copies(g.stride, g.padded_size, source.shape[2:], lows)

        def job(c: slice) -> None:
            if source.shape[2:] != g.padded_size:  # zeros around x
                xc[c].fill(0)
            for stored, read in copies:
                xc[(c, slice(None)) + stored] = source[(slice(None), c) + read].swapaxes(0, 1)

        self.each_channel(job, shape[0], xc.size)
        return xc

    def _windows(self, g, t: Tile) -> tuple:
        quotients = tuple(n // s for n, s in zip(self.stored(g)[0], g.stride))
        return _phased_windows(g.kernel, g.stride, g.dilation, quotients, (t.batch.start, t.batch.stop),
                               t.rows.start, t.out_size)

    def input_gradient(self, dxc: np.ndarray, g, out: np.ndarray | None = None) -> np.ndarray:
        """dx ``(N, C_in, *L)`` (a new array, or ``out`` where it can be) gathered back from the phases: x's
        own positions (zero padding), or the whole padded input folded back by the padding's adjoint
        (the other modes)."""
        zeros = g.padding_mode == "zeros"
        dx = _target(out, g.x_shape, g.dtype) if zeros else np.empty(g.padded_shape, dtype=g.dtype)
        copies = _phase_copies(g.stride, g.padded_size, dx.shape[2:], _phase_lows(g))

        def job(c: slice) -> None:
            for stored, read in copies:
                dx[(slice(None), c) + read] = dxc[(c, slice(None)) + stored].swapaxes(0, 1)

        self.each_channel(job, g.in_channels, dx.size)
        return dx if zeros else owned(unpadded(dx, g))


def _quotient(length: int, stride: int) -> int:
    """Positions per phase of a dim of ``length`` split by ``stride`` (the first phase's, the longest)."""
    return -(-length // stride)


def _phase_source(x: np.ndarray, g) -> tuple:
    """(what the phases hold: x, or x padded by pad() for the other padding modes; :func:`_phase_lows`)."""
    return (x if g.padding_mode == "zeros" else pad(x, g.pads, g.padding_mode)), _phase_lows(g)


def _phase_lows(g) -> tuple:
    """Where what the phases hold starts in the padded input, per dim: x at lo (zero padding), else the
    padded copy at 0."""
    return tuple(lo for lo, _ in g.pads) if g.padding_mode == "zeros" else (0,) * g.nd


@functools.lru_cache(maxsize=256)
def _phase_copies(stride, padded, lengths, lows) -> tuple:
    """Per combination of phases: (slices into the phased input, strided slices of an array of spatial
    ``lengths`` placed at ``lows`` in the padded input) that copy its elements of that phase, in order."""
    per_dim = []
    for s, p, n, lo in zip(stride, padded, lengths, lows):
        q, pieces = _quotient(p, s), []
        for phase in range(s):
            first = (phase - lo) % s  # x's first position in this phase
            if first < n:
                start = phase * q + (first + lo) // s
                pieces.append((slice(start, start + _quotient(n - first, s)), slice(first, None, s)))
        per_dim.append(pieces)
    copies = [((), ())]
    for pieces in per_dim:
        copies = [(stored + (a,), read + (b,)) for stored, read in copies for a, b in pieces]
    return tuple(copies)


@functools.lru_cache(maxsize=256)
def _phased_windows(kernel, stride, dilation, quotients, batch, first_row, out_size) -> tuple:
    """:meth:`Phased._windows`: per kernel offset κ, (index into the tile's cols, index into the phased
    input, no zeros): output o of dim i meets phase ``κd mod s`` at ``κd div s + o`` (+ the tile's first row)."""
    result, everything = [], slice(None)
    for offset in kernel_offsets(kernel):
        source = []
        for dim, (k, s, d, q, o) in enumerate(zip(offset, stride, dilation, quotients, out_size)):
            start = (k * d) % s * q + (k * d) // s + (first_row if dim == 0 else 0)
            source.append(slice(start, start + o))
        result.append((offset + (everything,) * (1 + len(out_size)), (slice(*batch),) + tuple(source), ()))
    return tuple(result)


@dataclass(frozen=True)
class Flat(Layout):
    """Images inside, flattened: ``(C, N·P + margin)`` with P = P₁·P₂·… the period of an image
    (:func:`flat_period`: the padded size, or less where neighbours share their zero padding); stride 1 only.

    Kernel offset κ then meets, for every output position of a chunk of images at once, one contiguous
    run of each channel's row, starting at ``Σ κᵢ·dᵢ·Sᵢ`` (Sᵢ the flat stride of dim i; shifted where
    a padding is virtual: :func:`flat_grid`). The
    products run over the grid of all flat positions from the chunk's first output to its last:
    positions past the end of an output row (whose windows wrap into the next row) and the padding rows
    between images are computed and dropped, at most ``FLAT_WASTE`` grid positions per output.
    dy is zero at the dropped positions, so they add nothing to dW nor (through col2im) to dx.

    In 2-D and 3-D the im2col matrix holds only the offsets of the last dims (κ₂, κ₃): the offsets of
    the first dim shift the whole run by ``κ₁·d₁·S₁``, so the matrix of kernel row κ₁ is a view of that
    smaller one, and the convolution is one product per kernel row, summed (k₁ times less im2col
    copying, for products that are each k₁ times smaller).
    """

    masked: bool = False  # the last dim's padding is virtual: reads that wrap around a row are zeroed (see flat_grid)

    @property
    def _inside(self) -> Layout:
        """The images-inside layout, whose padded copy and way back this one reshapes."""
        return Layout(False, self.nd, self.threads)

    @staticmethod
    def suits(g, masked: bool = False) -> bool:
        """Numbers, stride 1, few dropped positions, and one image's im2col (twice) within the workspace limit.

        Few: ``FLAT_WASTE`` grid positions per output, or ``FEW_CHANNELS_WASTE`` (8×8 images with
        padding 1: 9·8/64 = 1.125) for groups of 8 to 32 input channels (``FEW_CHANNELS``), whose
        copies weigh more against their products. Measured at 8×8, 3×3, padding 1, forward + backward,
        flat against images innermost, medians of five alternating blocks: 16 channels, batch 32 0.72
        against 0.86 ms, batch 64 1.11 against 1.46; 32 channels, batch 32 1.48-1.51 against 1.57-1.69
        (a training module 1.45 against 1.53), batch 128 4.95-5.21 against 6.16-6.43; 64 channels 1.02
        times innermost's, 128 channels 1.07-1.08; 4 channels 1.01; 1 channel 1.23 (0.39 against 0.32
        ms; without dx, against images inside, 0.31 against 0.19)."""
        if g.dtype == object or any(s != 1 for s in g.stride) or g.batch * math.prod(g.out_size) == 0:
            return False
        P = flat_grid(g, masked).size
        fits = 2 * g.in_channels * _row_offsets(g) * P * g.dtype.itemsize <= get_workspace_limit()
        few = FEW_CHANNELS[0] <= g.in_channels // g.groups <= FEW_CHANNELS[1]
        waste = FEW_CHANNELS_WASTE if few else FLAT_WASTE
        return fits and P <= waste * math.prod(g.out_size)

    def grid(self, g) -> FlatGrid:
        return flat_grid(g, self.masked)

    def rows(self, g) -> int:
        return _kernel_rows(g)

    def starts(self, g) -> tuple[int, ...]:
        """How far each kernel row (:func:`_kernel_rows`) reads past the first (in 1-D, a block of offsets)."""
        return _row_starts(self, g)

    def tiles(self, g, buffers: int = 1, limit: int | None = None) -> list[Tile]:
        """Chunks of whole images, each one grid; ``inputs`` is the chunk's range of the flat rows (with
        the zeros its windows read before its first image and past its last)."""
        grid = self.grid(g)
        P, reach = grid.size, grid.front + grid.margin
        per_image = buffers * g.in_channels * _row_offsets(g) * P * g.dtype.itemsize
        step = max(1, (limit or chunk_limit(flat=True)) // max(1, per_image))
        return [Tile(slice(i, i1), slice(0, g.out_size[0]), slice(i * P, i1 * P + reach), g.out_size, grid.span(g, i1 - i))
                for i, i1 in ((i, min(i + step, g.batch)) for i in range(0, g.batch, step))]

    def arranged(self, x: np.ndarray, g, slot: int | None = SLOT_INPUT) -> np.ndarray:
        """x ``(N, C, *L)`` as ``(C, front + N·P + margin)``: each image's data at offset ``lead`` of each
        dim of its period (:func:`flat_grid`), zeros around it (the padding modes other than zeros are
        copied padded); in scratch ``slot``, or a new array (to be kept) when None."""
        rows = self._zeroed_rows(g, slot, zero=False)
        images, source, where = self._images(rows, g), x, self._data(g)
        if g.padding_mode != "zeros":
            source = pad(x, g.pads, g.padding_mode)
        blank = rows.shape[1] > math.prod(g.in_size) * g.batch and g.padding_mode == "zeros"

        def job(c: slice) -> None:
            if blank:
                rows[c].fill(0)
            images[(c, slice(None)) + where] = source[:, c].swapaxes(0, 1)

        self.each_channel(job, g.in_channels, rows.size)
        return rows

    def rows_shape(self, g) -> tuple[int, int]:
        """Shape of the input in this layout: ``(C_in, front + N·P + margin)``."""
        grid = self.grid(g)
        return g.in_channels, grid.front + g.batch * grid.size + grid.margin

    def _zeroed_rows(self, g, slot: int | None, zero: bool = True) -> np.ndarray:
        """Scratch of :meth:`rows_shape` in ``slot`` (a new array when None), zeroed (split over cores)
        when ``zero``."""
        rows = _buffer(self.rows_shape(g), g.dtype, slot)
        if zero:
            self.each_channel(lambda c: rows[c].fill(0), g.in_channels, rows.size)
        return rows

    def _images(self, rows: np.ndarray, g) -> np.ndarray:
        """The images of flat rows ``(C, front + N·P + margin)`` as ``(C, N, *period)`` (a view)."""
        grid = self.grid(g)
        return rows[:, grid.front: grid.front + g.batch * grid.size].reshape((rows.shape[0], g.batch) + grid.period)

    def _data(self, g) -> tuple:
        """Where an image's data lies in its period: x's own positions (zeros mode), else the whole padded image."""
        if g.padding_mode != "zeros":
            return (slice(None),) * g.nd
        return tuple(slice(lead, lead + n) for lead, n in zip(self.grid(g).lead, g.in_size))

    def _runs(self, g, t: Tile) -> tuple:
        """(index of the matrix row block, run within the tile's input) of each offset of the last dims."""
        return _flat_runs(self, g, t.span)

    def _mask(self, cols: np.ndarray, g, c: slice) -> None:
        """Zero the entries of ``cols (C, K/rows, extent)`` (channels c) whose reads fell off a row of x
        (masked grids: they met the neighbouring row where x's padding is virtual). Column j of a row
        block k (last-dim offset k mod k_last) is every ``period[-1]``-th entry from j: one strided fill."""
        cuts = self.grid(g).cuts
        for k in range(cols.shape[1] if cuts else 0):
            for j in cuts[k % len(cuts)]:
                cols[c, k, j:: g.in_size[-1]] = 0

    def im2col(self, xc: np.ndarray, g, t: Tile, slot: int | None = SLOT_COLS) -> np.ndarray:
        runs = self._runs(g, t)
        cols = _buffer((xc.shape[0], len(runs), runs[0][1].stop - runs[0][1].start), g.dtype, slot)

        def job(c: slice) -> None:
            for k, run in runs:
                cols[c, k] = xc[c, run]
            self._mask(cols, g, c)

        self.each_channel(job, cols.shape[0], cols.size)
        return cols.reshape(g.groups, -1, cols.shape[2])

    def parts(self, cols: np.ndarray, g, t: Tile) -> list:
        return [cols[..., start: start + t.span] for start in self.starts(g)]

    def dcols_buffer(self, g, t: Tile) -> np.ndarray:
        extent = t.span + self.starts(g)[-1]
        shape = (g.groups, g.in_channels // g.groups * _row_offsets(g), extent)
        return scratch(math.prod(shape), g.dtype, SLOT_DCOLS).reshape(shape)

    def col2im(self, dcols: np.ndarray, dxc: np.ndarray, g, t: Tile) -> None:
        runs = self._runs(g, t)
        dcols = dcols.reshape(dxc.shape[0], len(runs), -1)

        def job(c: slice) -> None:
            self._mask(dcols, g, c)
            for k, run in runs:
                dxc[c, run] += dcols[c, k]

        self.each_channel(job, dxc.shape[0], dcols.size)

    def tile_input(self, xc: np.ndarray, t: Tile) -> np.ndarray:
        """The flat rows of the tile's images, all channels."""
        return xc[:, t.inputs]

    def tile_output(self, yc: np.ndarray, t: Tile) -> np.ndarray:
        """The tile's grid, all channels."""
        return yc[:, t.inputs.start: t.inputs.start + t.span]

    def output_buffer(self, channels: int, g, slot: int) -> np.ndarray:
        shape = (channels, g.batch * self.grid(g).size)
        return scratch(math.prod(shape), g.dtype, slot).reshape(shape)

    def positions(self, yc: np.ndarray, g) -> np.ndarray:
        """The output positions within the grid ``yc (C, N·P)`` (or ``(C, N, P)``): a view ``(C, N, *O)``."""
        images = yc.reshape((yc.shape[0], g.batch) + self.grid(g).period)
        return images[(slice(None), slice(None)) + tuple(slice(0, o) for o in g.out_size)]  # o ≤ period (flat_period)

    def output(self, yc: np.ndarray, g, out: np.ndarray | None = None) -> np.ndarray:
        return self._inside.restore(self.positions(yc, g), _target(out, g.y_shape, g.dtype))

    def grad_output(self, dy: np.ndarray, g, channels: int) -> np.ndarray:
        dyc = self.output_buffer(channels, g, SLOT_GRAD_OUTPUT)
        self.place(dy, dyc, dyc, g)
        return dyc

    def place(self, dy: np.ndarray, buffer: np.ndarray, grid: np.ndarray, g) -> None:
        """Zero ``buffer`` (rows ≥ C_out) and put dy ``(N, C_out, *O)`` at the output positions of ``grid``
        (a view of it, ``(rows, N·P)``)."""
        positions = self.positions(grid, g)

        def job(c: slice) -> None:
            buffer[c].fill(0)
            positions[c] = dy[:, c].swapaxes(0, 1)

        self.each_channel(job, g.out_channels, buffer.size)
        buffer[g.out_channels:] = 0

    def input_grad_buffer(self, g) -> np.ndarray:
        return self._zeroed_rows(g, SLOT_DINPUT)

    def input_gradient(self, dxc: np.ndarray, g, out: np.ndarray | None = None) -> np.ndarray:
        """dx ``(N, C_in, *L)`` from flat rows ``(C_in, front + N·P + margin)``: its own positions (zeros mode;
        the rest is padding, some of it shared between neighbours), else the padding's adjoint."""
        return _gradient(self._inside, self._images(dxc, g)[(slice(None), slice(None)) + self._data(g)], g, out)


@functools.lru_cache(maxsize=PLANS)
def _flat_runs(layout: Flat, g, span: int) -> tuple:
    """:meth:`Flat._runs` of a tile of ``span`` columns, computed once."""
    extent = span + layout.starts(g)[-1]
    return tuple((k, slice(start, start + extent)) for k, start in enumerate(layout.grid(g).starts[: _row_offsets(g)]))


@functools.lru_cache(maxsize=PLANS)
def _row_starts(layout: Flat, g) -> tuple[int, ...]:
    """:meth:`Flat.starts`, computed once: the grid's start of each row's first offset, less the first's."""
    starts = layout.grid(g).starts
    return tuple(start - starts[0] for start in starts[:: _row_offsets(g)])


def _kernel_rows(g) -> int:
    """The flat layout's products per tile: one per kernel row (a run of the last dim's offsets: k_h
    rows in 2-D, k_d·k_h in 3-D), each over an im2col matrix of the last dim's offsets only. In 3-D,
    rows of whole k_h·k_w planes (k_d products) copy x k_h times as often: with conv3d's 16 channels,
    products of 48 rows (forward + backward, in parts on two cores) took 0.685-0.69x as long as those of
    144 rows, stacked (3 products of 9 offsets in one; unstacked products of 48 rows stacked: 0.80x; 27
    products of 16 rows, no im2col: 0.85x); (16, 16, 16, 32, 32) with 32 filters 0.85x, 32 and 64
    channels 0.97-0.99x. In 1-D the kernel is cut into k/b rows of b offsets, b the smallest divisor ≥ 3
    of k that still gives each product ``C_in/G·b ≥ SPLIT_ROWS`` rows (else one row of all k): conv1d
    (k = 9, 32 channels) runs 3 products of 96 rows, with 3 times less im2col copying (measured: 50 ->
    43 ms; b = 1, 9 products of 32 rows and no copying at all: 48 ms)."""
    if g.nd > 1:
        return math.prod(g.kernel[:-1])
    k, channels = g.kernel[0], g.in_channels // g.groups
    return next((k // b for b in range(3, k) if k % b == 0 and channels * b >= SPLIT_ROWS), 1)


def _row_offsets(g) -> int:
    """Kernel offsets per row of the flat layout's im2col matrix: those of the last dims (of one block
    of the kernel, in 1-D)."""
    return math.prod(g.kernel) // _kernel_rows(g)


def _matrix(a: np.ndarray, *shape) -> np.ndarray | None:
    """``a`` as a 2-D view of ``shape`` (one entry -1 at most: ``(rows,)`` means ``(rows, -1)``), or None
    when its memory does not allow one."""
    view = a.view()
    try:
        view.shape = shape if len(shape) == 2 else (shape[0], -1)
    except AttributeError:
        return None
    return view


def _readable(a: np.ndarray, *shape) -> np.ndarray:
    """:func:`_matrix` of ``a``, or of a C-ordered copy of it in scratch (a caller's non-contiguous array)."""
    view = _matrix(a, *shape)
    if view is not None:
        return view
    copy = _buffer(a.shape, a.dtype, SLOT_STAGE)
    copy[...] = a
    return _matrix(copy, *shape)


def _transposed(source: np.ndarray, target: np.ndarray) -> None:
    """``target (b, a) = source (a, b)ᵀ`` in tiles of ``TRANSPOSE_TILE`` elements along the longer dim,
    each read and written in cache (3x faster than one call on the suite's outputs; staged tiles are
    4 times larger, to spread the cost of each tile's extra call: measured best).

    The copy walks down the source's columns; where its row stride is a multiple of
    ``ALIASED_STRIDE`` bytes (4 KiB for 16 channels of 8×8, say) those reads all fall in a few cache
    sets and evict each other (8x slower, measured), so each tile is first copied, row by row, into
    scratch whose rows are 16 elements longer. Where NumPy's BLAS has a transposing copy, that does
    it instead from ``BLAS_TRANSPOSE`` elements on (:func:`convgrad._blas.transpose`: 0.35-0.5x the
    time; below, its call costs more than it saves: (64, 96) 3.7 -> 5.2 µs, (100, 250) 10.7 -> 6.8)."""
    if source.size >= BLAS_TRANSPOSE and transpose(source, target):
        return
    along_rows = source.shape[0] >= source.shape[1]
    aliased = source.strides[0] % ALIASED_STRIDE == 0 and source.shape[0] > 1
    step = max(1, TRANSPOSE_TILE * (4 if aliased else 1) // max(1, min(source.shape)))
    for i in range(0, max(source.shape), step):
        tile = source[i: i + step] if along_rows else source[:, i: i + step]
        if aliased:
            stage = _buffer((tile.shape[0], tile.shape[1] + 16), tile.dtype, SLOT_TILE)[:, : tile.shape[1]]
            stage[...] = tile
            tile = stage
        if along_rows:
            target[:, i: i + step] = tile.T
        else:
            target[i: i + step] = tile.T


def _buffer(shape, dtype, slot: int | None) -> np.ndarray:
    """Scratch of ``shape`` in ``slot``, or a new array when ``slot`` is None (to be kept)."""
    return aligned_empty(shape, dtype) if slot is None else scratch(math.prod(shape), dtype, slot).reshape(shape)


def chunk_limit(flat: bool = False) -> int:
    """Bytes of im2col per tile: ``CHUNK_BYTES``, or the workspace limit when smaller; a flat layout's
    tile in a part of a call split across the cores (:mod:`convgrad.conv.cores`) its share, as the parts
    share the cache. Measured, forward + backward, 2 MiB against 4 per part: cifar-16 0.89-0.94x,
    conv1d 0.85-0.90x, dil-2 0.92-0.96x, res-64 and conv3d 0.96-0.97x; the other layouts not
    (stem-7x7, phased, 1.05-1.08x; down-s2, images innermost, 1.02-1.03x)."""
    return min(CHUNK_BYTES // (sharing() if flat else 1), get_workspace_limit())


def keep_limit() -> int:
    """Bytes a training module may keep from its forward for its backward: ``KEEP_BYTES``, or the
    workspace limit when smaller."""
    return min(KEEP_BYTES, get_workspace_limit())


def _flat_strides(size) -> tuple[int, ...]:
    """Element strides of a C-ordered array of spatial ``size``."""
    return tuple(math.prod(size[i + 1:]) for i in range(len(size)))


def flat_period(g) -> tuple[int, ...]:
    """Per spatial dim, the period of an image in the flat layout: the padded size, or with zero padding
    ``L + max(lo, hi)``. The data sits at offset lo of each period; window reads past its end meet the
    zeros after it or, wrapping into the next row (image), the first lo zeros there, never data: one
    row of zeros serves as the right padding of a row and the left padding of the next. (Unless an
    output row is longer than that period: a padding wider than the kernel's reach.)"""
    if g.padding_mode != "zeros":
        return g.padded_size
    period = tuple(n + max(lo, hi) for n, (lo, hi) in zip(g.in_size, g.pads))
    return period if all(o <= p for o, p in zip(g.out_size, period)) else g.padded_size


def _gradient(layout: Layout, source: np.ndarray, g, out: np.ndarray | None = None) -> np.ndarray:
    """dx ``(N, C_in, *L)`` (a new array, or ``out`` in zeros mode) from ``source``, the input's gradient
    in ``layout`` restricted to x's own positions (zero padding) or to the padded input (the other
    modes, whose padding's adjoint then folds it back)."""
    if g.padding_mode == "zeros":
        return layout.restore(source, _target(out, g.x_shape, g.dtype))
    return owned(unpadded(layout.restore(source, np.empty(g.padded_shape, dtype=g.dtype)), g))


def _target(out: np.ndarray | None, shape: tuple, dtype, contiguous: bool = False) -> np.ndarray:
    """``out`` (the caller's array of ``shape``), or a new one: also where ``contiguous`` asks for a
    C-contiguous ``out`` (products write into reshaped views of it) and it is not (the caller's caller
    then copies the result where it belongs)."""
    usable = out is not None and (not contiguous or out.flags.c_contiguous)
    return out if usable else np.empty(shape, dtype=dtype)


def _centre(g, inner, size) -> tuple:
    """Where an array of spatial size ``inner`` (x, or x padded by pad()) lies in a stored input of
    spatial ``size``: all of it, or x's own positions in a zero-padded one."""
    if size == inner:
        return (slice(None),) * g.nd
    return tuple(slice(lo, lo + n) for (lo, _), n in zip(g.pads, g.in_size))


def _staged(layout: Layout, g) -> bool:
    """Whether images-inside im2col goes through a stage (:func:`_staged_im2col`): 2-D and 3-D, stride 1
    and more than one offset along the last dim, output rows shorter than ``SHORT_ROW``."""
    return (type(layout) is Layout and not layout.innermost and g.nd > 1 and g.stride[-1] == 1
            and g.kernel[-1] > 1 and g.out_size[-1] < SHORT_ROW and g.dtype != object)


def _staged_im2col(xc: np.ndarray, cols: np.ndarray, g, t: Tile, c: slice) -> None:
    """Tile t's ``cols (C, *k, count, *O)`` of channels c, images inside, in two copies instead of one per
    kernel offset with runs of one output row: first, per offset j of the last dim, the columns it reads
    from every stored row, into a stage ``(C, k_last, count, *P', O_last)`` (P' the stored size of the
    other dims); then per offset of the other dims, all last-dim offsets at once from the stage, runs of
    whole output planes where the first dims have stride 1. LeNet-5's first layer: 249 -> 181 µs."""
    images = xc[c, t.batch]  # (C, count, *P)
    last, d, wide = g.kernel[-1], g.dilation[-1], t.out_size[-1]
    shape = images.shape[:1] + (last,) + images.shape[1:-1] + (wide,)
    stage = scratch(math.prod(shape), g.dtype, SLOT_STAGE).reshape(shape)
    for j in range(last):
        stage[:, j] = images[..., j * d: j * d + wide]
    everything = (slice(None),) * 3
    for offset in kernel_offsets(g.kernel[:-1]):
        rows = []
        for i, (k, dd, s, o) in enumerate(zip(offset, g.dilation, g.stride, t.out_size)):
            first = k * dd + (t.rows.start * s if i == 0 else 0)  # the stored row of the tile's first output
            rows.append(slice(first, first + (o - 1) * s + 1, s))
        cols[(slice(None),) + offset] = stage[everything + tuple(rows)]


@functools.lru_cache(maxsize=256)
def _window_indices(layout: Layout, kernel, stride, dilation, stored, batch, first_row, out_size) -> tuple:
    """Per kernel offset κ, in scan order: (index into the tile's cols, index into the stored input or
    None, indices into cols of the positions whose window κ meets the virtual padding: zeros).

    Output o of dim i meets stored position ``o·s + κ·d − lo``; the tile's outputs start at row
    ``first_row`` (dim 1) and span ``out_size``, over the images ``batch`` (start, stop). Computed once
    per shape and tile (building the slices costs microseconds each)."""
    (size, pads), everything, result = stored, slice(None), []
    for offset in kernel_offsets(kernel):
        inside, source, padding = [], [], []
        for dim, (k, s, d, (lo, _), n, o) in enumerate(zip(offset, stride, dilation, pads, size, out_size)):
            first = (first_row if dim == 0 else 0) * s + k * d - lo  # stored position of the tile's first output
            j0, j1 = min(o, max(0, -(first // s))), max(0, min(o, -((first - n) // s)))
            inside.append(slice(j0, j1))
            source.append(slice(first + j0 * s, first + (j1 - 1) * s + 1, s) if j1 > j0 else None)
            before, after = (everything,) * dim, (everything,) * (len(size) - dim - 1)
            padding += [before + (cut,) + after for cut in (slice(0, j0), slice(j1, o)) if cut.stop > cut.start]
        local = offset + layout.index(everything, everything, inside)[1:]
        zeros = tuple(offset + layout.index(everything, everything, cut)[1:] for cut in padding)
        read = None if None in source else layout.index(everything, slice(*batch), source)[1:]
        result.append((local, read, zeros))
    return tuple(result)


@dataclass(frozen=True)
class FlatGrid:
    """Where the flat layout puts an image and where each kernel offset reads (see :func:`flat_grid`)."""

    period: tuple  # spatial size of an image's slot
    lead: tuple  # where the image's data starts in each dim of its slot
    front: int  # zeros before the first image
    margin: int  # zeros after the last
    starts: tuple  # per kernel offset (scan order): where its run starts, past the tile's first index
    cuts: tuple  # masked grids: per offset of the last dim, the columns (mod x's row) to zero

    @property
    def size(self) -> int:
        return math.prod(self.period)

    def span(self, g, images: int) -> int:
        """Grid positions from the first output of the first of ``images`` images to the last output of the last."""
        last = sum((o - 1) * s for o, s in zip(g.out_size, _flat_strides(self.period)))
        return (images - 1) * self.size + last + 1


@functools.lru_cache(maxsize=256)
def flat_grid(g, masked: bool = False) -> FlatGrid:
    """The flat layout's grid for ``g``: periods from :func:`flat_period`; ``masked`` (see :func:`maskable`)
    also drops the padding of the last dim.

    Output o of image n sits at grid position ``n·P + Σ oᵢ·Sᵢ``; x's element r at ``front + n·P +
    Σ (rᵢ + leadᵢ)·Sᵢ`` of the rows, so kernel offset κ's run starts ``front + Σ (κᵢ·dᵢ − loᵢ + leadᵢ)·Sᵢ``
    past a tile's first grid position. Unmasked, lead = lo. Masked, the last dim's period is x's own
    row and its lead 0: rows copy as one run and fewer positions are dropped (17·16 against 17·17 per
    16·16 image), but a read that falls off x's row lands in the neighbouring row: im2col zeroes
    those (``cuts``, the columns j with j + κ·d − lo outside the row)."""
    period, lead, front = flat_period(g), tuple(lo for lo, _ in g.pads), 0
    if g.padding_mode != "zeros":
        lead = (0,) * g.nd
    if masked:
        period, lead, front = period[:-1] + (g.in_size[-1],), lead[:-1] + (0,), g.pads[-1][0]
    strides = _flat_strides(period)
    moves = [m - (lo if g.padding_mode == "zeros" else 0) for m, (lo, _) in zip(lead, g.pads)]
    starts = tuple(front + sum((k * d + m) * s for k, d, m, s in zip(offset, g.dilation, moves, strides))
                   for offset in kernel_offsets(g.kernel))
    last = sum((o - 1) * s for o, s in zip(g.out_size, strides))
    margin = max(0, max(starts) + last + 1 - front - math.prod(period))
    cuts = ()
    if masked:
        W, d, lo = g.in_size[-1], g.dilation[-1], g.pads[-1][0]
        cuts = tuple(tuple(j for j in range(W) if not 0 <= j + k * d - lo < W) for k in range(g.kernel[-1]))
    return FlatGrid(period, lead, front, margin, starts, cuts)


def maskable(g) -> bool:
    """Whether the flat grid may drop the last dim's padding (:func:`flat_grid`): 2-D and 3-D, zero
    padding, an output row no longer than x's (in 1-D the kernel's rows are blocks of the last dim, whose
    cuts would differ from row to row)."""
    return g.nd > 1 and g.padding_mode == "zeros" and g.out_size[-1] <= g.in_size[-1]


def choose_layout(g, need_dx: bool = True) -> Layout:
    """Flat for stride 1 (when few positions are dropped); else images innermost for short output
    rows, with a batch to make the runs long, when dx is wanted; else images inside.

    Measured on the benchmark suite (forward + backward, ms, each layout forced, interleaved):
    cifar-16 flat 16.4, inside 22.7, innermost 34.8; conv3d flat 74.9, inside 125, innermost 127;
    res-128 (rows of 8, 1.125 grid positions per output) innermost 15.9, flat 17.3, inside 20.7;
    lenet-c1 (1.36) innermost 2.8, inside 3.2, flat 4.3; lenet-c2 innermost 1.9, flat 3.2, inside
    4.3; down-s2 (stride 2, rows of 8) innermost 20.1, inside 25.6; stem-7x7 (stride 2, rows of 112)
    inside 89, innermost 139 (the transposes of a large output). Without dx (a network's first layer),
    images inside wins on short rows too, having no col2im to make long and no dy to transpose: a
    training Conv2d's forward + backward, innermost against inside, 1.37 against 1.23 ms for lenet-c1,
    8.1-8.4 against 7.8-8.1 for (64,3,32,32) * (16,3,5,5), 5.1-5.3 against 3.8-4.0 for (32,3,32,32) *
    (32,3,3,3) (with dx, innermost wins the first two: 2.5-2.7 against 2.6-2.8, 10.5 against 11.0).
    Computed once per geometry and workspace limit (``PLANS`` of them cached).
    """
    return _choose_layout(g, need_dx, get_workspace_limit())


@functools.lru_cache(maxsize=PLANS)
def _choose_layout(g, need_dx: bool, workspace_limit: int) -> Layout:
    """:func:`choose_layout`; ``workspace_limit`` keys the cache (:meth:`Flat.suits` reads it)."""
    masked = maskable(g)
    if Flat.suits(g, masked):
        return Flat(innermost=False, nd=g.nd, masked=masked)
    return _row_layout(g, need_dx)


def tiles_of(layout: Layout, g, buffers: int = 1, limit: int | None = None) -> tuple[Tile, ...]:
    """``layout.tiles(g, buffers, limit)``, computed once per layout, geometry, chunk size and workspace
    limit (building a tile's slices costs microseconds, a call's few tiles a tenth of a small one)."""
    return _tiles(layout, g, buffers, limit, chunk_limit(isinstance(layout, Flat)), get_workspace_limit())


@functools.lru_cache(maxsize=PLANS)
def _tiles(layout: Layout, g, buffers: int, limit: int | None, *settings) -> tuple[Tile, ...]:
    """:func:`tiles_of`; ``settings`` (the chunk size and workspace limit, which the layouts read) key the cache."""
    return tuple(layout.tiles(g, buffers, limit))


def _row_layout(g, need_dx: bool = True) -> Layout:
    """Images innermost for short output rows (with a batch to make the runs long) when dx is wanted,
    else inside (see :func:`choose_layout`), phased where that pays (:meth:`Phased.suits`)."""
    short = g.out_size[-1] < SHORT_ROW
    if short and g.batch > 1 and need_dx:
        return Layout(innermost=True, nd=g.nd)
    return Phased(innermost=False, nd=g.nd) if Phased.suits(g) else Layout(innermost=False, nd=g.nd)


def owned(a: np.ndarray) -> np.ndarray:
    """``a`` if it owns its memory, else a C-ordered copy: a scratch buffer must never reach the caller."""
    return a if a.base is None else a.copy()


def _as_matrix(part: np.ndarray, groups: int, columns: int) -> np.ndarray:
    """A tile of a channel-major array as ``(G, C/G, columns)``: a view when its memory allows."""
    return part.reshape(groups, part.shape[0] // groups, columns)


def _writes_through(part: np.ndarray, groups: int, columns: int) -> bool:
    """Whether :func:`_as_matrix` of ``part`` is a view (so a product can be written straight into it)."""
    try:
        part.view().shape = (groups, part.shape[0] // groups, columns)
        return True
    except AttributeError:
        return False


@functools.lru_cache(maxsize=PLANS)
def correlate_input_grad(g) -> bool:
    """Whether dx is cheaper as a correlation of the padded dy (stride 1) than by col2im.

    The correlation's im2col has C_out·K rows over its output grid (the input's positions, or the
    padded ones when a padding mode must fold them back); col2im reads a C_in·K by O matrix and adds
    it into dx K times. Measured on the benchmark suite, the correlation wins while its matrix is at
    most about 1.3 times col2im's (res-128: 10.1 against 11.4 ms; lenet-c2, 4.7 times: 6.0 against 2.2).
    """
    if any(s > 1 for s in g.stride):
        return False
    _, size = _correlation_output(g)
    return g.out_channels * math.prod(size) <= 1.3 * g.in_channels * math.prod(g.out_size)


def _correlation_output(g) -> tuple:
    """(padding of the dilated dy, output size) of the correlation that gives dx.

    Padding d·(k − 1) on both sides (more at the end for input rows no window reached) gives the
    padded input's gradient, size P, which the padding's adjoint maps back to x. With zero padding
    there is nothing to fold back: dropping the padding (lo, hi) from both ends gives x's own
    positions, size L, directly (when the padding is at most d·(k − 1) on each side).
    """
    dilated = [(o - 1) * s + 1 for o, s in zip(g.out_size, g.stride)]
    full = [d * (k - 1) for k, d in zip(g.kernel, g.dilation)]
    pads = tuple((f, p - n) for f, p, n in zip(full, g.padded_size, dilated))
    inside = tuple((a - lo, b - hi) for (a, b), (lo, hi) in zip(pads, g.pads))
    if g.padding_mode == "zeros" and all(a >= 0 and b >= 0 for a, b in inside):
        return inside, g.in_size
    return pads, g.padded_size


def input_grad_as_correlation(dy: np.ndarray, w: np.ndarray, g, correlate=None, arranged=None,
                              out: np.ndarray | None = None) -> np.ndarray:
    """dx ``(N, C_in, *L)`` = pad(dilate(dy)) ∗ rot180(W): the input gradient as one forward correlation.

    dy is dilated by the stride (s − 1 zeros between entries) and zero-padded (see
    :func:`_correlation_output`); the kernel is rotated by 180° with its in/out channels swapped per
    group. ``correlate(x, w, b, g, arranged=, out=)`` runs the forward correlation (default: this
    module's), given dy already ``arranged`` in its flat layout or None (see :func:`shared_grad_output`).
    ``out``: where dx may be written (the correlation writes it there when no padding is folded back).
    """
    dy = dilate(dy, g.stride)
    flip = (slice(None), slice(None)) + (slice(None, None, -1),) * g.nd
    rotated = grouped(w, g.groups).swapaxes(1, 2)  # (G, C_in/G, C_out/G, *k)
    rotated = np.ascontiguousarray(rotated.reshape((g.in_channels, g.out_channels // g.groups) + g.kernel)[flip])
    inner, size = _correlation_geometry(g, dy.shape)
    whole = size == g.in_size and g.padding_mode == "zeros"  # the correlation's output is dx itself
    result = (correlate or forward)(dy, rotated, None, inner, arranged=arranged, out=out if whole else None)
    return result if whole else owned(unpadded(result, g))


@functools.lru_cache(maxsize=PLANS)
def _correlation_geometry(g, dy_shape) -> tuple:
    """(geometry, output size) of the forward correlation that gives dx, for a dilated dy of ``dy_shape``."""
    pads, size = _correlation_output(g)
    kernel_shape = (g.in_channels, g.out_channels // g.groups) + g.kernel
    return plain_geometry(dy_shape, kernel_shape, (1,) * g.nd, g.dilation, g.groups, g.dtype, pads, size), size


def shared_grad_output(dy: np.ndarray, g, layout: Layout, rows: int, correlating=None):
    """(dY for dW's products, dy arranged for dx's correlation): one buffer, or None where the two differ.

    In the flat layout, dW's dY holds dy at the output positions of x's grid, zeros elsewhere; the
    correlation (stride 1) reads dy arranged in its own flat layout, data at offset lo' of each dim
    of its period. When both grids agree (a "same" convolution), that arrangement is dY shifted by
    ``front' + Σ lead'ᵢ·Sᵢ`` positions: one copy of dy serves both (scratch of ``rows`` ≥ C_out rows,
    zero past C_out). With images innermost in both, dY ``(rows, *O, N)`` is the correlation's input as
    that layout stores it (its zero padding virtual): the same buffer (res-128: one transpose of dy,
    0.24 ms, less). ``correlating(geometry)``: the layout the correlation runs in (default :func:`choose_layout`).
    """
    inner, _ = _correlation_geometry(g, dy.shape)
    other = (correlating or choose_layout)(inner)
    if not isinstance(layout, Flat):
        if not (layout.innermost and type(other) is Layout and other.innermost and dy.shape[2:] == inner.in_size):
            return None
        dyc = layout.grad_output(dy, g, rows)
        return dyc, dyc[: g.out_channels]
    if not isinstance(other, Flat) or other.masked != layout.masked or other.grid(inner).period != layout.grid(g).period:
        return None
    theirs, P = other.grid(inner), layout.grid(g).size
    shift = theirs.front + sum(lead * s for lead, s in zip(theirs.lead, _flat_strides(theirs.period)))
    length = max(shift + g.batch * P, theirs.front + g.batch * P + theirs.margin)
    buffer = scratch(rows * length, g.dtype, SLOT_GRAD_OUTPUT).reshape(rows, length)
    grid = buffer[:, shift: shift + g.batch * P]
    layout.place(dy, buffer, grid, g)
    return grid, buffer[: g.out_channels, : theirs.front + g.batch * P + theirs.margin]


def _weight_rows(w: np.ndarray, g, rows: int) -> np.ndarray:
    """Weight ``(C_out, C_in/G, *k)`` as one matrix per group and kernel row: ``(rows, G, C_out/G, C_in/G·K/rows)``
    (the flat layout's products take one kernel row each; every other layout one product, rows = 1)."""
    per_row = math.prod(g.kernel) // rows
    W = w.reshape(g.groups, g.out_channels // g.groups, g.in_channels // g.groups, rows, per_row)
    shape = (rows, g.groups, g.out_channels // g.groups, g.in_channels // g.groups * per_row)
    return np.ascontiguousarray(W.transpose(3, 0, 1, 2, 4)).reshape(shape)


def _weight_from_rows(dW: np.ndarray, g, shape) -> np.ndarray:
    """Inverse of :func:`_weight_rows`: ``(rows, G, C_out/G, C_in/G·K/rows)`` -> ``shape`` (C_out, C_in/G, *k)."""
    rows = dW.shape[0]
    dW = dW.reshape(rows, g.groups, g.out_channels // g.groups, g.in_channels // g.groups, math.prod(g.kernel) // rows)
    return np.ascontiguousarray(dW.transpose(1, 2, 3, 0, 4)).reshape(shape)


def product_rows(g) -> int:
    """Output channels per group the products compute: C_out/G, or with one group and 2 ≤ C_out < 24
    the next multiple of 8, the extra filters zero. OpenBLAS runs an (8, K) @ (K, n) product 2x faster than a
    (6, K) @ (K, n) one, and (16, ·) 1.4x faster than (13, ·) (measured for K from 9 to 576; one row
    is a fast matrix-vector product). dW's ``cols @ dYᵀ`` gains less: 16 columns against 13, 0.21 -> 0.16 ms
    for K = 150 and 0.77 -> 0.68 for K = 144 (n = 4096, 16384); 8 against 6 only for K = 25."""
    if g.groups == 1 and 2 <= g.out_channels < 24 and g.dtype != object:
        return -(-g.out_channels // 8) * 8
    return g.out_channels // g.groups


def _padded_rows(a: np.ndarray, rows: int) -> np.ndarray:
    """``a (..., G, M, ·)`` with zero rows added to make M = ``rows`` (itself when it has them)."""
    if a.shape[-2] == rows:
        return a
    padded = np.zeros(a.shape[:-2] + (rows, a.shape[-1]), dtype=a.dtype)
    padded[..., : a.shape[-2], :] = a
    return padded


def forward(x, w, b, g, saved: dict | None = None, arranged: np.ndarray | None = None,
            out: np.ndarray | None = None) -> np.ndarray:
    """x ``(N, C_in, *L)``, w ``(C_out, C_in/G, *k)``, b ``(C_out,)`` or None -> y ``(N, C_out, *O)``.

    With a ``saved`` dict (a training module's), an im2col matrix that covers the whole batch in one
    tile (one chunk, at most ``KEEP_BYTES``: :func:`_whole_batch`) is kept there for :func:`products`,
    which then needs no second im2col of x for dW; ``saved["input_grad"]`` (default True) says whether
    the backward is expected to want dx, which the layout depends on. ``arranged``: x already in the
    layout :func:`choose_layout` picks for ``g``. ``out``: an array of y's shape and dtype that y is
    written into.
    """
    layout = choose_layout(g, saved is None or saved.get("input_grad", True))
    xc = layout.arranged(x, g) if arranged is None else arranged
    whole = _whole_batch(layout, g) if saved is not None else None
    tiles = whole or tiles_of(layout, g)
    run = _forward_by_image if by_image(layout, g, tiles) else _forward_by_tile
    y, cols = run(xc, _weight_rows(w, g, layout.rows(g)), b, layout, g, tiles, whole is not None, out)
    if whole is not None:
        saved["columns"] = (g, layout, cols)
    return y


def _forward_by_tile(xc, W, b, layout: Layout, g, tiles, keep: bool, out: np.ndarray | None = None) -> tuple:
    """(y ``(N, C_out, *O)``, the last tile's im2col matrix): per tile, im2col and one product per group
    (per kernel row in the flat layout, or one stacked: :func:`_stacked`) into the layout's output, with
    W ``(rows, G, C_out/G, K/rows)`` padded to :func:`product_rows`; then y copied out of the layout (into
    ``out`` when given)."""
    M = product_rows(g)
    W = _padded_rows(W, M)  # M ≥ C_out/G rows, the extra ones zero
    yc = layout.output_buffer(g.groups * M, g, SLOT_OUTPUT)  # the rows past C_out are never read
    bias = None if b is None else _padded_rows(b.reshape(g.groups, -1, 1), M)  # added to each tile's product while in cache
    stack, cols = _stacked(W, layout, g), None
    for t in tiles:
        cols = layout.im2col(layout.tile_input(xc, t), g, t, None if keep else SLOT_COLS)
        target = layout.tile_output(yc, t)
        through = _writes_through(target, g.groups, t.columns)
        direct = _as_matrix(target, g.groups, t.columns) if through else None
        if stack is not None:
            product = _stacked_product(stack, layout.starts(g), cols, t.span, direct)
        else:
            product = None
            for W_row, part in zip(W, layout.parts(cols, g, t)):
                if product is None:
                    product = np.matmul(W_row, part, out=direct)
                else:
                    matmul_add(W_row, part, product)
        if bias is not None:
            product += bias
        if not through:
            target[...] = product.reshape(target.shape)
    return layout.output(yc, g, out), cols


def by_image(layout: Layout, g, tiles) -> bool:
    """Whether the products run image by image, between the im2col matrix and y, dy in their own layout
    ``(N, C_out, *O)``: images inside (whole images per tile), one image's product ``(C_out/G, K) @
    (K, O)`` within OpenBLAS's small-matrix kernel (``SMALL_PRODUCT``), and C_out/G ≤ 2·O (dW's per-image
    products, summed, take at most twice the im2col matrix's memory).

    A small product over the whole batch is packed and split across the cores; image by image the small
    kernel runs it unpacked, and y and dy need no copy into and out of the channel-major layout.
    Measured, (6, 25) @ (25, 576) for 64 images: 170 µs as one product, 124 image by image (straight
    into y, whose copy out of the layout cost 45 more); (16, 150) @ (150, 64): 166 against 177; (16,
    144) @ (144, 1024) (2.4 million multiply-adds, past the kernel): 4.4 against 5.1 ms. mnist1d-cnn's first
    layer (25 filters, 19 outputs), a training module's forward + dW: 169 -> 161 µs. OpenBLAS's Haswell
    kernels have no such kernel (:func:`avx512_kernels`): there one product and y's copy out of the
    layout took 0.27 ms against 0.33 image by image for the first shape, 0.19 against 0.33 for the
    second, 3.4 against 4.1 for the third."""
    if layout.innermost or isinstance(layout, Flat) or g.dtype == object or not avx512_kernels():
        return False
    filters, K, O = g.out_channels // g.groups, g.in_channels // g.groups * math.prod(g.kernel), math.prod(g.out_size)
    whole = len(tiles) > 0 and all(t.rows == slice(0, g.out_size[0]) for t in tiles)
    return whole and filters * K * O <= SMALL_PRODUCT and filters <= 2 * O


def _images(matrix: np.ndarray, t: Tile) -> np.ndarray:
    """A tile's im2col-shaped matrix ``(G, K, count·O)`` (images inside) as ``(count, G, K, O)`` (a view)."""
    return matrix.reshape(matrix.shape[0], matrix.shape[1], t.count, -1).transpose(2, 0, 1, 3)


def _forward_by_image(xc, W, b, layout: Layout, g, tiles, keep: bool, out: np.ndarray | None = None) -> tuple:
    """(y ``(N, C_out, *O)``, the last tile's im2col matrix) by :func:`by_image`'s products: W ``(1, G,
    C_out/G, K)`` times each image's columns, written into y (``out`` when given and contiguous, as the
    products' views of it must be); the bias added while the tile is in cache."""
    W, y = W[0], _target(out, g.y_shape, g.dtype, contiguous=True)
    bias = None if b is None else b.reshape(g.groups, -1, 1)
    for t in tiles:
        cols = layout.im2col(layout.tile_input(xc, t), g, t, None if keep else SLOT_COLS)
        out = y[t.batch].reshape(t.count, g.groups, W.shape[1], -1)
        np.matmul(W, _images(cols, t), out=out)
        if bias is not None:
            out += bias
    return y, cols


def _products_by_image(dy, xc, kept, w, g, layout: Layout, tiles, need_dx: bool, need_dw: bool, out=None):
    """:func:`products` by :func:`by_image`'s products, dy read as given: dW ``(C_out, C_in/G, *k)`` the sum of
    each image's ``cols @ dyᵀ``; dcols ``Wᵀ @ dy`` per image, then col2im. -> (dx or None, dw or None)."""
    filters = g.out_channels // g.groups
    dys = np.ascontiguousarray(dy).reshape(g.batch, g.groups, filters, math.prod(g.out_size))  # (N, G, C_out/G, O)
    W = _weight_rows(w, g, 1)[0] if need_dx else None  # (G, C_out/G, K)
    dxc = layout.input_grad_buffer(g) if need_dx else None
    dW = None
    for t in tiles:
        dY = dys[t.batch]
        if need_dw:
            cols = kept if kept is not None else layout.im2col(layout.tile_input(xc, t), g, t)
            part = np.matmul(_images(cols, t), dY.swapaxes(-1, -2)).sum(axis=0)  # (G, K, C_out/G)
            dW = part if dW is None else dW + part
        if need_dx:
            dcols = layout.dcols_buffer(g, t)
            np.matmul(W.swapaxes(-1, -2), dY, out=_images(dcols, t))
            layout.col2im(dcols, layout.tile_input(dxc, t), g, t)
    dx = layout.input_gradient(dxc, g, out) if need_dx else None
    dw = _weight_from_rows(dW.swapaxes(-1, -2)[None], g, w.shape) if need_dw else None
    return dx, dw


STACK_ROWS = 32  # the flat layout's kernel rows go into one product while a group has at most this many filters


def _stacked(W: np.ndarray, layout: Layout, g) -> np.ndarray | None:
    """The kernel rows' weights ``W (rows, G, M, K/rows)`` stacked as ``(G, rows·M, K/rows)`` for one product
    over a tile's whole im2col matrix, or None (one product per kernel row).

    A group of few filters makes a product OpenBLAS runs slowly: (16, 48) @ (48, n) at 100 GFLOP/s,
    (64, 192) @ (192, n) at 147. Stacked, the rows' results land in one buffer (no larger than the im2col
    matrix: rows·M ≤ K/rows) and are summed shifted: cifar-16's products and sums 1.72-1.86 -> 1.47-1.57
    ms per 40,000 columns. Forward + backward (the dx correlation is a forward too), medians of six
    alternating blocks in one process: cifar-16 17.1 -> 16.7 ms, dil-2 41.9 -> 40.8, conv1d 40.3 -> 39.6,
    conv3d 72.6 against 73.5 (noise); res-64's 64 filters gained 1% (33.5 -> 33.2) and stay per row."""
    rows, _, M, K = W.shape
    if not isinstance(layout, Flat) or rows == 1 or M > STACK_ROWS or rows * M > K:
        return None
    return np.ascontiguousarray(W.transpose(1, 0, 2, 3)).reshape(W.shape[1], rows * M, K)


def _stacked_product(stack: np.ndarray, starts: tuple, cols: np.ndarray, span: int, out: np.ndarray | None) -> np.ndarray:
    """``Σᵢ Wᵢ @ cols[..., sᵢ : sᵢ + span]`` over the kernel rows, which start at ``starts`` (the flat
    layout's :meth:`Flat.parts`), by one product ``stack (G, rows·M, K) @ cols (G, K, extent)``, row
    block i read sᵢ further -> ``(G, M, span)`` (into ``out`` when given)."""
    G, stacked, _ = stack.shape
    M = stacked // len(starts)
    every = scratch(G * stacked * cols.shape[-1], cols.dtype, SLOT_DCOLS).reshape(G, stacked, cols.shape[-1])
    np.matmul(stack, cols, out=every)
    blocks = [every[:, i * M: (i + 1) * M, start: start + span] for i, start in enumerate(starts)]
    product = np.add(blocks[0], blocks[1], out=out)
    for block in blocks[2:]:
        product += block
    return product


def avx512_kernels() -> bool:
    """Whether NumPy's OpenBLAS runs its AVX-512 kernels (``AVX512_KERNELS``: SkylakeX and its
    successors), which multiply small matrices unpacked (up to ``SMALL_PRODUCT``) and read dW's dy
    faster from a copy (:func:`_grad_operand`). Its Haswell kernels (AVX2) have no such path: there the
    products image by image (:func:`by_image`) and in pieces (:func:`_accumulate_product`) run slower
    than whole ones (BENCHMARKS.md)."""
    return kernels() in AVX512_KERNELS


SMALL_PRODUCT = 10**6  # m·n·k up to which OpenBLAS's AVX-512 builds use their small-matrix kernel (no packing)
MIN_PIECE = 1024  # the reduction is cut into pieces no shorter than this


def _accumulate_product(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``out (G, m, n) += a (G, m, L) @ b (G, L, n)``, the reduction L in pieces of at most
    ``SMALL_PRODUCT / (m·n)`` (at least ``MIN_PIECE``) when that cuts it: a small output over a long
    reduction (dW of a first layer) runs 2-4x faster as products OpenBLAS computes by its small-matrix
    kernel (measured, ms: (25, 36864) @ (36864, 8) 0.45 -> 0.19 in pieces of 4096; (9, ·) @ (·, 8) 0.39 ->
    0.11; (27, 65536) @ (65536, 16) 1.39 -> 0.84; (25, ·) @ (·, 24) 1.05 -> 0.51). Where the pieces would
    be shorter (m·n > 976: (27, ·) @ (·, 64) took 2.3 -> 4.2 in pieces of 512) it is one product. Forward
    + backward, medians of six alternating blocks: lenet-c1 2.31 -> 2.01 ms; a LeNet-5 training step
    5.13 -> 4.92 ms; lenet-c2, cifar-16, stem-7x7 and the mnist1d-cnn step unchanged. Without that
    kernel (OpenBLAS's Haswell kernels: :func:`avx512_kernels`) it is one product: there the pieces took
    1.03-1.16x as long ((25, 36864) @ (36864, 8) 0.32 against 0.30 ms, (27, 65536) @ (65536, 16) 1.21
    against 1.08)."""
    m, L, n = a.shape[-2], a.shape[-1], b.shape[-1]
    piece = SMALL_PRODUCT // max(1, m * n)
    if piece < MIN_PIECE or piece >= L or not avx512_kernels():
        out += np.matmul(a, b)
        return
    for i in range(0, L, piece):
        out += np.matmul(a[..., i: i + piece], b[..., i: i + piece, :])


def _grad_operand(dy: np.ndarray, products: int) -> np.ndarray:
    """A tile's dy ``(G, M, columns)`` as ``(G, columns, M)``, the right operand of its ``products`` dW
    products: a C-ordered copy (scratch, by BLAS's transposing copy) where several products share it
    (the flat layout's kernel rows), it has at least ``GRAD_ROWS_FROM`` rows and OpenBLAS runs the
    AVX-512 kernels (:func:`avx512_kernels`); else, or where NumPy's BLAS has no such copy, the
    transposed view.

    OpenBLAS's SkylakeX kernels run ``cols @ dyᵀ`` faster from such a copy than from the view (rows of
    dy read as columns), and one copy serves every kernel row's product of the tile. Measured on one
    thread, a tile's copy and products against its products over the view: cifar-16 0.93x, res-64
    0.95-0.98x, dil-2 0.90x, conv1d 0.87-0.89x, conv3d 0.88-0.90x; with fewer than ``GRAD_ROWS_FROM``
    rows, whose products OpenBLAS's small-matrix kernel runs fast from the view, 1.41-1.46x (lenet-c1's
    8). With one product per tile (the other layouts) it gains little or loses: stem-7x7 0.91-0.97x
    alone but 0.99x in the call, res-128 and down-s2 1.00x, lenet-c2 0.96x alone but 1.12x in a LeNet-5
    step. Forward + backward, alternating blocks in one process against the view (three runs of 12-20
    blocks): conv3d 0.96-0.98x, conv1d 0.98-0.99x, dil-2 0.98-1.00x, cifar-16 0.93-1.02x; the cases
    whose code did not change 0.95-1.05x (the noise). The copy is one tile of dy at most, beside the
    whole arranged dy. With the Haswell kernels (an AVX2 machine) the copy does not pay: on one thread,
    the products whole, cifar-16 1.06x, conv1d 1.06x, dil-2 1.06x, res-64 1.05x, conv3d 0.99x; forward
    + backward with it against without (16 blocks) cifar-16 1.02x, res-64 1.01x, dil-2 1.01x, conv1d
    1.03x, conv3d 1.00x."""
    G, M, columns = dy.shape
    if (products < 2 or M < GRAD_ROWS_FROM or columns * M < BLAS_TRANSPOSE or not available(dy.dtype)
            or not avx512_kernels()):
        return dy.swapaxes(-1, -2)
    target = scratch(dy.size, dy.dtype, SLOT_GRAD_ROWS).reshape(G, columns, M)
    for source, rows in zip(dy, target):
        if not transpose(source, rows):
            return dy.swapaxes(-1, -2)
    return target


def _whole_batch(layout: Layout, g) -> tuple[Tile, ...] | None:
    """The one tile of the whole batch when its im2col matrix may be kept (``KEEP_BYTES``) and the
    batch is one tile anyway (a chunk, :func:`chunk_limit`), else None.

    Kept beyond a chunk, the forward ran as one tile of the whole batch, its products and copies out of
    cache, which cost more than the backward's second im2col saved: a training Conv's forward +
    backward against keeping up to ``KEEP_BYTES`` (alternating blocks, median ratio) conv3d 0.72-0.77x,
    dil-2 0.86-0.95x, res-128 0.97x; cifar-16 1.02-1.03x, res-64 0.98-1.02x (noise)."""
    whole = tiles_of(layout, g, limit=min(keep_limit(), chunk_limit(isinstance(layout, Flat))))
    return whole if len(whole) == 1 else None


def products(dy, x, w, g, need_dx: bool, need_dw: bool, saved: dict | None = None, chosen=None, out=None):
    """(dx by col2im or None, dw or None): the backward's matrix products over the im2col matrix.

    ``chosen``: (:func:`choose_layout`'s answer, dy's arrangement in that layout or None), when the
    caller has them. ``out``: where dx may be written (x's shape and dtype). A flat layout's dW whose
    grid made a NaN (:func:`grid_made_nan`) is computed again in the row layout."""
    layout, dyc = chosen or (choose_layout(g, need_dx), None)
    kept = take_kept(saved, "columns", (g, layout)) if need_dw else None  # forward's im2col matrix
    tiles = _whole_batch(layout, g) if kept is not None else None
    if tiles is None:
        kept, tiles = None, tiles_of(layout, g, int(need_dx) + int(need_dw))
    xc = layout.arranged(x, g) if need_dw and kept is None else None
    if by_image(layout, g, tiles):
        return _products_by_image(dy, xc, kept, w, g, layout, tiles, need_dx, need_dw, out)
    rows, M = layout.rows(g), product_rows(g)  # dW's products take M ≥ C_out/G rows
    W = _weight_rows(w, g, rows) if need_dx else None
    filters, K = g.out_channels // g.groups, g.in_channels // g.groups * math.prod(g.kernel) // rows
    dyc = layout.grad_output(dy, g, g.groups * M) if dyc is None else dyc
    dxc = layout.input_grad_buffer(g) if need_dx else None
    dW = np.zeros((rows, g.groups, K, M), dtype=g.dtype) if need_dw else None  # transposed (see above)
    for t in tiles:
        padded = _as_matrix(layout.tile_output(dyc, t), g.groups, t.columns)  # (G, M, columns)
        dY = padded[:, : filters]  # (G, C_out/G, columns)
        if need_dw:
            cols = kept if kept is not None else layout.im2col(layout.tile_input(xc, t), g, t)
            grads = _grad_operand(padded, rows)
            with np.errstate(invalid="ignore"):  # a zero row of dY times an inf of x: NaN in a row dropped
                for dW_row, part in zip(dW, layout.parts(cols, g, t)):
                    _accumulate_product(dW_row, part, grads)
        if need_dx:
            dcols = layout.dcols_buffer(g, t)
            parts = layout.parts(dcols, g, t)
            if len(parts) == 1:
                np.matmul(W[0].swapaxes(-1, -2), dY, out=parts[0])
            else:  # the kernel rows' views overlap: accumulate
                dcols.fill(0)
                for W_row, part in zip(W, parts):
                    matmul_add(W_row.swapaxes(-1, -2), dY, part)
            layout.col2im(dcols, layout.tile_input(dxc, t), g, t)
    dx = layout.input_gradient(dxc, g, out) if need_dx else None
    dw = _weight_from_rows(dW[..., : filters].swapaxes(-1, -2), g, w.shape) if need_dw else None
    if isinstance(layout, Flat) and grid_made_nan(dw, x):
        dw = products(dy, x, w, g, False, True, chosen=(_row_layout(g, need_dx), None))[1]
    return dx, dw


def backward(dy, x, w, g, need_dx=True, need_dw=True, need_db=True, saved=None, out=None) -> tuple:
    """dy ``(N, C_out, *O)`` -> (dx like x, dw like w, db ``(C_out,)``), each None where not asked for;
    dx written into ``out`` (x's shape and dtype) where it can be."""
    correlate = need_dx and correlate_input_grad(g)
    layout = choose_layout(g, need_dx)
    shared = shared_grad_output(dy, g, layout, g.groups * product_rows(g)) if correlate and need_dw else None
    dx = input_grad_as_correlation(dy, w, g, arranged=shared and shared[1], out=out) if correlate else None
    dw = None
    if need_dw or (need_dx and not correlate):
        chosen = (layout, shared and shared[0])
        col2im_dx, dw = products(dy, x, w, g, need_dx and not correlate, need_dw, saved, chosen, out)
        dx = dx if correlate else col2im_dx
    return dx, dw, (bias_grad(dy) if need_db else None)


class Gemm(Algorithm):
    """im2col + GEMM; a large batch in parts, one per core (:mod:`convgrad.conv.cores`)."""

    name = "gemm"
    saves = True

    def parts(self, g):
        """The batch's parts (:func:`convgrad.conv.cores.parts`)."""
        return cores.parts(g)

    def forward(self, x, w, b, g, saved=None):
        return cores.forward(forward, x, w, b, g, self.parts(g), saved, copied=("input_grad",))  # the layout depends on it

    def backward(self, dy, x, w, g, need_dx=True, need_dw=True, need_db=True, saved=None):
        """dy ``(N, C_out, *O)`` -> dx like x, dw like w, db ``(C_out,)``."""
        return cores.backward(backward, dy, x, w, g, self.parts(g), need_dx, need_dw, need_db, saved)


ALGORITHM = Gemm()
