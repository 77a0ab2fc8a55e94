"""The "gemm" algorithm keeps its im2col buffers within the workspace limit (peak traced memory).

NumPy reports its allocations to tracemalloc, so the peak traced while a call runs is every byte it
allocated: its outputs, its input- and output-sized channel-major copies, and the im2col buffers,
which alone grow with the kernel size and which the limit bounds.
"""

import math
import tracemalloc

import numpy as np
import pytest

import convgrad as cg
from convgrad import _workspace
from convgrad._args import conv_geometry
from convgrad.conv import gemm
from convgrad.gradcheck import rel_error

MiB = 2**20


def _peak(call):
    """(result, peak bytes allocated while ``call`` ran), with no scratch buffer kept from before."""
    _workspace.release()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = call()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
        _workspace.release()


def _nbytes(*arrays):
    return sum(a.nbytes for a in arrays if a is not None)


@pytest.mark.parametrize("algorithm", ["gemm", "as_forward"])
@pytest.mark.parametrize("shape, kernel", [((64, 16, 32, 32), (16, 16, 3, 3)),   # many images: batch chunks
                                           ((1, 32, 96, 96), (8, 32, 3, 3))])    # one big image: row bands
def test_peak_memory_respects_the_workspace_limit(shape, kernel, algorithm, monkeypatch):
    monkeypatch.setattr(gemm, "CHUNK_BYTES", 2**40)  # only the workspace limit bounds the chunks here
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=shape), rng.normal(size=kernel)
    unchunked = shape[0] * shape[1] * math.prod(kernel[2:]) * (shape[2] - 2) * (shape[3] - 2) * 8
    limit = 4 * MiB
    assert unchunked > 4 * limit  # the im2col matrix of the whole batch would not fit
    reference_y = cg.conv(x, w, algorithm="naive" if shape[0] == 1 else "gemm")
    dy = rng.normal(size=reference_y.shape)
    reference = cg.conv_backward(dy, x, w)
    with cg.workspace_limit(limit):
        y, peak_forward = _peak(lambda: cg.conv(x, w, algorithm=algorithm))
        grads, peak_backward = _peak(lambda: cg.conv_backward(dy, x, w, algorithm=algorithm))
    # besides the limit: channel-major copies of the input and output (and for "as_forward" its
    # rearranged inner problems), each the size of an array the caller already holds
    arrays = _nbytes(x, y) if algorithm == "gemm" else 3 * _nbytes(x, y)
    assert peak_forward < _nbytes(y) + limit + 2 * arrays + MiB
    assert peak_backward < _nbytes(*grads) + 2 * limit + 3 * _nbytes(x, dy) * (1 if algorithm == "gemm" else 3) + MiB
    assert rel_error(y, reference_y) < 1e-12
    assert all(rel_error(a, b) < 1e-12 for a, b in zip(grads, reference))


def test_the_measurement_sees_an_unchunked_im2col(monkeypatch):
    """With chunking off, the same call allocates the whole im2col matrix: the test above can fail."""
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(64, 16, 32, 32)), rng.normal(size=(16, 16, 3, 3))
    with cg.workspace_limit(4 * MiB):
        _, tight = _peak(lambda: cg.conv(x, w, algorithm="gemm"))
    monkeypatch.setattr(gemm, "CHUNK_BYTES", 2**40)
    with cg.workspace_limit(2**40):
        _, loose = _peak(lambda: cg.conv(x, w, algorithm="gemm"))
    # the flat layout's unchunked im2col matrix (the offsets of one kernel row, 16·3 rows, over the
    # 64·32·32 grid, float64) alone is 24 MiB
    assert loose > tight + 20 * MiB


def test_results_never_share_memory_with_scratch_buffers():
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(1, 1, 6, 6)), rng.normal(size=(1, 1, 3, 3))  # N = C = 1: transposes are no-ops
    y = cg.conv(x, w, algorithm="gemm")
    dx, dw, _ = cg.conv_backward(np.ones_like(y), x, w, algorithm="gemm")
    saved = dx.copy(), y.copy()
    cg.conv_backward(rng.normal(size=(1, 1, 4, 4)), rng.normal(size=(1, 1, 6, 6)), w, algorithm="gemm")
    assert np.array_equal(dx, saved[0]) and np.array_equal(y, saved[1])


def test_workspace_limit_is_restored():
    before = cg.get_workspace_limit()
    with pytest.raises(RuntimeError):
        with cg.workspace_limit(MiB):
            raise RuntimeError
    assert cg.get_workspace_limit() == before


def _count_im2col(monkeypatch):
    calls = []
    for layout in (gemm.Layout, gemm.Flat):
        original = layout.im2col

        def spy(self, *args, _original=original, **kwargs):
            calls.append(type(self).__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(layout, "im2col", spy)
    return calls


@pytest.mark.parametrize("shape, stride, kernel, layout", [
    ((4, 3, 20, 19), 1, 3, "Flat"), ((4, 3, 12, 11), 2, 3, "Layout-innermost"), ((2, 3, 6, 90), 1, 3, "Layout-inside"),
    ((2, 3, 9, 90), 2, 5, "Phased-inside"),
])
def test_training_conv_module_reuses_its_forward_columns(monkeypatch, shape, stride, kernel, layout):
    """A training Conv2d keeps the forward's im2col matrix: its backward builds none, with the same
    gradients as the functional conv_backward (which builds one). Each gemm layout is exercised."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    module = cg.nn.Conv2d(3, 5, kernel, stride=stride, padding=1, dtype=np.float64)
    g = conv_geometry("t", x, module.weight.data, None, stride, 1, 1, 1, "zeros")[0]
    chosen = gemm.choose_layout(g)
    assert type(chosen).__name__ + ("" if isinstance(chosen, gemm.Flat) else
                                    "-innermost" if chosen.innermost else "-inside") == layout
    y = module(x)
    dy = rng.normal(size=y.shape)
    calls = _count_im2col(monkeypatch)
    dx = module.backward(dy)
    assert calls == []
    expected = cg.conv_backward(dy, x, module.weight.data, stride=stride, padding=1)
    assert len(calls) >= 1
    for got, want in zip((dx, module.weight.grad, module.bias.grad), expected):
        assert rel_error(got, want) < 1e-12
    assert module._saved is None  # released after use


def test_first_layer_keeps_columns_in_the_layout_for_no_input_grad(monkeypatch):
    """A training Conv2d remembers that its backward wanted no dx (a first layer): its next forward keeps
    the columns in the layout chosen without dx (images inside, for these short rows), which that
    backward reuses; a backward that wants dx after all builds its own, and every gradient is right."""
    rng = np.random.default_rng(2)
    module = cg.nn.Conv2d(3, 5, 3, stride=2, padding=1, dtype=np.float64)
    g = conv_geometry("t", rng.normal(size=(4, 3, 12, 11)), module.weight.data, None, 2, 1, 1, 1, "zeros")[0]
    assert gemm.choose_layout(g).innermost and not gemm.choose_layout(g, need_dx=False).innermost
    calls = _count_im2col(monkeypatch)
    for input_grad, built, innermost in ((False, 1, True), (False, 0, False), (True, 1, False), (True, 0, True)):
        x = rng.normal(size=(4, 3, 12, 11))
        y = module(x)
        assert module._saved["columns"][1].innermost == innermost  # as the previous backward asked
        dy = rng.normal(size=y.shape)
        module.zero_grad()
        calls.clear()
        dx = module.backward(dy, input_grad=input_grad)
        assert len(calls) == built
        expected = cg.conv_backward(dy, x, module.weight.data, stride=2, padding=1)
        assert (dx is None) if not input_grad else rel_error(dx, expected[0]) < 1e-12
        assert rel_error(module.weight.grad, expected[1]) < 1e-12 and rel_error(module.bias.grad, expected[2]) < 1e-12


def test_expecting_no_input_grad_reaches_the_first_layers_only():
    """``_expect_input_grad(False)`` on a model reaches the modules whose dx is the model's: a Sequential's
    first module, both branches of a Residual there; the columns of the first forward are then kept in
    the layout for no dx, and the model's gradients match those computed with the hint left alone."""
    def model(seed):
        cg.manual_seed(seed)
        block = cg.nn.Sequential(cg.nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64), cg.nn.ReLU())
        shortcut = cg.nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64)
        return cg.nn.Sequential(cg.nn.Residual(block, shortcut), cg.nn.Conv2d(4, 2, 3, padding=1, dtype=np.float64))

    hinted, plain = model(0), model(0)
    hinted._expect_input_grad(False)
    first, shortcut, last = hinted[0].block[0], hinted[0].shortcut, hinted[1]
    x = np.random.default_rng(0).normal(size=(4, 3, 12, 11))
    for m in (hinted, plain):
        m(x)
    assert [c._saved["columns"][1].innermost for c in (first, shortcut, last)] == [False, False, True]
    assert plain[0].block[0]._saved["columns"][1].innermost
    dy = np.random.default_rng(1).normal(size=(4, 2, 6, 6))
    for m in (hinted, plain):
        assert m.backward(dy, input_grad=False) is None
    for mine, theirs in zip(hinted.parameters(), plain.parameters()):
        assert rel_error(mine.grad, theirs.grad) < 1e-12


def test_training_conv_module_keeps_no_columns_larger_than_a_chunk(monkeypatch):
    """A batch whose im2col matrix spans several chunks keeps none (keeping would make the forward one
    tile of the whole batch): the forward runs chunk by chunk as a functional call, the backward builds
    its own, and the gradients are PyTorch's."""
    monkeypatch.setattr(gemm, "CHUNK_BYTES", 8 * 1024)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3, 20, 19))
    module = cg.nn.Conv2d(3, 5, 3, padding=1, dtype=np.float64)
    g = conv_geometry("t", x, module.weight.data, None, 1, 1, 1, 1, "zeros")[0]
    assert len(gemm.tiles_of(gemm.choose_layout(g), g)) > 1 and gemm.keep_limit() > 8 * 1024
    tiles = []
    original = gemm._forward_by_tile
    monkeypatch.setattr(gemm, "_forward_by_tile", lambda *args: tiles.append(len(args[5])) or original(*args))
    y = module(x)
    assert "columns" not in module._saved and tiles[0] > 1
    dy = rng.normal(size=y.shape)
    calls = _count_im2col(monkeypatch)
    dx = module.backward(dy)
    assert len(calls) > 1  # the backward's own im2col, chunk by chunk
    for got, want in zip((dx, module.weight.grad, module.bias.grad), _torch_grads(x, module, dy)):
        assert rel_error(got, want) < 1e-12


def test_conv_module_keeps_nothing_in_eval_mode_or_for_a_later_input(monkeypatch):
    rng = np.random.default_rng(1)
    module = cg.nn.Conv2d(2, 3, 3, dtype=np.float64).eval()
    module(rng.normal(size=(2, 2, 6, 6)))
    assert module._saved is None
    module.train()
    module(rng.normal(size=(2, 2, 6, 6)))
    x = rng.normal(size=(2, 2, 6, 6))
    y = module(x)  # the latest forward's columns are the ones used
    dy = rng.normal(size=y.shape)
    module.backward(dy)
    assert rel_error(module.weight.grad, cg.conv_backward(dy, x, module.weight.data)[1]) < 1e-12


def _torch_grads(x, module, dy):
    """(dx, dW, db) of ``module``'s convolution by PyTorch's autograd in float64 (the oracle)."""
    import torch

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(module.weight.data, requires_grad=True)
    bt = torch.tensor(module.bias.data, requires_grad=True)
    o = module.options
    torch.nn.functional.conv2d(xt, wt, bt, stride=o["stride"], padding=o["padding"], dilation=o["dilation"],
                               groups=o["groups"]).backward(torch.tensor(dy))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("shape, multiplier, dilation",
                         [((3, 4, 9, 8), 1, 1), ((2, 3, 7, 10), 2, 2), ((2, 5, 6, 6), 1, 3)])
def test_training_depthwise_module_reuses_its_arranged_input(monkeypatch, shape, multiplier, dilation):
    """A training depthwise Conv2d keeps x in the flat layout from its forward: its backward copies x no
    second time, even when another convolution of the same shape ran in between (the kept copy is no
    scratch buffer), and its gradients match PyTorch's."""
    from convgrad.conv.dispatch import describe

    rng = np.random.default_rng(len(shape) + multiplier + dilation)
    x, C = rng.normal(size=shape), shape[1]
    module = cg.nn.Conv2d(C, C * multiplier, 3, padding=dilation, dilation=dilation, groups=C, dtype=np.float64)
    y = module(x)
    assert describe(x, module.weight.data, padding=dilation, dilation=dilation, groups=C) == "depthwise"
    assert module._saved["arranged"][1].shape[0] == C
    cg.conv(rng.normal(size=shape), module.weight.data, padding=dilation, dilation=dilation, groups=C)  # scratch reused
    arranged, original = [], gemm.Flat.arranged
    monkeypatch.setattr(gemm.Flat, "arranged",
                        lambda self, a, *rest: arranged.append(a is x) or original(self, a, *rest))
    dy = rng.normal(size=y.shape)
    dx = module.backward(dy)
    assert True not in arranged and module._saved is None
    for got, want in zip((dx, module.weight.grad, module.bias.grad), _torch_grads(x, module, dy)):
        assert rel_error(got, want) < 1e-12


def test_depthwise_module_keeps_no_arrangement_beyond_the_workspace_limit():
    """Past the workspace limit the forward keeps nothing (the backward arranges x again), and the
    gradients are the same."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 6, 16, 16))
    module = cg.nn.Conv2d(6, 6, 3, padding=1, groups=6, dtype=np.float64)
    with cg.workspace_limit(4 * 2**10):
        y = module(x)
        assert "arranged" not in module._saved
        dy = rng.normal(size=y.shape)
        dx = module.backward(dy)
    for got, want in zip((dx, module.weight.grad, module.bias.grad), _torch_grads(x, module, dy)):
        assert rel_error(got, want) < 1e-12


@pytest.mark.parametrize("count", [1, 7, 1000, 123457])
def test_scratch_and_kept_arrays_start_on_a_cache_line(count):
    """Scratch buffers and arrays kept between calls start on a 64-byte line (OpenBLAS reads a product's
    operands faster there), whatever malloc returned; a kept array is a fresh buffer of the asked shape."""
    for slot in range(3):
        buffer = _workspace.scratch(count, np.float32, slot)
        assert buffer.ctypes.data % 64 == 0 and buffer.size == count and buffer.dtype == np.float32
    kept = [_workspace.aligned_empty((count, 3), np.float64) for _ in range(4)]
    assert all(a.ctypes.data % 64 == 0 and a.shape == (count, 3) and a.dtype == np.float64 for a in kept)
    kept[0][...] = 1.0
    assert not np.shares_memory(kept[0], kept[1])
    _workspace.release()


def test_training_module_keeps_aligned_columns():
    """The im2col matrix a training Conv2d keeps for its backward (a new array each forward) starts on a
    64-byte line, for batches whose matrices malloc would place anywhere."""
    module = cg.nn.Conv2d(1, 6, 5)
    module._expect_input_grad(False)
    for batch in (1, 2, 3, 5, 7, 11):
        module(np.ones((batch, 1, 28, 28), np.float32))
        assert module._saved["columns"][2].ctypes.data % 64 == 0


def test_cached_layout_and_tiles_follow_the_workspace_limit_and_chunk_size(monkeypatch):
    """gemm computes its layout and tiles once per geometry, but a new workspace limit or chunk size is
    a new key: the flat layout is refused when one image's matrix no longer fits, and tiles shrink."""
    x, w = np.ones((8, 16, 20, 20), np.float32), np.ones((16, 16, 3, 3), np.float32)
    g = conv_geometry("t", x, w, None, 1, 1, 1, 1, "zeros")[0]
    assert isinstance(gemm.choose_layout(g), gemm.Flat)
    with cg.workspace_limit(16 * 1024):  # less than one image's im2col matrix
        assert not isinstance(gemm.choose_layout(g), gemm.Flat)
    layout = gemm.choose_layout(g)
    assert isinstance(layout, gemm.Flat)
    whole = gemm.tiles_of(layout, g)
    monkeypatch.setattr(gemm, "CHUNK_BYTES", 16 * 3 * 22 * 20 * 4 * 2)  # two images' matrices
    assert len(gemm.tiles_of(layout, g)) == 4 and len(whole) == 1
    y = cg.conv(x, w, padding=1)
    monkeypatch.undo()
    assert rel_error(y, cg.conv(x, w, padding=1)) < 1e-6  # four tiles against one
