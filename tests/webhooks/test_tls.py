"""HTTPS delivery to a loopback receiver with its own CA: the connection goes to the checked
address while TLS still verifies the certificate for the URL's host name (SNI), and a certificate
for another name is refused."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from memvault import Memory
from memvault.core import webhooks
from memvault.core.webhooks import WebhookWorker
from tests.webhooks.conftest import FakeClock


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificates(tmp: Path, host: str) -> tuple[bytes, Path, Path]:
    """A CA (its PEM) and a server certificate for ``host`` signed by it (files)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("memvault test CA"))
        .issuer_name(_name("memvault test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "server.pem", tmp / "server.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[Callable[[str], tuple[int, bytes, list[Any]]]]:
    """``start(cert_host)``: an HTTPS receiver on 127.0.0.1 with a certificate for
    ``cert_host``; (port, CA PEM, what it received)."""
    servers: list[ThreadingHTTPServer] = []

    def start(cert_host: str) -> tuple[int, bytes, list[Any]]:
        ca_pem, cert_file, key_file = _certificates(tmp_path, cert_host)
        received: list[Any] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((self.headers.get("Host"), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], ca_pem, received

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _pinned(
    host: str, address: str, calls: list[str] | None = None
) -> Callable[[str, int], list[str]]:
    """A resolver that knows one name (no DNS is asked), noting each question in ``calls``."""

    def resolve(name: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(name)
        return [address] if name == host else []

    return resolve


@pytest.mark.parametrize("cert_host", ["hooks.test", "other.test"])
def test_https_is_verified_for_the_host_name_on_the_pinned_address(
    home: Path, tls_receiver: Callable[..., Any], clock: FakeClock, cert_host: str
) -> None:
    port, ca_pem, received = tls_receiver(cert_host)
    settings = {"webhook_allowed_hosts": ["hooks.test", "127.0.0.1/32"]}
    with Memory(home, embedder="hash", **settings) as m:
        # configure resolves through the system, which does not know hooks.test: the core's
        # configure (what Memory.configure_webhook calls) with the test's resolver.
        webhooks.configure(
            m.engine,
            f"https://hooks.test:{port}/in",
            include_text=False,
            resolver=_pinned("hooks.test", "127.0.0.1"),
        )
        m.add("over TLS", user_id="kim", infer=False)
        asked: list[str] = []
        worker = WebhookWorker(
            m.engine.store,
            m.engine.view,
            m.settings,
            clock=clock,
            resolver=_pinned("hooks.test", "127.0.0.1", asked),
            tls=ssl.create_default_context(cadata=ca_pem.decode()),
        )
        assert worker.deliver_due() == 1
        (row,) = m.webhook_deliveries()["results"]
    # Resolved once, by the check; the system resolver (which does not know hooks.test) never
    # was: the connection went to the checked address.
    assert asked == ["hooks.test"]
    if cert_host == "hooks.test":
        assert row["status"] == "delivered" and row["last_status"] == 204
        ((host_header, body),) = received
        assert host_header == f"hooks.test:{port}"
        assert json.loads(body)["type"] == "memory.added"
    else:  # the certificate names another host: refused before anything is sent
        assert (row["status"], row["last_error"]) == ("pending", "unreachable")
        assert received == []
