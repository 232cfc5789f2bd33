"""The unit as shipped (systemd/backupctl.service, copied unchanged) and the drop-ins
derived from the configuration and the credentials present.

Drop-ins, not edits of the unit: the shipped unit stays the one `systemd-analyze verify`
checks, and what belongs to this server (its folders, its credentials) is in files of its own
that a re-run rewrites.
"""

from __future__ import annotations

from agent.service_install import layout

HEADER = ("# Written by `backupctl install-service` from {config}; a re-run rewrites it\n"
          "# (sudo sh install.sh, or sudo /opt/backupctl/bin/backupctl install-service).\n")


def paths_dropin(folders: tuple[str, ...], *, config: str = layout.CONFIG) -> str:
    """ReadWritePaths= for the folders of folders.writable_folders()."""
    lines = [HEADER.format(config=config),
             "# The folders the service writes besides its state directory: file:// repositories,\n"
             "# the disks' mount point (ProtectSystem=strict makes everything else read-only).\n"
             "# \"-\": a folder missing at start (a NAS not mounted yet) fails that repository's jobs,\n"
             "# each with its reason and an alert, instead of the whole service (226/NAMESPACE).\n",
             "[Service]\n"]
    lines += [f"ReadWritePaths={_escape('-' + folder)}\n" for folder in folders]
    return "".join(lines)


def credentials_dropin(names: tuple[str, ...]) -> str | None:
    """The optional credentials (S3 keys, SMTP password) present in the credential store;
    None when there is none (the passphrase is in the unit itself)."""
    optional = [name for name in names if name != layout.PASSPHRASE]
    if not optional:
        return None
    lines = [HEADER.format(config="the credentials in " + layout.CREDSTORE),
             "# %d is the service's credentials directory ($CREDENTIALS_DIRECTORY).\n", "[Service]\n"]
    for name in sorted(optional):
        lines.append(f"LoadCredentialEncrypted={name}:{layout.CREDENTIAL_FILES[name]}\n")
        if name == layout.S3_CREDENTIALS:
            # boto3 reads its [default] keys there; a credentials_file or profile in the
            # configuration takes precedence (agent/storage/s3.py).
            lines.append("Environment=AWS_SHARED_CREDENTIALS_FILE=%d/s3-credentials\n")
    return "".join(lines)


def service_properties(unit_text: str, *dropins: str | None) -> list[tuple[str, str]]:
    """The [Service] assignments of the unit and its drop-ins, in order, without comments."""
    found: list[tuple[str, str]] = []
    for text in (unit_text, *dropins):
        if text is None:
            continue
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            if section == "Service" and "=" in line:
                key, value = line.split("=", 1)
                found.append((key.strip(), value.strip()))
    return found


def _escape(path: str) -> str:
    # ReadWritePaths= splits on spaces and honours double quotes (a "-" goes inside them); the
    # same line goes to systemd-run -p in the wrapper, which expands no "%" specifier: so a
    # folder with a quote, a backslash, a "%" or a control character is refused (folders.py).
    return f'"{path}"' if any(c.isspace() for c in path) else path
