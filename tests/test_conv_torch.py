"""Convolution forward, dx, dW and db against PyTorch in float64, for every algorithm and option."""

import numpy as np
import oracle
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import ALGORITHMS, GENERAL, Case, conv_cases, examples, supports

import convgrad as cg
from convgrad import _blas
from convgrad._args import conv_geometry
from convgrad.conv import gemm
from convgrad.gradcheck import rel_error

TOL = 1e-10


def check_against_torch(case: Case, algorithm: str, seed: int) -> None:
    oracle.check_layer(cg.conv, cg.conv_backward, oracle.conv, case, algorithm, seed, TOL)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=examples(210))
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_conv_matches_torch(algorithm, data, seed):
    check_against_torch(data.draw(conv_cases(algorithm=algorithm)), algorithm, seed)


@settings(max_examples=examples(90))
@given(case=conv_cases(), seed=st.integers(0, 2**32 - 1))
def test_auto_matches_torch(case, seed):
    check_against_torch(case, "auto", seed)


# The shapes that catch the classic bugs, spelled out so that each is always run.
CLASSIC = {
    "H != W, kh != kw": Case((2, 3, 7, 10), (4, 3, 3, 2), True, dict()),
    "per-dim stride and padding": Case((2, 3, 9, 8), (4, 3, 3, 3), True, dict(stride=(2, 3), padding=(1, 2))),
    "stride does not divide the span": Case((1, 2, 10, 11), (3, 2, 3, 3), True, dict(stride=3)),
    "groups > 1": Case((2, 6, 8, 7), (9, 2, 3, 3), True, dict(groups=3, padding=1)),
    "depthwise": Case((2, 4, 8, 9), (8, 1, 3, 3), False, dict(groups=4, padding=1)),
    "dilation > 1": Case((1, 2, 11, 9), (3, 2, 3, 2), True, dict(dilation=(2, 3), padding=(2, 1))),
    "batch of 1, 1x1 kernel": Case((1, 5, 4, 6), (3, 5, 1, 1), True, dict()),
    "(lo, hi) pairs": Case((2, 2, 11, 28), (3, 2, 3, 2), True, dict(padding=((2, 1), (0, 3)), stride=(2, 1))),
    "same, even kernel": Case((2, 2, 7, 8), (3, 2, 4, 2), True, dict(padding="same", dilation=(1, 2))),
    "reflect": Case((2, 2, 6, 7), (3, 2, 3, 3), True, dict(padding=(2, 1), padding_mode="reflect", stride=2)),
    "replicate": Case((2, 2, 5, 4), (3, 2, 3, 2), True, dict(padding=((3, 1), (2, 4)), padding_mode="replicate")),
    "circular, pad = size": Case((2, 2, 3, 5), (3, 2, 3, 3), True, dict(padding=(3, 2), padding_mode="circular")),
    "1-D long": Case((2, 3, 40), (4, 3, 5), True, dict(stride=3, padding=2, dilation=2)),
    "3-D everything": Case((1, 4, 5, 6, 7), (4, 2, 2, 3, 2), True,
                           dict(stride=(1, 2, 3), padding=((1, 0), 1, (0, 2)), dilation=(2, 1, 1), groups=2)),
    "3-D reflect": Case((2, 2, 4, 5, 3), (2, 2, 3, 2, 2), True, dict(padding=(1, 1, 1), padding_mode="reflect")),
}


@pytest.mark.parametrize("algorithm", ALGORITHMS + ("auto",))
@pytest.mark.parametrize("name", CLASSIC)
def test_classic_shapes(name, algorithm):
    """Each algorithm matches PyTorch on the case, or (1x1 and depthwise algorithms) refuses it by name."""
    case = CLASSIC[name]
    case.b_size = case.w_shape[0]
    if supports(case, algorithm):
        check_against_torch(case, algorithm, seed=len(name))
    else:
        x, w, _ = case.arrays(np.random.default_rng(0))
        with pytest.raises(ValueError, match=f"algorithm='{algorithm}' cannot handle this case"):
            cg.conv(x, w, algorithm=algorithm, **case.kwargs)


@pytest.mark.parametrize("algorithm", GENERAL)
def test_rows_no_window_reaches_get_zero_gradient(algorithm):
    # L = 8, k = 3, stride 3: windows start at 0 and 3 and cover 0..5; elements 6 and 7 are never read.
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(1, 1, 8)), rng.normal(size=(1, 1, 3))
    dy = rng.normal(size=(1, 1, 2))
    dx, _, _ = cg.conv_backward(dy, x, w, stride=3, algorithm=algorithm)
    assert np.all(dx[..., 6:] == 0) and np.all(dx[..., :6] != 0)


@pytest.mark.parametrize("algorithm", GENERAL + ("pointwise",))
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_empty_batch(algorithm, nd):
    k = 1 if algorithm == "pointwise" else 2
    x, w = np.zeros((0, 2) + (5,) * nd), np.ones((3, 2) + (k,) * nd)
    y = cg.conv(x, w, algorithm=algorithm)
    assert y.shape == (0, 3) + (6 - k,) * nd
    dx, dw, db = cg.conv_backward(y, x, w, algorithm=algorithm)
    assert dx.shape == x.shape and np.all(dw == 0) and np.all(db == 0)


GEMM_LAYOUTS = {  # gemm.choose_layout(g, need_dx) forced, whatever the backward wants
    "images inside, phased": lambda g, need_dx=True: gemm.Phased(innermost=False, nd=g.nd),
    "images inside": lambda g, need_dx=True: gemm.Layout(innermost=False, nd=g.nd),
    "images innermost": lambda g, need_dx=True: gemm.Layout(innermost=True, nd=g.nd),
    "flat": lambda g, need_dx=True: (gemm.Flat(False, g.nd, masked=gemm.maskable(g)) if _flat_applies(g)
                                     else gemm.Layout(False, g.nd)),
    "flat unmasked": lambda g, need_dx=True: (gemm.Flat(innermost=False, nd=g.nd) if _flat_applies(g)
                                              else gemm.Layout(False, g.nd)),
}


def _with_kernels(monkeypatch, family: str) -> None:
    """gemm decides as if NumPy's OpenBLAS ran ``family``'s kernels: "skylakex" (AVX-512, with its
    small-matrix path: gemm.avx512_kernels) or "haswell" (AVX2, without)."""
    assert (family == "skylakex") == (family in gemm.AVX512_KERNELS)
    monkeypatch.setattr(gemm, "kernels", lambda: family)


def check_forced(case: Case, layout: str, seed: int, correlate: bool | None = None, **constants) -> None:
    """``case`` against PyTorch with gemm's layout forced, dx by correlation or col2im when ``correlate``
    says, and gemm's module ``constants`` patched."""
    case.b_size = case.w_shape[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm, "choose_layout", GEMM_LAYOUTS[layout])
        if correlate is not None:
            patch.setattr(gemm, "correlate_input_grad", lambda g: correlate)
        for name, value in constants.items():
            patch.setattr(gemm, name, value)
        check_against_torch(case, "gemm", seed)


def _flat_applies(g):
    return all(s == 1 for s in g.stride) and g.batch * np.prod(g.out_size) > 0


@pytest.mark.parametrize("layout", GEMM_LAYOUTS)
@settings(max_examples=examples(90))
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_every_gemm_layout_matches_torch(layout, data, seed):
    """gemm's data layouts, each forced whatever the shape (auto picks one by shape), and the flat
    ones (with the last dim's padding virtual where it may be, or not) on stride-1 cases only, their sole domain."""
    case = data.draw(conv_cases())
    if layout.startswith("flat"):
        stride = case.kwargs["stride"]
        assume(all(s == 1 for s in (stride if isinstance(stride, tuple) else (stride,))))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm, "choose_layout", GEMM_LAYOUTS[layout])
        check_against_torch(case, "gemm", seed)


def test_flat_layout_is_chosen_for_short_stride_one_rows():
    """The suite's stride-1 shapes with short rows go flat; strided ones and wasteful grids do not (a
    grid of 1.125 positions per output only with few channels)."""
    def layout(x, w, **options):
        return type(gemm.choose_layout(_geometry(x, w, **options))).__name__

    assert layout((64, 16, 32, 32), (16, 16, 3, 3), padding=1) == "Flat"  # 33·32/32² grid positions per output
    assert layout((64, 64, 16, 16), (64, 64, 3, 3), padding=1) == "Flat"  # 17·16/16²
    assert layout((8, 16, 16, 32, 32), (16, 16, 3, 3, 3), padding=1) == "Flat"  # one image's matrix > a chunk
    assert layout((64, 64, 16, 16), (128, 64, 3, 3), padding=1, stride=2) == "Layout"
    assert layout((64, 1, 28, 28), (6, 1, 5, 5)) == "Layout"  # 28²/24²
    assert layout((64, 6, 12, 12), (16, 6, 5, 5)) == "Layout"  # 144 grid positions for 64 outputs
    assert layout((32, 128, 8, 8), (128, 128, 3, 3), padding=1) == "Layout"  # 9·8/8², rows of 8
    # ... which 8 to 32 input channels per group accept (their copies weigh more), 1 to 4 or 64 do not
    assert layout((32, 32, 8, 8), (32, 32, 3, 3), padding=1) == "Flat"
    assert layout((32, 8, 8, 8), (16, 8, 3, 3), padding=1) == "Flat"
    assert layout((32, 4, 8, 8), (16, 4, 3, 3), padding=1) == "Layout"
    assert layout((32, 64, 8, 8), (64, 64, 3, 3), padding=1) == "Layout"
    assert layout((32, 32, 4, 4), (64, 32, 3, 3), padding=1) == "Layout"  # 5·4/4² = 1.25


def test_a_few_channel_flat_grid_of_9_by_8_matches_torch():
    """auto on 8×8 images, padding 1, 16 input channels: the flat layout at 1.125 grid positions per
    output, against PyTorch."""
    case = Case((3, 16, 8, 8), (5, 16, 3, 3), True, dict(padding=1))
    case.b_size = 5
    assert type(gemm.choose_layout(_geometry(case.x_shape, case.w_shape, padding=1))) is gemm.Flat
    check_against_torch(case, "auto", seed=7)


@pytest.mark.parametrize("run", [5, 64, 1 << 18])
def test_depthwise_pieces_and_channel_blocks_match_torch(run):
    """The flat depthwise form cuts each channel's grid into pieces and groups channels into blocks
    of about ``RUN`` elements; small values force ragged pieces and blocks (multiplier 2, dilation)."""
    from convgrad.conv import depthwise

    case = Case((3, 5, 9, 8), (10, 1, 3, 2), True, dict(groups=5, padding=(2, 1), dilation=(2, 1)))
    case.b_size = 10
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(depthwise, "RUN", run)
        check_against_torch(case, "depthwise", seed=run)


THREADED = {
    "depthwise": (Case((3, 5, 9, 8), (10, 1, 3, 2), True, dict(groups=5, padding=(2, 1))), None),
    "depthwise, stride 2": (Case((3, 5, 9, 8), (5, 1, 3, 3), True, dict(groups=5, stride=2, padding=1)), None),
    "gemm flat": (Case((3, 5, 9, 8), (4, 5, 3, 3), True, dict(padding=1)), gemm.Flat),
    "gemm images innermost": (Case((3, 5, 9, 8), (4, 5, 3, 3), True, dict(stride=2, padding=(1, 2))), gemm.Layout),
}


@pytest.mark.parametrize("name", THREADED)
def test_work_split_across_threads_matches_torch(name):
    """Every array large enough to split (the threshold patched to 0): depthwise's multiply-adds and
    copies, and gemm's copies when a layout is told to thread them, run in parallel channel slices."""
    from convgrad import _parallel

    case, layout = THREADED[name]
    case.b_size = case.w_shape[0]
    algorithm = "depthwise" if layout is None else "gemm"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_parallel, "MIN_ELEMENTS", 0)
        patch.setattr(_parallel, "WORKERS", 2)
        if layout is not None:
            patch.setattr(gemm, "choose_layout",
                          lambda g, need_dx=True: layout(innermost=layout is gemm.Layout, nd=g.nd, threads=True))
        check_against_torch(case, algorithm, seed=len(name))


@pytest.mark.parametrize("x_shape, options", [
    ((4, 3, 12, 11), dict(stride=2, padding=1)),  # short rows: innermost with dx, inside without
    ((4, 3, 20, 19), dict(padding=1)),  # flat either way
    ((2, 3, 6, 90), dict(stride=2, padding=(1, 2))),  # long rows: inside either way
])
def test_backward_without_input_grad_matches_torch(x_shape, options):
    """A first layer's backward (dW and db only, in the layout chosen for no dx) against PyTorch."""
    from convgrad.conv.api import backward_pass

    rng = np.random.default_rng(3)
    x, w = rng.normal(size=x_shape), rng.normal(size=(5, 3, 3, 3))
    dy = rng.normal(size=cg.conv(x, w, **options).shape)
    _, _, dw_t, db_t = oracle.conv(x, w, np.zeros(5), dy, **options)
    dx, dw, db = backward_pass("conv_backward", dy, x, w, options.get("stride", 1), options["padding"], 1, 1, "zeros",
                               True, "gemm", need_dx=False)
    assert dx is None
    assert rel_error(dw, dw_t) < 1e-12 and rel_error(db, db_t) < 1e-12


@pytest.mark.parametrize("algorithm, groups, out_channels", [("gemm", 1, 3), ("depthwise", 2, 2), ("depthwise", 2, 4)])
def test_infinite_inputs_give_torchs_infinities_and_no_extra_nan(algorithm, groups, out_channels):
    """The flat layouts' dropped grid positions read real inputs: an inf there must not turn a finite
    entry of dW into NaN (0·inf). dx, dW and db match PyTorch's, infinities and NaNs included."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 2, 20, 20))
    x[0, 0, 3, 19], x[1, 1, 0, 0] = np.inf, -np.inf  # read by the grid positions that wrap around a row
    w, dy = rng.normal(size=(out_channels, 2 // groups, 3, 3)), rng.normal(size=(2, out_channels, 20, 20))
    ours = cg.conv_backward(dy, x, w, padding=1, groups=groups, algorithm=algorithm)
    xt, wt = (torch.tensor(a, requires_grad=True) for a in (x, w))
    torch.nn.functional.conv2d(xt, wt, padding=1, groups=groups).backward(torch.tensor(dy))
    for got, want in zip(ours[:2], (xt.grad.numpy(), wt.grad.numpy())):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
        finite = np.isfinite(want)
        assert np.abs(got[finite] - want[finite]).max() < 1e-10 * np.abs(want[finite]).max()


def _geometry(x, w, **options):
    return conv_geometry("t", np.zeros(x, np.float32), np.zeros(w, np.float32), None, options.get("stride", 1),
                         options.get("padding", 0), options.get("dilation", 1), 1, options.get("padding_mode", "zeros"))[0]


def test_flat_period_shares_zero_padding_between_neighbours():
    """With zero padding an image row takes L + max(lo, hi) positions, not L + lo + hi; other padding
    modes, and a padding wider than the kernel's reach (an output row longer than that), keep the
    padded size."""
    assert gemm.flat_period(_geometry((2, 3, 16, 16), (4, 3, 3, 3), padding=1)) == (17, 17)
    assert gemm.flat_period(_geometry((2, 3, 9, 8), (4, 3, 3, 3), padding=((2, 1), (0, 3)))) == (11, 11)
    assert gemm.flat_period(_geometry((2, 3, 10), (4, 3, 5), padding=2, dilation=2)) == (12,)
    assert gemm.flat_period(_geometry((2, 3, 16, 16), (4, 3, 3, 3), padding=1, padding_mode="reflect")) == (18, 18)
    assert gemm.flat_period(_geometry((2, 3, 6, 6), (4, 3, 1, 1), padding=1)) == (8, 8)


def test_products_pad_few_output_channels_to_a_multiple_of_eight():
    """One group of 2 to 23 filters is computed as a multiple of 8 (the extra filters zero); the
    hypothesis cases above (mostly 1 to 6 filters) check the results against PyTorch."""
    rows = {c: gemm.product_rows(_geometry((2, 3, 6, 6), (c, 3, 3, 3))) for c in (1, 2, 6, 8, 13, 16, 23, 24, 25)}
    assert rows == {1: 1, 2: 8, 6: 8, 8: 8, 13: 16, 16: 16, 23: 24, 24: 24, 25: 25}
    g = conv_geometry("t", np.zeros((2, 4, 6, 6)), np.zeros((6, 2, 3, 3)), None, 1, 0, 1, 2, "zeros")[0]
    assert gemm.product_rows(g) == 3  # per group, unpadded


SHARED_PADDING = {
    "2-D (1, 1)": Case((3, 2, 6, 5), (3, 2, 3, 3), True, dict(padding=1)),
    "2-D (lo, hi), dilated": Case((3, 2, 9, 8), (4, 2, 3, 2), True, dict(padding=((2, 1), (0, 3)), dilation=(2, 1))),
    "2-D padding beyond the kernel's reach": Case((3, 2, 5, 6), (3, 2, 1, 2), True, dict(padding=((1, 2), (2, 1)))),
    "1-D hi > lo": Case((3, 2, 11), (3, 2, 4), False, dict(padding=((1, 3),))),
    "3-D": Case((3, 2, 4, 5, 4), (2, 2, 3, 2, 3), True, dict(padding=(1, (0, 1), 2))),
    "circular": Case((3, 2, 6, 5), (3, 2, 3, 3), True, dict(padding=1, padding_mode="circular")),
    "1-D kernel in two rows": Case((3, 24, 17), (5, 24, 6), True, dict(padding=((2, 3),), dilation=2)),
}


SAME_CONVOLUTIONS = {
    "2-D": Case((3, 3, 6, 5), (4, 3, 3, 3), True, dict(padding=1)),
    "2-D dilated, 6 filters (rows padded to 8)": Case((2, 3, 7, 6), (6, 3, 3, 3), True, dict(padding=2, dilation=2)),
    "1-D": Case((3, 2, 11), (3, 2, 5), False, dict(padding=2)),
    "3-D": Case((2, 2, 4, 5, 4), (3, 2, 3, 3, 3), True, dict(padding=1)),
}


@pytest.mark.parametrize("flat", ["flat", "flat unmasked"])
@pytest.mark.parametrize("name", SAME_CONVOLUTIONS)
def test_one_arrangement_of_dy_serves_dw_and_the_correlation(name, flat):
    """A stride-1 'same' convolution in the flat layout: dW's dY and the correlation's padded dy are
    one buffer, shifted (checked to be shared, then against PyTorch)."""
    case = SAME_CONVOLUTIONS[name]
    case.b_size = case.w_shape[0]
    g = _geometry(case.x_shape, case.w_shape, **case.kwargs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm, "choose_layout", GEMM_LAYOUTS[flat])
        patch.setattr(gemm, "correlate_input_grad", lambda g: True)
        shared = gemm.shared_grad_output(np.ones(g.y_shape), g, GEMM_LAYOUTS[flat](g), gemm.product_rows(g))
        assert shared is not None and np.shares_memory(*shared)
        check_against_torch(case, "gemm", seed=len(name))


@pytest.mark.parametrize("options", [dict(padding=1), dict(padding=((2, 0), (1, 1)), dilation=(1, 2))])
def test_images_innermost_shares_its_arrangement_of_dy(options):
    """Images innermost, stride 1, dx by correlation: dW's dY is the correlation's input as that layout
    stores it (zero padding virtual), one buffer (checked to be shared, then against PyTorch)."""
    case = Case((4, 3, 7, 6), (5, 3, 3, 2), True, options)
    case.b_size = 5
    g = _geometry(case.x_shape, case.w_shape, **options)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm, "choose_layout", GEMM_LAYOUTS["images innermost"])
        patch.setattr(gemm, "correlate_input_grad", lambda g: True)
        shared = gemm.shared_grad_output(np.ones(g.y_shape), g, GEMM_LAYOUTS["images innermost"](g), 8)
        assert shared is not None and np.shares_memory(*shared)
        check_against_torch(case, "gemm", seed=7)


def test_depthwise_shares_its_arrangement_of_dy_too():
    """Depthwise, one filter per channel, 'same': dW's grid of dy and dx's correlation share one copy."""
    case = Case((2, 3, 12, 12), (3, 1, 3, 3), True, dict(groups=3, padding=1))
    case.b_size = 3
    g = conv_geometry("t", np.zeros(case.x_shape), np.zeros(case.w_shape), None, 1, 1, 1, 3, "zeros")[0]
    layout = gemm.Flat(False, 2, threads=True)
    assert gemm.shared_grad_output(np.ones(g.y_shape), g, layout, 3, lambda _: layout) is not None
    check_against_torch(case, "depthwise", seed=3)


def test_dy_is_arranged_twice_where_the_periods_differ():
    g = _geometry((2, 3, 6, 5), (4, 3, 3, 3), padding=((2, 0), (1, 1)))
    assert gemm.shared_grad_output(np.ones(g.y_shape), g, gemm.Flat(False, 2), 4) is None


STACKED = {  # the flat layout's kernel rows in one product: rows · filters per group ≤ the rows' offsets
    "2-D": Case((2, 8, 12, 10), (8, 8, 3, 3), True, dict(padding=1)),
    "2-D, groups": Case((2, 6, 20, 12), (6, 3, 3, 3), True, dict(groups=2, padding=(2, 1), dilation=(2, 1))),
    "1-D rows of 3": Case((2, 24, 60), (24, 24, 9), True, dict(padding=4)),
    "3-D": Case((1, 24, 22, 22, 6), (8, 24, 3, 3, 3), False, dict(padding=1)),  # 9 rows of 72 from k_d·k_h starts
}


@pytest.mark.parametrize("name", STACKED)
def test_stacked_kernel_rows_match_torch(name, monkeypatch):
    """Few filters: the kernel rows' weights are stacked into one product whose row blocks are summed
    shifted (forward and the dx correlation), against PyTorch; more filters than STACK_ROWS are not."""
    case = STACKED[name]
    case.b_size = case.w_shape[0]
    calls = []
    original = gemm._stacked_product
    monkeypatch.setattr(gemm, "_stacked_product", lambda *a: calls.append(1) or original(*a))
    check_against_torch(case, "gemm", seed=len(name))
    assert calls
    o = case.kwargs
    g = conv_geometry("t", np.zeros(case.x_shape), np.zeros(case.w_shape), None, 1, o["padding"], o.get("dilation", 1),
                      o.get("groups", 1), "zeros")[0]
    layout = gemm.choose_layout(g)
    W = gemm._weight_rows(np.zeros(case.w_shape), g, layout.rows(g))
    assert gemm._stacked(W, layout, g) is not None
    monkeypatch.setattr(gemm, "STACK_ROWS", W.shape[2] - 1)
    assert gemm._stacked(W, layout, g) is None


def test_one_dimensional_kernels_are_cut_into_rows_with_enough_channels():
    """In 1-D the flat layout cuts k into rows of b offsets (b ≥ 3 dividing k) when each product keeps
    C_in/G·b ≥ 64 rows: fewer im2col copies for slightly smaller products."""
    def rows(x, w, **options):
        return gemm.Flat(innermost=False, nd=1).rows(_geometry(x, w, **options))

    assert rows((64, 32, 1024), (32, 32, 9), padding=4) == 3  # conv1d: 3 rows of 3 offsets
    assert rows((3, 24, 17), (5, 24, 6)) == 2  # 24·3 ≥ 64
    assert rows((3, 8, 17), (5, 8, 9)) == 1  # 8·3 < 64 and 8·9 is the whole kernel
    assert rows((3, 64, 17), (5, 64, 7)) == 1  # 7 is prime


@pytest.mark.parametrize("flat", ["flat", "flat unmasked"])
@pytest.mark.parametrize("correlate", [True, False])
@pytest.mark.parametrize("name", SHARED_PADDING)
def test_flat_layout_one_image_per_tile_matches_torch(name, correlate, flat):
    """The flat layout with one image per tile: the windows of a tile's last outputs read the margin
    after it (the next image's leading zeros, or the zeros after the last image), and col2im adds
    into them. dx both ways (correlation and col2im)."""
    check_forced(SHARED_PADDING[name], flat, len(name), correlate, CHUNK_BYTES=1)


def _recording(function, results: list):
    """``function``, appending what each call returns (whether BLAS did the work) to ``results``."""
    def recorded(*args):
        results.append(function(*args))
        return results[-1]
    return recorded


SUMMED_ROWS = {name: SHARED_PADDING[name] for name in ("2-D (1, 1)", "2-D (lo, hi), dilated", "3-D", "circular",
                                                         "1-D kernel in two rows")}
SUMMED_ROWS["2-D groups"] = Case((3, 6, 7, 6), (6, 2, 3, 3), True, dict(padding=1, groups=3))


@pytest.mark.parametrize("correlate", [True, False])
@pytest.mark.parametrize("name", SUMMED_ROWS)
def test_flat_kernel_rows_summed_by_blas_match_torch(name, correlate):
    """The flat layout's kernel rows as one product each (none stacked), each added into the sum by
    gemm's β = 1 (spied: BLAS did every one, group by group, where NumPy's has gemm): the forward, and dx
    by correlation (a forward) or by products accumulated into overlapping views of dcols."""
    added = []
    check_forced(SUMMED_ROWS[name], "flat", len(name), correlate, STACK_ROWS=0, matmul_add=_recording(_blas.matmul_add, added))
    assert added and all(added) == _blas.available(np.float64, "gemm")


@pytest.mark.parametrize("copies", ["blas", "tiles", "staged tiles"])
@pytest.mark.parametrize("x_shape, w_shape, padding", [((3, 2, 5, 4), (3, 2, 2, 3), 0), ((9, 1, 2, 3), (2, 1, 1, 2), 0),
                                                       ((3, 2, 5, 4), (3, 2, 2, 3), (1, 2))])
def test_innermost_transposes_match_torch(x_shape, w_shape, padding, copies):
    """Images innermost: the 2-D transposes of x, dy, y and dx by NumPy's BLAS (spied: every one of
    them, where it has the routine), or by NumPy in tiles of 3 elements, many ragged tiles along the
    images (more images than channel positions) or along the positions, each tile staged in scratch
    (as for a row stride of 4 KiB) or not; a padded x goes through scratch."""
    calls = []
    patched = (dict(transpose=_recording(_blas.transpose, calls), BLAS_TRANSPOSE=0) if copies == "blas"
               else dict(transpose=lambda source, target: False))
    check_forced(Case(x_shape, w_shape, True, dict(padding=padding)), "images innermost", x_shape[0], False,
                 TRANSPOSE_TILE=3, ALIASED_STRIDE=8 if copies == "staged tiles" else 1 << 40, **patched)
    if copies == "blas":
        assert len(calls) >= 4 and all(calls) == _blas.available(np.float64)


@pytest.mark.parametrize("layout, case, copied", [
    ("flat", Case((3, 2, 6, 5), (16, 2, 3, 2), True, dict(padding=1)), True),
    ("flat", Case((2, 3, 4, 3, 5), (17, 3, 2, 3, 2), True, dict(padding=(1, 0, 1))), True),
    ("flat", Case((2, 4, 6, 5), (32, 2, 3, 2), True, dict(padding=1, groups=2)), True),  # a copy per group
    ("flat", Case((3, 2, 6, 5), (8, 2, 3, 2), True, dict(padding=1)), False),  # too few filters
    ("images inside", Case((3, 2, 7, 6), (32, 1, 2, 3), True, dict(groups=2, dilation=(2, 1))), False),
    ("images innermost", Case((2, 3, 9), (20, 3, 4), True, dict(stride=2, padding=1)), False),
])
@pytest.mark.parametrize("kernels", ["skylakex", "haswell"])
def test_dw_reads_dy_from_a_position_major_copy_for_kernel_rows(layout, case, copied, kernels, monkeypatch):
    """With OpenBLAS's AVX-512 kernels, the flat layout's dW products (one per kernel row) read each
    tile's dy from one C-ordered transposed copy when a group has at least ``GRAD_ROWS_FROM`` filters
    (size threshold lowered to 0; products by tile, not image by image); the other layouts' one product
    per tile, and fewer filters, read dy's transposed view. With the Haswell kernels every product
    reads the view. Spied: every product's operand was the copy (where NumPy's BLAS has the routine) or
    the view, as said; dW matches PyTorch's either way."""
    operands = []  # whether each product read a C-ordered dy (dy's transposed view is not one)
    original = gemm._accumulate_product
    monkeypatch.setattr(gemm, "_accumulate_product", lambda out, a, b: operands.append(b.flags.c_contiguous) or original(out, a, b))
    _with_kernels(monkeypatch, kernels)
    copied = copied and kernels == "skylakex"
    check_forced(case, layout, len(layout), False, BLAS_TRANSPOSE=0, SMALL_PRODUCT=0)
    assert operands and all(operands) == (copied and _blas.available(np.float64))
    assert not any(operands) or copied


VIRTUAL_PADDING = {
    "2-D (lo, hi), stride, dilation": Case((3, 2, 9, 8), (3, 2, 3, 2), True, dict(padding=((2, 1), (0, 3)), stride=(2, 1), dilation=(2, 1))),
    "2-D windows wholly in the padding": Case((2, 2, 3, 3), (3, 2, 2, 2), True, dict(padding=3, stride=2)),
    "1-D": Case((3, 2, 11), (3, 2, 4), False, dict(padding=((3, 1),), stride=2)),
    "3-D": Case((2, 2, 4, 5, 4), (2, 2, 3, 2, 3), True, dict(padding=(1, (0, 1), 2), stride=(1, 2, 1))),
    "reflect (padded explicitly)": Case((3, 2, 6, 5), (3, 2, 3, 3), True, dict(padding=1, padding_mode="reflect", stride=2)),
}


@pytest.mark.parametrize("layout", ["images inside", "images innermost", "images inside, phased"])
@pytest.mark.parametrize("name", VIRTUAL_PADDING)
def test_row_layouts_with_one_output_row_per_tile_match_torch(name, layout):
    """The row layouts keep zero padding virtual: each kernel offset copies the part of its window inside
    x and zeros the rest. With one output row per tile (a tiny chunk), the first and last tiles meet
    the top and bottom padding; dx by col2im (auto would often correlate instead)."""
    check_forced(VIRTUAL_PADDING[name], layout, len(name), False, CHUNK_BYTES=1)


def test_a_short_last_band_of_rows_joins_the_tile_before_it(monkeypatch):
    """Images innermost tiles bands of output rows; a band grows by up to half (SPLIT_SLACK) rather than
    leave a short last tile, never past the workspace limit, and not when a limit is given as a bound."""
    g = _geometry((64, 6, 12, 12), (16, 6, 5, 5))  # 8 output rows
    layout, row = gemm.Layout(innermost=True, nd=2), 2 * 6 * 25 * 8 * 4 * 64  # bytes per row, two buffers

    def bands(limit=None):
        return [(t.rows.start, t.rows.stop) for t in layout.tiles(g, 2, limit)]

    monkeypatch.setattr(gemm, "CHUNK_BYTES", 6 * row)
    assert bands() == [(0, 8)] and bands(6 * row) == [(0, 6), (6, 8)]
    with cg.workspace_limit(7 * row):
        assert bands() == [(0, 6), (6, 8)]
    monkeypatch.setattr(gemm, "CHUNK_BYTES", 5 * row)
    assert bands() == [(0, 5), (5, 8)]


FLAT_COL2IM = {
    "2-D": Case((2, 3, 9, 8), (4, 3, 3, 2), True, dict(padding=1)),
    "2-D dilated, grouped, (lo, hi)": Case((2, 4, 11, 9), (6, 2, 3, 3), True,
                                           dict(padding=((2, 1), (0, 3)), dilation=(2, 1), groups=2)),
    "3-D": Case((2, 2, 5, 6, 4), (3, 2, 2, 3, 2), False, dict(padding=(1, 0, 1), dilation=(1, 2, 1))),
}


@pytest.mark.parametrize("flat", ["flat", "flat unmasked"])
@pytest.mark.parametrize("name", FLAT_COL2IM)
def test_flat_layout_input_gradient_by_col2im_matches_torch(name, flat):
    """The flat layout's dx through col2im: one product per kernel row into overlapping views of the
    im2col gradient, then one run per offset of the last dims (auto would often correlate instead)."""
    check_forced(FLAT_COL2IM[name], flat, len(name), False)


PIECES = {
    "a first layer (one channel, 5x5), training": (Case((16, 1, 28, 28), (6, 1, 5, 5), True, dict()), None),
    "groups, stride 2, a smaller piece limit": (Case((4, 4, 48, 48), (4, 2, 3, 3), True, dict(stride=2, groups=2)),
                                                36 * 1100),
}


@pytest.mark.parametrize("name", PIECES)
def test_dw_of_few_filters_summed_over_pieces_matches_torch(name, monkeypatch):
    """dW of a small output over a long reduction is a sum of products over pieces of the columns (see
    gemm._accumulate_product), against PyTorch; the test checks that the columns were really cut."""
    case, limit = PIECES[name]
    case.b_size = case.w_shape[0]
    _with_kernels(monkeypatch, "skylakex")  # OpenBLAS's small-matrix path
    if limit is not None:
        monkeypatch.setattr(gemm, "SMALL_PRODUCT", limit)
    cut = []
    original = gemm._accumulate_product

    def spy(out, a, b):
        cut.append(a.shape[-1] > gemm.SMALL_PRODUCT // (a.shape[-2] * b.shape[-1]) >= gemm.MIN_PIECE)
        original(out, a, b)

    monkeypatch.setattr(gemm, "_accumulate_product", spy)
    check_against_torch(case, "gemm", seed=len(name))
    assert cut and all(cut)


@pytest.mark.parametrize("kernels", ["skylakex", "haswell"])
def test_accumulate_product_pieces_cover_the_reduction(kernels, monkeypatch):
    """With OpenBLAS's AVX-512 kernels, out += a @ b over pieces of 1100 of a 3001-long reduction (the last
    one shorter), two groups; and in one product where the pieces would be shorter than MIN_PIECE. With
    its Haswell kernels (no small-matrix path) always one product. Against float64 einsum."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5, 3001)), rng.normal(size=(2, 3001, 4))
    start = rng.normal(size=(2, 5, 4))
    expected = start + np.einsum("gml,gln->gmn", a, b)
    for limit in (20 * 1100, 20 * 1000):
        _with_kernels(monkeypatch, kernels)
        monkeypatch.setattr(gemm, "SMALL_PRODUCT", limit)
        calls = []
        monkeypatch.setattr(gemm.np, "matmul", lambda x, y, _m=np.matmul: calls.append(x.shape[-1]) or _m(x, y))
        out = start.copy()
        gemm._accumulate_product(out, a, b)
        monkeypatch.undo()
        assert rel_error(out, expected) < 1e-12
        assert calls == ([1100, 1100, 801] if limit == 20 * 1100 and kernels == "skylakex" else [3001])


PHASED = {
    "stride 2, odd lengths, (lo, hi) padding": Case((3, 2, 11, 9), (3, 2, 3, 4), True,
                                                    dict(stride=2, padding=((2, 1), (0, 3)))),
    "stride 3 by 2, dilation 2": Case((2, 3, 14, 10), (4, 3, 3, 2), True, dict(stride=(3, 2), dilation=2, padding=1)),
    "stride larger than the kernel": Case((2, 2, 13, 12), (3, 2, 2, 2), True, dict(stride=4, padding=(1, 2))),
    "7x7 stride 2, padding 3 (a stem)": Case((2, 3, 20, 22), (4, 3, 7, 7), True, dict(stride=2, padding=3)),
    "1-D": Case((3, 2, 17), (3, 2, 4), False, dict(stride=3, padding=((2, 1),))),
    "3-D, stride in one dim": Case((2, 2, 5, 6, 7), (3, 2, 2, 3, 2), True, dict(stride=(1, 2, 1), padding=1)),
    "reflect": Case((2, 2, 9, 8), (3, 2, 3, 3), True, dict(stride=2, padding=(2, 1), padding_mode="reflect")),
    "circular": Case((2, 2, 7, 9), (3, 2, 3, 2), True, dict(stride=(2, 3), padding=1, padding_mode="circular")),
    "replicate, groups": Case((2, 4, 9, 8), (4, 2, 3, 3), True,
                              dict(stride=2, padding=2, padding_mode="replicate", groups=2)),
}


@pytest.mark.parametrize("chunk", ["whole", "one output row per tile"])
@pytest.mark.parametrize("name", PHASED)
def test_phased_layout_matches_torch(name, chunk):
    """The phased layout (images inside, each strided dim stored phase by phase) against PyTorch, dx by
    col2im into the phases, over odd lengths, padding pairs, dilation, the padding modes and groups."""
    constants = {"CHUNK_BYTES": 1} if chunk != "whole" else {}
    check_forced(PHASED[name], "images inside, phased", len(name), False, **constants)


def test_strided_convolutions_with_large_kernels_go_phased():
    """A stride > 1 with rows copied per image (long output rows, or no dx wanted) takes the phased
    layout where its windows read each input element PHASE_READS times or more; stride 1, small kernels
    and short rows with dx do not."""
    stem = _geometry((8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    assert type(gemm.choose_layout(stem)) is gemm.Phased
    assert gemm.Phased(innermost=False, nd=2).stored(stem) == ((230, 230), ((0, 0), (0, 0)))
    first = _geometry((8, 3, 12, 12), (4, 3, 5, 5), stride=2)  # 25 >= 6 * 4
    assert type(gemm.choose_layout(first, need_dx=False)) is gemm.Phased
    assert gemm.choose_layout(first) == gemm.Layout(innermost=True, nd=2)
    small = _geometry((8, 3, 99, 99), (4, 3, 3, 3), stride=2)  # 9 < 6 * 4
    assert gemm.choose_layout(small) == gemm.Layout(innermost=False, nd=2)
    assert gemm._row_layout(_geometry((8, 3, 99, 99), (4, 3, 3, 3), padding=1), need_dx=False) == gemm.Layout(False, 2)


def test_phase_copies_place_every_padded_position_once():
    """Each position q of a padded dim with stride s lands at (q mod s)·⌈P/s⌉ + q div s, and every
    position of x is copied exactly once."""
    padded, n, lo, s = 11, 8, 2, 3  # x at 2..9 of the padded 0..10
    copies = gemm._phase_copies((s,), (padded,), (n,), (lo,))
    q, placed = gemm._quotient(padded, s), []
    for (stored,), (read,) in copies:
        assert stored.stop - stored.start == len(range(n)[read])
        placed += zip(range(n)[read], range(stored.start, stored.stop))
    assert sorted(r for r, _ in placed) == list(range(n))
    assert all(target == ((r + lo) % s) * q + (r + lo) // s for r, target in placed)


BY_IMAGE = {  # (case, layout forced): images inside, each image's product small (gemm.by_image)
    "a first layer (one channel, 5x5)": (Case((6, 1, 12, 12), (6, 1, 5, 5), True, dict()), "images inside"),
    "groups, padding, no bias": (Case((3, 6, 7, 9), (9, 2, 3, 2), False, dict(groups=3, padding=1)), "images inside"),
    "stride 2 (phased), dilation": (Case((4, 3, 11, 10), (5, 3, 3, 3), True, dict(stride=2, dilation=(1, 2), padding=2)),
                                    "images inside, phased"),
    "reflect, 1-D": (Case((5, 2, 13), (4, 2, 3), True, dict(padding=2, padding_mode="reflect")), "images inside"),
    "3-D, (lo, hi) pairs": (Case((2, 2, 4, 5, 6), (3, 2, 2, 3, 2), True, dict(padding=((1, 0), (0, 2), 1))), "images inside"),
}


def _spy(monkeypatch, *names) -> list:
    """The names of gemm's functions ``names`` in the order they are called from now on."""
    calls = []
    for name in names:
        original = getattr(gemm, name)
        monkeypatch.setattr(gemm, name, lambda *a, _name=name, _f=original, **k: calls.append(_name) or _f(*a, **k))
    return calls


def _spy_by_image(monkeypatch) -> list:
    return _spy(monkeypatch, "_forward_by_image", "_products_by_image")


@pytest.mark.parametrize("kernels", ["skylakex", "haswell"])
@pytest.mark.parametrize("name", BY_IMAGE)
def test_products_image_by_image_match_torch(name, kernels, monkeypatch):
    """Images inside with each image's product small, and OpenBLAS's AVX-512 kernels (whose small-matrix
    path runs such products unpacked): the products run image by image between the im2col matrix and y,
    dy in their own layout (gemm.by_image), forward, dW and dx by col2im, against PyTorch. With its
    Haswell kernels they take the whole tile."""
    case, layout = BY_IMAGE[name]
    _with_kernels(monkeypatch, kernels)
    calls = _spy_by_image(monkeypatch)
    check_forced(case, layout, len(name), correlate=False)
    assert calls == (["_forward_by_image", "_products_by_image"] if kernels == "skylakex" else [])


def test_products_run_whole_where_an_image_is_not_small(monkeypatch):
    """Past the small-product bound (lowered here), or with more than twice as many filters as output
    positions, the products take the whole tile (AVX-512 kernels), and the result is the same."""
    _with_kernels(monkeypatch, "skylakex")
    calls = _spy_by_image(monkeypatch)
    check_forced(Case((6, 1, 12, 12), (6, 1, 5, 5), True, dict()), "images inside", 1, False, SMALL_PRODUCT=6 * 25 * 64 - 1)
    check_forced(Case((3, 2, 5, 5), (19, 2, 3, 3), True, dict()), "images inside", 2, False)  # 19 filters, 9 positions
    assert calls == []


@pytest.mark.parametrize("contiguous", [True, False])
def test_first_layer_module_image_by_image_matches_torch_autograd(contiguous, monkeypatch):
    """A training Conv2d wanting no dx (a first layer, images inside) runs its forward and dW image by
    image from the kept columns, for dy as the next layer hands it or a strided view; y, dW and db
    against PyTorch's autograd in float64."""
    rng = np.random.default_rng(7)
    module = cg.nn.Conv2d(2, 4, 3, stride=1, padding=1, dtype=np.float64)
    module._expect_input_grad(False)
    x = rng.normal(size=(5, 2, 9, 7))
    _with_kernels(monkeypatch, "skylakex")  # image by image (gemm.by_image)
    calls = _spy_by_image(monkeypatch)
    y = module(x)
    dy = rng.normal(size=y.shape) if contiguous else rng.normal(size=y.shape[:3] + (2 * y.shape[3],))[..., ::2]
    assert module.backward(dy, input_grad=False) is None
    assert calls == ["_forward_by_image", "_products_by_image"]
    ref_y, _, ref_dw, ref_db = oracle.conv(x, module.weight.data, module.bias.data, dy, padding=1)
    assert rel_error(y, ref_y) < 1e-12
    assert rel_error(module.weight.grad, ref_dw) < 1e-12 and rel_error(module.bias.grad, ref_db) < 1e-12


STAGED = {  # images inside, short rows, stride 1 along the last dim: im2col through a stage (gemm._staged_im2col)
    "a first layer (one channel, 5x5)": (Case((3, 1, 12, 11), (4, 1, 5, 5), True, dict()), {}),
    "stride 2 in the first dim, dilation, padding": (Case((2, 3, 13, 9), (4, 3, 3, 2), True,
                                                      dict(stride=(2, 1), dilation=(2, 3), padding=(1, 2))), {}),
    "one output row per tile (row bands)": (Case((2, 2, 9, 8), (3, 2, 3, 3), False, dict(padding=1)), dict(CHUNK_BYTES=1)),
    "3-D, groups, replicate": (Case((2, 4, 5, 6, 7), (4, 2, 2, 3, 3), True,
                                    dict(groups=2, padding=1, padding_mode="replicate")), {}),
}


@pytest.mark.parametrize("name", STAGED)
def test_staged_im2col_matches_torch(name, monkeypatch):
    """Images inside with short rows and stride 1 along the last dim build im2col in two copies through a
    stage (the last dim's offsets first, then whole output planes): against PyTorch, with the stage used."""
    case, constants = STAGED[name]
    staged = _spy(monkeypatch, "_staged_im2col")
    check_forced(case, "images inside", len(name), correlate=False, **constants)
    assert staged


@pytest.mark.parametrize("x_shape, w_shape, chunk", [
    ((5, 6, 4, 3), (4, 6, 1, 1), 4 * 6 * 4 * 2),  # dW by batched products, two images a chunk
    ((3, 8, 1, 2), (9, 8, 1, 1), 2**22),  # C_in·C_out > (C_in + C_out)·P: one product over copies
])
def test_pointwise_weight_gradient_by_chunks_or_copies_matches_torch(x_shape, w_shape, chunk, monkeypatch):
    from convgrad.conv import pointwise

    monkeypatch.setattr(pointwise, "CHUNK_BYTES", chunk)
    check_against_torch(Case(x_shape, w_shape, True, {}, b_size=w_shape[0]), "pointwise", seed=3)
