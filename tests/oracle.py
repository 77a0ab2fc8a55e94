"""PyTorch (CPU, float64) as the independent oracle: forward values and autograd gradients.

Each function takes NumPy arrays and a random upstream gradient dy and returns the output and the
gradients of sum(y * dy), all as float64 NumPy arrays. PyTorch's own modules do the padding where they
can (int, per-dim ints, 'same', 'valid' with any padding_mode); per-dim (lo, hi) pairs, which PyTorch's
convolutions do not take, go through F.pad first.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(2)

CONV_MODULES = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}
TORCH_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def _t(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _grads(y, dy, *leaves):
    y.backward(torch.tensor(np.asarray(dy, dtype=np.float64)))
    return [None if t is None else t.grad.numpy() for t in leaves]


def _is_pairs(padding):
    return isinstance(padding, (tuple, list)) and any(isinstance(p, (tuple, list)) for p in padding)


def _torch_pad_arg(pairs):
    """Per-dim (lo, hi) pairs -> F.pad's flat tuple, last dim first."""
    flat = []
    for lo, hi in reversed([(p, p) if isinstance(p, int) else p for p in pairs]):
        flat += [lo, hi]
    return tuple(flat)


def conv(x, w, b, dy, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """y, dx, dw, db of a convolution, by torch.nn.ConvNd (or F.pad + F.convNd for (lo, hi) pairs)."""
    nd = x.ndim - 2
    xt, wt = _t(x), _t(w)
    bt = None if b is None else _t(b)
    if _is_pairs(padding):
        xp = F.pad(xt, _torch_pad_arg(padding), mode=TORCH_PAD_MODE[padding_mode])
        y = getattr(F, f"conv{nd}d")(xp, wt, bt, stride=stride, dilation=dilation, groups=groups)
    else:
        module = CONV_MODULES[nd](
            x.shape[1], w.shape[0], w.shape[2:], stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=b is not None, padding_mode=padding_mode, dtype=torch.float64,
        )
        with torch.no_grad():
            module.weight.copy_(wt)
            if b is not None:
                module.bias.copy_(bt)
        y = module(xt)
        dx, = _grads(y, dy, xt)
        return y.detach().numpy(), dx, module.weight.grad.numpy(), None if b is None else module.bias.grad.numpy()
    return (y.detach().numpy(), *_grads(y, dy, xt, wt, bt))


def conv_transpose(x, w, b, dy, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """y, dx, dw, db of a transposed convolution; (lo, hi) padding pairs crop the padding-0 output."""
    nd = x.ndim - 2
    xt, wt = _t(x), _t(w)
    bt = None if b is None else _t(b)
    f = getattr(F, f"conv_transpose{nd}d")
    if _is_pairs(padding):
        full = f(xt, wt, bt, stride=stride, padding=0, output_padding=output_padding, groups=groups, dilation=dilation)
        pairs = [(p, p) if isinstance(p, int) else p for p in padding]
        y = full[(..., *[slice(lo, full.shape[2 + i] - hi) for i, (lo, hi) in enumerate(pairs)])]
    else:
        y = f(xt, wt, bt, stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    return (y.detach().numpy(), *_grads(y, dy, xt, wt, bt))


def max_pool(x, dy, *, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    nd = x.ndim - 2
    xt = _t(x)
    y = getattr(F, f"max_pool{nd}d")(xt, kernel_size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    return (y.detach().numpy(), *_grads(y, dy, xt))


def avg_pool(x, dy, *, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    nd = x.ndim - 2
    xt = _t(x)
    y = getattr(F, f"avg_pool{nd}d")(
        xt, kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad
    )
    return (y.detach().numpy(), *_grads(y, dy, xt))


def assert_matches(actual, expected, tol=1e-10):
    """Same shape, same non-finite entries (inf, -inf, NaN) in the same places, rel_error < tol elsewhere."""
    from convgrad.gradcheck import rel_error

    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(actual), finite)
    np.testing.assert_array_equal(actual[~finite], expected[~finite])
    assert rel_error(actual[finite], expected[finite]) < tol


# FFT's rounding error scales with the inputs, not the output: where the exact result is 0 (say, an
# output that no input reaches) it leaves about 1e-17, which the relative error's 1e-8 floor would
# turn into 1e-9. Every other algorithm computes exact zeros there.
ABSOLUTE_FLOOR = {"fft": 1e-12}


def close(a, b, tol, algorithm=None) -> bool:
    """rel_error(a, b) < tol, or, for FFT, every difference below its absolute floor."""
    from convgrad.gradcheck import rel_error

    a, b = np.asarray(a), np.asarray(b)
    if rel_error(a, b) < tol:
        return True
    floor = ABSOLUTE_FLOOR.get(algorithm)
    return floor is not None and a.size > 0 and float(np.max(np.abs(a - b))) < floor


def check_layer(forward, backward, reference, case, algorithm, seed, tol=1e-10):
    """A convolution-like layer against its oracle: y, dx, dw and db (or None without bias).

    ``forward(x, w, b, **kw)``, ``backward(dy, x, w, bias=, **kw)`` and ``reference(x, w, b, dy, **kw)``
    with the case's keyword arguments; dy is random.
    """
    rng = np.random.default_rng(seed)
    x, w, b = case.arrays(rng)
    y = forward(x, w, b, algorithm=algorithm, **case.kwargs)
    dy = rng.normal(size=y.shape)
    ref_y, ref_dx, ref_dw, ref_db = reference(x, w, b, dy, **case.kwargs)
    assert y.shape == ref_y.shape and y.dtype == np.float64
    assert close(y, ref_y, tol, algorithm)
    dx, dw, db = backward(dy, x, w, bias=case.bias, algorithm=algorithm, **case.kwargs)
    assert dx.shape == x.shape and dw.shape == w.shape
    assert close(dx, ref_dx, tol, algorithm) and close(dw, ref_dw, tol, algorithm)
    if case.bias:
        assert db.shape == ref_db.shape and close(db, ref_db, tol, algorithm)
    else:
        assert db is None


class TorchResidual(torch.nn.Module):
    """convgrad.nn.Residual's counterpart: block(x) + shortcut(x), same child names."""

    def __init__(self, block, shortcut):
        super().__init__()
        self.block, self.shortcut = block, shortcut

    def forward(self, x):
        return self.block(x) + self.shortcut(x)


def torch_module(spec):
    """The PyTorch model a convgrad spec describes, built with the very same constructor arguments."""
    from collections import OrderedDict

    kind, args = spec["type"], dict(spec["args"])
    if kind == "Sequential":
        return torch.nn.Sequential(OrderedDict((name, torch_module(s)) for name, s in args["modules"]))
    if kind == "Residual":
        return TorchResidual(torch_module(args["block"]), torch_module(args["shortcut"]))
    args.pop("dtype", None)
    return getattr(torch.nn, kind)(**args)


def torch_twin(model):
    """A float64 PyTorch copy of a convgrad model, weights moved by state_dict."""
    twin = torch_module(model.spec()).double()
    twin.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    return twin
