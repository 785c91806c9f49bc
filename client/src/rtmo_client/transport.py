"""The connection under the clients: a ``tritonclient.grpc`` client, or any object with the same methods.

:class:`SyncTransport` and :class:`AsyncTransport` list the methods the SDK calls; tests pass a fake one to
``Client(transport=...)`` (like httpx's ``MockTransport``). The factories build the real ones with TLS credentials
and channel options suited to a client that retries on its own. ``open_stream`` is the one method ``tritonclient``
lacks: the real transports are ``tritonclient`` clients with it added (see :mod:`rtmo_client.grpc_stream`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import grpc
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio

from rtmo_client.endpoints import DNS_SCHEME
from rtmo_client.grpc_stream import AsyncGrpcStream, GrpcStream
from rtmo_client.wire import InferResultLike

__all__ = [
    "AsyncStream",
    "AsyncTransport",
    "SyncStream",
    "SyncTransport",
    "async_grpc_transport",
    "channel_options",
    "grpc_transport",
    "tls_credentials",
]

_MAX_MESSAGE_BYTES = grpcclient.MAX_GRPC_MESSAGE_SIZE  # the frames of a batch easily pass gRPC's 4 MiB default

CertificateSource = str | os.PathLike[str] | bytes


class SyncStream(Protocol):
    """One open bidirectional inference stream: requests go in order, answers come back in order."""

    def send(
        self,
        model_name: str,
        inputs: list[Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        sequence_id: int = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
    ) -> None: ...

    def receive(self, *, timeout_s: float | None = None) -> InferResultLike: ...

    def close(self) -> None: ...


class AsyncStream(Protocol):
    """The same stream, awaitable."""

    async def send(
        self,
        model_name: str,
        inputs: list[Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        sequence_id: int = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
    ) -> None: ...

    async def receive(self, *, timeout_s: float | None = None) -> InferResultLike: ...

    async def close(self) -> None: ...


class SyncTransport(Protocol):
    """The blocking calls the SDK makes (a subset of ``tritonclient.grpc.InferenceServerClient``)."""

    def infer(
        self,
        model_name: str,
        inputs: list[Any],
        *,
        client_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        sequence_id: int | str = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
    ) -> InferResultLike: ...

    def is_server_ready(
        self, *, headers: Mapping[str, str] | None = None, client_timeout: float | None = None
    ) -> bool: ...

    def is_model_ready(
        self, model_name: str, *, headers: Mapping[str, str] | None = None, client_timeout: float | None = None
    ) -> bool: ...

    def get_model_config(
        self,
        model_name: str,
        *,
        headers: Mapping[str, str] | None = None,
        as_json: bool = False,
        client_timeout: float | None = None,
    ) -> Any: ...

    def get_server_metadata(
        self, *, headers: Mapping[str, str] | None = None, as_json: bool = False, client_timeout: float | None = None
    ) -> Any: ...

    def register_system_shared_memory(
        self, name: str, key: str, byte_size: int, *, headers: Mapping[str, str] | None = None
    ) -> None: ...

    def unregister_system_shared_memory(self, name: str = "", *, headers: Mapping[str, str] | None = None) -> None: ...

    def open_stream(self, *, headers: Mapping[str, str] | None = None) -> SyncStream: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """The same calls, awaitable (a subset of ``tritonclient.grpc.aio.InferenceServerClient``)."""

    async def infer(
        self,
        model_name: str,
        inputs: list[Any],
        *,
        client_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        sequence_id: int | str = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
    ) -> InferResultLike: ...

    async def is_server_ready(
        self, *, headers: Mapping[str, str] | None = None, client_timeout: float | None = None
    ) -> bool: ...

    async def is_model_ready(
        self, model_name: str, *, headers: Mapping[str, str] | None = None, client_timeout: float | None = None
    ) -> bool: ...

    async def get_model_config(
        self,
        model_name: str,
        *,
        headers: Mapping[str, str] | None = None,
        as_json: bool = False,
        client_timeout: float | None = None,
    ) -> Any: ...

    async def get_server_metadata(
        self, *, headers: Mapping[str, str] | None = None, as_json: bool = False, client_timeout: float | None = None
    ) -> Any: ...

    async def register_system_shared_memory(
        self, name: str, key: str, byte_size: int, *, headers: Mapping[str, str] | None = None
    ) -> None: ...

    async def unregister_system_shared_memory(
        self, name: str = "", *, headers: Mapping[str, str] | None = None
    ) -> None: ...

    async def open_stream(self, *, headers: Mapping[str, str] | None = None) -> AsyncStream: ...

    async def close(self) -> None: ...


def channel_options(*, round_robin: bool = False, tls_target_name: str | None = None) -> list[tuple[str, Any]]:
    """gRPC channel options: tritonclient's own defaults, and reconnection retried within 2 s at most.

    tritonclient sets its message limits and keepalive options only when given no ``channel_args``; passing any
    replaces them all, so they are given again here, from tritonclient's ``KeepAliveOptions`` defaults. gRPC's
    default reconnect backoff grows to 120 s, so after a server restart a channel could keep failing fast long after
    the server is back; our own retries need the channel to try again soon.

    Args:
        round_robin: Spread calls over every address a ``dns:///`` target resolves to (gRPC's default,
            ``pick_first``, sends them all to the first).
        tls_target_name: The host name the server's TLS certificate carries, for a channel to one of its addresses.
    """
    keepalive = grpcclient.KeepAliveOptions()
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if round_robin:
        options.append(("grpc.lb_policy_name", "round_robin"))
    if tls_target_name is not None:
        options.append(("grpc.ssl_target_name_override", tls_target_name))
    return options


def _read_pem(source: CertificateSource | None) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


def tls_credentials(
    *,
    root_certificates: CertificateSource | None = None,
    private_key: CertificateSource | None = None,
    certificate_chain: CertificateSource | None = None,
) -> grpc.ChannelCredentials:
    """TLS channel credentials; each PEM is given as bytes or a file path (None: the system's roots / no client cert).

    Raises:
        OSError: a certificate file cannot be read.
    """
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(root_certificates),
        private_key=_read_pem(private_key),
        certificate_chain=_read_pem(certificate_chain),
    )


def _options_for(url: str, tls_target_name: str | None) -> list[tuple[str, Any]]:
    return channel_options(round_robin=url.startswith(DNS_SCHEME), tls_target_name=tls_target_name)


class GrpcTransport(grpcclient.InferenceServerClient):  # type: ignore[misc]  # tritonclient is untyped
    """``tritonclient.grpc``'s blocking client plus :meth:`open_stream`."""

    def __init__(self, url: str, *, creds: grpc.ChannelCredentials | None, channel_args: list[tuple[str, Any]]) -> None:
        super().__init__(url, creds=creds, channel_args=channel_args)
        self._stream_options = {"url": url, "creds": creds, "channel_args": channel_args}

    def open_stream(self, *, headers: Mapping[str, str] | None = None) -> SyncStream:
        """A stream on a new connection to the same server: ``tritonclient.grpc`` runs one stream per client, and
        each video tracked at once needs its own."""
        return GrpcStream(grpcclient.InferenceServerClient(**self._stream_options), headers=headers)


class AsyncGrpcTransport(grpcaio.InferenceServerClient):  # type: ignore[misc]  # tritonclient is untyped
    """``tritonclient.grpc.aio``'s client plus :meth:`open_stream` (streams share its channel)."""

    async def open_stream(self, *, headers: Mapping[str, str] | None = None) -> AsyncStream:
        """A stream on this client's channel."""
        return AsyncGrpcStream(self, headers=headers)


def grpc_transport(
    url: str, *, credentials: grpc.ChannelCredentials | None = None, tls_target_name: str | None = None
) -> SyncTransport:
    """A blocking ``tritonclient.grpc`` client for ``url`` (``host:port``, or ``dns:///host:port`` balanced
    round-robin over its addresses), TLS when ``credentials`` are given."""
    return GrpcTransport(url, creds=credentials, channel_args=_options_for(url, tls_target_name))


def async_grpc_transport(
    url: str, *, credentials: grpc.ChannelCredentials | None = None, tls_target_name: str | None = None
) -> AsyncTransport:
    """An asyncio ``tritonclient.grpc.aio`` client for ``url`` (as :func:`grpc_transport`); create it inside the
    event loop that uses it."""
    return AsyncGrpcTransport(url, creds=credentials, channel_args=_options_for(url, tls_target_name))
