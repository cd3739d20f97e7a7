"""What a station's login is checked with: the HTTP Basic credentials it sends, the
HMAC of a verified credential (so a reconnect needs no argon2, see ``security``) and
the allocator setting that keeps argon2's working memory from staying resident."""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
import hmac
import secrets

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = structlog.get_logger("chargeflow.gateway.security")

# glibc raises its mmap threshold up to 32 MiB after the first large free, so
# argon2's 19 MiB working memory would then come from per-thread heaps and stay
# resident (measured: +165 MiB RSS after 2,000 logins on 4 worker threads). A fixed
# threshold keeps every allocation above it mmapped and unmapped when freed.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def return_large_allocations_to_the_os(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold (no-op elsewhere); True when it was set."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` -> (user, password); None when absent/malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")  # RFC 7617 leaves the charset to the parties
    user, sep, password = text.partition(":")
    if not sep:
        return None
    return user, password


def cache_key_from_secret(secret: str | None) -> bytes:
    """The HMAC key of verified credentials: derived from the ``auth_cache_key``
    setting, or random for this process when it is not set."""
    if not secret:
        return secrets.token_bytes(32)
    return hashlib.sha256(b"chargeflow station credential cache\0" + secret.encode()).digest()


def credential_mac(key: bytes, charge_point_id: str, password_hash: str, password: str) -> bytes:
    """HMAC-SHA256 of one verified credential, bound to the stored hash (a new
    password, or a re-hash, gives another MAC)."""
    message = "\0".join((charge_point_id, password_hash, password)).encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def verify_and_rehash(
    hasher: PasswordHasher, password_hash: str, password: str
) -> tuple[bool, str | None]:
    """(worker thread) argon2 check; on success with outdated parameters also the
    new hash of the same password."""
    try:
        hasher.verify(password_hash, password)
    except VerifyMismatchError:
        return False, None
    except (VerificationError, InvalidHashError):
        log.error("stored password hash is not a valid argon2 hash")
        return False, None
    if hasher.check_needs_rehash(password_hash):
        return True, hasher.hash(password)
    return True, None
