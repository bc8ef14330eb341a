"""TLS for the pass-through upstreams: which authorities to trust, which client certificate
to show. LiteLLM's names: ``ssl_verify`` (true, false, or a CA bundle: a PEM file or a
directory of hashed certificates) and ``ssl_certificate`` (the client certificate, a PEM that
may hold its key too), plus ``ssl_certificate_key`` (the key in a file of its own, nginx's
name).

With ``ssl_verify: true`` the trusted authorities are the system's, or those of
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set (as OpenSSL, httpx and LiteLLM read them).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

CERT_FILE_ENV = "SSL_CERT_FILE"
CERT_DIR_ENV = "SSL_CERT_DIR"


class TlsError(ValueError):
    """A TLS setting that cannot be used: ``field`` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class TlsSettings:
    verify: bool | str = True  # False, True, or a CA bundle (file or directory)
    certificate: str | None = None  # the client certificate (PEM), for mutual TLS
    key: str | None = None  # its private key, when not in ``certificate``

    def environment(self) -> tuple[str | None, str | None]:
        """The variables that decide the trusted authorities of ``verify: true``."""
        if self.verify is not True:
            return (None, None)
        return (os.environ.get(CERT_FILE_ENV) or None, os.environ.get(CERT_DIR_ENV) or None)


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):  # e.g. KEY_VALUES_MISMATCH; none when PEM cannot be read
        return exc.reason.lower().replace("_", " ") if exc.reason else "not PEM it can read"
    return exc.strerror or str(exc)


def _authorities(settings: TlsSettings) -> ssl.SSLContext:
    if settings.verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(settings.verify, str):
        where = Path(settings.verify)
        if not where.exists():
            raise TlsError("ssl_verify", f"no such CA bundle: {settings.verify}")
        try:
            if where.is_dir():
                return ssl.create_default_context(capath=str(where))
            return ssl.create_default_context(cafile=str(where))
        except OSError as exc:
            raise TlsError(
                "ssl_verify", f"cannot load CA bundle {settings.verify}: {_reason(exc)}"
            ) from None
    cafile, capath = settings.environment()
    for name, value in ((CERT_FILE_ENV, cafile), (CERT_DIR_ENV, capath)):
        if value is not None and not Path(value).exists():
            raise TlsError(name, f"environment variable {name} names no such path: {value}")
    if cafile is None and capath is None:
        return ssl.create_default_context()  # the system's authorities
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except OSError as exc:
        name = CERT_FILE_ENV if cafile else CERT_DIR_ENV
        raise TlsError(name, f"cannot load {name}={cafile or capath}: {_reason(exc)}") from None


def tls_context(settings: TlsSettings) -> ssl.SSLContext:
    """A client context for ``settings``; ``TlsError`` naming the setting when one cannot be
    used (a missing file, not PEM, a key that does not match its certificate)."""
    context = _authorities(settings)
    if settings.key is not None and settings.certificate is None:
        raise TlsError("ssl_certificate_key", "ssl_certificate_key needs an ssl_certificate")
    if settings.certificate is not None:
        field = "ssl_certificate"
        for name, path in ((field, settings.certificate), ("ssl_certificate_key", settings.key)):
            if path is not None and not Path(path).is_file():
                raise TlsError(name, f"no such file: {path}")
        try:
            context.load_cert_chain(settings.certificate, settings.key)
        except OSError as exc:
            hint = "" if settings.key else " (is its key in a file of its own? ssl_certificate_key)"
            message = f"cannot load client certificate {settings.certificate}: {_reason(exc)}"
            raise TlsError(field, message + hint) from None
    return context
