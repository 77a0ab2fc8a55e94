"""algorithm=: an algorithm that cannot handle a case says so by name, and "auto" never picks it."""

import numpy as np
import pytest

import convgrad as cg
from convgrad._args import conv_geometry
from convgrad.conv import dispatch
from convgrad.conv.gemm import Gemm


class OnlyStrideOne(Gemm):
    """A stand-in for a restricted algorithm (as Winograd is to stride 1)."""

    name = "only_stride_one"

    def supports(self, g):
        return None if all(s == 1 for s in g.stride) else f"it needs stride 1, got stride={g.stride}"


@pytest.fixture
def restricted(monkeypatch):
    algorithm = OnlyStrideOne()
    monkeypatch.setitem(dispatch.ALGORITHMS, algorithm.name, algorithm)
    monkeypatch.setattr(dispatch, "ALGORITHM_NAMES", dispatch.ALGORITHM_NAMES + (algorithm.name,))
    monkeypatch.setattr(dispatch, "AUTO_ORDER", (algorithm.name,) + dispatch.AUTO_ORDER)
    return algorithm


def test_an_algorithm_that_cannot_handle_a_case_says_so(restricted):
    x, w = np.ones((1, 2, 8, 8)), np.ones((3, 2, 3, 3))
    assert cg.conv(x, w, algorithm="only_stride_one").shape == (1, 3, 6, 6)
    with pytest.raises(ValueError, match=r"algorithm='only_stride_one' cannot handle this case: it needs stride 1"):
        cg.conv(x, w, stride=2, algorithm="only_stride_one")
    with pytest.raises(ValueError, match="only_stride_one"):
        cg.conv_backward(np.ones((1, 3, 3, 3)), x, w, stride=2, algorithm="only_stride_one")


def test_auto_prefers_it_where_it_can_and_never_picks_it_where_it_cannot(restricted):
    x, w = np.ones((1, 2, 8, 8)), np.ones((3, 2, 3, 3))
    def geometry(stride):
        return conv_geometry("conv", x, w, None, stride, 0, 1, 1, "zeros")[0]

    assert dispatch.choose(geometry(1)) is restricted
    assert dispatch.choose(geometry(2)) is not restricted
    np.testing.assert_array_equal(cg.conv(x, w, stride=2), cg.conv(x, w, stride=2, algorithm="naive"))


@pytest.mark.parametrize("x_shape, w_shape, options, expected", [
    ((2, 4, 16, 16), (8, 4, 3, 3), dict(padding=1), "gemm"),
    ((2, 4, 16, 16), (8, 4, 1, 1), {}, "pointwise"),
    ((2, 4, 16, 16), (8, 4, 1, 1), dict(padding=1), "gemm"),  # a padded 1x1 is not a plain product
    ((2, 4, 16, 16), (8, 1, 3, 3), dict(groups=4, padding=1), "depthwise"),
    ((2, 4, 32, 32), (8, 4, 9, 9), dict(padding=4), "fft"),  # large kernel, stride 1
    ((2, 4, 32, 32), (8, 4, 9, 9), dict(padding=4, stride=2), "gemm"),
    ((2, 4, 512), (8, 4, 33), dict(padding="same"), "fft"),
    ((2, 4, 512), (8, 4, 9), dict(padding="same"), "gemm"),
])
def test_auto_choice_is_inspectable(x_shape, w_shape, options, expected):
    x, w = np.ones(x_shape, np.float32), np.ones(w_shape, np.float32)
    assert dispatch.describe(x, w, **options) == expected


@pytest.mark.parametrize("x_shape, w_shape, options, expected", [
    ((64, 64, 16, 16), (64, 64, 3, 3), dict(padding=1), 2),  # res-64: gemm, large
    ((8, 64, 16, 16), (64, 64, 3, 3), dict(padding=1), 1),  # small
    ((64, 256, 16, 16), (64, 256, 1, 1), {}, 2),  # pointwise, by batch (OpenBLAS's Haswell kernels here)
    ((8, 256, 8, 8), (64, 256, 1, 1), {}, 1),  # small
    ((1, 64, 128, 128), (64, 64, 3, 3), dict(padding=1), 1),  # one image
    ((32, 64, 32, 32), (64, 1, 3, 3), dict(padding=1, groups=64), 2),  # dw-3x3: depthwise, by channel
    ((2, 8, 8, 8), (8, 1, 3, 3), dict(padding=1, groups=8), 1),  # small
])
def test_the_split_into_parts_is_inspectable(monkeypatch, x_shape, w_shape, options, expected):
    from convgrad import _parallel
    from convgrad.conv import cores, gemm

    monkeypatch.setattr(cores, "threads", lambda: 2)
    monkeypatch.setattr(_parallel, "WORKERS", 2)
    monkeypatch.setattr(gemm, "kernels", lambda: "haswell")
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    assert dispatch.parts(x, w, **options) == expected
    monkeypatch.setattr(cores, "threads", lambda: 1)
    monkeypatch.setattr(_parallel, "WORKERS", 1)
    assert dispatch.parts(x, w, **options) == 1


def test_equal_geometries_are_one_object():
    """A forward's geometry, its backward's (another function name, dy's dtype joined) and an internal
    plain one with the same fields are the same object, so that the plans cached per geometry find it by
    identity; different options give different objects."""
    from convgrad._args import conv_geometry, plain_geometry

    x, w = np.zeros((2, 3, 8, 8), np.float32), np.zeros((4, 3, 3, 3), np.float32)
    forward = conv_geometry("conv", x, w, None, 1, 1, 1, 1, "zeros")[0]
    backward = conv_geometry("conv_backward", x, w, None, 1, 1, 1, 1, "zeros", dtype_of=(np.zeros((2, 4, 8, 8), np.float32),))[0]
    plain = plain_geometry(x.shape, w.shape, (1, 1), (1, 1), 1, np.float32, ((1, 1), (1, 1)))
    assert forward is backward is plain
    other = conv_geometry("conv", x, w, None, 1, 0, 1, 1, "zeros")[0]
    assert other is not forward and other != forward
