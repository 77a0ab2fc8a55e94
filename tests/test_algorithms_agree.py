"""All algorithms give the same numbers on the same random configurations (and the notes' loops are the reference)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import close
from strategies import ALGORITHMS, conv_cases, examples, supports, transpose_cases

import convgrad as cg


def _all_agree(results):
    reference = results["naive"]
    for name, values in results.items():
        for got, want in zip(values, reference):
            assert (got is None) == (want is None), name
            if want is not None:
                assert got.shape == want.shape and close(got, want, 1e-12, name), name


@settings(max_examples=examples(180))
@given(case=conv_cases(), seed=st.integers(0, 2**32 - 1))
def test_conv_algorithms_agree(case, seed):
    rng = np.random.default_rng(seed)
    x, w, b = case.arrays(rng)
    dy = rng.normal(size=cg.conv(x, w, b, **case.kwargs).shape)
    _all_agree({
        a: (cg.conv(x, w, b, algorithm=a, **case.kwargs),
            *cg.conv_backward(dy, x, w, bias=case.bias, algorithm=a, **case.kwargs))
        for a in ALGORITHMS if supports(case, a)  # 1x1 and depthwise algorithms join where they apply
    })


@settings(max_examples=examples(180))
@given(case=transpose_cases(), seed=st.integers(0, 2**32 - 1))
def test_conv_transpose_algorithms_agree(case, seed):
    rng = np.random.default_rng(seed)
    x, w, b = case.arrays(rng)
    dy = rng.normal(size=cg.conv_transpose(x, w, b, **case.kwargs).shape)
    _all_agree({
        a: (cg.conv_transpose(x, w, b, algorithm=a, **case.kwargs),
            *cg.conv_transpose_backward(dy, x, w, bias=case.bias, algorithm=a, **case.kwargs))
        for a in ALGORITHMS if supports(case, a, transposed=True)
    })
