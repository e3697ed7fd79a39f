#!/usr/bin/env python3
"""The SDK-flow comparator of byokd-bench: the manual BYOK flow an operator scripts with Azure's
official Python SDK (azure-identity + azure-keyvault-keys, unmodified) and `cryptography`.

For each key: create a KEK (RSA-HSM, key_ops import), get its public key, wrap the key in
software (RSA-OAEP-SHA1 of a fresh AES-256 key || AES-KWP of the PKCS#8 key, i.e.
CKM_RSA_AES_KEY_WRAP), import it as a new version, delete the KEK, wait until it shows as
deleted, purge it. Keys are generated in software before the clock starts.

The emulator's host names are mapped to its loopback address by overriding name resolution in
this process (socket.getaddrinfo); TLS still verifies the real host names against the emulator's
CA, which the caller passes in REQUESTS_CA_BUNDLE / SSL_CERT_FILE.

Prints one JSON line: {"n":..,"seconds":..}; request counts come from the emulator's log.
"""

import argparse
import base64
import json
import os
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from azure.identity import ClientSecretCredential
from azure.keyvault.keys import JsonWebKey, KeyClient
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding


def override_resolution(hosts, addr):
    """Resolve `hosts` (any port) to the emulator's ip:port; everything else as usual."""
    ip, port = addr.rsplit(":", 1)
    real = socket.getaddrinfo

    def getaddrinfo(host, p, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host and host.lower() in hosts:
            return real(ip, int(port), *args, **kwargs)
        return real(host, p, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def wrap(kek_n, kek_e, kek_kid, private_key):
    """The transfer blob (docs/byok-protocol.md#transfer-blob) as bytes, made in software."""
    kek = rsa.RSAPublicNumbers(int.from_bytes(kek_e, "big"), int.from_bytes(kek_n, "big")).public_key()
    aes = os.urandom(32)
    rsa_part = kek.encrypt(
        aes, padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    )
    pkcs8 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    blob = {
        "schema_version": "1.0.0",
        "header": {"kid": kek_kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
        "ciphertext": b64url(rsa_part + aes_key_wrap_with_padding(aes, pkcs8)),
        "generator": "sdk_flow.py; cryptography software wrap",
    }
    return json.dumps(blob).encode()


def push_one(client, key_name, kek_size, private_key, run_id, i):
    kek_name = f"sdk-kek-{run_id}-{i}"
    client.create_rsa_key(kek_name, size=kek_size, hardware_protected=True, key_operations=["import"])
    kek = client.get_key(kek_name)
    blob = wrap(kek.key.n, kek.key.e, kek.id, private_key)
    client.import_key(
        key_name,
        JsonWebKey(kty="RSA-HSM", key_ops=["encrypt", "decrypt", "wrapKey", "unwrapKey"], t=blob),
    )
    client.begin_delete_key(kek_name, **POLL).wait()
    client.purge_deleted_key(kek_name)


POLL = {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--emulator", required=True, help="ip:port of the emulator")
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--vault", required=True)
    ap.add_argument("--key-name", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--kek-size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1, help="keys pushed concurrently")
    ap.add_argument("--polling-interval", type=float, default=None,
                    help="delete poller interval in s (the SDK's default when unset)")
    a = ap.parse_args()
    secret = sys.stdin.readline().strip()
    if a.polling_interval is not None:
        # The SDK's own knob for its delete poller (default 2 s); the SDK is not modified.
        POLL["_polling_interval"] = a.polling_interval
    vault_host = f"{a.vault}.vault.azure.net"
    override_resolution({"login.microsoftonline.com", vault_host}, a.emulator)

    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(a.n)]
    credential = ClientSecretCredential(a.tenant, a.client_id, secret)
    # The emulator speaks api-version 7.5, the version byokd pins (docs/byok-protocol.md#clouds-and-endpoints).
    client = KeyClient(vault_url=f"https://{vault_host}", credential=credential, api_version="7.5")
    run_id = uuid.uuid4().hex[:8]

    start = time.monotonic()
    if a.threads <= 1:
        for i, k in enumerate(keys):
            push_one(client, a.key_name, a.kek_size, k, run_id, i)
    else:
        with ThreadPoolExecutor(max_workers=a.threads) as pool:
            for f in [pool.submit(push_one, client, a.key_name, a.kek_size, k, run_id, i)
                      for i, k in enumerate(keys)]:
                f.result()
    seconds = time.monotonic() - start
    print(json.dumps({"n": a.n, "seconds": seconds}))


if __name__ == "__main__":
    main()
