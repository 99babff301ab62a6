"""RSA key pairs for JWT client assertions (the worker signs, the sandbox verifies)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = ["KeyPair", "generate_keypair", "load_public_key"]

PRIVATE_KEY_FILE = "private_key.pem"
PUBLIC_KEY_FILE = "public_key.pem"


@dataclass(frozen=True)
class KeyPair:
    """Where a generated key pair lives, plus the public half to configure the sandbox with."""

    private_key_path: Path
    public_key_path: Path
    public_key_pem: bytes
    kid: str


def generate_keypair(directory: Path, kid: str = "sandbox-kid") -> KeyPair:
    """Create an RSA-2048 pair in ``directory``; the private key file is mode 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    private_path = directory / PRIVATE_KEY_FILE
    public_path = directory / PUBLIC_KEY_FILE
    # Create with 0600 from the start: the secret never sits in a world-readable file.
    if private_path.exists():
        private_path.unlink()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    return KeyPair(
        private_key_path=private_path,
        public_key_path=public_path,
        public_key_pem=public_pem,
        kid=kid,
    )


def load_public_key(pem: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """Parse a PEM public key (RSA for RS384, EC P-384 for ES384); ValueError otherwise."""
    key: PublicKeyTypes = serialization.load_pem_public_key(pem)
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return key
    raise ValueError("public key must be RSA or EC")
