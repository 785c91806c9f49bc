"""A fake ``triton_python_backend_utils`` for testing the model.py adapters and rtmo.runtime.triton without Triton."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable

import numpy as np
import pytest


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class FakeResponse:
    def __init__(self, output_tensors: list | None = None, error: object | None = None) -> None:
        self.tensors = {t.name(): t.as_numpy() for t in output_tensors or []}
        self.error = error

    def has_error(self) -> bool:
        return self.error is not None


class FakeError:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        self.message, self.code = message, code


class FakeRequest:
    def __init__(
        self, inputs: dict[str, np.ndarray], parameters: dict | None = None, *, correlation_id: int = 0, flags: int = 0
    ) -> None:
        self.inputs, self._parameters = inputs, json.dumps(parameters or {})
        self._correlation_id, self._flags = correlation_id, flags

    def parameters(self) -> str:
        return self._parameters

    def correlation_id(self) -> int:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags


class FakeLogger:
    messages: list[str] = []

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.messages.append(message)

    log_error = log_info = log_warn


class FakeInferenceRequest:
    """A BLS request: ``exec`` answers from ``MODELS[model_name]`` (inputs by name -> outputs by name)."""

    MODELS: dict[str, Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]] = {}
    calls: list[tuple[str, dict[str, np.ndarray]]] = []

    def __init__(self, *, model_name: str, inputs: list[FakeTensor], requested_output_names: list[str]) -> None:
        self.model_name, self.inputs, self.requested = model_name, inputs, requested_output_names

    def exec(self) -> FakeResponse:
        feed = {tensor.name(): tensor.as_numpy() for tensor in self.inputs}
        type(self).calls.append((self.model_name, feed))
        if self.model_name not in self.MODELS:
            return FakeResponse(error=FakeBlsError(f"model {self.model_name} is not loaded"))
        outputs = self.MODELS[self.model_name](feed)
        return FakeResponse([FakeTensor(name, outputs[name]) for name in self.requested])


class FakeBlsError:
    def __init__(self, text: str) -> None:
        self.text = text

    def message(self) -> str:
        return self.text


def install(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Put the fake module in ``sys.modules`` for the test's duration; returns it."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor
    module.InferenceResponse = FakeResponse
    module.TritonError = FakeError
    module.Logger = FakeLogger
    module.get_input_tensor_by_name = lambda request, name: (
        FakeTensor(name, request.inputs[name]) if name in request.inputs else None
    )
    module.InferenceRequest = FakeInferenceRequest
    module.get_output_tensor_by_name = lambda response, name: FakeTensor(name, response.tensors[name])
    FakeInferenceRequest.MODELS, FakeInferenceRequest.calls = {}, []
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module
