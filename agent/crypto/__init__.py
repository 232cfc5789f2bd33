"""Cryptography: key derivation, authenticated encryption, keyed ids.

The only package that imports pynacl, cryptography and blake3. Everything above
it sees bytes in, bytes out, and `IntegrityError` / `WrongPassphrase` on failure.
"""
