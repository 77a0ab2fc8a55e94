"""Modules that mirror ``torch.nn``: names, constructor arguments, parameter names and state_dict keys."""

from .containers import Identity, Residual, Sequential
from .layers import (
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
    ReLU,
)
from .loss import CrossEntropyLoss, MSELoss
from .module import Module, Parameter, from_spec

__all__ = [
    "Module", "Parameter", "from_spec", "Sequential", "Residual", "Identity",
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "Linear", "ReLU", "LeakyReLU", "Flatten", "Dropout", "BatchNorm1d", "BatchNorm2d",
    "CrossEntropyLoss", "MSELoss",
]
