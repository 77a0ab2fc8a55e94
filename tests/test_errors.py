"""Every documented input error: the exception type, and a message that names the argument."""

import ast
import pathlib

import numpy as np
import pytest

import convgrad as cg

X = np.ones((2, 4, 9, 9))
W = np.ones((8, 4, 3, 3))
DY = np.ones((2, 8, 7, 7))
XT, WT = np.ones((2, 4, 5, 5)), np.ones((4, 3, 3, 3))  # conv_transpose: weight (C_in, C_out/G, *k)
X1 = np.ones((1, 2, 4))

CASES = {
    # --- shapes
    "x with no spatial dim": (lambda: cg.conv(np.ones((2, 4)), W), ValueError, r"x.ndim.*got x of shape \(2, 4\)"),
    "x with 4 spatial dims": (lambda: cg.conv(np.ones((1,) * 7), W), ValueError, "x of shape"),
    "conv2d with 1-D x": (lambda: cg.conv2d(X1, np.ones((3, 2, 2))), ValueError, r"2 spatial dim.*got x of shape \(1, 2, 4\)"),
    "conv1d with 2-D x": (lambda: cg.conv1d(X, W), ValueError, "1 spatial dim"),
    "conv3d with 2-D x": (lambda: cg.conv3d(X, W), ValueError, "3 spatial dim"),
    "weight ndim": (lambda: cg.conv(X, np.ones((8, 4, 3))), ValueError, r"weight.*got weight of shape \(8, 4, 3\)"),
    "channel mismatch": (lambda: cg.conv(np.ones((2, 3, 9, 9)), W), ValueError,
                         r"expected input with 4 channels \(weight \(8, 4, 3, 3\), groups=1\), got x of shape \(2, 3, 9, 9\)"),
    "channel mismatch with groups": (lambda: cg.conv(X, np.ones((8, 4, 3, 3)), groups=2), ValueError, r"8 channels.*groups=2"),
    "C_out not divisible by groups": (lambda: cg.conv(np.ones((2, 3, 9, 9)), np.ones((8, 1, 3, 3)), groups=3),
                                      ValueError, "divisible by groups"),
    "groups < 1": (lambda: cg.conv(X, W, groups=0), ValueError, "groups >= 1"),
    "groups not an int": (lambda: cg.conv(X, W, groups=1.0), TypeError, "groups"),
    "bias shape": (lambda: cg.conv(X, W, np.ones(4)), ValueError, r"bias of shape \(8,\), got bias of shape \(4\)"),
    "zero-size kernel": (lambda: cg.conv(X, np.ones((8, 4, 0, 3))), ValueError, "kernel size >= 1"),
    # --- stride, dilation, padding
    "stride 0": (lambda: cg.conv(X, W, stride=0), ValueError, "stride >= 1"),
    "stride float": (lambda: cg.conv(X, W, stride=2.0), TypeError, "stride"),
    "stride bool": (lambda: cg.conv(X, W, stride=True), TypeError, "stride"),
    "stride wrong length": (lambda: cg.conv(X, W, stride=(1, 2, 3)), ValueError, r"stride.*2 int"),
    "stride of strings": (lambda: cg.conv(X, W, stride=("1", "2")), TypeError, "stride"),
    "dilation 0": (lambda: cg.conv(X, W, dilation=(1, 0)), ValueError, "dilation >= 1"),
    "dilation float": (lambda: cg.conv(X, W, dilation=1.5), TypeError, "dilation"),
    "negative padding": (lambda: cg.conv(X, W, padding=-1), ValueError, "padding >= 0"),
    "negative padding pair": (lambda: cg.conv(X, W, padding=((0, -1), 1)), ValueError, "padding >= 0"),
    "padding wrong length": (lambda: cg.conv(X, W, padding=(1, 1, 1)), ValueError, "padding"),
    "padding bad pair": (lambda: cg.conv(X, W, padding=((1, 2, 3), 1)), TypeError, "padding"),
    "padding float": (lambda: cg.conv(X, W, padding=1.0), TypeError, "padding"),
    "unknown padding string": (lambda: cg.conv(X, W, padding="full"), ValueError, r"padding 'valid' or 'same'.*'full'"),
    "same with stride 2": (lambda: cg.conv(X, W, padding="same", stride=2), ValueError, r"padding='same' requires stride 1"),
    "unknown padding_mode": (lambda: cg.conv(X, W, padding_mode="mirror"), ValueError, "padding_mode.*'mirror'"),
    "unknown algorithm": (lambda: cg.conv(X, W, algorithm="fft9"), ValueError, "algorithm.*'fft9'"),
    "algorithm not a string": (lambda: cg.conv(X, W, algorithm=None), ValueError, "algorithm"),
    "kernel larger than input": (lambda: cg.conv(np.ones((1, 4, 2, 9)), W), ValueError,
                                 r"kernel size \(3, 3\).*larger than the padded input size \(2, 9\)"),
    "dilated kernel larger": (lambda: cg.conv(np.ones((1, 4, 4, 9)), W, dilation=2, padding=(0, 0)), ValueError,
                              r"kernel size \(5, 5\).*dilation \(2, 2\)"),
    "reflect padding = size": (lambda: cg.conv(np.ones((1, 4, 3, 9)), W, padding=3, padding_mode="reflect"),
                               ValueError, "padding_mode='reflect'.*padding"),
    "circular padding > size": (lambda: cg.conv(np.ones((1, 4, 3, 9)), W, padding=4, padding_mode="circular"),
                                ValueError, "padding_mode='circular'.*padding"),
    # --- backward
    "conv_backward dy shape": (lambda: cg.conv_backward(np.ones((2, 8, 7, 6)), X, W), ValueError,
                               r"dy of shape \(2, 8, 7, 7\).*got dy of shape \(2, 8, 7, 6\)"),
    "conv_backward bias shape": (lambda: cg.conv_backward(DY, X, W, bias=np.ones(3)), ValueError, "bias"),
    "conv_backward dy complex": (lambda: cg.conv_backward(DY.astype(complex), X, W), TypeError, "dy"),
    "conv_transpose_backward dy shape": (lambda: cg.conv_transpose_backward(np.ones((2, 3, 7, 6)), XT, WT),
                                         ValueError, r"dy of shape \(2, 3, 7, 7\)"),
    "max_pool_backward dy shape": (lambda: cg.max_pool_backward(np.ones((2, 4, 3, 3)), X, 2), ValueError,
                                   r"dy of shape \(2, 4, 4, 4\)"),
    "avg_pool_backward dy shape": (lambda: cg.avg_pool_backward(np.ones((2, 4, 3, 3)), X, 2), ValueError, "dy of shape"),
    # --- transposed convolution
    "transpose channel mismatch": (lambda: cg.conv_transpose(np.ones((2, 3, 5, 5)), WT), ValueError,
                                   r"4 channels \(weight \(4, 3, 3, 3\)"),
    "transpose groups": (lambda: cg.conv_transpose(XT, WT, groups=3), ValueError, "divisible by groups"),
    "transpose bias": (lambda: cg.conv_transpose(XT, WT, np.ones(4)), ValueError, r"bias of shape \(3,\)"),
    "output_padding >= stride and dilation": (lambda: cg.conv_transpose(XT, WT, stride=2, output_padding=2),
                                              ValueError, "output_padding smaller than stride or dilation"),
    "output_padding negative": (lambda: cg.conv_transpose(XT, WT, output_padding=-1), ValueError, "output_padding"),
    "transpose padding string": (lambda: cg.conv_transpose(XT, WT, padding="same"), TypeError, "padding"),
    "transpose output size": (lambda: cg.conv_transpose(np.ones((1, 4, 1, 1)), WT, padding=2), ValueError,
                              "output size.*not positive"),
    # --- pooling
    "pool padding over half the kernel": (lambda: cg.max_pool(X, 3, padding=2), ValueError,
                                          "padding at most half of kernel_size"),
    "avg pool padding over half": (lambda: cg.avg_pool(X, (2, 4), padding=(2, 0)), ValueError, "padding"),
    "pool kernel 0": (lambda: cg.max_pool(X, 0), ValueError, "kernel_size >= 1"),
    "pool stride 0": (lambda: cg.avg_pool(X, 2, stride=0), ValueError, "stride >= 1"),
    "pool kernel dims vs x": (lambda: cg.max_pool(X, (2, 2, 2)), ValueError, r"3 spatial dim.*got x of shape"),
    "pool kernel larger than input": (lambda: cg.max_pool(np.ones((1, 1, 2, 9)), 3), ValueError, "kernel size"),
    "pool ceil_mode not bool": (lambda: cg.max_pool(X, 2, ceil_mode="yes"), TypeError, "ceil_mode"),
    "pool count_include_pad not bool": (lambda: cg.avg_pool(X, 2, count_include_pad=None), TypeError, "count_include_pad"),
    "pool dilation 0": (lambda: cg.max_pool(X, 2, dilation=0), ValueError, "dilation >= 1"),
    # --- helpers
    "conv_output_size kernel too big": (lambda: cg.conv_output_size(3, 5), ValueError, "kernel size"),
    "conv_output_size bad stride": (lambda: cg.conv_output_size((5, 5), 3, stride=(1, 0)), ValueError, "stride"),
    "workspace limit": (lambda: cg.set_workspace_limit(0), ValueError, "workspace"),
}


@pytest.mark.parametrize("name", CASES)
def test_documented_error(name):
    call, kind, pattern = CASES[name]
    with pytest.raises(kind, match=pattern):
        call()


@pytest.mark.parametrize("name", ["conv_backward", "conv_transpose_backward"])
def test_backward_bias_flag(name):
    if name == "conv_backward":
        assert cg.conv_backward(DY, X, W, bias=False)[2] is None
        assert cg.conv_backward(DY, X, W, bias=np.zeros(8))[2].shape == (8,)
    else:
        dy = np.ones((2, 3, 7, 7))
        assert cg.conv_transpose_backward(dy, XT, WT, bias=False)[2] is None
        assert cg.conv_transpose_backward(dy, XT, WT)[2].shape == (3,)


def test_no_assert_statements_in_the_library():
    """Input checks must not vanish under ``python -O``: the library has no assert statement at all."""
    root = pathlib.Path(cg.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{node.lineno}"
        for path in root.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assert)
    ]
    assert offenders == []
