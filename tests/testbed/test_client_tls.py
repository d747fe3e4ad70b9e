"""The SDK's TLS: one verifying context per process (not one per client), still httpx's verification.

Against a real HTTPS server on 127.0.0.1 with a certificate made here: refused unless trusted, trusted when
``SSL_CERT_FILE`` names it (read when a client is built, as httpx reads it).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testbed.client import TestbedClient, TestbedError

PAGE = json.dumps({"jobs": [], "next_cursor": None}).encode()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "testbed-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class EmptyJobs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(URL, certificate) of an HTTPS server on 127.0.0.1 answering every GET with an empty page of jobs."""
    cert_file, key_file = self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), EmptyJobs)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_file
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_certificate_not_trusted_is_refused(https_server: tuple[str, Path], monkeypatch) -> None:
    url, _cert = https_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with TestbedClient(url, "token") as client, pytest.raises(TestbedError) as refused:
        client.list_jobs()
    assert refused.value.code == "unreachable"
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)


def test_the_bundle_named_in_ssl_cert_file_is_trusted(https_server: tuple[str, Path], monkeypatch) -> None:
    url, cert = https_server
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with TestbedClient(url, "token") as client:  # built before the variable is set: not trusted
        with pytest.raises(TestbedError):
            client.list_jobs()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with TestbedClient(url, "token") as client:
        assert client.list_jobs().jobs == []


def test_clients_share_one_context_rather_than_load_the_bundle_each(monkeypatch) -> None:
    loads = []
    load = ssl.SSLContext.load_verify_locations

    def counted(self, *args, **kwargs):
        loads.append(args or kwargs)
        return load(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    monkeypatch.setenv("SSL_CERT_DIR", "/nonexistent-so-this-test-builds-its-own-context")  # a value no test used
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    clients = [TestbedClient("http://127.0.0.1:1", "token") for _ in range(5)]
    for client in clients:
        client.close()
    assert len(loads) == 1, f"{len(loads)} certificate loads for 5 clients"
