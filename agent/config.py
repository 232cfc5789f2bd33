"""Configuration: TOML -> frozen dataclasses, validated once, with errors a person can act on.

Where the file is: `--config`, else $BACKUPCTL_CONFIG, else /etc/backupctl/config.toml.
Every error names the file, the key and what was expected. Unknown keys are errors too:
a misspelt `exclude` that silently backs up everything is worse than a refusal.

The schema is documented key by key in config.example.toml (kept true by a test that
loads it).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload
from urllib.parse import urlparse

from agent import run_as
from agent.alerts import SECURITY_CHOICES, AlertSettings
from agent.engine.source.dumps import DATABASE_TYPES, DatabaseSettings
from agent.engine.source.hooks import HOOK_FAILURE_CHOICES, HookSettings
from agent.state.media import LABEL_PATTERN
from agent.engine.alarm import AlarmThresholds
from agent.engine.retention import RetentionPolicy
from agent.errors import ConfigError
from agent.state.files import read_private_file
from agent.state.layout import StateLayout
from agent.storage.options import (ADDRESSING_CHOICES, CHECKSUM_CHOICES, LOCK_MODES, VERIFY_CHOICES,
                                   S3Options)

DEFAULT_PATH = "/etc/backupctl/config.toml"
ENV_PATH = "BACKUPCTL_CONFIG"
ENV_PASSPHRASE = "BACKUPCTL_PASSPHRASE"
CIPHERS = ("xchacha20-poly1305", "aes-256-gcm")
COMPRESSIONS = ("zstd", "none")
REPORT_LANGUAGES = ("fr", "en")  # agent.reports.i18n has a catalog for each


@dataclass(frozen=True)
class AgentSettings:
    state_dir: str
    hostname: str | None = None
    practice_name: str | None = None  # shown on reports
    report_language: str = "fr"  # restore-test reports: "fr" or "en"
    report_dir: str | None = None  # default: state_dir/reports
    # Rule S5 (a copy before every installation): dpkg's log, which `compliance` reads, and
    # whether the apt hook takes its snapshot (agent/cli/preinstall_cmd.py).
    dpkg_log: str = "/var/log/dpkg.log"
    copy_before_installation: bool = True

    @property
    def reports(self) -> str:
        return self.report_dir or StateLayout(self.state_dir).reports()


# [source] databases when the key is absent: the usual files of a practice's software (what
# config.example.toml recommended); `databases = []` turns page-aligned blocks off.
DEFAULT_DATABASE_PATTERNS = ("*.db", "*.sqlite", "*.fdb")


@dataclass(frozen=True)
class SourceSettings:
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    one_file_system: bool = False
    databases: tuple[str, ...] = ()
    database_chunk_size: int = 32 * 1024


@dataclass(frozen=True)
class RepositorySettings:
    name: str
    url: str
    cipher: str = "xchacha20-poly1305"
    compression: str = "zstd"
    compression_level: int = 1
    s3: S3Options | None = None
    media: tuple[str, ...] = ()  # a set of rotated disks mounted at the file:// URL (agent/state/media.py)

    @property
    def mount(self) -> str:
        """The folder of a file:// URL (for media: where the disk of the day is mounted)."""
        return urlparse(self.url).path

    @property
    def zstd_level(self) -> int | None:
        return self.compression_level if self.compression == "zstd" else None


@dataclass(frozen=True)
class KeySettings:
    passphrase_file: str | None = None


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ScheduleSettings:
    """[schedule]: what the daemon runs, and when (times in the retention time zone)."""

    backup: tuple[str, int, int] = ("fri", 20, 0)  # weekly: day, hour, minute (rule S1)
    daily_backup: tuple[int, int] | None = None  # optional extra backups: hour, minute
    prune_after_backup: bool = True
    monthly_check: tuple[int, int, int] = (1, 3, 0)  # day of month, hour, minute
    # Quarterly restore test (rule S7): day of January, April, July and October, hour, minute.
    restore_test: tuple[int, int, int] = (2, 4, 0)
    restore_test_sample: int = 500  # files drawn at random; 0 restores every file
    read_data_period_days: int = 91  # every pack re-read within this period (0 = never)
    catch_up_days: int = 7  # a run missed longer ago than this is not caught up
    repositories: tuple[str, ...] = ()  # default: every configured repository


@dataclass(frozen=True)
class MetricsSettings:
    """[metrics]: Prometheus metrics for a fleet's monitoring (agent/daemon/metrics.py)."""

    textfile_dir: str | None = None  # node_exporter's --collector.textfile.directory
    listen: tuple[str, int] | None = None  # a loopback address and port serving /metrics

    @property
    def enabled(self) -> bool:
        return self.textfile_dir is not None or self.listen is not None


@dataclass(frozen=True)
class Config:
    path: str
    agent: AgentSettings
    source: SourceSettings
    repositories: tuple[RepositorySettings, ...]
    key: KeySettings
    retention: RetentionPolicy = RetentionPolicy()
    schedule: ScheduleSettings = ScheduleSettings()
    alerts: AlertSettings = AlertSettings()
    databases: tuple[DatabaseSettings, ...] = ()
    hooks: tuple[HookSettings, ...] = ()
    alarm: AlarmThresholds = AlarmThresholds()  # [alarm]: the ransomware alarm (agent/engine/alarm.py)
    metrics: MetricsSettings = MetricsSettings()

    def repository(self, name: str | None) -> RepositorySettings:
        if name is None:
            return self.repositories[0]
        for repo in self.repositories:
            if repo.name == name:
                return repo
        known = ", ".join(r.name for r in self.repositories)
        raise ConfigError(f"{self.path}: no repository named {name!r} (configured: {known})")


_T = TypeVar("_T")
_U = TypeVar("_U")


def _names(kind: type[Any] | tuple[type[Any], type[Any]]) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


class _Table:
    """One TOML table being validated; tracks which keys were used."""

    def __init__(self, file: str, name: str, data: object) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: [{name}] must be a table")
        self.file, self.name, self.data = file, name, data
        self.used: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self.file}: [{self.name}] {key}"

    # The value of `key`, checked to be of `kind` (a type, or one of two); without the key,
    # `default` (None unless given), or an error if `required`.
    @overload
    def get(self, key: str, kind: type[_T], *, default: _T, required: bool = ..., what: str = ...) -> _T: ...
    @overload
    def get(self, key: str, kind: type[_T], *, default: None = ..., required: Literal[True],
            what: str = ...) -> _T: ...
    @overload
    def get(self, key: str, kind: type[_T], *, default: None = ..., required: Literal[False] = ...,
            what: str = ...) -> _T | None: ...
    @overload
    def get(self, key: str, kind: tuple[type[_T], type[_U]], *, default: _T | _U, required: bool = ...,
            what: str = ...) -> _T | _U: ...
    @overload
    def get(self, key: str, kind: tuple[type[_T], type[_U]], *, default: None = ...,
            required: Literal[False] = ..., what: str = ...) -> _T | _U | None: ...

    def get(self, key: str, kind: type[Any] | tuple[type[Any], type[Any]], *, default: Any = None,
            required: bool = False, what: str = "") -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise ConfigError(f"{self._where(key)} is missing; expected {what or _names(kind)}")
            return default
        value = self.data[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"{self._where(key)} = {value!r}: expected {what or _names(kind)}")
        return value

    def string_list(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self.get(key, list, default=[], required=required, what="a list of strings")
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self._where(key)}: expected a list of strings")
        return tuple(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default=default, what=" or ".join(repr(c) for c in choices))
        if value not in choices:
            raise ConfigError(f"{self._where(key)} = {value!r}: expected one of {', '.join(choices)}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.file}: [{self.name}] has unknown key(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(sorted(self.used))}")


def config_path(explicit: str | None) -> str:
    return explicit or os.environ.get(ENV_PATH) or DEFAULT_PATH


def load(path: str) -> Config:
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist",
                          hint="pass --config FILE or set BACKUPCTL_CONFIG (see config.example.toml)") from None
    except PermissionError:
        raise ConfigError(f"configuration file {path} cannot be read (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(f"configuration file {path} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not UTF-8 text",
                          hint="save it as UTF-8 (accents included)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse(raw, path)


def parse(raw: dict[str, Any], path: str) -> Config:
    allowed = {"agent", "source", "repositories", "key", "retention", "schedule", "alerts", "databases", "hooks",
               "metrics", "alarm"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")

    agent_table = _Table(path, "agent", raw.get("agent", {}))
    state_dir = agent_table.get("state_dir", str, default="/var/lib/backupctl", what="an absolute path")
    if not os.path.isabs(state_dir):
        raise ConfigError(f"{path}: [agent] state_dir = {state_dir!r}: expected an absolute path")
    report_language = agent_table.get("report_language", str, default="fr", what='"fr" or "en"')
    if report_language not in REPORT_LANGUAGES:
        raise ConfigError(f'{path}: [agent] report_language = {report_language!r}: expected "fr" or "en"')
    report_dir = agent_table.get("report_dir", str, what="an absolute path")
    if report_dir is not None and not os.path.isabs(report_dir):
        raise ConfigError(f"{path}: [agent] report_dir = {report_dir!r}: expected an absolute path")
    agent = AgentSettings(state_dir=state_dir, hostname=agent_table.get("hostname", str),
                          practice_name=agent_table.get("practice_name", str), report_language=report_language,
                          report_dir=report_dir)
    dpkg_log = agent_table.get("dpkg_log", str, default=agent.dpkg_log, what="an absolute path")
    if not os.path.isabs(dpkg_log):
        raise ConfigError(f"{path}: [agent] dpkg_log = {dpkg_log!r}: expected an absolute path")
    agent = dataclasses.replace(agent, dpkg_log=dpkg_log, copy_before_installation=agent_table.get(
        "copy_before_installation", bool, default=agent.copy_before_installation))
    agent_table.done()

    if "source" not in raw:
        raise ConfigError(f"{path}: [source] is missing; expected paths = [\"/srv/cabinet\", ...]")
    source_table = _Table(path, "source", raw["source"])
    paths = source_table.string_list("paths", required=True)
    if not paths:
        raise ConfigError(f"{path}: [source] paths is empty; expected at least one folder to back up")
    for p in paths:
        if not os.path.isabs(p):
            raise ConfigError(f"{path}: [source] paths: {p!r} is not an absolute path")
    source = SourceSettings(
        paths=paths,
        exclude=source_table.string_list("exclude"),
        one_file_system=source_table.get("one_file_system", bool, default=False),
        databases=(source_table.string_list("databases") if "databases" in source_table.data
                   else DEFAULT_DATABASE_PATTERNS),
        database_chunk_size=source_table.get("database_chunk_size", int, default=32 * 1024,
                                             what="a power of two from 4096 to 1048576"),
    )
    size = source.database_chunk_size
    if not 4096 <= size <= 1 << 20 or size & (size - 1):
        raise ConfigError(f"{path}: [source] database_chunk_size = {size}: expected a power of two "
                          f"from 4096 to 1048576 (a multiple of the database's page size)")
    source_table.done()

    repos_raw = raw.get("repositories")
    if not isinstance(repos_raw, dict) or not repos_raw:
        raise ConfigError(f"{path}: no [repositories.NAME] table; expected at least one repository")
    repositories = tuple(_repository(path, name, table) for name, table in repos_raw.items())

    key_table = _Table(path, "key", raw.get("key", {}))
    key = KeySettings(passphrase_file=key_table.get("passphrase_file", str))
    key_table.done()
    schedule = _schedule(path, raw.get("schedule", {}), {r.name for r in repositories})
    return Config(path=path, agent=agent, source=source, repositories=repositories, key=key,
                  retention=_retention(path, raw.get("retention", {})), schedule=schedule,
                  alerts=_alerts(path, raw.get("alerts", {})), databases=_databases(path, raw.get("databases", [])),
                  hooks=_hooks(path, raw.get("hooks", [])), alarm=_alarm(path, raw.get("alarm", {})),
                  metrics=_metrics(path, raw.get("metrics", {})))


def _array_of_tables(path: str, key: str, data: object) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise ConfigError(f"{path}: {key} must be written as [[{key}]] tables")
    return data


def _databases(path: str, data: object) -> tuple[DatabaseSettings, ...]:
    out: list[DatabaseSettings] = []
    for number, raw in enumerate(_array_of_tables(path, "databases", data), start=1):
        table = _Table(path, f"databases #{number}", raw)
        name = table.get("name", str, required=True, what="a short name, such as \"cabinet\"")
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
            raise ConfigError(f"{path}: [[databases]] name = {name!r}: letters, digits, - _ . only")
        kind = table.choice("type", DATABASE_TYPES, "")
        settings = DatabaseSettings(
            name=name, type=kind, database=table.get("database", str), host=table.get("host", str),
            port=table.get("port", int, what="a port number"), user=table.get("user", str),
            password_file=_absolute_path(path, table, name, "password_file"),
            options_file=_absolute_path(path, table, name, "options_file"),
            path=_absolute_path(path, table, name, "path"),
            timeout=table.get("timeout", int, default=3600, what="seconds, 10 to 86400"),
            restore_test=_restore_test_load(path, name, table.get("restore_test", (str, bool), default="throwaway",
                                                                    what=RESTORE_TEST_WHAT)))
        table.done()
        if kind == "sqlite" and not settings.path:
            raise ConfigError(f"{path}: [[databases]] {name}: type \"sqlite\" needs path = \"/.../base.sqlite\"")
        if kind != "sqlite" and not settings.database:
            raise ConfigError(f"{path}: [[databases]] {name}: type \"{kind}\" needs database = \"...\"")
        if settings.port is not None and not 1 <= settings.port <= 65535:
            raise ConfigError(f"{path}: [[databases]] {name}: port = {settings.port}: expected 1 to 65535")
        if not 10 <= settings.timeout <= 86400:
            raise ConfigError(f"{path}: [[databases]] {name}: timeout = {settings.timeout}: expected 10 to 86400")
        if settings.restore_test == "production" and kind != "postgresql":
            raise ConfigError(f"{path}: [[databases]] {name}: restore_test = \"production\" is for PostgreSQL only; "
                              f"use \"throwaway\" or \"none\"")
        if name in {d.name for d in out if d.type == kind}:
            raise ConfigError(f"{path}: [[databases]] {name}: two {kind} databases have this name")
        out.append(settings)
    return tuple(out)


def _absolute_path(path: str, table: _Table, name: str, key: str) -> str | None:
    value = table.get(key, str, what="an absolute path")
    if value is not None and not os.path.isabs(value):
        raise ConfigError(f"{path}: [[databases]] {name}: {key} = {value!r}: expected an absolute path")
    return value


RESTORE_TEST_WHAT = '"throwaway" (the default), "production" or "none"'


def _restore_test_load(path: str, name: str, value: str | bool) -> str:
    """Where the restore test loads the dump. true/false, from before the throwaway servers,
    read as "throwaway"/"none": true used to mean the production server, which is now opt-in."""
    if isinstance(value, bool):
        return "throwaway" if value else "none"
    # Here, not at the top: the restore test's module (throwaway servers, subprocesses) is
    # not needed by every command that reads the configuration.
    from agent.engine.dump_check import RESTORE_TEST_CHOICES

    if value not in RESTORE_TEST_CHOICES:
        raise ConfigError(f"{path}: [[databases]] {name}: restore_test = {value!r}: expected {RESTORE_TEST_WHAT}")
    return value


def _hooks(path: str, data: object) -> tuple[HookSettings, ...]:
    out = []
    for number, raw in enumerate(_array_of_tables(path, "hooks", data), start=1):
        table = _Table(path, f"hooks #{number}", raw)
        name = table.get("name", str, default=f"hook {number}")
        before, after = table.string_list("before"), table.string_list("after")
        if not before and not after:
            raise ConfigError(f"{path}: [[hooks]] {name}: give before = [...] and/or after = [...] "
                              f"(a command and its arguments, no shell)")
        environment = table.get("environment", dict, default={}, what="a table of NAME = \"value\"")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in environment.items()):
            raise ConfigError(f"{path}: [[hooks]] {name}: environment values must be strings")
        timeout = table.get("timeout", int, default=300, what="seconds, 1 to 86400")
        if not 1 <= timeout <= 86400:
            raise ConfigError(f"{path}: [[hooks]] {name}: timeout = {timeout}: expected 1 to 86400")
        out.append(HookSettings(name=name, before=before, after=after, timeout=timeout,
                                on_failure=table.choice("on_failure", HOOK_FAILURE_CHOICES, "abort"),
                                environment=tuple(sorted(environment.items()))))
        table.done()
    return tuple(out)


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _alerts(path: str, data: object) -> AlertSettings:
    table = _Table(path, "alerts", data)
    where = f"{path}: [alerts]"
    defaults = AlertSettings()
    email_to = table.string_list("email_to")
    if any("@" not in address for address in email_to):
        raise ConfigError(f"{where} email_to: expected e-mail addresses")
    host = table.get("smtp_host", str, default="", what="a host name")
    if email_to and not host:
        raise ConfigError(f"{where} smtp_host is missing: e-mails need the provider's SMTP server")
    port = table.get("smtp_port", int, default=defaults.smtp_port, what="a port number")
    if not 1 <= port <= 65535:
        raise ConfigError(f"{where} smtp_port = {port}: expected 1 to 65535")
    security = table.choice("smtp_security", SECURITY_CHOICES, defaults.smtp_security)
    if security == "none" and host and host not in _LOOPBACK:
        raise ConfigError(f"{where} smtp_security = \"none\" sends the alert in clear over the network",
                          hint='use "starttls" (port 587) or "tls" (port 465); "none" is for a relay on this machine')
    files = {}
    for key in ("smtp_password_file", "smtp_ca_file"):
        value = table.get(key, str)
        if value is not None and not os.path.isabs(value):
            raise ConfigError(f"{where} {key} = {value!r}: expected an absolute path")
        files[key] = value
    webhook = table.get("webhook_url", str, what="an https:// URL")
    if webhook is not None and not (webhook.startswith("https://") or
                                    urlparse(webhook).hostname in _LOOPBACK and webhook.startswith("http://")):
        raise ConfigError(f"{where} webhook_url: expected an https:// URL (http:// only on this machine)")
    timeout = table.get("timeout", (int, float), default=defaults.timeout, what="seconds, 1 to 300")
    if not 1 <= timeout <= 300:
        raise ConfigError(f"{where} timeout = {timeout}: expected 1 to 300 seconds")
    settings = AlertSettings(email_to=email_to, email_from=table.get("email_from", str, default=""),
                             smtp_host=host, smtp_port=port, smtp_security=security,
                             smtp_user=table.get("smtp_user", str), webhook_url=webhook, timeout=float(timeout),
                             attach_report=table.get("attach_report", bool, default=True, what="true or false"),
                             **files)
    table.done()
    return settings


def _clock_time(where: str, text: str) -> tuple[int, int]:
    hour, _, minute = text.partition(":")
    if not (hour.isdigit() and minute.isdigit() and 0 <= int(hour) <= 23 and 0 <= int(minute) <= 59
            and len(minute) == 2):
        raise ConfigError(f"{where} = {text!r}: expected a time such as \"20:00\"")
    return int(hour), int(minute)


def _schedule(path: str, data: object, repository_names: set[str]) -> ScheduleSettings:
    table = _Table(path, "schedule", data)
    defaults = ScheduleSettings()
    where = f"{path}: [schedule]"
    backup = table.get("backup", str, default="fri 20:00", what='a day and a time such as "fri 20:00"')
    day, _, at = backup.strip().partition(" ")
    if day.lower() not in WEEKDAYS:
        raise ConfigError(f"{where} backup = {backup!r}: expected a day ({', '.join(WEEKDAYS)}) and a time, "
                          f"such as \"fri 20:00\"")
    weekly = (day.lower(), *_clock_time(f"{where} backup", at.strip()))
    daily_text = table.get("daily_backup", str, what='a time such as "12:30"')
    daily = _clock_time(f"{where} daily_backup", daily_text) if daily_text is not None else None
    check = table.get("monthly_check", str, default="1 03:00", what='a day of the month and a time, "1 03:00"')
    month_day, _, at = check.strip().partition(" ")
    if not (month_day.isdigit() and 1 <= int(month_day) <= 28):
        raise ConfigError(f"{where} monthly_check = {check!r}: expected a day from 1 to 28 and a time, "
                          f"such as \"1 03:00\"")
    monthly = (int(month_day), *_clock_time(f"{where} monthly_check", at.strip()))
    test = table.get("restore_test", str, default="2 04:00",
                     what='a day of the first month of each quarter and a time, "2 04:00"')
    test_day, _, at = test.strip().partition(" ")
    if not (test_day.isdigit() and 1 <= int(test_day) <= 28):
        raise ConfigError(f"{where} restore_test = {test!r}: expected a day from 1 to 28 (of January, April, "
                          f"July and October) and a time, such as \"2 04:00\"")
    quarterly = (int(test_day), *_clock_time(f"{where} restore_test", at.strip()))
    sample = table.get("restore_test_sample", int, default=defaults.restore_test_sample,
                       what="a number of files (0 = all)")
    if not 0 <= sample <= 1_000_000:
        raise ConfigError(f"{where} restore_test_sample = {sample}: expected 0 (all files) to 1000000")
    period = table.get("read_data_period_days", int, default=defaults.read_data_period_days,
                       what="a number of days from 0 to 366")
    if not 0 <= period <= 366:
        raise ConfigError(f"{where} read_data_period_days = {period}: expected 0 to 366")
    catch_up = table.get("catch_up_days", int, default=defaults.catch_up_days, what="a number of days from 1 to 31")
    if not 1 <= catch_up <= 31:
        raise ConfigError(f"{where} catch_up_days = {catch_up}: expected 1 to 31")
    names = table.string_list("repositories")
    unknown = sorted(set(names) - repository_names)
    if unknown:
        raise ConfigError(f"{where} repositories: {unknown[0]!r} is not a configured repository "
                          f"({', '.join(sorted(repository_names))})")
    prune = table.get("prune_after_backup", bool, default=True)
    table.done()
    return ScheduleSettings(backup=weekly, daily_backup=daily, prune_after_backup=prune, monthly_check=monthly,
                            restore_test=quarterly, restore_test_sample=sample,
                            read_data_period_days=period, catch_up_days=catch_up, repositories=names)


def _retention(path: str, data: object) -> RetentionPolicy:
    """[retention]: calendar windows (agent/engine/retention.py); the memento's defaults."""
    table = _Table(path, "retention", data)
    defaults = RetentionPolicy()
    counts = {}
    for tier, high in (("daily", 3660), ("weekly", 520), ("monthly", 1200), ("yearly", 100)):
        value = table.get(tier, int, default=getattr(defaults, tier), what=f"a whole number from 0 to {high}")
        if not 0 <= value <= high:
            raise ConfigError(f"{path}: [retention] {tier} = {value}: expected 0 to {high}")
        counts[tier] = value
    if counts["weekly"] < 4 or counts["monthly"] < 12 or counts["yearly"] < 1:
        # The memento's minimum (docs/COMPLIANCE.md S1, S3, S4): refusing it here beats a compliance
        # report that discovers months later that the monthly snapshots were pruned.
        raise ConfigError(f"{path}: [retention] weekly = {counts['weekly']}, monthly = {counts['monthly']}, "
                          f"yearly = {counts['yearly']}: the memento asks for at least weekly = 4, "
                          f"monthly = 12 and yearly = 1",
                          hint="raise the values, or leave them out to get weekly = 4, monthly = 12, yearly = 20")
    zone = table.get("timezone", str, default=defaults.timezone, what='a time zone name such as "Europe/Paris"')
    keep_tags = table.string_list("keep_tags")
    table.done()
    try:
        return RetentionPolicy(**counts, timezone=zone, keep_tags=keep_tags)
    except ValueError:  # the counts were checked above: only the zone is left to refuse
        raise ConfigError(f"{path}: [retention] timezone = {zone!r}: not a known time zone",
                          hint='use a name such as "Europe/Paris" (see /usr/share/zoneinfo)') from None


def _repository(path: str, name: str, data: object) -> RepositorySettings:
    table = _Table(path, f"repositories.{name}", data)
    url = table.get("url", str, required=True,
                    what='a URL such as "file:///mnt/backup/repo" or "s3://bucket/prefix"')
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise ConfigError(f"{path}: [repositories.{name}] url = {url!r}: expected file:///absolute/path")
        s3 = None
    elif parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"{path}: [repositories.{name}] url = {url!r}: expected s3://bucket/prefix")
        s3 = _s3_options(table, bucket=parsed.netloc, prefix=parsed.path.strip("/"))
    else:
        raise ConfigError(f"{path}: [repositories.{name}] url = {url!r}: expected a file:/// or s3:// URL")
    cipher = table.choice("cipher", CIPHERS, "xchacha20-poly1305")
    compression = table.choice("compression", COMPRESSIONS, "zstd")
    level = table.get("compression_level", int, default=1, what="an integer from 1 to 19")
    if not 1 <= level <= 19:
        raise ConfigError(f"{path}: [repositories.{name}] compression_level = {level}: expected 1 to 19")
    if s3 is None:
        s3_only = sorted(set(table.data) & set(_S3_KEYS))
        if s3_only:
            raise ConfigError(f"{path}: [repositories.{name}] {', '.join(s3_only)}: only for s3:// repositories")
    media = table.string_list("media")
    if media:
        where = f"{path}: [repositories.{name}] media"
        if s3 is not None:
            raise ConfigError(f"{where}: rotated disks need a file:/// URL (where the disk is mounted)")
        if len(media) < 2 or len(set(media)) != len(media):
            raise ConfigError(f"{where}: expected at least two different labels (rule S2: a different disk "
                              f"each week, e.g. four)")
        bad = [label for label in media if not LABEL_PATTERN.match(label)]
        if bad:
            raise ConfigError(f"{where}: {bad[0]!r} is not a label (letters, digits, '.', '_', '-'; 32 at most)")
    table.done()
    return RepositorySettings(name=name, url=url, cipher=cipher, compression=compression,
                              compression_level=level, s3=s3, media=media)


_S3_KEYS = ("endpoint", "region", "addressing", "profile", "credentials_file", "ca_bundle", "connect_timeout",
            "read_timeout", "allow_insecure", "request_checksum_calculation", "response_checksum_validation",
            "object_lock", "lock_days", "max_concurrency", "bandwidth_limit_kib", "verify_uploads",
            "retry_attempts")


def _s3_options(table: _Table, *, bucket: str, prefix: str) -> S3Options:
    defaults = S3Options(bucket=bucket)

    def within(key: str, value: float, low: float, high: float) -> None:
        if not low <= value <= high:
            raise ConfigError(f"{table.file}: [{table.name}] {key} = {value}: expected {low} to {high}")

    def number(key: str, low: int, high: int) -> int:
        default: int = getattr(defaults, key)
        value = table.get(key, int, default=default, what=f"a number from {low} to {high}")
        within(key, value, low, high)
        return value

    def seconds(key: str, low: int, high: int) -> float:  # a whole number or not
        default: float = getattr(defaults, key)
        value = table.get(key, (int, float), default=default, what=f"a number from {low} to {high}")
        within(key, value, low, high)
        return value

    def optional_path(key: str) -> str | None:
        value = table.get(key, str)
        if value is not None and not os.path.isabs(value):
            raise ConfigError(f"{table.file}: [{table.name}] {key} = {value!r}: expected an absolute path")
        return value

    endpoint = table.get("endpoint", str, what='a URL such as "https://s3.gra.io.cloud.ovh.net"')
    return S3Options(
        bucket=bucket,
        prefix=prefix,
        endpoint=endpoint,
        region=table.get("region", str),
        addressing=table.choice("addressing", ADDRESSING_CHOICES, defaults.addressing),
        profile=table.get("profile", str),
        credentials_file=optional_path("credentials_file"),
        ca_bundle=optional_path("ca_bundle"),
        connect_timeout=seconds("connect_timeout", 1, 600),
        read_timeout=seconds("read_timeout", 1, 3600),
        allow_insecure=table.get("allow_insecure", bool, default=False),
        request_checksum_calculation=table.choice("request_checksum_calculation", CHECKSUM_CHOICES,
                                                  defaults.request_checksum_calculation),
        response_checksum_validation=table.choice("response_checksum_validation", CHECKSUM_CHOICES,
                                                  defaults.response_checksum_validation),
        object_lock=table.choice("object_lock", LOCK_MODES, defaults.object_lock),
        lock_days=number("lock_days", 1, 36500),
        max_concurrency=number("max_concurrency", 1, 64),
        bandwidth_limit_kib=number("bandwidth_limit_kib", 0, 10_000_000),
        verify_uploads=table.choice("verify_uploads", VERIFY_CHOICES, defaults.verify_uploads),
        retry_attempts=number("retry_attempts", 1, 20),
    )


# BACKUPCTL_PASSPHRASE, taken out of os.environ at its first reading (so that no child process
# started later can inherit it, whatever environment it is given), kept here for the next ones.
_passphrase_from_environment: bytes | None = None


def read_passphrase(config: Config) -> bytes | None:
    """The passphrase alone (see read_passphrase_and_source)."""
    found = read_passphrase_and_source(config)
    return found[0] if found else None


def read_passphrase_and_source(config: Config) -> tuple[bytes, str] | None:
    """The passphrase and where it came from, in words a person can act on (an error about
    a passphrase that opens nothing names that source: the file to fix is the one used).
    BACKUPCTL_PASSPHRASE wins; then a systemd credential named "passphrase"
    ($CREDENTIALS_DIRECTORY/passphrase, see systemd/backupctl.service); else the
    passphrase file, which must be private (0600)."""
    global _passphrase_from_environment
    from_env = os.environ.pop(ENV_PASSPHRASE, None)
    if from_env:
        # The variable's own bytes: os.environ decoded them with surrogateescape, so a
        # passphrase that is not UTF-8 comes back as it was typed, never as an error quoting it.
        _passphrase_from_environment = os.fsencode(from_env)
    if _passphrase_from_environment is not None:
        return _passphrase_from_environment, f"the environment variable {ENV_PASSPHRASE}"
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and os.path.isfile(os.path.join(credentials, "passphrase")):
        path = os.path.join(credentials, "passphrase")
        run_as.check_readable(path, "the systemd credential")
        with open(path, "rb") as handle:
            secret = handle.read().rstrip(b"\r\n")
        if not secret:
            raise ConfigError("the systemd credential 'passphrase' is empty")
        return secret, "the systemd credential 'passphrase' (LoadCredential= of the service)"
    file = config.key.passphrase_file
    if not file:
        return None
    secret = read_private_file(file, where=f"{config.path}: [key] passphrase_file ")
    return secret, f"the passphrase file {file} ([key] passphrase_file)"


def _alarm(path: str, data: object) -> AlarmThresholds:
    """[alarm]: the ransomware alarm's thresholds (agent/engine/alarm.py; defaults measured
    in docs/RELIABILITY.md, "Ransomware alarm") and the lock extension while it is open."""
    table = _Table(path, "alarm", data)
    defaults = AlarmThresholds()
    shares: dict[str, float] = {}
    for key in ("changed_share", "changed_share_alone", "lost_compression_share"):
        shares[key] = float(table.get(key, (float, int), default=getattr(defaults, key), what="a share from 0 to 1"))
    values: dict[str, int] = {}
    for key in ("lost_compression", "renamed", "note_folders", "lock_days", "changed_share_alone_min_files"):
        values[key] = table.get(key, int, default=getattr(defaults, key), what="a whole number >= 1")
    values["alert_folder_depth"] = table.get("alert_folder_depth", int, default=defaults.alert_folder_depth,
                                             what="0, 1 or 2")
    enabled = table.get("enabled", bool, default=True)
    table.done()
    try:
        return AlarmThresholds(enabled=enabled, changed_share=shares["changed_share"],
                               changed_share_alone=shares["changed_share_alone"],
                               lost_compression_share=shares["lost_compression_share"], **values)
    except ValueError as exc:
        raise ConfigError(f"{path}: [alarm] {exc}") from None


def _metrics(path: str, data: object) -> MetricsSettings:
    """[metrics] textfile_dir (absolute) and listen ("127.0.0.1:9923": loopback only, the
    metrics name repositories and the practice's state; a fleet's Prometheus reaches them
    through node_exporter or a tunnel, never an open port of this server)."""
    table = _Table(path, "metrics", data)
    where = f"{path}: [metrics]"
    textfile_dir = table.get("textfile_dir", str, what="an absolute path")
    if textfile_dir is not None and not os.path.isabs(textfile_dir):
        raise ConfigError(f"{where} textfile_dir = {textfile_dir!r}: expected an absolute path",
                          hint="a folder of the service's own, e.g. /var/lib/backupctl-metrics "
                               "(docs/INSTALL.md, \"Monitoring a fleet\")")
    text = table.get("listen", str, what='a loopback address and port, e.g. "127.0.0.1:9923"')
    listen = None
    if text is not None:
        host, _, port = text.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(f"{where} listen = {text!r}: expected a loopback address and port, "
                              f"e.g. \"127.0.0.1:9923\" or \"[::1]:9923\"",
                              hint="the metrics are served on this machine only: scrape them through "
                                   "node_exporter (textfile_dir) or an SSH tunnel")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"{where} listen = {text!r}: expected a port from 1 to 65535 after the address")
        listen = (host, int(port))
    table.done()
    return MetricsSettings(textfile_dir=textfile_dir, listen=listen)
