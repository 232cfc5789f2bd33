"""Applies the service's files to a root folder, idempotently, and undoes them (--uninstall).

Every check that can refuse (the configuration, the secrets given, how the passphrase will
be shown) runs before the first file is written: a refusal leaves the machine as it was. A
second run with nothing new writes nothing, restarts nothing, and says so.

`root` is "/" on a server; the unit tests give a temporary folder and a `System` that
records the commands instead of running them.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

from agent import config as config_module
from agent.errors import SUCCESS_EXIT_CODE, ConfigError, InstallError, RepositoryExists, UsageError
from agent.service_install import apt_hook, credentials, folders, layout, polkit, shipped, units, wrapper


class System(Protocol):
    def run(self, argv: Sequence[str], *, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]: ...
    def service_ids(self) -> tuple[int, int]: ...


class HostSystem:
    """The machine itself."""

    def run(self, argv: Sequence[str], *, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(list(argv), input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except FileNotFoundError:
            raise InstallError(f"{argv[0]} is not installed", hint="install-service needs Debian 12 (systemd 252) "
                               "or newer, with systemd as PID 1") from None

    def service_ids(self) -> tuple[int, int]:
        entry = pwd.getpwnam(layout.SERVICE_USER)
        return entry.pw_uid, entry.pw_gid


@dataclass(frozen=True)
class Options:
    config_file: str | None = None
    passphrase_file: str | None = None
    s3_credentials_file: str | None = None
    smtp_password_file: str | None = None


@dataclass
class Installer:
    root: Path
    system: System
    say: Callable[[str], None]
    terminal: credentials.Terminal | None = None  # None: no person at a terminal
    changes: list[str] = field(default_factory=list)

    def path(self, installed: str) -> Path:
        return self.root / installed.lstrip("/")

    # ---- install ------------------------------------------------------------------------

    def install(self, options: Options) -> None:
        config_text, config, from_example = self._configuration(options)
        writable = folders.writable_folders(config)
        mounts = folders.media_mounts(config)
        shared = folders.shared_folders(config, root=str(self.root), service_uid=self._service_uid())
        hook_units = polkit.hook_units(config.hooks)
        passphrase_plan = credentials.plan_passphrase(
            exists=self.path(layout.CREDENTIAL_FILES[layout.PASSPHRASE]).exists(),
            passphrase_file=options.passphrase_file, interactive=self.terminal is not None)
        given_passphrase = (credentials.passphrase_from_file(options.passphrase_file)
                            if passphrase_plan.how == "file" and options.passphrase_file else None)
        profiles = {r.s3.profile for r in config.repositories if r.s3 is not None and r.s3.profile}
        s3 = (credentials.check_s3_credentials(options.s3_credentials_file, profile=next(iter(profiles), None))
              if options.s3_credentials_file else None)
        smtp = credentials.check_smtp_password(options.smtp_password_file) if options.smtp_password_file else None

        self._put(layout.SYSUSERS, shipped.shipped_text(shipped.SYSUSERS), 0o644)
        self._run("systemd-sysusers", str(self.path(layout.SYSUSERS)))
        self._put(layout.TMPFILES, shipped.shipped_text(shipped.TMPFILES), 0o644)
        self._run("systemd-tmpfiles", "--create", str(self.path(layout.TMPFILES)))
        uid, gid = self.system.service_ids()

        config_changed = self._put(layout.CONFIG, config_text, 0o640, owner=(0, gid),
                                   keep_previous=options.config_file is not None)
        for folder in () if from_example else writable:  # the example's folders wait for the edit
            self._own_folder(folder, uid, gid)
        for folder in () if from_example else shared:
            self._metrics_folder(folder, uid, gid)

        secrets_changed = self._passphrase(passphrase_plan, given_passphrase)
        if s3 is not None:
            secrets_changed |= self._credential(layout.S3_CREDENTIALS, s3, options.s3_credentials_file)
        if smtp is not None:
            secrets_changed |= self._credential(layout.SMTP_PASSWORD, smtp, options.smtp_password_file)
        present = tuple(name for name, file in layout.CREDENTIAL_FILES.items() if self.path(file).exists())

        unit_text = shipped.shipped_text(shipped.UNIT)
        paths_text = units.paths_dropin(writable + shared)
        credentials_text = units.credentials_dropin(present)
        unit_changed = self._put(layout.UNIT, unit_text, 0o644)
        unit_changed |= self._put(layout.PATHS_DROPIN, paths_text, 0o644)
        unit_changed |= self._put_or_remove(layout.CREDENTIALS_DROPIN, credentials_text, 0o644)
        self._put_or_remove(layout.POLKIT_RULE, polkit.render(hook_units), 0o644)
        properties = units.service_properties(unit_text, paths_text, credentials_text)
        self._put(layout.WRAPPER, wrapper.render(properties, media_mounts=mounts), 0o755)
        if self.path(layout.APT_CONF_DIR).is_dir():  # apt is there: a copy before its installations (S5)
            self._put(layout.APT_HOOK, apt_hook.render(), 0o644)
        if unit_changed:
            self._run("systemctl", "daemon-reload")

        if from_example:
            self.say(f"{layout.CONFIG} was written from the example: edit it (sources, repositories, alerts), "
                     f"then run the install again to create the repositories and start the service.")
            return
        for repository in config.repositories:
            if not repository.media:
                self._init(repository.name)
        self._start(restart=unit_changed or secrets_changed, reload=config_changed)
        if mounts:
            self.say(f"Disks: mount each one at {', '.join(mounts)} and prepare it once with "
                     f"`backupctl media init LABEL --repo NAME`.")
        if self.changes:
            self.say(f"backupctl install-service: done ({len(self.changes)} change(s)).")
        else:
            self.say("backupctl install-service: nothing to change; everything was already installed.")

    def _configuration(self, options: Options) -> tuple[bytes, config_module.Config, bool]:
        installed = self.path(layout.CONFIG)
        if options.config_file:
            source, from_example = Path(options.config_file), False
        elif installed.exists():
            source, from_example = installed, False
        else:
            source, from_example = None, True
        try:
            text = (source.read_bytes() if source is not None
                    else shipped.shipped_text(shipped.CONFIG_EXAMPLE).encode("utf-8"))
        except OSError as exc:
            raise UsageError(f"the configuration {source} cannot be read ({exc.strerror})") from None
        try:
            raw = tomllib.loads(text.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source or 'config.example.toml'}: not valid TOML ({exc})") from None
        # Checked as the installed file, so the messages name the path the service reads.
        return text, config_module.parse(raw, layout.CONFIG if source is None else str(source)), from_example

    def _service_uid(self) -> int | None:
        try:
            return self.system.service_ids()[0]
        except KeyError:  # no service user yet: the first install creates it
            return None

    def _metrics_folder(self, folder: str, uid: int, gid: int) -> None:
        """[metrics] textfile_dir: the service's, 0755 (node_exporter reads the file through a
        symbolic link of root's; folders.shared_folders refused any other existing folder)."""
        where = self.path(folder)
        if not where.exists():
            where.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            where.mkdir(mode=0o755)
            os.chmod(where, 0o755)  # whatever the umask
            os.chown(where, uid, gid)
            self._changed(f"created {folder} (owner {layout.SERVICE_USER}, 0755)")

    def _own_folder(self, folder: str, uid: int, gid: int) -> None:
        where = self.path(folder)
        if not where.exists():
            where.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            where.mkdir(mode=0o700)
            os.chown(where, uid, gid)
            self._changed(f"created {folder} (owner {layout.SERVICE_USER}, 0700)")
        elif where.stat().st_uid != uid:
            # A repository made by root (the manual steps of old, or a command run as root)
            # holds root-owned 0600 objects the service cannot read: the whole folder is the
            # service's (folders.py refuses system and source folders). Links are not followed.
            for parent, dirs, files in os.walk(where):
                for name in (*dirs, *files):
                    os.chown(os.path.join(parent, name), uid, gid, follow_symlinks=False)
            os.chown(where, uid, gid)
            os.chmod(where, 0o700)
            self._changed(f"gave {folder} and what it holds to {layout.SERVICE_USER} (0700)")

    def _passphrase(self, plan: credentials.PassphrasePlan, given: bytes | None) -> bool:
        if plan.how == "keep":
            self.say(f"The passphrase credential {layout.CREDENTIAL_FILES[layout.PASSPHRASE]} exists: kept.")
            return False
        if plan.how == "file":
            assert given is not None and plan.file is not None
            secret = given
        else:
            assert self.terminal is not None
            secret = credentials.generate_on_terminal(self.terminal)
        self._encrypt(layout.PASSPHRASE, secret)
        if plan.file:
            self.say(credentials.destroy_advice(plan.file))
        return True

    def _credential(self, name: str, secret: bytes, given_in: str | None) -> bool:
        target = self.path(layout.CREDENTIAL_FILES[name])
        if target.exists():
            current = self._run("systemd-creds", "decrypt", f"--name={name}", str(target), "-", quiet=True).stdout
            if current.rstrip(b"\r\n") == secret.rstrip(b"\r\n"):
                return False
        self._encrypt(name, secret)
        if given_in:
            self.say(credentials.destroy_advice(given_in))
        return True

    def _encrypt(self, name: str, secret: bytes) -> None:
        target = self.path(layout.CREDENTIAL_FILES[name])
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = target.with_name(f".{target.name}.new")
        self._run("systemd-creds", "encrypt", "--with-key=auto", f"--name={name}", "-", str(temporary),
                  input=secret + b"\n", quiet=True)
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
        self._changed(f"stored the credential {name} encrypted in {layout.CREDENTIAL_FILES[name]}")

    def _init(self, name: str) -> None:
        done = self.system.run([str(self.path(layout.WRAPPER)), "init", "--repo", name])
        if done.returncode == RepositoryExists.exit_code:  # `init` found one, which is what we want
            return
        output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
        if done.returncode != SUCCESS_EXIT_CODE:
            raise InstallError(f"`backupctl init --repo {name}` in the service's sandbox failed (exit "
                               f"{done.returncode}): {output.splitlines()[-1] if output else 'no output'}",
                               hint="fix what it names, then run the install again")
        self.say(output)
        self._changed(f"created the repository {name}")

    def _start(self, *, restart: bool, reload: bool) -> None:
        enabled = self.system.run(["systemctl", "is-enabled", layout.UNIT_NAME]).stdout.strip() == b"enabled"
        active = self.system.run(["systemctl", "is-active", layout.UNIT_NAME]).stdout.strip() == b"active"
        if not enabled:
            self._run("systemctl", "enable", layout.UNIT_NAME)
            self._changed(f"enabled {layout.UNIT_NAME}")
        if not active:
            self._run("systemctl", "start", layout.UNIT_NAME)
            self._changed(f"started {layout.UNIT_NAME} (the first start backs up at once)")
        elif restart:
            self._run("systemctl", "restart", layout.UNIT_NAME)
            self._changed(f"restarted {layout.UNIT_NAME} for its new files")
        elif reload:
            self._run("systemctl", "reload", layout.UNIT_NAME)
            self._changed(f"reloaded {layout.UNIT_NAME} for its new configuration")

    # ---- uninstall ----------------------------------------------------------------------

    def uninstall(self) -> None:
        if self.path(layout.UNIT).exists():
            self.system.run(["systemctl", "disable", "--now", layout.UNIT_NAME])
            self._changed(f"stopped and disabled {layout.UNIT_NAME}")
        for installed in (layout.UNIT, layout.PATHS_DROPIN, layout.CREDENTIALS_DROPIN, layout.POLKIT_RULE,
                          layout.APT_HOOK):
            self._remove(installed)
        wrapper_path = self.path(layout.WRAPPER)
        if wrapper_path.exists() and layout.WRAPPER_MARKER in wrapper_path.read_text(errors="replace"):
            self._remove(layout.WRAPPER)
        dropins = self.path(layout.DROPIN_DIR)
        if dropins.is_dir() and not any(dropins.iterdir()):
            dropins.rmdir()
        if self.changes:
            self._run("systemctl", "daemon-reload")
        self.say(f"backupctl install-service --uninstall: {len(self.changes)} change(s). Kept, with every "
                 f"repository: {layout.CONFIG_DIR}, {folders.STATE_DIR}, the credentials in {layout.CREDSTORE} "
                 f"(the passphrase among them), the user {layout.SERVICE_USER} ({layout.SYSUSERS}, "
                 f"{layout.TMPFILES}). A new install takes them up again.")

    # ---- files and commands -------------------------------------------------------------

    def _put(self, installed: str, content: str | bytes, mode: int, *, owner: tuple[int, int] = (0, 0),
             keep_previous: bool = False) -> bool:
        data = content.encode("utf-8") if isinstance(content, str) else content
        target = self.path(installed)
        if target.exists():
            status = target.stat()
            if target.read_bytes() == data and (status.st_mode & 0o7777) == mode:
                return False
            if keep_previous and target.read_bytes() != data:
                os.replace(target, target.with_name(target.name + ".previous"))
                self.say(f"The previous {installed} is kept as {installed}.previous.")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        temporary = target.with_name(f".{target.name}.new")
        temporary.write_bytes(data)
        os.chmod(temporary, mode)
        if os.geteuid() == 0:
            os.chown(temporary, *owner)
        os.replace(temporary, target)
        self._changed(f"wrote {installed}")
        return True

    def _put_or_remove(self, installed: str, content: str | None, mode: int) -> bool:
        if content is None:
            return self._remove(installed)
        return self._put(installed, content, mode)

    def _remove(self, installed: str) -> bool:
        target = self.path(installed)
        if not target.exists():
            return False
        target.unlink()
        self._changed(f"removed {installed}")
        return True

    def _run(self, *argv: str, input: bytes | None = None,
             quiet: bool = False) -> subprocess.CompletedProcess[bytes]:
        done = self.system.run(argv, input=input)
        if done.returncode != 0:
            reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise InstallError(f"`{' '.join(argv[:2])}` failed (exit {done.returncode})"
                               + (f": {reason[-1]}" if reason and not quiet else ""))
        return done

    def _changed(self, what: str) -> None:
        self.changes.append(what)
        self.say(f"  {what}")
