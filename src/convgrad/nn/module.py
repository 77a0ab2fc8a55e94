"""Parameter and Module: the bookkeeping every layer shares, mirroring ``torch.nn.Module``.

A module registers its parameters, buffers and sub-modules by attribute assignment, in order; that
order gives ``named_parameters()`` and ``state_dict()`` keys exactly as PyTorch names them
(``"0.weight"``, ``"block.1.running_mean"``, ...), so a state_dict moves between the two unchanged.
Each module also knows how to describe itself (:meth:`Module.spec`), which is how checkpoints store
an architecture as JSON and rebuild it (:func:`from_spec`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator

import numpy as np

from .._args import shape_str

MODULES: dict[str, type] = {}


class Parameter:
    """A trainable array: ``data``, and ``grad`` (None until a backward pass accumulates into it)."""

    __slots__ = ("data", "grad")

    def __init__(self, data) -> None:
        self.data = np.asarray(data)
        self.grad = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def accumulate(self, grad: np.ndarray) -> None:
        """Add ``grad`` into ``self.grad`` (the first gradient is stored as it is)."""
        grad = np.asarray(grad, dtype=self.data.dtype)
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    def __repr__(self) -> str:
        return f"Parameter(shape={shape_str(self.shape)}, dtype={self.dtype})"


def as_dtype(dtype) -> np.dtype:
    """A module's parameter dtype: float32 unless asked otherwise (as PyTorch's default)."""
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype: expected a floating dtype for parameters, got {dtype}")
    return dtype


class Module:
    """Base class of every layer: ``forward(x)`` (also ``__call__``) and ``backward(dy) -> dx``.

    ``backward`` uses what the last ``forward`` kept and adds each parameter's gradient into
    ``param.grad``; call ``zero_grad()`` between steps.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            MODULES[cls.__name__] = cls

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_config", {})

    # --- registration -----------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._parameters and value is None:
            self._parameters[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        for registry in ("_parameters", "_buffers", "_modules"):
            table = self.__dict__.get(registry, {})
            if name in table:
                return table[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def register_parameter(self, name: str, value: Parameter | None) -> None:
        self._parameters[name] = value

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = np.asarray(value)

    # --- the work ---------------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy, input_grad=True):
        """dx from dy, adding each parameter's gradient into ``param.grad``. With ``input_grad=False``
        the caller does not need dx (a network's first layer): a layer may then skip it and return None."""
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def _expect_input_grad(self, wanted: bool) -> None:
        """Say ahead whether backward will be asked for dx, so that forward can prepare for it (a
        convolution keeps its columns in the layout that backward will use). Without it a module goes
        by its last backward; a training loop that says it up front computes every step the same way,
        resumed or not."""

    def __call__(self, x):
        return self.forward(x)

    # --- traversal --------------------------------------------------------------------------
    def children(self) -> Iterator["Module"]:
        return iter(self._modules.values())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        return (m for _, m in self.named_modules())

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for prefix, module in self.named_modules():
            for name, p in module._parameters.items():
                if p is not None:
                    yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters())

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for prefix, module in self.named_modules():
            for name, b in module._buffers.items():
                yield (f"{prefix}.{name}" if prefix else name), b

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``grad = None``, as PyTorch's default)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def to(self, dtype) -> "Module":
        """Cast every floating parameter and buffer to ``dtype`` (e.g. ``np.float64``); returns self."""
        dtype = as_dtype(dtype)
        for module in self.modules():
            for p in module._parameters.values():
                if p is not None:
                    p.data = p.data.astype(dtype)
                    p.grad = None
            for name, b in module._buffers.items():
                if b.dtype.kind == "f":
                    module._buffers[name] = b.astype(dtype)
            if "dtype" in module._config:
                module._config["dtype"] = dtype.name
        return self

    # --- state ------------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and buffer, keyed as PyTorch keys them."""
        return OrderedDict(
            (key, np.array(module._parameters[name].data if is_param else module._buffers[name], copy=True))
            for key, (module, name, is_param) in self._slots().items()
        )

    def _slots(self) -> "OrderedDict[str, tuple[Module, str, bool]]":
        """key -> (owning module, attribute name, is a parameter)."""
        slots = OrderedDict()
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    slots[dot + name] = (module, name, True)
            for name in module._buffers:
                slots[dot + name] = (module, name, False)
        return slots

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy values in by key (NumPy arrays or PyTorch tensors); strict: every key, every shape.

        Raises ValueError naming every missing key, unexpected key and shape mismatch.
        """
        slots = self._slots()
        values = {k: _to_numpy(v) for k, v in state_dict.items()}
        problems = []
        missing = [k for k in slots if k not in values]
        unexpected = [k for k in values if k not in slots]
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        for key in slots.keys() & values.keys():
            module, name, is_param = slots[key]
            current = module._parameters[name].data if is_param else module._buffers[name]
            if values[key].shape != current.shape:
                problems.append(f"{key}: expected shape {shape_str(current.shape)}, got {shape_str(values[key].shape)}")
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for key in slots.keys() & values.keys():
            module, name, is_param = slots[key]
            if is_param:
                p = module._parameters[name]
                p.data = values[key].astype(p.data.dtype, copy=True)
            else:
                module._buffers[name] = values[key].astype(module._buffers[name].dtype, copy=True)

    # --- description ------------------------------------------------------------------------
    def spec(self) -> dict:
        """A JSON-able description ``{"type": ..., "args": ...}`` that :func:`from_spec` rebuilds."""
        return {"type": type(self).__name__, "args": dict(self._config)}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._config.items() if k != "dtype")

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def from_spec(spec: dict) -> Module:
    """Rebuild a module (untrained) from :meth:`Module.spec`'s description."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"from_spec: expected a dict with 'type' and 'args', got {spec!r}")
    cls = MODULES.get(spec["type"])
    if cls is None:
        raise ValueError(f"from_spec: unknown module type {spec['type']!r}")
    if hasattr(cls, "from_args"):
        return cls.from_args(spec.get("args", {}))
    return cls(**spec.get("args", {}))
