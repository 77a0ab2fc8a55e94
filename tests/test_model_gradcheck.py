"""Whole models against central differences in float64: dx and every parameter's gradient."""

import numpy as np
import pytest

import convgrad as cg
from convgrad import nn
from convgrad.gradcheck import numerical_gradient, rel_error


def conv_net():
    """Layers in front of BatchNorm have no bias: its true gradient is exactly 0 (BatchNorm removes any
    constant), which no relative comparison can check."""
    return nn.Sequential(
        nn.Conv2d(2, 4, (3, 2), padding=(1, 0), padding_mode="replicate", bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.LeakyReLU(0.1)), nn.Conv2d(4, 4, 1)),
        nn.ConvTranspose2d(4, 3, 2, stride=2), nn.ReLU(), nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        nn.Flatten(), nn.Linear(3 * 3 * 2, 6, bias=False), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 4),
    )


def conv1d_net():
    return nn.Sequential(nn.Conv1d(1, 3, 5, stride=2, padding=1), nn.ReLU(), nn.Conv1d(3, 3, 3, dilation=2),
                         nn.MaxPool1d(2), nn.Flatten(), nn.Linear(6, 2))


@pytest.mark.parametrize("build, shape", [(conv_net, (3, 2, 6, 5)), (conv1d_net, (2, 1, 20))])
def test_model_gradients_numerically(build, shape):
    cg.manual_seed(0)
    model = build().to(np.float64)
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    dy = rng.normal(size=model(x).shape)
    model.zero_grad()
    dx = model.backward(dy)
    assert rel_error(dx, numerical_gradient(model, x, dy)) < 1e-8
    for name, p in model.named_parameters():
        original = p.data.copy()

        def f(value, p=p):
            p.data = value
            return model(x)

        numeric = numerical_gradient(f, original, dy)
        p.data = original
        assert rel_error(p.grad, numeric) < 1e-8, name
