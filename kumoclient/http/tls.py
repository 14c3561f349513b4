"""The HTTP listener's TLS context (`use_tls = true`): the certificate and key given as
KeySources (a file name, or the PEM data itself), or, when neither is given, a self-signed
certificate for the listener's `hostname` (default: this machine's name) made at start, as
KumoMTA does: an ECDSA P-256 key, the name as its subject and only DNS name.

A Vault KeySource is read by the daemon before the listener is made (it waits on the
network); here it is an error.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kumoclient.configs import HttpListenerConfig, KeySource
from kumoclient.errors import ConfigError

SELF_SIGNED_DAYS = 3650


def self_signed(hostname: str) -> tuple[bytes, bytes]:
    """A new self-signed certificate for `hostname` and its private key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _data(what: str, source: KeySource | None) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str):
        try:
            return Path(source).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"start_http_listener: cannot read {what} {source}: {exc.strerror}",
                key=what,
                value=source,
            ) from exc
    raise ConfigError(
        f"start_http_listener: {what}: a Vault KeySource must be read before the listener "
        "is made (kumoclient run does)",
        key=what,
    )


def _load(context: ssl.SSLContext, certificate: bytes, key: bytes) -> None:
    """Load PEM data into `context` (the ssl module reads only files: private ones, gone at
    once)."""
    with tempfile.TemporaryDirectory(prefix="kumoclient-tls-") as folder:
        paths = []
        for name, data in (("certificate.pem", certificate), ("key.pem", key)):
            path = os.path.join(folder, name)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            paths.append(path)
        context.load_cert_chain(paths[0], paths[1])


def server_context(config: HttpListenerConfig) -> ssl.SSLContext | None:
    """The TLS context of a listener, or None without `use_tls` (ConfigError when the
    certificate or key cannot be had or do not load)."""
    if not config.use_tls:
        return None
    given = (config.tls_certificate, config.tls_private_key)
    if given == (None, None):
        certificate, key = self_signed(config.hostname or socket.gethostname())
    elif None in given:
        missing = "tls_private_key" if config.tls_private_key is None else "tls_certificate"
        raise ConfigError(
            f"start_http_listener: use_tls = true with only one of tls_certificate and "
            f"tls_private_key: give {missing} too, or neither for a self-signed certificate",
            key=missing,
        )
    else:
        certificate = _data("tls_certificate", config.tls_certificate)
        key = _data("tls_private_key", config.tls_private_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        _load(context, certificate, key)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"start_http_listener: cannot load tls_certificate/tls_private_key: {exc}",
            key="tls_certificate",
        ) from exc
    return context
