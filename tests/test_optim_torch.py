"""Optimizers and schedules against torch.optim (float64), step by step, and their state_dicts."""

import numpy as np
import pytest
import torch

from convgrad import optim
from convgrad.gradcheck import rel_error
from convgrad.nn import Parameter

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
]


def _run(name, kwargs, steps, swap_at=None):
    """Both libraries from the same start with the same random gradients; optionally move the
    convgrad optimizer through state_dict -> a fresh optimizer halfway."""
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    params = [Parameter(a.copy()) for a in start]
    tensors = [torch.tensor(a, requires_grad=True) for a in start]
    mine = getattr(optim, name)(params, **kwargs)
    theirs = getattr(torch.optim, name)(tensors, **kwargs)
    for step in range(steps):
        if step == swap_at:
            saved = mine.state_dict()
            mine = getattr(optim, name)(params, **kwargs)
            mine.load_state_dict(saved)
        for p, t in zip(params, tensors):
            g = rng.normal(size=p.shape)
            p.grad, t.grad = g, torch.tensor(g)
        mine.step()
        theirs.step()
    return params, tensors


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_updates_match_torch(name, kwargs):
    params, tensors = _run(name, kwargs, steps=10)
    for p, t in zip(params, tensors):
        assert rel_error(p.data, t.detach().numpy()) < 1e-12


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_state_dict_round_trip_continues_identically(name, kwargs):
    straight, _ = _run(name, kwargs, steps=10)
    swapped, _ = _run(name, kwargs, steps=10, swap_at=5)
    for a, b in zip(straight, swapped):
        np.testing.assert_array_equal(a.data, b.data)


def test_parameters_without_gradient_are_skipped():
    p, q = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = optim.SGD([p, q], lr=0.5, momentum=0.9)
    p.grad = np.ones(2)
    opt.step()
    assert np.all(p.data == 0.5) and np.all(q.data == 1.0)


@pytest.mark.parametrize("kind, kwargs", [("StepLR", dict(step_size=3, gamma=0.5)),
                                          ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001))])
def test_schedules_match_torch(kind, kwargs):
    mine_opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    theirs_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    mine = getattr(optim, kind)(mine_opt, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, kind)(theirs_opt, **kwargs)
    for _ in range(25):  # past T_max: the cosine comes back up
        assert mine.get_last_lr()[0] == pytest.approx(theirs.get_last_lr()[0], rel=1e-12, abs=1e-15)
        theirs_opt.step()
        mine.step()
        theirs.step()


def test_invalid_hyperparameters():
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([Parameter(np.zeros(1))], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([Parameter(np.zeros(1))], lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.Adam([Parameter(np.zeros(1))], betas=(1.0, 0.9))
    with pytest.raises(TypeError, match="Parameter"):
        optim.Adam([np.zeros(1)])
