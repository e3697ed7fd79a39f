#!/usr/bin/env python3
"""Unwraps a .byok transfer file the way the target HSM does, with Python `cryptography` (not
byokd's code, not the emulator's): checks the JSON shape and the header, RSA-OAEP (SHA-1, MGF1
SHA-1, empty label) of the AES-256 key under the KEK's private key, RFC 5649 AES key unwrap of
the rest, then a strict DER parse of the PKCS#8 key. Prints the key's SubjectPublicKeyInfo DER
as hex.

With `aes` (an oct-HSM key for a Managed HSM), the RFC 5649 payload is the raw AES key, 16, 24
or 32 bytes, and nothing else: prints `AES-<bits> <KCV>`, the KCV being the first 3 bytes of
the key's AES-ECB encryption of a zero block, in upper-case hex.

Usage: unwrap_byok.py KEK_PRIVATE_PEM BYOK_FILE EXPECTED_KID [aes]
"""
import base64
import json
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding


def b64url(text):
    if any(c in text for c in "=+/"):
        raise SystemExit("ciphertext is not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def aes_kcv(key):
    """The key check value: AES-ECB of a zero block under `key`, its first 3 bytes."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    block = encryptor.update(bytes(16)) + encryptor.finalize()
    return block[:3].hex().upper()


def main(kek_path, byok_path, kid, kind="pkcs8"):
    doc = json.loads(open(byok_path, "rb").read())
    if set(doc) != {"schema_version", "header", "ciphertext", "generator"}:
        raise SystemExit(f"unexpected members: {sorted(doc)}")
    if doc["schema_version"] != "1.0.0":
        raise SystemExit(f"schema_version {doc['schema_version']!r}")
    want = {"kid": kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"}
    if doc["header"] != want:
        raise SystemExit(f"header {doc['header']!r}, not {want!r}")
    if not isinstance(doc["generator"], str) or not doc["generator"].startswith("byokd "):
        raise SystemExit(f"generator {doc['generator']!r}")
    kek = serialization.load_pem_private_key(open(kek_path, "rb").read(), password=None)
    ciphertext = b64url(doc["ciphertext"])
    k = kek.key_size // 8
    rsa_part, kwp_part = ciphertext[:k], ciphertext[k:]
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    aes = kek.decrypt(rsa_part, oaep)
    if len(aes) != 32:
        raise SystemExit(f"the wrapping key is {len(aes)} bytes, not AES-256")
    plain = aes_key_unwrap_with_padding(aes, kwp_part)
    if len(kwp_part) != (len(plain) + 7) // 8 * 8 + 8:
        raise SystemExit("the key wrap part is not RFC 5649's length for its plaintext")
    if kind == "aes":
        if len(plain) not in (16, 24, 32):
            raise SystemExit(f"the payload is {len(plain)} bytes, not a raw AES key")
        sys.stdout.write(f"AES-{len(plain) * 8} {aes_kcv(plain)}")
        return
    if kind != "pkcs8":
        raise SystemExit(f"unknown key kind {kind!r}")
    # Strict: cryptography refuses BER, trailing bytes and a malformed inner key.
    key = serialization.load_der_private_key(plain, password=None)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sys.stdout.write(spki.hex())


if __name__ == "__main__":
    main(*sys.argv[1:5])
