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


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_parameters_that_miss_steps_keep_their_own_step_count_as_in_torch(name, kwargs):
    """Parameters updated together (their step counts equal) and apart (one missed steps, so its Adam
    bias correction differs): PyTorch's numbers, with the state moved through state_dict halfway."""
    rng = np.random.default_rng(1)
    start = [rng.normal(size=(3, 4)), rng.normal(size=5), rng.normal(size=(2, 1, 3)), rng.normal(size=())]
    params = [Parameter(a.copy()) for a in start]
    tensors = [torch.tensor(a, requires_grad=True) for a in start]
    mine, theirs = getattr(optim, name)(params, **kwargs), getattr(torch.optim, name)(tensors, **kwargs)
    for step in range(9):
        if step == 6:
            saved = mine.state_dict()
            mine = getattr(optim, name)(params, **kwargs)
            mine.load_state_dict(saved)
        for i, (p, t) in enumerate(zip(params, tensors)):
            missed = i == 1 and step in (2, 3) or i == 3 and step == 0
            g = None if missed else rng.normal(size=p.shape)
            p.grad, t.grad = g, (None if missed else torch.tensor(g))
        mine.step()
        theirs.step()
        for p, t in zip(params, tensors):
            assert rel_error(p.data, t.detach().numpy()) < 1e-12


def _stepped(name, kwargs, monkeypatch, apart: bool):
    """Six steps on float32 and float64 parameters (two groups), updated together or each alone."""
    if apart:
        monkeypatch.setattr(optim, "_alike", lambda live: [[member] for member in live])
    rng = np.random.default_rng(2)
    shapes = [((4, 3), np.float32), ((7,), np.float64), ((2, 2), np.float32), ((5,), np.float64), ((3,), np.float32)]
    params = [Parameter(rng.normal(size=s).astype(d)) for s, d in shapes]
    opt = getattr(optim, name)([{"params": params[:3]}, {"params": params[3:], "lr": 0.05}], **kwargs)
    updates = []
    opt._update = lambda data, *rest, update=opt._update: (updates.append(data.size), update(data, *rest))[1]
    for _ in range(6):
        for p in params:
            p.grad = rng.normal(size=p.shape)  # float64: cast to each parameter's dtype, as one by one
        opt.step()
    return [p.data for p in params], opt.state_dict(), updates


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_parameters_updated_together_get_the_numbers_of_one_by_one(name, kwargs, monkeypatch):
    """Parameters of one group and dtype are updated in one call (the spy sees the float32 pair of the
    first group as one array of 12 + 4 elements) with exactly the numbers and state of one by one."""
    together, state, calls = _stepped(name, kwargs, monkeypatch, apart=False)
    assert calls[:4] == [12 + 4, 7, 5, 3]  # group 1: the float32 pair together, float64 alone; group 2: one of each
    apart, state_apart, calls_apart = _stepped(name, kwargs, monkeypatch, apart=True)
    assert calls_apart[:5] == [12, 7, 4, 5, 3]
    for a, b in zip(together, apart):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for index, entries in state_apart["state"].items():
        for key, value in entries.items():
            np.testing.assert_array_equal(state["state"][index][key], value)


@pytest.mark.parametrize("apart", [False, True])
def test_state_entries_replaced_or_changed_by_hand_are_used(apart, monkeypatch):
    """A state array replaced by a new one (momentum reset) or changed in place, and the step count set
    back, count from the next step, updated together as one by one; the reference is the same edit on a
    PyTorch Adam."""
    if apart:
        monkeypatch.setattr(optim, "_alike", lambda live: [[member] for member in live])
    rng = np.random.default_rng(3)
    start = [rng.normal(size=(2, 3)), rng.normal(size=4)]
    params = [Parameter(a.copy()) for a in start]
    tensors = [torch.tensor(a, requires_grad=True) for a in start]
    mine, theirs = optim.Adam(params, lr=0.1), torch.optim.Adam(tensors, lr=0.1)
    for step in range(6):
        if step == 3:
            mine.state[0]["exp_avg"] = np.zeros((2, 3))
            mine.state[1]["exp_avg_sq"][...] = 1.0
            theirs.state[tensors[0]]["exp_avg"] = torch.zeros(2, 3, dtype=torch.float64)
            theirs.state[tensors[1]]["exp_avg_sq"].fill_(1.0)
        if step == 4:
            for state, t in zip(mine.state, tensors):
                state["step"] = 1
                theirs.state[t]["step"] = torch.tensor(1.0)
        for p, t in zip(params, tensors):
            g = rng.normal(size=p.shape)
            p.grad, t.grad = g, torch.tensor(g)
        mine.step()
        theirs.step()
    for p, t in zip(params, tensors):
        assert rel_error(p.data, t.detach().numpy()) < 1e-12


def test_a_gradient_of_another_shape_is_applied_alone():
    """A gradient that broadcasts (not of its parameter's shape) is applied as before, not laid end to end."""
    p, q = Parameter(np.ones((2, 3))), Parameter(np.ones(4))
    opt = optim.SGD([p, q], lr=0.5)
    p.grad, q.grad = np.ones(3), np.ones(4)
    opt.step()
    assert np.all(p.data == 0.5) and np.all(q.data == 0.5)


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
