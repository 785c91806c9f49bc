"""The connection under the clients: a ``tritonclient.grpc`` client, or any object with the same methods.

:class:`SyncTransport` and :class:`AsyncTransport` list the methods the SDK calls; tests pass a fake one to
``Client(transport=...)`` (like httpx's ``MockTransport``). The factories build the real ones with TLS credentials
and channel options suited to a client that retries on its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import grpc
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio

from rtmo_client.wire import InferResultLike

__all__ = [
    "AsyncTransport",
    "SyncTransport",
    "async_grpc_transport",
    "channel_options",
    "grpc_transport",
    "tls_credentials",
]

_MAX_MESSAGE_BYTES = 2**31 - 1  # as tritonclient: the frames of a batch easily pass gRPC's 4 MiB default

CertificateSource = str | os.PathLike[str] | bytes


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

    async def close(self) -> None: ...


def channel_options() -> list[tuple[str, int]]:
    """gRPC channel options: tritonclient's message limits, and reconnection retried within 2 s at most.

    gRPC's default reconnect backoff grows to 120 s, so after a server restart a channel could keep failing fast
    long after the server is back; our own retries need the channel to try again soon.
    """
    return [
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


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


def grpc_transport(url: str, *, credentials: grpc.ChannelCredentials | None = None) -> SyncTransport:
    """A blocking ``tritonclient.grpc`` client for ``url`` (``host:port``), TLS when ``credentials`` are given."""
    client: SyncTransport = grpcclient.InferenceServerClient(url, creds=credentials, channel_args=channel_options())
    return client


def async_grpc_transport(url: str, *, credentials: grpc.ChannelCredentials | None = None) -> AsyncTransport:
    """An asyncio ``tritonclient.grpc.aio`` client for ``url``; create it inside the event loop that uses it."""
    client: AsyncTransport = grpcaio.InferenceServerClient(url, creds=credentials, channel_args=channel_options())
    return client
