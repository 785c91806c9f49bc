"""What an operation asks its client to do: the only I/O there is, and the one place where the clients differ.

Each operation of :class:`rtmo_client._base.BaseClient` is a generator. It yields a :class:`Call` (a transport
method to call), a :class:`StreamCall` (a method of a stream that ``Call("open_stream")`` opened) or a
:class:`Sleep` (a retry backoff or a readiness pause) and gets the outcome back through ``send`` or ``throw``.
:class:`Steps` keeps that protocol in one place, so a driver only performs effects:

    steps = Steps(operation)
    for effect in steps:
        with steps.outcome():
            steps.result = effect.perform(transports, time.sleep)  # the async driver awaits this
    return steps.value
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

# The transport methods an operation may call (both transport protocols have each of them).
Method = Literal[
    "infer",
    "is_server_ready",
    "is_model_ready",
    "get_model_config",
    "get_server_metadata",
    "register_system_shared_memory",
    "unregister_system_shared_memory",
    "open_stream",
    "close",
]

# The methods of an open stream (both stream protocols have each of them).
StreamMethod = Literal["send", "receive", "close"]


@dataclass(frozen=True)
class Call:
    """Call ``<method>(*args, **kwargs)`` on the transport of ``endpoint``; the operation receives what it returns,
    or what it raises."""

    method: Method
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    endpoint: int = 0

    def perform(self, transports: Sequence[object], sleep: Callable[[float], Any]) -> Any:
        """The call's result (an awaitable for an async transport)."""
        return getattr(transports[self.endpoint], self.method)(*self.args, **self.kwargs)


@dataclass(frozen=True)
class StreamCall:
    """Call ``<method>(*args, **kwargs)`` on ``stream``, what a ``Call("open_stream")`` returned."""

    stream: Any
    method: StreamMethod
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def perform(self, transports: Sequence[object], sleep: Callable[[float], Any]) -> Any:
        """The call's result (an awaitable for an async stream)."""
        return getattr(self.stream, self.method)(*self.args, **self.kwargs)


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before going on."""

    seconds: float

    def perform(self, transports: Sequence[object], sleep: Callable[[float], Any]) -> Any:
        """``sleep(seconds)`` (an awaitable for ``asyncio.sleep``)."""
        return sleep(self.seconds)


Effect = Call | StreamCall | Sleep
Operation = Generator[Effect, Any, T]


def call(method: Method, *args: Any, endpoint: int = 0, **kwargs: Any) -> Operation[Any]:
    """One transport call to ``endpoint``, as a sub-operation (``result = yield from call(...)``)."""
    return (yield Call(method, args, kwargs, endpoint))


def stream_call(stream: Any, method: StreamMethod, *args: Any, **kwargs: Any) -> Operation[Any]:
    """One call on an open stream, as a sub-operation."""
    return (yield StreamCall(stream, method, args, kwargs))


class Steps(Generic[T]):
    """Runs ``operation`` one effect at a time for a driver that performs them (see the module docstring).

    Iterating gives the effects; the outcome of each is what the driver sets as ``result`` inside
    :meth:`outcome`, or what it raised there, which the operation receives at its ``yield``. When the iteration
    ends, ``value`` is what the operation returned; if the operation raises, so does the iteration.
    """

    value: T

    def __init__(self, operation: Operation[T]) -> None:
        self._operation = operation
        self._error: BaseException | None = None
        self.result: Any = None

    def __iter__(self) -> Iterator[Effect]:
        try:
            effect = next(self._operation)
            while True:
                yield effect
                error, self._error = self._error, None
                effect = self._operation.send(self.result) if error is None else self._operation.throw(error)
        except StopIteration as stop:
            self.value = stop.value

    @contextmanager
    def outcome(self) -> Iterator[None]:
        """Catch what performing an effect raises (cancellation included) to throw it into the operation."""
        self.result = None
        try:
            yield
        except BaseException as error:  # the operation decides: it re-raises what it does not handle
            self._error = error
