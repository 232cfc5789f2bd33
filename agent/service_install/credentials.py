"""The secrets of the service as encrypted systemd credentials (`systemd-creds encrypt
--with-key=auto`: sealed to the TPM2 when the machine has one, else to the host key in
/var/lib/systemd/credential.secret). Only root can decrypt them; systemd hands the service
a clear copy in its private $CREDENTIALS_DIRECTORY.

The passphrase (rule K1) is generated once, and shown only where a person reads it: on a
terminal, with the instruction to write it on the recovery paper and to type it back. With
no terminal it is refused, unless the person gives it in a file (--passphrase-file), then
told to destroy that file. An existing passphrase credential is never replaced: the
repositories are encrypted with it.
"""

from __future__ import annotations

import base64
import configparser
import os
import secrets
from dataclasses import dataclass
from typing import Callable, Protocol

from agent.errors import UsageError

GENERATED_BYTES = 32  # 256 bits, base64: 44 characters to copy by hand
MIN_PASSPHRASE = 12   # as every new passphrase (agent/cli/common.py)
ATTEMPTS = 3


class Terminal(Protocol):
    def show(self, text: str) -> None: ...
    def ask(self, prompt: str) -> str: ...


@dataclass(frozen=True)
class PassphrasePlan:
    """How the passphrase credential will be made: kept, from a file, or generated on a terminal."""
    how: str  # "keep", "file" or "generate"
    file: str | None = None


def plan_passphrase(*, exists: bool, passphrase_file: str | None, interactive: bool) -> PassphrasePlan:
    """Decided before anything is written, so a refusal leaves the machine untouched."""
    if exists:
        return PassphrasePlan("keep", passphrase_file)
    if passphrase_file:
        return PassphrasePlan("file", passphrase_file)
    if interactive:
        return PassphrasePlan("generate")
    raise UsageError("no terminal to show the new passphrase on, and no --passphrase-file",
                     hint="run the install from a terminal (the passphrase is shown once, for the paper "
                          "sheet), or write it in a file and give --passphrase-file FILE")


def read_secret_file(path: str, *, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            secret = handle.read()
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be read ({exc.strerror})") from None
    return secret.rstrip(b"\r\n")


def passphrase_from_file(path: str) -> bytes:
    secret = read_secret_file(path, what="--passphrase-file")
    if b"\n" in secret or len(secret.decode("utf-8", "replace")) < MIN_PASSPHRASE:
        raise UsageError(f"--passphrase-file {path}: the passphrase must be one line of at least "
                         f"{MIN_PASSPHRASE} characters",
                         hint="generate one: head -c 32 /dev/urandom | base64")
    return secret


def generate_on_terminal(terminal: Terminal, *, random: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """A new passphrase, shown on the terminal and typed back; UsageError after three misses
    (nothing stored: a passphrase nobody wrote down must not encrypt anything)."""
    secret = base64.b64encode(random(GENERATED_BYTES)).decode("ascii")
    terminal.show("\nThe passphrase of the backups (generated; shown this once):\n\n"
                  f"    {secret}\n\n"
                  "Write this on the paper sheet, and keep the sheet in the safe: without it nobody,\n"
                  "you included, can read the backups if this server is lost.\n")
    for _ in range(ATTEMPTS):
        typed = terminal.ask("Type it back from the paper to confirm: ").strip()
        if typed == secret:
            terminal.show("Confirmed.\n")
            return secret.encode("ascii")
        terminal.show("That is not the same; check the paper (0/O, 1/l/I, +, /).\n")
    raise UsageError("the passphrase was not typed back correctly; nothing was stored",
                     hint="run the install again: a new passphrase is generated")


def check_s3_credentials(path: str, *, profile: str | None = None) -> bytes:
    """The file's bytes, when it is in the AWS shared-credentials format with keys in [default]."""
    data = read_secret_file(path, what="--s3-credentials-file") + b"\n"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(data.decode("utf-8"))
    except (configparser.Error, UnicodeDecodeError):
        # configparser's messages quote the offending line: a secret, never repeated.
        raise UsageError(f"--s3-credentials-file {path} is not in the AWS credentials format") from None
    section = profile or "default"
    if not all(parser.get(section, key, fallback="") for key in ("aws_access_key_id", "aws_secret_access_key")):
        raise UsageError(f"--s3-credentials-file {path} has no [{section}] with aws_access_key_id and "
                         f"aws_secret_access_key")
    return data


def check_smtp_password(path: str) -> bytes:
    secret = read_secret_file(path, what="--smtp-password-file")
    if not secret or b"\n" in secret:
        raise UsageError(f"--smtp-password-file {path}: the password must be one non-empty line")
    return secret


def destroy_advice(path: str) -> str:
    return (f"The secret is now stored encrypted; destroy {path}: shred -u {path}"
            if os.path.exists(path) else "")
