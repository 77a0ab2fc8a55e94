"""A large gemm convolution's batch split into parts that run at once, one per core (convgrad.conv.cores):
the same numbers as PyTorch, the parts cover the batch, a training module's kept columns serve each
part, and the thread machinery (one BLAS thread per part, errors, the workspace share) behaves."""

import os
import threading
import time

import numpy as np
import oracle
import pytest
import test_workspace
from strategies import Case

import convgrad as cg
from convgrad import _blas, _config, _parallel
from convgrad._args import conv_geometry
from convgrad.conv import api, cores, dispatch
from convgrad.gradcheck import rel_error

SPLIT = {
    "odd batch, padding": Case((5, 3, 9, 8), (4, 3, 3, 3), True, dict(padding=1)),
    "stride, (lo, hi) pairs": Case((4, 2, 11, 12), (3, 2, 3, 2), True, dict(stride=2, padding=((2, 1), (0, 3)))),
    "groups, dilation": Case((3, 6, 10, 9), (9, 2, 3, 3), False, dict(groups=3, dilation=2, padding=2)),
    "reflect": Case((2, 2, 7, 6), (3, 2, 3, 3), True, dict(padding=2, padding_mode="reflect")),
    "circular, stride": Case((3, 2, 8, 7), (4, 2, 3, 3), True, dict(padding=1, padding_mode="circular", stride=2)),
    "1-D": Case((4, 3, 40), (5, 3, 5), True, dict(padding=2)),
    "3-D": Case((3, 2, 5, 6, 4), (3, 2, 3, 2, 2), True, dict(padding=1, stride=(1, 2, 1))),
    "3-D flat, dilation": Case((3, 2, 5, 6, 7), (3, 2, 3, 2, 3), True, dict(padding=(1, 1, 2), dilation=(1, 2, 1))),
}


def _counted_parts(monkeypatch, module) -> list:
    """Two workers (as on two cores); ``module``'s calls of side_by_side recorded by their part counts."""
    monkeypatch.setattr(_parallel, "WORKERS", 2)
    calls = []
    original = _parallel.side_by_side
    monkeypatch.setattr(module, "side_by_side", lambda jobs: calls.append(len(jobs)) or original(jobs))
    return calls


def _check_split(case: Case, algorithm: str, calls: list) -> None:
    case.b_size = case.w_shape[0]
    oracle.check_layer(cg.conv, cg.conv_backward, oracle.conv, case, algorithm, 0)
    assert calls == [2, 2]  # forward and backward each ran in two parts


def _split_from_two_images(monkeypatch, module, thresholds: tuple) -> list:
    """``module``'s ``thresholds`` set to 1, so that every call with two images or more is split (in two
    parts, as on two cores); the splits counted (:func:`_counted_parts`)."""
    for name in thresholds:
        monkeypatch.setattr(module, name, 1)
    monkeypatch.setattr(cores, "threads", lambda: 2)
    return _counted_parts(monkeypatch, cores)


@pytest.fixture
def split_everything(monkeypatch):
    """Every gemm call with two images or more is split (in two parts, as on two cores), and counted."""
    return _split_from_two_images(monkeypatch, cores, ("PART_COPIES", "PART_MACS"))


@pytest.mark.parametrize("name", SPLIT)
def test_split_batches_match_torch(name, split_everything):
    _check_split(SPLIT[name], "gemm", split_everything)


def test_parts_cover_the_batch_with_their_own_geometries(split_everything):
    x, w = np.zeros((7, 3, 8, 8), np.float32), np.zeros((4, 3, 3, 3), np.float32)
    g = conv_geometry("t", x, w, None, 1, 1, 1, 1, "zeros")[0]
    pieces = cores.parts(g)
    assert [p[0] for p in pieces] == [slice(0, 3), slice(3, 7)]
    assert [p[1].batch for p in pieces] == [3, 4]
    assert all(p[1].in_size == g.in_size and p[1].out_size == g.out_size and p[1].pads == g.pads for p in pieces)
    one = conv_geometry("t", x[:1], w, None, 1, 1, 1, 1, "zeros")[0]
    assert cores.parts(one) is None  # one image: nothing to split


@pytest.mark.parametrize("x_shape, w_shape, options, split", [
    ((64, 16, 32, 32), (16, 16, 3, 3), dict(padding=1), True),  # cifar-16: 11.5 million copied, 151 million MACs
    ((32, 16, 32, 32), (16, 16, 3, 3), dict(padding=1), True),  # half of each
    ((16, 64, 16, 16), (64, 64, 3, 3), dict(padding=1), True),  # 2.9 million copied, 151 million MACs
    ((32, 128, 8, 8), (128, 128, 3, 3), dict(padding=1), True),  # res-128: 2.9 million, 302 million
    ((64, 16, 16, 16), (16, 16, 3, 3), dict(padding=1), True),  # 2.9 million, 38 million
    ((16, 32, 16, 16), (32, 32, 3, 3), dict(padding=1), False),  # 1.4 million, 38 million
    ((64, 6, 12, 12), (16, 6, 5, 5), dict(padding=0), False),  # lenet-c2: 0.7 million, 10 million
    ((128, 6, 12, 12), (16, 6, 5, 5), dict(padding=0), False),  # 1.5 million, 20 million
    ((64, 64, 16, 16), (128, 64, 3, 3), dict(padding=1, stride=2), True),  # down-s2: 3.9 million, 302 million
])
def test_calls_with_enough_copying_and_arithmetic_are_split(monkeypatch, x_shape, w_shape, options, split):
    monkeypatch.setattr(cores, "threads", lambda: 2)
    monkeypatch.setattr(_parallel, "WORKERS", 2)
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    g = conv_geometry("t", x, w, None, options.get("stride", 1), options["padding"], 1, 1, "zeros")[0]
    columns = g.batch * np.prod(g.out_size) * g.in_channels * np.prod(g.kernel)
    assert cores.copies(g) == columns + x.size + np.prod(g.y_shape)
    assert cores.macs(g) == columns * g.out_channels
    assert (cores.parts(g) is not None) == split


def test_one_thread_and_parts_are_not_split(monkeypatch):
    x, w = np.zeros((64, 64, 16, 16), np.float32), np.zeros((64, 64, 3, 3), np.float32)
    g = conv_geometry("t", x, w, None, 1, 1, 1, 1, "zeros")[0]
    monkeypatch.setattr(cores, "threads", lambda: 2)
    monkeypatch.setattr(_parallel, "WORKERS", 2)
    assert cores.parts(g) is not None
    assert _parallel.side_by_side([lambda: cores.parts(g)]) == [None]  # already inside a part
    monkeypatch.setattr(cores, "threads", lambda: 1)
    assert cores.parts(g) is None
    monkeypatch.setattr(cores, "threads", lambda: 4)  # more BLAS threads than workers: products stay whole
    assert cores.parts(g) is None
    monkeypatch.setattr(_parallel, "WORKERS", 4)
    assert [p[0] for p in cores.parts(g)] == [slice(0, 16), slice(16, 32), slice(32, 48), slice(48, 64)]


def test_training_module_keeps_columns_for_each_part(monkeypatch, split_everything):
    """A training Conv2d's split forward keeps each part's im2col matrix; its split backward builds none,
    and its gradients are PyTorch's."""
    rng = np.random.default_rng(3)
    module = cg.nn.Conv2d(3, 5, 3, padding=1, dtype=np.float64)
    x = rng.normal(size=(5, 3, 10, 9))
    y = module(x)
    assert len(module._saved["parts"]) == 2 and all("columns" in kept for kept in module._saved["parts"])
    dy = rng.normal(size=y.shape)
    calls = test_workspace._count_im2col(monkeypatch)
    dx = module.backward(dy)
    assert calls == []
    ref = oracle.conv(x, module.weight.data, module.bias.data, dy, padding=1)
    assert oracle.close(y, ref[0], 1e-10)
    for got, want in zip((dx, module.weight.grad, module.bias.grad), ref[1:]):
        assert oracle.close(got, want, 1e-10)
    assert split_everything == [2, 2]


def test_split_backward_without_input_grad(split_everything):
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(4, 2, 9, 9)), rng.normal(size=(3, 2, 3, 3))
    dy = rng.normal(size=(4, 3, 9, 9))
    dx, dw, db = api.backward_pass("t", dy, x, w, 1, 1, 1, 1, "zeros", True, "gemm", need_dx=False)
    ref = oracle.conv(x, w, np.zeros(3), dy, padding=1)
    assert dx is None and oracle.close(dw, ref[2], 1e-10) and oracle.close(db, ref[3], 1e-10)


def test_float32_stays_float32_when_split(split_everything):
    rng = np.random.default_rng(5)
    x, w = rng.normal(size=(4, 3, 8, 8)).astype(np.float32), rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    y = cg.conv(x, w, padding=1)
    dx, dw, _ = cg.conv_backward(np.ones_like(y), x, w, padding=1)
    ref = oracle.conv(x, w, None, np.ones(y.shape), padding=1)
    assert {a.dtype for a in (y, dx, dw)} == {np.dtype(np.float32)}
    assert rel_error(y, ref[0]) < 1e-5 and rel_error(dx, ref[1]) < 1e-5 and rel_error(dw, ref[2]) < 1e-5


POINTWISE = {
    "bias, odd batch": Case((5, 6, 4, 3), (4, 6, 1, 1), True),
    "no bias": Case((4, 3, 5, 2), (7, 3, 1, 1), False),
    "1-D": Case((3, 4, 9), (2, 4, 1), True),
    "3-D": Case((4, 2, 3, 2, 3), (3, 2, 1, 1, 1), True),
}


@pytest.fixture
def split_pointwise(monkeypatch):
    """Every pointwise call with two images or more is split (in two parts, as on two cores, with
    OpenBLAS's Haswell kernels), and counted."""
    from convgrad.conv import pointwise
    from test_conv_torch import _with_kernels

    _with_kernels(monkeypatch, "haswell")
    return _split_from_two_images(monkeypatch, pointwise, ("PART_IMAGES", "PART_MACS"))


@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_batch_parts_match_torch(name, split_pointwise):
    _check_split(POINTWISE[name], "pointwise", split_pointwise)


def test_pointwise_parts_without_input_grad(split_pointwise):
    rng = np.random.default_rng(3)
    x, w, dy = rng.normal(size=(6, 5, 3, 4)), rng.normal(size=(2, 5, 1, 1)), rng.normal(size=(6, 2, 3, 4))
    dx, dw, db = api.backward_pass("t", dy, x, w, 1, 0, 1, 1, "zeros", True, "pointwise", need_dx=False)
    ref = oracle.conv(x, w, np.zeros(2), dy)
    assert dx is None and oracle.close(dw, ref[2], 1e-10) and oracle.close(db, ref[3], 1e-10)
    assert split_pointwise == [2]


def test_pointwise_results_are_returned_where_out_cannot_take_them():
    """A part's ``out`` that is not C-contiguous is not written through a copy and lost: the result
    comes back as a new array (which cores copies where it belongs)."""
    from convgrad.conv import pointwise

    rng = np.random.default_rng(5)
    x, w, b, dy = (rng.normal(size=s) for s in [(3, 4, 2, 5), (2, 4, 1, 1), (2,), (3, 2, 2, 5)])
    g = conv_geometry("t", x, w, b, 1, 0, 1, 1, "zeros")[0]
    ref = oracle.conv(x, w, b, dy)
    out = np.zeros((3, 2, 2, 10))[..., ::2]
    y = pointwise._forward(x, w, b, g, out=out)
    assert y is not out and oracle.close(y, ref[0], 1e-12)
    out = np.zeros((3, 4, 2, 10))[..., ::2]
    dx = pointwise._backward(dy, x, w, g, True, False, False, out=out)[0]
    assert dx is not out and oracle.close(dx, ref[1], 1e-12)
    out = np.zeros(x.shape)
    assert pointwise._backward(dy, x, w, g, True, False, False, out=out)[0] is out and oracle.close(out, ref[1], 1e-12)


@pytest.mark.parametrize("x_shape, w_shape, kernels, split", [
    ((64, 256, 8, 8), (64, 256, 1, 1), "haswell", True),  # pw-1x1: 32 images and 34 million MACs a part
    ((64, 256, 8, 8), (64, 256, 1, 1), "skylakex", False),  # the small-matrix path: one thread too slow
    ((64, 128, 8, 8), (64, 128, 1, 1), "haswell", False),  # 17 million MACs a part
    ((14, 512, 7, 7), (512, 512, 1, 1), "haswell", False),  # 7 images a part
    ((16, 512, 7, 7), (512, 512, 1, 1), "haswell", True),
])
def test_pointwise_calls_with_enough_images_and_arithmetic_are_split(monkeypatch, x_shape, w_shape, kernels, split):
    from test_conv_torch import _with_kernels

    _with_kernels(monkeypatch, kernels)
    monkeypatch.setattr(_parallel, "WORKERS", 2)
    monkeypatch.setattr(cores, "threads", lambda: 2)
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    assert dispatch.describe(x, w) == "pointwise" and (dispatch.parts(x, w) == 2) == split


def test_side_by_side_runs_jobs_at_once_in_order():
    """The second job waits for an event only the first sets: they must run at the same time."""
    started = threading.Event()

    def first():
        started.set()
        return _parallel.in_part()

    def second():
        assert started.wait(10)
        return "second"

    assert _parallel.side_by_side([second, first]) == ["second", True]
    assert not _parallel.in_part()


def test_side_by_side_waits_for_every_job_before_raising():
    finished = []

    def fails():
        raise ValueError("first job")

    def slow():
        time.sleep(0.2)
        finished.append(True)

    with pytest.raises(ValueError, match="first job"):
        _parallel.side_by_side([fails, slow])
    assert finished == [True]
    with pytest.raises(KeyError):
        _parallel.side_by_side([lambda: None, lambda: {}["missing"]])


def test_work_inside_a_part_is_not_split_again():
    seen = []
    _parallel.side_by_side([lambda: _parallel.over_channels(seen.append, 64, 1 << 30), lambda: None])
    assert seen == [slice(0, 64)]


def test_each_part_gets_its_share_of_the_workspace_limit():
    limit = cg.get_workspace_limit()
    shares = _parallel.side_by_side([lambda: _share(2), lambda: _share(2)])
    assert shares == [limit // 2] * 2 and cg.get_workspace_limit() == limit


def _share(parts):
    with _config.workspace_share(parts):
        return cg.get_workspace_limit()


class _FakeThreads:
    """Stands for OpenBLAS's thread count: (get, set)."""

    def __init__(self, count):
        self.count, self.history = count, []

    def control(self):
        return (lambda: self.count), self.put

    def put(self, count):
        self.count = count
        self.history.append(count)


def test_one_thread_restores_the_count_after_the_last_block_leaves(monkeypatch):
    fake = _FakeThreads(4)
    monkeypatch.setattr(_blas, "_thread_control", fake.control)
    with _blas.one_thread() as done:
        assert done and _blas.threads() == 1
        with _blas.one_thread():
            assert _blas.threads() == 1
        assert _blas.threads() == 1  # an inner block leaving does not restore
    assert _blas.threads() == 4 and fake.history == [1, 4]
    with pytest.raises(RuntimeError):
        with _blas.one_thread():
            raise RuntimeError
    assert _blas.threads() == 4


def test_one_thread_without_openblas_says_so(monkeypatch):
    monkeypatch.setattr(_blas, "_thread_control", lambda: None)
    with _blas.one_thread() as done:
        assert not done
    assert _blas.threads() == 1


@pytest.mark.skipif(_blas._thread_control() is None, reason="NumPy's BLAS is not OpenBLAS here")
def test_one_thread_sets_numpys_openblas():
    before = _blas.threads()
    with _blas.one_thread():
        assert _blas.threads() == 1
    assert _blas.threads() == before


def test_work_split_by_channel_runs_its_first_part_on_the_calling_thread(monkeypatch):
    monkeypatch.setattr(_parallel, "WORKERS", 2)
    seen = {}
    _parallel.over_channels(lambda c: seen.setdefault(c.start, threading.current_thread()), 64, 1 << 30)
    assert sorted(seen) == [0, 32] and seen[0] is threading.current_thread() and seen[32] is not seen[0]


class _FakeAffinity:
    """Stands for Linux's per-thread CPU affinity: ``usable`` cores, each thread's mask kept apart."""

    def __init__(self, usable, refuse=False):
        self.usable, self.refuse, self.masks, self.lock = set(usable), refuse, {}, threading.Lock()

    def get(self, pid):
        assert pid == 0
        with self.lock:
            return set(self.masks.get(threading.get_ident(), self.usable))

    def set(self, pid, mask):
        assert pid == 0 and set(mask) <= self.usable
        if self.refuse:
            raise OSError(22, "Invalid argument")
        with self.lock:
            self.masks[threading.get_ident()] = set(mask)


def _fake_affinity(monkeypatch, usable, own, refuse=False):
    fake = _FakeAffinity(usable, refuse)
    monkeypatch.setattr(_parallel.os, "sched_getaffinity", fake.get)
    monkeypatch.setattr(_parallel.os, "sched_setaffinity", fake.set)
    monkeypatch.setattr(_parallel, "_current_core", lambda: own)
    return fake


def test_jobs_at_once_are_each_held_on_a_core_of_their_own(monkeypatch):
    """The calling thread's job stays on the core it runs on, the other goes to another usable core;
    each thread's own affinity is back after."""
    monkeypatch.setattr(_parallel, "WORKERS", 2)
    fake = _fake_affinity(monkeypatch, {0, 1, 2, 3}, own=2)
    seen = {}
    _parallel.over_channels(lambda c: seen.setdefault(c.start, (threading.current_thread(), fake.get(0))), 64, 1 << 30)
    assert seen[0] == (threading.current_thread(), {2}) and seen[32][1] == {0}
    assert len(fake.masks) == 2 and all(mask == {0, 1, 2, 3} for mask in fake.masks.values())
    assert _parallel.side_by_side([lambda: fake.get(0), lambda: fake.get(0)]) == [{2}, {0}]


def test_a_held_job_that_fails_gives_its_thread_back_its_affinity(monkeypatch):
    fake = _fake_affinity(monkeypatch, {0, 1}, own=1)

    def fails():
        assert fake.get(0) == {1}
        raise ValueError("held job")

    with pytest.raises(ValueError, match="held job"):
        _parallel.side_by_side([fails, lambda: None])
    assert fake.masks and all(mask == {0, 1} for mask in fake.masks.values())


def test_jobs_run_unheld_where_the_system_refuses(monkeypatch):
    fake = _fake_affinity(monkeypatch, {0, 1}, own=0, refuse=True)
    assert _parallel.side_by_side([lambda: fake.get(0), lambda: "ran"]) == [{0, 1}, "ran"]


def test_cores_for_each_job(monkeypatch):
    """The caller's core first, then the other usable ones; None for one job or too few cores."""
    _fake_affinity(monkeypatch, {1, 3, 4, 6}, own=4)
    assert _parallel.cores_for(3) == [4, 1, 3] and _parallel.cores_for(4) == [4, 1, 3, 6]
    assert _parallel.cores_for(1) is None and _parallel.cores_for(5) is None
    _fake_affinity(monkeypatch, {1, 3}, own=-1)  # core unknown: the first usable one
    assert _parallel.cores_for(2) == [1, 3]
    monkeypatch.delattr(_parallel.os, "sched_setaffinity")
    assert _parallel.cores_for(2) is None


def test_current_core_unknown_without_sched_getcpu(monkeypatch):
    monkeypatch.setattr(_parallel, "_sched_getcpu", lambda: None)
    assert _parallel._current_core() == -1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no per-thread affinity calls on this platform")
def test_jobs_are_held_on_distinct_cores_of_this_machine():
    """On this machine: with two usable cores or more, each of two jobs runs held on one core, not the
    same; with one, unheld. The caller's affinity is the same after."""
    before = os.sched_getaffinity(0)
    masks = _parallel.side_by_side([lambda: os.sched_getaffinity(0), lambda: os.sched_getaffinity(0)])
    if len(before) >= 2:
        assert all(len(mask) == 1 for mask in masks) and masks[0] != masks[1] and masks[0] | masks[1] <= before
    else:
        assert masks == [before, before]
    assert os.sched_getaffinity(0) == before


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no per-thread affinity calls on this platform")
def test_current_core_is_the_core_a_held_thread_runs_on():
    """Against the kernel's own affinity: a thread held on each usable core in turn reads that core."""
    before = os.sched_getaffinity(0)
    try:
        for core in sorted(before):
            os.sched_setaffinity(0, {core})
            assert _parallel._current_core() == core
    finally:
        os.sched_setaffinity(0, before)


DEPTHWISE = {
    "one filter each": Case((3, 4, 9, 8), (4, 1, 3, 3), True, dict(groups=4, padding=1)),
    "two filters each": Case((2, 3, 7, 9), (6, 1, 3, 2), True, dict(groups=3, padding=(1, 2), dilation=(2, 1))),
    "stride, reflect": Case((2, 4, 9, 10), (4, 1, 3, 3), False, dict(groups=4, padding=1, stride=2,
                                                                       padding_mode="reflect")),
    "odd channels, 1-D": Case((2, 5, 30), (5, 1, 5), True, dict(groups=5, padding=2)),
}


@pytest.fixture
def split_depthwise(monkeypatch):
    """Every depthwise call is split by channel in two parts, and counted."""
    from convgrad.conv import depthwise

    monkeypatch.setattr(depthwise, "MIN_ELEMENTS", 1)
    return _counted_parts(monkeypatch, cores)


@pytest.mark.parametrize("name", DEPTHWISE)
def test_depthwise_channel_parts_match_torch(name, split_depthwise):
    _check_split(DEPTHWISE[name], "depthwise", split_depthwise)


def test_depthwise_training_module_keeps_each_parts_arrangement(split_depthwise, monkeypatch):
    """Each part's forward keeps its channels of x in the flat layout; the backward arranges x no more."""
    from convgrad.conv import gemm

    rng = np.random.default_rng(6)
    module = cg.nn.Conv2d(6, 6, 3, padding=1, groups=6, dtype=np.float64)
    x = rng.normal(size=(3, 6, 10, 9))
    y = module(x)
    assert [list(kept) for kept in module._saved["parts"]] == [["arranged"], ["arranged"]]
    dy = rng.normal(size=y.shape)
    arranged = []
    original = gemm.Flat.arranged
    monkeypatch.setattr(gemm.Flat, "arranged", lambda self, a, *args, **kw: arranged.append(np.shares_memory(a, x))
                        or original(self, a, *args, **kw))
    dx = module.backward(dy)
    assert not any(arranged)  # x is not arranged again
    ref = oracle.conv(x, module.weight.data, module.bias.data, dy, padding=1, groups=6)
    for got, want in zip((y, dx, module.weight.grad, module.bias.grad), ref):
        assert oracle.close(got, want, 1e-10)
    dw_only = api.backward_pass("t", dy, x, module.weight.data, 1, 1, 1, 6, "zeros", False, "depthwise", need_dx=False)
    assert dw_only[0] is None and dw_only[2] is None and oracle.close(dw_only[1], ref[2], 1e-10)


def test_split_first_layer_keeps_columns_for_no_input_grad(monkeypatch, split_everything):
    """A first layer (no dx wanted) hands that hint to each part, whose kept columns its backward uses."""
    rng = np.random.default_rng(7)
    module = cg.nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64)
    module._expect_input_grad(False)
    x = rng.normal(size=(4, 3, 12, 11))
    y = module(x)
    assert [kept["input_grad"] for kept in module._saved["parts"]] == [False, False]
    dy = rng.normal(size=y.shape)
    calls = test_workspace._count_im2col(monkeypatch)
    assert module.backward(dy, input_grad=False) is None and calls == []
    ref = oracle.conv(x, module.weight.data, module.bias.data, dy, stride=2, padding=1)
    assert oracle.close(module.weight.grad, ref[2], 1e-10) and oracle.close(module.bias.grad, ref[3], 1e-10)


def test_pool_jobs_run_in_the_callers_numpy_context():
    """Worker threads see the caller's NumPy settings (buffer size, error handling), not the defaults."""
    seen = []

    def job(_=None):
        seen.append((threading.get_ident(), np.getbufsize(), np.geterr()["divide"]))

    previous = np.setbufsize(4096)
    try:
        with np.errstate(divide="raise"):
            _parallel.side_by_side([job, job])
    finally:
        np.setbufsize(previous)
    assert len({ident for ident, _, _ in seen}) == 2  # two threads
    assert [settings for _, *settings in seen] == [[4096, "raise"]] * 2


def _buffer_sizes_seen(monkeypatch) -> list:
    """NumPy's buffer size at each call of gemm's forward and backward, recorded."""
    from convgrad.conv import gemm

    seen = []
    for name in ("forward", "backward"):
        original = getattr(gemm, name)
        monkeypatch.setattr(gemm, name, lambda *a, _f=original, **k: seen.append(np.getbufsize()) or _f(*a, **k))
    return seen


def test_algorithms_run_with_row_buffers_and_restore_the_callers(split_everything, monkeypatch):
    """Every part of a split call runs with ``_ufuncs.UFUNC_BUFFER``; the caller's buffer size comes
    back after the call, and after one that raised."""
    from convgrad import _ufuncs
    from convgrad.conv import gemm

    seen = _buffer_sizes_seen(monkeypatch)
    x = np.ones((4, 2, 6, 6), dtype=np.float32)
    w = np.ones((3, 2, 3, 3), dtype=np.float32)
    previous = np.setbufsize(4096)
    try:
        y = cg.conv(x, w, algorithm="gemm")
        cg.conv_backward(np.ones_like(y), x, w, algorithm="gemm")
        assert np.getbufsize() == 4096
        monkeypatch.setattr(gemm, "forward", lambda *a, **k: {}["fails"])
        with pytest.raises(KeyError):
            cg.conv(x, w, algorithm="gemm")
        assert np.getbufsize() == 4096
    finally:
        np.setbufsize(previous)
    assert split_everything == [2, 2, 2] and seen == [_ufuncs.UFUNC_BUFFER] * 4  # two parts each


def test_transposed_convolutions_run_with_row_buffers(monkeypatch):
    from convgrad import _ufuncs

    seen, before = _buffer_sizes_seen(monkeypatch), np.getbufsize()
    x, w = np.ones((2, 3, 5, 5)), np.ones((3, 2, 3, 3))
    y = cg.conv_transpose(x, w, stride=2, algorithm="gemm")
    cg.conv_transpose_backward(np.ones_like(y), x, w, stride=2, algorithm="gemm")
    assert seen == [_ufuncs.UFUNC_BUFFER] * 3 and np.getbufsize() == before != _ufuncs.UFUNC_BUFFER  # y; dx, dw
