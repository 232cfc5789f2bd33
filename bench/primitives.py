"""Throughput of the primitives backupctl builds on, on this machine (the README's
"Why these libraries" table).

    .venv/bin/python bench/primitives.py [--mib 256]

Half random, half compressible text; 1 MiB chunks for the per-chunk operations.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import sys
import time

import blake3
import nacl.bindings
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from pyfastcdc.cy import FastCDC

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402  (bench/dataset.py: the same text generator)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    size = parser.parse_args().mib * 1024 * 1024
    text = (b"lorem ipsum dolor sit amet patient consultation " * (size // 96 + 1))[: size // 2]
    data = os.urandom(size // 2) + text
    chunks = [data[i : i + (1 << 20)] for i in range(0, size, 1 << 20)]
    key, nonce24 = os.urandom(32), os.urandom(24)

    def report(name: str, action) -> None:
        started = time.perf_counter()
        action()
        print(f"| {name} | {size / (time.perf_counter() - started) / 2**20:,.0f} MiB/s |")

    print("| operation (one core) | throughput |\n|---|---|")
    cdc = FastCDC(1 << 20, min_size=256 << 10, max_size=8 << 20, seed=12345)
    report("pyfastcdc cut_stream (keyed)", lambda: sum(c.length for c in cdc.cut_stream(io.BytesIO(data))))
    report("BLAKE3 keyed, 1 MiB chunks", lambda: [blake3.blake3(c, key=key).digest() for c in chunks])
    report("SHA-256 (hashlib)", lambda: hashlib.sha256(data).digest())
    zstd = zstandard.ZstdCompressor(level=3)
    report("zstd level 3 (half random, half repetitive text)", lambda: [zstd.compress(c) for c in chunks])
    # Letters as the bench dataset writes them (words and numbers, about 3:1 with zstd).
    letters = [dataset._text(random.Random(i), 1 << 20) for i in range(size // 2 >> 20)]
    for level in (1, 3):
        compressor = zstandard.ZstdCompressor(level=level)
        started = time.perf_counter()
        ratio = sum(len(compressor.compress(c)) for c in letters) / (len(letters) << 20)
        speed = (len(letters) << 20) / (time.perf_counter() - started) / 2**20
        print(f"| zstd level {level} on letter-like text (ratio {ratio:.2f}) | {speed:,.0f} MiB/s |")
    report("XChaCha20-Poly1305, PyNaCl (libsodium)", lambda: [
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(c, b"aad", nonce24, key) for c in chunks])
    chacha = ChaCha20Poly1305(key)
    report("ChaCha20-Poly1305, cryptography (OpenSSL)",
           lambda: [chacha.encrypt(nonce24[:12], c, b"aad") for c in chunks])
    aes = AESGCM(key)
    report("AES-256-GCM, cryptography (OpenSSL)", lambda: [aes.encrypt(nonce24[:12], c, b"aad") for c in chunks])


if __name__ == "__main__":
    main()
