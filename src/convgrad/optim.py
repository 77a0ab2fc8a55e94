"""Optimizers and learning-rate schedules with PyTorch's exact update rules (torch.optim, 2.x).

Optimizers take ``model.parameters()`` (or a list of param-group dicts), read ``param.grad`` and update
``param.data`` in place. A parameter without a gradient is skipped, as in PyTorch.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .nn.module import Parameter


class Optimizer:
    """Param groups, per-parameter state, ``zero_grad()``, ``step()``, ``state_dict()`` and ``load_state_dict()``."""

    def __init__(self, params, defaults: dict) -> None:
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = [{**defaults, **group, "params": list(group["params"])} for group in groups]
        self._params = [p for group in self.param_groups for p in group["params"]]
        for p in self._params:
            if not isinstance(p, Parameter):
                raise TypeError(f"{type(self).__name__}: expected convgrad Parameters, got {type(p).__name__}")
        self.state: list[dict] = [{} for _ in self._params]
        self._flat: dict = {}  # the state of parameters updated together (see _together), laid end to end

    def zero_grad(self) -> None:
        for p in self._params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient. Those of a param group that share a float dtype and
        a step count are updated together (:meth:`_together`), which gives the same numbers."""
        index, flat = 0, {}
        for group in self.param_groups:
            live = [(p, self.state[index + i]) for i, p in enumerate(group["params"]) if p.grad is not None]
            index += len(group["params"])
            for members in _alike(live):
                if len(members) == 1:
                    p, state = members[0]
                    self._update(p.data, p.grad.astype(p.data.dtype, copy=False), group, state)
                else:
                    self._together(members, group, flat)
        self._flat = flat  # what the next step may reuse; what went unused is let go

    def _together(self, members: list, group: dict, flat: dict) -> None:
        """One :meth:`_update` of ``members`` [(parameter, state)], their data, gradients and state arrays
        laid end to end: each operation is then one NumPy call over all of them instead of one per
        parameter (Adam's step with the allocator warm: LeNet-5's 10 parameters 135 -> 115 µs,
        digits-cnn's 14 143 -> 100), with the same arithmetic on every element. Each parameter's state
        holds views of the joint arrays, which are kept for the next step while those views are still in
        place; its other entries (the step count, equal across members) are read afresh each step."""
        params, states = [p for p, _ in members], [s for _, s in members]
        dtype, shapes = params[0].data.dtype, [p.data.shape for p in params]
        key = tuple(map(id, states))
        joint = self._flat.get(key)
        if joint is None or joint["shapes"] != shapes or not _views_in_place(joint, states):
            joint = {"arrays": _joined(states, dtype), "views": None, "shapes": shapes,
                     "ends": list(itertools.accumulate((p.data.size for p in params), initial=0))}
        joint["arrays"].update((k, v) for k, v in states[0].items() if not isinstance(v, np.ndarray))
        flat[key] = joint
        data = np.concatenate([p.data.reshape(-1) for p in params], dtype=dtype)
        grad = np.concatenate([p.grad.reshape(-1) for p in params], dtype=dtype, casting="unsafe")
        self._update(data, grad, group, joint["arrays"])
        ends = joint["ends"]
        for p, shape, start, stop in zip(params, shapes, ends, ends[1:]):
            p.data[...] = data[start:stop].reshape(shape)
        _share(joint, states)

    def _update(self, data: np.ndarray, grad: np.ndarray, group: dict, state: dict) -> None:
        """Update ``data`` in place from ``grad`` (both of the parameter's dtype) and the parameter's ``state``."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """``{"state": {index: {name: array or number}}, "param_groups": [{hyperparameters, "params": [index]}]}``."""
        groups, index = [], 0
        for group in self.param_groups:
            count = len(group["params"])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": list(range(index, index + count))})
            index += count
        state = {i: {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for i, s in enumerate(self.state) if s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: expected param groups of sizes "
                f"{[len(g['params']) for g in self.param_groups]}, got {[len(g['params']) for g in groups]}"
            )
        for mine, saved in zip(self.param_groups, groups):
            mine.update({k: v for k, v in saved.items() if k != "params"})
        self.state, self._flat = [{} for _ in self._params], {}
        for i, saved in state_dict["state"].items():
            p = self._params[int(i)]
            self.state[int(i)] = {
                k: (np.array(v, dtype=p.data.dtype) if np.ndim(v) else v) for k, v in saved.items()
            }


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay.

    ``g = grad + weight_decay·p``; with momentum ``buf = momentum·buf + (1 − dampening)·g`` (the first
    buffer is g itself) and ``g = g + momentum·buf`` (Nesterov) or ``g = buf``; then ``p −= lr·g``.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: expected lr, momentum and weight_decay >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def _update(self, data, grad, group, state):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * data
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        data -= group["lr"] * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's bias correction, L2 weight decay and optional AMSGrad.

    ``m += (1 − β₁)(g − m)``; ``v = β₂ v + (1 − β₂) g²``;
    ``p −= lr/(1 − β₁ᵗ) · m / (sqrt(v)/sqrt(1 − β₂ᵗ) + eps)``.
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{type(self).__name__}: invalid lr={lr}, betas={betas}, eps={eps} or weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))

    def _update(self, data, grad, group, state):
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(data), exp_avg_sq=np.zeros_like(data))
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(data)
        state["step"] += 1
        if wd and self.decoupled:
            data *= 1 - lr * wd
        elif wd:
            grad = grad + wd * data
        m, v = state["exp_avg"], state["exp_avg_sq"]
        term = np.subtract(grad, m, out=np.empty_like(m))  # then in place: the same operations, three arrays allocated instead of eight
        term *= 1 - beta1
        m += term
        v *= beta2
        np.multiply(grad, 1 - beta2, out=term)
        term *= grad
        v += term
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step = state["step"]
        denom = np.sqrt(v)
        denom /= math.sqrt(1 - beta2**step)
        denom += group["eps"]
        np.multiply(m, lr / (1 - beta1**step), out=term)
        term /= denom
        data -= term


def _alike(live: list) -> list[list]:
    """``live`` [(parameter, state)] in runs that can be updated together: float data of one dtype with a
    gradient of its shape, states with the same entries and step count (a parameter that missed a step
    has its own); others alone."""
    runs: dict = {}
    for p, state in live:
        together = p.data.dtype.kind == "f" and np.shape(p.grad) == p.data.shape
        key = (p.data.dtype, tuple(sorted(state)), state.get("step")) if together else id(p)
        runs.setdefault(key, []).append((p, state))
    return list(runs.values())


def _joined(states: list[dict], dtype) -> dict:
    """The states' arrays laid end to end (copies), their other entries (all equal) as they are."""
    return {k: (np.concatenate([s[k].reshape(-1) for s in states], dtype=dtype) if isinstance(v, np.ndarray) else v)
            for k, v in states[0].items()}


def _views_in_place(joint: dict, states: list[dict]) -> bool:
    """Whether every state still holds the views :func:`_share` gave it (not replaced, e.g. by load_state_dict)."""
    views = joint["views"]
    return views is not None and all(
        all(s.get(k) is view for k, view in v.items()) for s, v in zip(states, views))


def _share(joint: dict, states: list[dict]) -> None:
    """Each state's entries from the joint ones: its slice of every array (views, made once per array),
    the scalars (the step count) as they are."""
    arrays, views = joint["arrays"], joint["views"]
    if views is None or any(views[0].get(k) is None or views[0][k].base is not a for k, a in arrays.items()
                            if isinstance(a, np.ndarray)):
        ends = joint["ends"]
        views = joint["views"] = [{k: a[start:stop].reshape(shape) for k, a in arrays.items() if isinstance(a, np.ndarray)}
                                  for shape, start, stop in zip(joint["shapes"], ends, ends[1:])]
        for state, view in zip(states, views):
            state.update(view)
    scalars = {k: v for k, v in arrays.items() if not isinstance(v, np.ndarray)}
    for state in states:
        state.update(scalars)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 − lr·weight_decay`` before the Adam step."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


class LRScheduler:
    """Sets each param group's ``lr`` per epoch (call ``step()`` once per epoch), as torch.optim.lr_scheduler."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self._step_count = 0
        self._initial = True
        self.step()
        self._initial = False

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs), "_step_count": self._step_count}

    def load_state_dict(self, state: dict) -> None:
        self.last_epoch, self.base_lrs = int(state["last_epoch"]), list(state["base_lrs"])
        self._step_count = int(state["_step_count"])


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def get_lr(self):
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return lrs
        return [lr * self.gamma for lr in lrs]


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base_lr − eta_min)(1 + cos(π·epoch/T_max))/2``, in PyTorch's recursive form."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def get_lr(self):
        groups, t, T, low = self.optimizer.param_groups, self.last_epoch, self.T_max, self.eta_min
        if self._initial:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and t > 0:
            return [low + (base - low) * (1 + math.cos(t * math.pi / T)) / 2 for base in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [g["lr"] + (base - low) * (1 - math.cos(math.pi / T)) / 2 for base, g in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (g["lr"] - low) + low
                for g in groups]
