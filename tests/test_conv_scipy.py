"""The forward convolution against a second independent oracle: scipy.signal.correlate.

Padding here is NumPy's np.pad (reflect, edge, wrap), dilation is a kernel with zeros inserted, and
stride is subsampling of the full-resolution correlation: none of it shares code with convgrad.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import close
from scipy import signal
from strategies import ALGORITHMS, conv_cases, examples

import convgrad as cg

NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def scipy_conv(x, w, b, stride, pairs, dilation, groups, padding_mode):
    nd = x.ndim - 2
    stride = (stride,) * nd if isinstance(stride, int) else stride
    dilation = (dilation,) * nd if isinstance(dilation, int) else dilation
    xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pairs], mode=NP_MODE[padding_mode])
    wd = np.zeros(w.shape[:2] + tuple((k - 1) * d + 1 for k, d in zip(w.shape[2:], dilation)))
    wd[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in dilation)] = w
    cog, cig = w.shape[0] // groups, w.shape[1]
    subsample = tuple(slice(None, None, s) for s in stride)
    out = []
    for n in range(x.shape[0]):
        out.append([
            sum(signal.correlate(xp[n, co // cog * cig + ci], wd[co, ci], mode="valid") for ci in range(cig))[subsample]
            + (0.0 if b is None else b[co])
            for co in range(w.shape[0])
        ])
    return np.array(out)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=examples(120))
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_conv_matches_scipy_correlate(algorithm, data, seed):
    case = data.draw(conv_cases(algorithm=algorithm))
    x, w, b = case.arrays(np.random.default_rng(seed))
    kw = case.kwargs
    expected = scipy_conv(x, w, b, kw["stride"], case.pairs, kw["dilation"], kw["groups"], kw["padding_mode"])
    y = cg.conv(x, w, b, algorithm=algorithm, **kw)
    assert y.shape == expected.shape
    assert close(y, expected, 1e-10, algorithm)
