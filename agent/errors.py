"""One exception tree for the whole agent, and the one table of exit codes.

Every exit code backupctl returns is written once, here: each exception class carries
its own (`exit_code`), and the outcomes that are not errors are the module constants at
the end. The CLI (agent/cli/main.py) turns an exception into its code; whatever reads a
code back (the daemon reading its child commands, agent/daemon/) imports it from here.
tests/unit/test_exit_codes.py checks that this docstring, the table of docs/REFERENCE.md
and the classes and constants say the same codes.

    BackupctlError                      1  something went wrong (generic; a bug)
    +-- CryptoSelfTestError             1  the crypto backend failed its known-answer self-test
    +-- ReportError                     1  a report or a recovery sheet could not be written or rendered
    +-- InstallError                    1  `install-service` could not set the service up
    +-- ConfigError                     2  the configuration file is missing or invalid
    |   +-- StateDirError               2  the local state directory (files cache) is unusable
    +-- UsageError                      2  a command was called with bad arguments
    |   +-- RecoveryCodeError           2  a recovery code typed from the sheet does not read back
    +-- RepositoryNotFound             10  no repository at the configured URL
    +-- RepositoryExists               11  `init` found a repository already there
    +-- WrongPassphrase                12  no key of the repository opens with this passphrase
    +-- KeyFileError                   12  a key file is malformed or has unsafe parameters
    |   +-- NoKeyFile                  12  the repository is there (config object) but has no key file
    +-- IntegrityError                 13  stored data is damaged, tampered with or missing
    |   +-- ForeignObject              13  an object backupctl cannot have written, refused unread
    +-- StorageError                   14  the storage backend failed (I/O, S3 access denied)
    |   +-- ObjectNotFound             14  a named object does not exist
    |   +-- TransientStorageError      14  a failure worth retrying (5xx, SlowDown, reset)
    |   +-- ObjectLocked               14  an object is under object lock; it was not deleted
    |   +-- ObjectExists               14  an object written only if absent is already there
    |   +-- ClockSkewError             21  this computer's clock and the storage server's disagree
    +-- RestoreTargetError             15  the restore target is full, read-only or occupied
    +-- RepositoryLocked               16  another process holds an exclusive lock
    +-- AlreadyRunning                 16  a daemon already runs for this state_dir
    +-- SourceError                    17  a configured source path cannot be backed up at all
    +-- UnsupportedFormat              18  the repository uses a newer format than this program
    +-- MediumError                    19  no rotated disk mounted, or not one of the set's
    +-- HookFailed                     20  a [[hooks]] command with on_failure = "abort" failed
    +-- PermissionDenied               22  this user may not read or write a file backupctl needs
                                           (never damage), or root was about to write the service's files
    +-- Interrupted                   130  Ctrl-C stopped a command (128 + SIGINT)
    +-- Terminated                    143  SIGTERM stopped a command, e.g. systemctl stop (128 + SIGTERM)

The outcomes that are not errors:

    SUCCESS_EXIT_CODE                   0  the command did what it was asked
    PARTIAL_BACKUP_EXIT_CODE            3  the snapshot was saved, but some files could not be read
                                           (or a database dump or a hook failed): listed after the summary
    OBLIGATIONS_AT_RISK_EXIT_CODE       4  `status`: an obligation is at risk; `compliance`: a rule FAILs
    SUSPECT_BACKUP_EXIT_CODE            5  the snapshot was saved but marked suspect: the ransomware alarm
                                           (see `backupctl acknowledge`)

Each class carries a `hint`: the plain-language "what to do" half of the one-line
message a user sees.
"""

from __future__ import annotations


class BackupctlError(Exception):
    exit_code = 1
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def one_line(self) -> str:
        text = str(self)
        return f"{text} — {self.hint}" if self.hint else text


class CryptoSelfTestError(BackupctlError):
    """The crypto backend failed the known-answer self-test (agent/crypto/aead.py): exit 1,
    before anything is sealed or opened."""

    hint = ("reinstall backupctl's Python dependencies (the `cryptography` package and its OpenSSL) "
            "and report it; the repository was not touched")


class ReportError(BackupctlError):
    """A report could not be written or rendered (the test or table it reports on stands)."""


class InstallError(BackupctlError):
    """`install-service` could not set the service up (a system command failed, a file it
    needs is missing): exit 1, naming the step; what was already done stays consistent."""


class ConfigError(BackupctlError):
    exit_code = 2
    hint = "fix the configuration file (see config.example.toml)"


class StateDirError(ConfigError):
    hint = "make [agent] state_dir writable by the user running backupctl, or point it elsewhere"


class UsageError(BackupctlError):
    exit_code = 2


class RecoveryCodeError(UsageError):
    """A recovery code (typed from the paper sheet) that does not read back: names the line."""


class RepositoryNotFound(BackupctlError):
    exit_code = 10
    hint = "check the repository url, or create one with `backupctl init`"


class RepositoryExists(BackupctlError):
    exit_code = 11
    hint = "nothing was changed; use another location for a new repository"


def recover_add_key(url: str = "URL") -> str:
    """What to do when no passphrase can open the repository any more: the recovery sheet."""
    return (f"`backupctl recover --url {url} --add-key` with the recovery sheet writes a new key file "
            f"for a new passphrase")


RECOVER_ADD_KEY = recover_add_key()


class WrongPassphrase(BackupctlError):
    """No key file of the repository opens with this passphrase. The CLI names the source
    of the passphrase it used (prompt, file, environment, systemd credential)."""

    exit_code = 12
    hint = f"check the passphrase file or BACKUPCTL_PASSPHRASE; if the passphrase is lost, {RECOVER_ADD_KEY}"


class KeyFileError(BackupctlError):
    exit_code = 12
    hint = f"use another passphrase of the repository; if none is left, {RECOVER_ADD_KEY}"


class NoKeyFile(KeyFileError):
    """The repository's config object is there but keys/ is empty (deleted, or not copied
    with the rest): exit 12 like the other key failures, not 10 (RepositoryNotFound), because
    the data is there and the recovery sheet opens it."""

    hint = f"the data is there but nothing can open it with a passphrase: {RECOVER_ADD_KEY}"


class IntegrityError(BackupctlError):
    exit_code = 13
    hint = "run `backupctl check --read-data` to list everything affected"


class ForeignObject(IntegrityError):
    """An object backupctl cannot have written: not a regular file (a FIFO, a device, a link,
    a folder where a file belongs) or larger than any object of its kind. It is refused
    unread, so a planted one cannot hang, exhaust memory or crash a command (docs/SECURITY.md 4)."""

    hint = "someone or something put it there: `backupctl check` lists the others; keep it for inquiry"


class StorageError(BackupctlError):
    exit_code = 14
    hint = "check that the storage is reachable, mounted and writable"


class ObjectNotFound(StorageError):
    pass


class ObjectExists(StorageError):
    """`write(..., exclusive=True)` found an object at the name: nothing was overwritten.
    A permanent answer, never retried (storage/retry.py)."""

    hint = "nothing was overwritten; the object already there was left as it was"


class TransientStorageError(StorageError):
    """Raised by backends for failures that may succeed if retried (see storage/retry.py)."""


class ObjectLocked(StorageError):
    hint = "the object is under object lock until its retain-until date; nothing was deleted"


class ClockSkewError(StorageError):
    """The storage server's clock contradicts ours: a strict server refuses the requests,
    and prune refuses to count retention periods from a clock it cannot trust."""

    exit_code = 21


class RestoreTargetError(BackupctlError):
    exit_code = 15
    hint = "free some space or choose another --target; the repository is unchanged"


class RepositoryLocked(BackupctlError):
    exit_code = 16
    hint = "wait for the other backupctl process to finish"


class AlreadyRunning(BackupctlError):
    exit_code = 16
    hint = "one daemon per state_dir: stop the other one (systemctl stop backupctl) first"


class SourceError(BackupctlError):
    exit_code = 17
    hint = "check the [source] paths in the configuration"


class UnsupportedFormat(BackupctlError):
    exit_code = 18
    hint = "upgrade backupctl to read this repository"


class HookFailed(BackupctlError):
    """A [[hooks]] command with on_failure = "abort" failed: no backup was made."""

    exit_code = 20


class MediumError(BackupctlError):
    exit_code = 19
    hint = "plug in one of the configured backup disks (backupctl media status)"


class PermissionDenied(BackupctlError):
    """A file backupctl needs (a repository object, a key file, a lock, a state file, a
    cache, a credentials file) exists but the user running the command may not read or
    write it; or root was about to write files the service user could not read back
    (agent/run_as.py). Not a StorageError: an engine that counts storage failures as
    damage (check, repair, restore) must not count this one, which `chown` mends."""

    exit_code = 22
    hint = "run commands as the service user (docs/INSTALL.md, \"Commands by hand on the server\")"


class Terminated(BackupctlError):
    """SIGTERM (systemd stopping the service): stop cleanly, nothing stored is lost."""

    exit_code = 143
    hint = "nothing already stored was lost; the next run resumes"


class Interrupted(BackupctlError):
    """Ctrl-C (SIGINT) stopped a command that says how to go on (a restore: rerun with --resume)."""

    exit_code = 130


SUCCESS_EXIT_CODE = 0
PARTIAL_BACKUP_EXIT_CODE = 3  # `backup`: saved, with warnings (files unreadable, a dump or a hook failed)
OBLIGATIONS_AT_RISK_EXIT_CODE = 4  # `status`, `compliance`: a memento obligation is not met (for monitoring)
SUSPECT_BACKUP_EXIT_CODE = 5  # `backup`: saved, marked suspect by the ransomware alarm (agent/engine/alarm.py)
# Ctrl-C and SIGTERM by name, for code that meets them without the exception: the CLI
# catching a bare KeyboardInterrupt, the daemon reading a child it stopped.
INTERRUPTED_EXIT_CODE = Interrupted.exit_code
TERMINATED_EXIT_CODE = Terminated.exit_code
