"""convgrad.nn models against the same models in PyTorch (float64): forward, loss, every gradient,
optimizer steps and evaluation mode, with weights moved by state_dict in both directions."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from oracle import torch_module, torch_twin

import convgrad as cg
from convgrad import models, nn, optim
from convgrad.gradcheck import rel_error

TOL = 1e-10


def lenet_bn():
    """LeNet-style with BatchNorm2d, MaxPool2d, AvgPool2d and a non-square kernel.

    Layers followed by BatchNorm have no bias: its true gradient is exactly zero, so both libraries
    return rounding noise for it, which Adam would then normalise into full-size (and different) steps.
    """
    return nn.Sequential(
        nn.Conv2d(3, 6, (5, 3), padding=(2, 1), bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, (3, 2), bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True),
        nn.Flatten(), nn.Linear(8 * 2 * 4, 20, bias=False), nn.BatchNorm1d(20), nn.LeakyReLU(0.1), nn.Linear(20, 5),
    )


def grouped_dilated_strided():
    return nn.Sequential(
        nn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2, padding_mode="reflect"), nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding="same", groups=8, bias=False), nn.ReLU()),
                    nn.Conv2d(8, 8, 1)),
        nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(6, 6, (3, 1), stride=(1, 2), dilation=(2, 1), padding_mode="circular", padding=(2, 0)),
        nn.MaxPool2d((2, 3), stride=(2, 1), padding=(1, 1), dilation=(1, 2), ceil_mode=True), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 8 * 4, 3),
    )


def mnist1d_cnn():
    return models.mnist1d_cnn()


CASES = {
    "mnist1d-cnn": (mnist1d_cnn, (8, 1, 40), 10),
    "lenet with batch norm": (lenet_bn, (6, 3, 12, 16), 5),
    "grouped, dilated, strided": (grouped_dilated_strided, (4, 4, 13, 11), 3),
}


def _pair(name, seed=0):
    build, shape, classes = CASES[name]
    cg.manual_seed(seed)
    model = build().to(np.float64)
    return model, torch_twin(model), shape, classes


def _batch(shape, classes, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.integers(0, classes, size=shape[0])


def _loss_and_grads(model, twin, x, y):
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(model(x), y)
    model.zero_grad()
    dx = model.backward(loss_fn.backward())
    xt = torch.tensor(x, requires_grad=True)
    twin.zero_grad()
    loss_t = torch.nn.functional.cross_entropy(twin(xt), torch.tensor(y))
    loss_t.backward()
    return loss, loss_t.item(), dx, xt.grad.numpy()


@pytest.mark.parametrize("name", CASES)
def test_loss_and_every_gradient_match_torch(name):
    model, twin, shape, classes = _pair(name)
    x, y = _batch(shape, classes, 1)
    loss, loss_t, dx, dx_t = _loss_and_grads(model, twin, x, y)
    assert abs(loss - loss_t) < 1e-12
    assert rel_error(dx, dx_t) < TOL
    torch_params = dict(twin.named_parameters())
    assert [n for n, _ in model.named_parameters()] == list(torch_params)
    for key, p in model.named_parameters():
        assert rel_error(p.grad, torch_params[key].grad.numpy()) < TOL, key


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("make", [
    lambda ps: (optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3), "SGD", dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    lambda ps: (optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    lambda ps: (optim.Adam(ps, lr=1e-2, weight_decay=1e-3), "Adam", dict(lr=1e-2, weight_decay=1e-3)),
    lambda ps: (optim.AdamW(ps, lr=1e-2), "AdamW", dict(lr=1e-2)),
], ids=["sgd-momentum-wd", "sgd-nesterov", "adam-wd", "adamw"])
def test_optimizer_steps_then_eval_match_torch(name, make):
    model, twin, shape, classes = _pair(name)
    opt, torch_name, kwargs = make(model.parameters())
    opt_t = getattr(torch.optim, torch_name)(twin.parameters(), **kwargs)
    for step in range(4):
        x, y = _batch(shape, classes, 10 + step)
        model.train(), twin.train()
        _loss_and_grads(model, twin, x, y)
        opt.step()
        opt_t.step()
    torch_state = twin.state_dict()
    for key, value in model.state_dict().items():  # parameters and BatchNorm running statistics
        assert rel_error(value, torch_state[key].numpy()) < 1e-9, key
    model.eval(), twin.eval()
    x, _ = _batch(shape, classes, 99)
    assert rel_error(model(x), twin(torch.tensor(x)).detach().numpy()) < 1e-9


@pytest.mark.parametrize("name", CASES)
def test_state_dict_moves_both_ways_without_renaming(name):
    model, twin, shape, _ = _pair(name)
    torch_state = twin.state_dict()
    assert list(model.state_dict()) == list(torch_state)
    for key, value in model.state_dict().items():
        assert value.shape == tuple(torch_state[key].shape)
    other = torch_module(model.spec()).double()           # torch -> convgrad: a fresh torch model's weights
    model.load_state_dict(other.state_dict())
    x = np.random.default_rng(3).normal(size=shape)
    model.eval(), other.eval()
    assert rel_error(model(x), other(torch.tensor(x)).detach().numpy()) < TOL


def test_every_layer_type_has_torch_keys_shapes_and_arguments():
    model = nn.Sequential(OrderedDict([
        ("c1", nn.Conv1d(2, 4, 3)), ("c3", nn.Conv3d(2, 4, (1, 2, 3), bias=False)),
        ("t1", nn.ConvTranspose1d(2, 4, 3, groups=2)), ("t3", nn.ConvTranspose3d(2, 2, 2, bias=False)),
        ("bn1", nn.BatchNorm1d(5, affine=False)), ("bn2", nn.BatchNorm2d(3, momentum=None)),
        ("p1", nn.MaxPool1d(2)), ("p3", nn.AvgPool3d(2, count_include_pad=False)), ("d", nn.Dropout(0.1)),
    ]))
    twin = torch_module(model.spec())  # constructed from the very same arguments
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in twin.state_dict().items()}


@pytest.mark.parametrize("layer, torch_layer, fan_in", [
    (lambda: nn.Linear(400, 300), lambda: torch.nn.Linear(400, 300), 400),
    (lambda: nn.Conv2d(16, 64, (3, 5), groups=4), lambda: torch.nn.Conv2d(16, 64, (3, 5), groups=4), 4 * 15),
    # PyTorch takes a transposed convolution's fan_in from weight.shape[1] = C_out / groups
    (lambda: nn.ConvTranspose2d(64, 32, 3, groups=2), lambda: torch.nn.ConvTranspose2d(64, 32, 3, groups=2), 16 * 9),
])
def test_default_initialisation_is_torchs(layer, torch_layer, fan_in):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, as PyTorch's kaiming_uniform(a=sqrt(5))."""
    cg.manual_seed(0)
    torch.manual_seed(0)
    mine, theirs_state = layer().state_dict(), torch_layer().state_dict()
    bound = 1 / np.sqrt(fan_in)
    for key in ("weight", "bias"):
        a, b = mine[key], theirs_state[key].numpy()
        assert a.shape == b.shape and a.dtype == np.float32
        assert np.abs(b).max() <= bound  # the bound is PyTorch's
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
        assert abs(a.std() / (bound / np.sqrt(3)) - 1) < (0.05 if a.size > 1000 else 0.25)


def test_batch_norm_defaults():
    bn = nn.BatchNorm2d(3)
    state = bn.state_dict()
    assert np.all(state["weight"] == 1) and np.all(state["bias"] == 0)
    assert np.all(state["running_mean"] == 0) and np.all(state["running_var"] == 1)
    assert state["num_batches_tracked"] == 0 and state["num_batches_tracked"].dtype == np.int64


def test_load_state_dict_is_strict_and_names_every_problem():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    state = model.state_dict()
    del state["1.running_var"]
    state["0.weight"] = np.zeros((4, 4))
    state["extra"] = np.zeros(1)
    with pytest.raises(ValueError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert "missing keys: 1.running_var" in message and "unexpected keys: extra" in message
    assert "0.weight: expected shape (4, 3), got (4, 4)" in message


def test_modules_keep_float32_end_to_end():
    cg.manual_seed(0)
    model = lenet_bn()
    x = np.random.default_rng(0).normal(size=(4, 3, 12, 16)).astype(np.float32)
    logits = model(x)
    assert logits.dtype == np.float32
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(logits, np.zeros(4, dtype=int))
    assert model.backward(loss_fn.backward()).dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_zero_grad_train_eval_and_parameters():
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    assert len(list(model.parameters())) == 2 and model.training
    model(np.ones((1, 3), np.float32))
    model.backward(np.ones((1, 2), np.float32))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    assert not any(m.training for m in model.modules())
    assert np.array_equal(model(np.ones((1, 3), np.float32)), model[0](np.ones((1, 3), np.float32)))


@pytest.mark.parametrize("conv, pool, shape", [
    (nn.Conv1d(2, 3, 3, padding=1), nn.MaxPool1d(2), (4, 2, 12)),
    (nn.Conv1d(2, 3, 3, padding=1), nn.MaxPool1d(3, stride=2, padding=1, dilation=2, ceil_mode=True), (4, 2, 13)),
    (nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(2), (3, 2, 8, 8)),
    (nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d((3, 2), stride=(2, 1), padding=1), (3, 2, 7, 6)),
    (nn.Conv3d(2, 2, 3, padding=1), nn.MaxPool3d(2, ceil_mode=True), (2, 2, 5, 4, 4)),
], ids=["1d-2", "1d-overlapping", "2d-2", "2d-overlapping", "3d-ceil"])
@pytest.mark.parametrize("nan", [False, True], ids=["ties", "ties-and-nan"])
def test_relu_before_max_pool_runs_after_it_with_torchs_values_and_gradients(conv, pool, shape, nan):
    """A ReLU followed by a max pool runs after it (on the pooled array: ReLU saw the pooled shape),
    with PyTorch's output and gradients exactly, where integer weights and inputs make many ties,
    windows of only negative numbers and exact zeros (and a NaN, which wins its windows)."""
    model = nn.Sequential(conv, nn.ReLU(), pool).to(np.float64)
    rng = np.random.default_rng(0)
    model[0].weight.data[...] = rng.integers(-1, 2, size=model[0].weight.shape)
    model[0].bias.data[...] = rng.integers(-1, 2, size=model[0].bias.shape)
    x = rng.integers(-1, 2, size=shape).astype(np.float64)
    if nan:
        x[0, 0, 2] = np.nan
    twin, xt = torch_twin(model), torch.tensor(x, requires_grad=True)
    y, yt = model(x), twin(xt)
    assert model[1]._x.shape == y.shape  # the ReLU ran second, on the pooled array
    np.testing.assert_array_equal(y, yt.detach().numpy())
    dy = rng.integers(1, 4, size=y.shape).astype(np.float64)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(model.backward(dy), xt.grad.numpy())
    np.testing.assert_array_equal(model[0].weight.grad, twin[0].weight.grad.numpy())
    np.testing.assert_array_equal(model[0].bias.grad, twin[0].bias.grad.numpy())


def test_only_relu_before_max_pool_changes_order():
    """ReLU before an average pool (which it does not commute with) and a max pool before a ReLU run as given."""
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4))
    for model in (nn.Sequential(nn.ReLU(), nn.AvgPool2d(2)), nn.Sequential(nn.MaxPool2d(2), nn.ReLU()),
                  nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))):
        model.to(np.float64)
        np.testing.assert_allclose(model(x), torch_twin(model)(torch.tensor(x)).numpy(), rtol=1e-12)
        relu = model[1] if isinstance(model[0], nn.MaxPool2d) else model[0]
        assert relu._x.shape == ((2, 3, 2, 2) if isinstance(model[0], nn.MaxPool2d) else x.shape)
