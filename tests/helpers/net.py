"""Loopback network pieces for the TLS and proxy tests: a self-signed certificate, a TLS front for
the simulator (real TLS handshakes, then the simulator's plain HTTP behind it), and a tiny HTTP
proxy (``CONNECT`` tunnels and plain forwarding) that records what it was asked.

Each server runs an asyncio loop in a daemon thread; nothing sleeps: start-up is signalled with
an event, and what the proxy saw is read after the request that went through it has answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import shutil
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

import pytest


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost``/``127.0.0.1`` (also its own CA): (cert, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-addext", "basicConstraints=critical,CA:TRUE"],
                       check=True, capture_output=True, timeout=60)
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Phasewise test CA (localhost)")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _relay(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))


class _LoopServer:
    """A stream server on 127.0.0.1 in a thread of its own."""

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=type(self).__name__)

    def _handler(self) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        raise NotImplementedError

    def _ssl(self) -> ssl.SSLContext | None:
        return None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def main() -> None:
            self._stop = asyncio.Event()
            server = await asyncio.start_server(self._handler(), "127.0.0.1", 0, ssl=self._ssl())
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            async with server:
                await self._stop.wait()

        loop.run_until_complete(main())
        loop.close()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(10), "the loopback server did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class TlsFront(_LoopServer):
    """TLS on 127.0.0.1 with ``cert``, each connection relayed in plain TCP to ``target_port``."""

    def __init__(self, cert: Path, key: Path, target_port: int) -> None:
        super().__init__()
        self.cert, self.key, self.target_port = cert, key, target_port

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def _handler(self) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                writer.close()
                return
            await _relay((reader, writer), upstream)

        return handle


class RecordingProxy(_LoopServer):
    """An HTTP proxy: ``CONNECT host:port`` tunnels, and absolute-URI requests forwarded as
    origin-form; ``seen`` lists each connection's first request line (``CONNECT localhost:443``,
    ``POST http://127.0.0.1:1234/x/v1/chat/completions``)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def _handler(self) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                writer.close()
                return
            first, _, rest = head.partition(b"\r\n")
            method, target, version = first.decode("latin-1").split(" ", 2)
            self.seen.append(f"{method} {target}")
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await _relay((reader, writer), upstream)
                return
            after = target.partition("://")[2]
            hostport, slash, path = after.partition("/")
            host, _, port = hostport.rpartition(":")
            upstream = await asyncio.open_connection(host or hostport, int(port or 80))
            upstream[1].write(f"{method} /{path if slash else ''} {version}\r\n".encode("latin-1") + rest)
            await upstream[1].drain()
            await _relay((reader, writer), upstream)

        return handle
