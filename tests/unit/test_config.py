"""agent.config: the TOML contract, error messages a person can act on, the passphrase file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import config
from agent.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """\
[agent]
state_dir = "/var/lib/backupctl"
[source]
paths = ["/srv/cabinet"]
exclude = ["*.tmp"]
[repositories.main]
url = "file:///mnt/backup/repo"
cipher = "xchacha20-poly1305"
compression = "zstd"
[key]
passphrase_file = "/etc/backupctl/passphrase"
"""


def _write(tmp_path: Path, text: str, name: str = "config.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _error(tmp_path: Path, text: str) -> tuple[str, str]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return path, str(info.value)


# ---- the contract ------------------------------------------------------------------------


def test_minimal_contract_parses(tmp_path):
    path = _write(tmp_path, MINIMAL)
    cfg = config.load(path)
    assert cfg.path == path
    assert cfg.agent.state_dir == "/var/lib/backupctl"
    assert cfg.agent.hostname is None
    assert cfg.source.paths == ("/srv/cabinet",)
    assert cfg.source.exclude == ("*.tmp",)
    assert cfg.source.one_file_system is False
    [repo] = cfg.repositories
    assert (repo.name, repo.url, repo.cipher, repo.compression) == (
        "main", "file:///mnt/backup/repo", "xchacha20-poly1305", "zstd")
    assert repo.compression_level == 1
    assert repo.zstd_level == 1
    assert cfg.key.passphrase_file == "/etc/backupctl/passphrase"
    assert cfg.repository(None) is repo
    assert cfg.repository("main") is repo


def test_defaults_when_optional_keys_are_left_out(tmp_path):
    cfg = config.load(_write(tmp_path, '[source]\npaths = ["/srv"]\n[repositories.r]\nurl = "file:///b"\n'))
    assert cfg.agent.state_dir == "/var/lib/backupctl"
    assert cfg.source.exclude == ()
    assert cfg.repositories[0].cipher == "xchacha20-poly1305"
    assert cfg.repositories[0].compression == "zstd"
    assert cfg.key.passphrase_file is None


def test_full_file_with_two_repositories(tmp_path):
    text = MINIMAL.replace('[key]', '''\
compression_level = 19
[repositories.usb]
url = "file:///media/usb/repo"
cipher = "aes-256-gcm"
compression = "none"
[key]''').replace('[source]', '[source]\none_file_system = true').replace(
        'state_dir = "/var/lib/backupctl"', 'state_dir = "/var/lib/backupctl"\nhostname = "cabinet-serveur"')
    cfg = config.load(_write(tmp_path, text))
    assert cfg.agent.hostname == "cabinet-serveur"
    assert cfg.source.one_file_system is True
    assert [r.name for r in cfg.repositories] == ["main", "usb"]
    assert cfg.repository("main").compression_level == 19
    usb = cfg.repository("usb")
    assert (usb.cipher, usb.compression, usb.zstd_level) == ("aes-256-gcm", "none", None)
    with pytest.raises(ConfigError, match="nas"):
        cfg.repository("nas")


def test_s3_repository_parses_with_its_options(tmp_path):
    text = MINIMAL.replace("file:///mnt/backup/repo", "s3://cabinet-backups/dupont/repo").replace(
        'compression = "zstd"', 'compression = "zstd"\nendpoint = "https://s3.gra.io.cloud.ovh.net"\n'
                                'object_lock = "compliance"\nlock_days = 90')
    [repo] = config.load(_write(tmp_path, text)).repositories
    assert repo.s3 is not None
    assert (repo.s3.bucket, repo.s3.prefix) == ("cabinet-backups", "dupont/repo")
    assert repo.s3.endpoint == "https://s3.gra.io.cloud.ovh.net"
    assert (repo.s3.object_lock, repo.s3.lock_days) == ("compliance", 90)


def test_file_repository_has_no_s3_options(tmp_path):
    [repo] = config.load(_write(tmp_path, MINIMAL)).repositories
    assert repo.s3 is None


def test_retention_defaults_are_the_memento(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    policy = config.load(str(path)).retention
    assert (policy.daily, policy.weekly, policy.monthly, policy.yearly) == (0, 4, 12, 20)
    assert policy.timezone == "Europe/Paris" and policy.keep_tags == ()
    path.write_text(MINIMAL + '[retention]\ndaily = 7\nyearly = 30\ntimezone = "UTC"\nkeep_tags = ["garder"]\n')
    policy = config.load(str(path)).retention
    assert (policy.daily, policy.weekly, policy.monthly, policy.yearly) == (7, 4, 12, 30)
    assert policy.timezone == "UTC" and policy.keep_tags == ("garder",)


def test_report_settings_and_their_defaults(tmp_path):
    plain = config.load(_write(tmp_path, MINIMAL))
    assert plain.agent.report_language == "fr" and plain.agent.practice_name is None
    assert plain.agent.reports == "/var/lib/backupctl/reports" and plain.alerts.attach_report is True
    custom = config.load(_write(tmp_path, MINIMAL.replace("[agent]\n", '[agent]\nreport_language = "en"\n'
                                                          'practice_name = "Cabinet"\nreport_dir = "/srv/rapports"\n')))
    assert (custom.agent.report_language, custom.agent.practice_name, custom.agent.reports) == (
        "en", "Cabinet", "/srv/rapports")


def test_config_example_at_the_repository_root_loads():
    """config.example.toml documents every key; it must stay a valid configuration."""
    example = REPO_ROOT / "config.example.toml"
    cfg = config.load(str(example))
    assert cfg.repositories
    assert all(os.path.isabs(p) for p in cfg.source.paths)


# ---- every error names the file and the key -------------------------------------------------


@pytest.mark.parametrize(
    "text, key",
    [
        pytest.param(MINIMAL.replace('[source]\npaths = ["/srv/cabinet"]\nexclude = ["*.tmp"]\n', ""),
                     "[source]", id="missing-source"),
        pytest.param(MINIMAL.replace('paths = ["/srv/cabinet"]', 'paths = "/srv/cabinet"'), "paths",
                     id="paths-not-a-list"),
        pytest.param(MINIMAL.replace('paths = ["/srv/cabinet"]', "paths = [1, 2]"), "paths",
                     id="paths-not-strings"),
        pytest.param(MINIMAL.replace('paths = ["/srv/cabinet"]', "paths = []"), "paths", id="paths-empty"),
        pytest.param(MINIMAL.replace('paths = ["/srv/cabinet"]\n', ""), "paths", id="paths-missing"),
        pytest.param(MINIMAL.replace('paths = ["/srv/cabinet"]', 'paths = ["srv/cabinet"]'), "srv/cabinet",
                     id="relative-path"),
        pytest.param(MINIMAL.replace("exclude =", "exlude ="), "exlude", id="typo-exlude"),
        pytest.param(MINIMAL.replace('exclude = ["*.tmp"]', 'exclude = "*.tmp"'), "exclude", id="exclude-str"),
        pytest.param(MINIMAL.replace("[key]", "[sources]\npaths = []\n[key]"), "sources", id="unknown-section"),
        pytest.param(MINIMAL.replace('cipher = "xchacha20-poly1305"', 'cipher = "aes-128-cbc"'), "cipher",
                     id="bad-cipher"),
        pytest.param(MINIMAL.replace('cipher = "xchacha20-poly1305"', "cipher = 1"), "cipher", id="cipher-int"),
        pytest.param(MINIMAL.replace('compression = "zstd"', 'compression = "gzip"'), "compression",
                     id="bad-compression"),
        pytest.param(MINIMAL.replace('compression = "zstd"', 'compression = "zstd"\ncompression_level = 20'),
                     "compression_level", id="level-too-high"),
        pytest.param(MINIMAL.replace('compression = "zstd"', 'compression = "zstd"\ncompression_level = 0'),
                     "compression_level", id="level-zero"),
        pytest.param(MINIMAL.replace('compression = "zstd"', 'compression = "zstd"\ncompression_level = true'),
                     "compression_level", id="level-bool"),
        pytest.param(MINIMAL.replace('compression = "zstd"', 'compression = "zstd"\ncompression_level = "3"'),
                     "compression_level", id="level-str"),
        pytest.param(MINIMAL.replace('compression = "zstd"', 'compression = "zstd"\nmedia = ["A"]'), "media",
                     id="media-single"),
        pytest.param(MINIMAL.replace('compression = "zstd"', 'compression = "zstd"\nmedia = ["A", "A"]'), "media",
                     id="media-duplicate"),
        pytest.param(MINIMAL.replace('compression = "zstd"', 'compression = "zstd"\nmedia = ["A", "B C"]'),
                     "media", id="media-bad-label"),
        pytest.param(MINIMAL.replace("file:///mnt/backup/repo", "s3://bucket/repo").replace(
            'compression = "zstd"', 'compression = "zstd"\nmedia = ["A", "B"]'), "media", id="media-on-s3"),
        pytest.param(MINIMAL + '[alerts]\nemail_to = ["docteur"]\nsmtp_host = "smtp.x"\n', "email_to",
                     id="alerts-bad-address"),
        pytest.param(MINIMAL + '[alerts]\nemail_to = ["a@b.fr"]\n', "smtp_host", id="alerts-no-host"),
        pytest.param(MINIMAL + '[alerts]\nemail_to = ["a@b.fr"]\nsmtp_host = "smtp.ovh.net"\nsmtp_security = "none"\n',
                     "smtp_security", id="alerts-clear-text-off-host"),
        pytest.param(MINIMAL + '[alerts]\nwebhook_url = "http://hooks.example.org/x"\n', "webhook_url",
                     id="alerts-http-webhook"),
        pytest.param(MINIMAL + '[alerts]\nsmtp_password_file = "pw"\n', "smtp_password_file",
                     id="alerts-relative-path"),
        pytest.param(MINIMAL + '[alerts]\nsmtp_prot = 25\n', "smtp_prot", id="alerts-typo"),
        pytest.param(MINIMAL + "[retention]\nweekly = 2\n", "weekly", id="retention-below-memento"),
        pytest.param(MINIMAL + "[retention]\nmonthly = 6\n", "monthly", id="retention-monthly-below-memento"),
        pytest.param(MINIMAL + "[retention]\nyearly = 0\n", "yearly", id="retention-no-yearly"),
        pytest.param(MINIMAL + "[retention]\nweekly = -1\n", "weekly", id="retention-negative"),
        pytest.param(MINIMAL + '[retention]\nweekly = "4"\n', "weekly", id="retention-str"),
        pytest.param(MINIMAL + "[retention]\nyearly = 1000\n", "yearly", id="retention-too-high"),
        pytest.param(MINIMAL + '[retention]\ntimezone = "Mars/Olympus"\n', "timezone", id="retention-bad-zone"),
        pytest.param(MINIMAL + '[retention]\ntimezone = "../../etc/passwd"\n', "timezone",
                     id="retention-zone-path"),
        pytest.param(MINIMAL + "[retention]\nweekley = 4\n", "weekley", id="retention-typo"),
        pytest.param(MINIMAL + "[retention]\nkeep_tags = \"keep\"\n", "keep_tags", id="retention-tags-str"),
        pytest.param(MINIMAL.replace("file:///mnt/backup/repo", "s3:///repo"), "url", id="s3-url-no-bucket"),
        pytest.param(MINIMAL.replace("file:///mnt/backup/repo", "file:mnt/backup/repo"), "url",
                     id="file-url-relative"),
        pytest.param(MINIMAL.replace('compression = "zstd"', 'compression = "zstd"\nendpoint = "https://s3.x"'),
                     "endpoint", id="s3-key-on-file-repository"),
        pytest.param(MINIMAL.replace("file:///mnt/backup/repo", "s3://bucket/repo").replace(
            'compression = "zstd"', 'compression = "zstd"\nmax_concurrency = 0'), "max_concurrency",
            id="s3-option-out-of-range"),
        pytest.param(MINIMAL.replace("file:///mnt/backup/repo", "s3://bucket/repo").replace(
            'compression = "zstd"', 'compression = "zstd"\nobject_lock = "forever"'), "object_lock",
            id="s3-option-bad-choice"),
        pytest.param(MINIMAL.replace("file:///mnt/backup/repo", "s3://bucket/repo").replace(
            'compression = "zstd"', 'compression = "zstd"\ncredentials_file = "creds"'), "credentials_file",
            id="s3-option-relative-path"),
        pytest.param(MINIMAL.replace("file:///mnt/backup/repo", "/mnt/backup/repo"), "url", id="bare-path"),
        pytest.param(MINIMAL.replace("file:///mnt/backup/repo", "sftp://nas/backup"), "url", id="sftp-url"),
        pytest.param(MINIMAL.replace('url = "file:///mnt/backup/repo"\n', ""), "url", id="url-missing"),
        pytest.param(MINIMAL.replace("file:///mnt/backup/repo", "file://mnt/backup/repo"), "url",
                     id="file-url-two-slashes"),
        pytest.param(MINIMAL.replace('"/var/lib/backupctl"', '"var/lib/backupctl"'), "state_dir",
                     id="state_dir-relative"),
        pytest.param(MINIMAL.replace('"/var/lib/backupctl"', "42"), "state_dir", id="state_dir-int"),
        pytest.param(MINIMAL.replace("state_dir =", "statedir ="), "statedir", id="agent-unknown-key"),
        pytest.param(MINIMAL.replace("[agent]\n", '[agent]\nreport_language = "de"\n'), "report_language",
                     id="report_language-unknown"),
        pytest.param(MINIMAL.replace("[agent]\n", '[agent]\nreport_dir = "reports"\n'), "report_dir",
                     id="report_dir-relative"),
        pytest.param(MINIMAL + '[alerts]\nattach_report = "yes"\n', "attach_report", id="attach_report-str"),
        pytest.param(MINIMAL.replace("compression =", "compresion ="), "compresion", id="repo-unknown-key"),
        pytest.param(MINIMAL.replace("passphrase_file =", "passphrase ="), "passphrase", id="key-unknown-key"),
        pytest.param(MINIMAL.replace("passphrase_file = ", "passphrase_file = 0 #"), "passphrase_file",
                     id="passphrase_file-int"),
        pytest.param(MINIMAL.replace("[source]\n", "[source]\none_file_system = 'yes'\n"), "one_file_system",
                     id="one_file_system-str"),
        pytest.param(MINIMAL.replace('[repositories.main]\nurl = "file:///mnt/backup/repo"\ncipher = '
                                     '"xchacha20-poly1305"\ncompression = "zstd"\n', ""), "repositor",
                     id="no-repository"),
        pytest.param('repositories = { main = "file:///x" }\n' + MINIMAL.replace(
            '[repositories.main]\nurl = "file:///mnt/backup/repo"\ncipher = "xchacha20-poly1305"\n'
            'compression = "zstd"\n', ""), "repositories.main", id="repository-not-a-table"),
        pytest.param('agent = 5\n' + MINIMAL.replace('[agent]\nstate_dir = "/var/lib/backupctl"\n', ""),
                     "[agent]", id="agent-not-a-table"),
        pytest.param('source = ["/srv"]\n' + MINIMAL.replace('[source]\npaths = ["/srv/cabinet"]\n'
                                                            'exclude = ["*.tmp"]\n', ""),
                     "[source]", id="source-not-a-table"),
    ],
)
def test_error_names_the_file_and_the_key(tmp_path, text, key):
    path, message = _error(tmp_path, text)
    assert path in message
    assert key in message


def test_unknown_key_error_lists_the_allowed_keys(tmp_path):
    _path, message = _error(tmp_path, MINIMAL.replace("exclude =", "exlude ="))
    assert "exclude" in message and "paths" in message


def test_bad_toml_syntax(tmp_path):
    path, message = _error(tmp_path, MINIMAL.replace('paths = ["/srv/cabinet"]', 'paths = ["/srv/cabinet"'))
    assert path in message
    assert "TOML" in message


def test_missing_file(tmp_path):
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert path in str(info.value)
    assert "BACKUPCTL_CONFIG" in info.value.one_line()


def test_file_not_in_utf8_is_a_config_error(tmp_path):
    """A config saved as Latin-1 by a Windows editor (accented folder names are common here)."""
    path = tmp_path / "config.toml"
    path.write_bytes(MINIMAL.replace("/srv/cabinet", "/srv/cabinet/Élodie").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    assert str(path) in str(info.value)


def test_directory_instead_of_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_config_error_exit_code_is_2():
    assert ConfigError("x").exit_code == 2


def test_config_path_precedence(monkeypatch):
    monkeypatch.delenv(config.ENV_PATH, raising=False)
    assert config.config_path(None) == "/etc/backupctl/config.toml"
    monkeypatch.setenv(config.ENV_PATH, "/opt/b.toml")
    assert config.config_path(None) == "/opt/b.toml"
    assert config.config_path("/root/c.toml") == "/root/c.toml"


# ---- read_passphrase ---------------------------------------------------------------------------


def _config_with_passphrase_file(tmp_path: Path, secret: bytes | None, mode: int = 0o600) -> tuple[config.Config, str]:
    secret_path = tmp_path / "passphrase"
    if secret is not None:
        secret_path.write_bytes(secret)
        os.chmod(secret_path, mode)
    text = MINIMAL.replace("/etc/backupctl/passphrase", str(secret_path))
    return config.load(_write(tmp_path, text)), str(secret_path)


@pytest.fixture(autouse=True)
def _no_passphrase_env(monkeypatch):
    monkeypatch.delenv(config.ENV_PASSPHRASE, raising=False)
    monkeypatch.setattr(config, "_passphrase_from_environment", None)  # what an earlier test's reading kept


def test_passphrase_from_file(tmp_path):
    cfg, _ = _config_with_passphrase_file(tmp_path, b"phrase secrete")
    assert config.read_passphrase(cfg) == b"phrase secrete"


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\n\n"])
def test_trailing_newline_is_stripped(tmp_path, ending):
    cfg, _ = _config_with_passphrase_file(tmp_path, b"phrase secrete" + ending)
    assert config.read_passphrase(cfg) == b"phrase secrete"


def test_inner_and_trailing_spaces_are_kept(tmp_path):
    cfg, _ = _config_with_passphrase_file(tmp_path, b"  phrase  secrete  \n")
    assert config.read_passphrase(cfg) == b"  phrase  secrete  "


def test_utf8_passphrase_bytes_are_kept(tmp_path):
    secret = "clé ÉLODIE 2026".encode()
    cfg, _ = _config_with_passphrase_file(tmp_path, secret + b"\n")
    assert config.read_passphrase(cfg) == secret


def test_env_var_wins_over_the_file(tmp_path, monkeypatch):
    cfg, _ = _config_with_passphrase_file(tmp_path, b"from file")
    monkeypatch.setenv(config.ENV_PASSPHRASE, "from env é")
    assert config.read_passphrase(cfg) == "from env é".encode()


def test_the_env_var_leaves_the_environment_once_read(tmp_path, monkeypatch):
    """No child process can inherit the passphrase: it is no longer in os.environ after
    the first reading, and later readings (other repositories of one command) still find it."""
    cfg, _ = _config_with_passphrase_file(tmp_path, b"from file")
    monkeypatch.setenv(config.ENV_PASSPHRASE, "from env")
    assert config.read_passphrase(cfg) == b"from env"
    assert config.ENV_PASSPHRASE not in os.environ
    assert config.read_passphrase(cfg) == b"from env"


def test_a_passphrase_that_is_not_utf8_is_read_as_its_bytes(tmp_path, monkeypatch):
    """An environment variable of Latin-1 bytes: its bytes, never an encoding error that
    would quote one of its characters."""
    cfg, _ = _config_with_passphrase_file(tmp_path, b"from file")
    secret = b"m\xe9decin cabinet 2026"
    monkeypatch.setenv(config.ENV_PASSPHRASE, os.fsdecode(secret))
    assert config.read_passphrase(cfg) == secret


def test_env_var_wins_even_over_an_unsafe_file(tmp_path, monkeypatch):
    cfg, _ = _config_with_passphrase_file(tmp_path, b"from file", mode=0o644)
    monkeypatch.setenv(config.ENV_PASSPHRASE, "from env")
    assert config.read_passphrase(cfg) == b"from env"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666, 0o610])
def test_file_readable_by_others_is_refused(tmp_path, mode):
    cfg, secret_path = _config_with_passphrase_file(tmp_path, b"phrase secrete", mode=mode)
    with pytest.raises(ConfigError) as info:
        config.read_passphrase(cfg)
    line = info.value.one_line()
    assert secret_path in str(info.value)
    assert f"chmod 600 {secret_path}" in line
    assert "phrase secrete" not in line


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_file_is_accepted(tmp_path, mode):
    cfg, _ = _config_with_passphrase_file(tmp_path, b"ok", mode=mode)
    assert config.read_passphrase(cfg) == b"ok"


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\n"])
def test_empty_file_is_refused(tmp_path, content):
    cfg, secret_path = _config_with_passphrase_file(tmp_path, content)
    with pytest.raises(ConfigError, match="empty") as info:
        config.read_passphrase(cfg)
    assert secret_path in str(info.value)


def test_missing_passphrase_file_is_refused(tmp_path):
    cfg, secret_path = _config_with_passphrase_file(tmp_path, None)
    with pytest.raises(ConfigError) as info:
        config.read_passphrase(cfg)
    assert secret_path in str(info.value)
    assert cfg.path in str(info.value)


def test_no_file_and_no_env_returns_none(tmp_path):
    cfg = config.load(_write(tmp_path, MINIMAL.replace('[key]\npassphrase_file = "/etc/backupctl/passphrase"\n', "")))
    assert config.read_passphrase(cfg) is None


def test_example_media_block_parses():
    text = (REPO_ROOT / "config.example.toml").read_text()
    lines, in_block = [], False
    for line in text.splitlines():
        if line.startswith("# [repositories.disques]"):
            in_block = True
        elif in_block and not line.startswith("# "):
            in_block = False
        lines.append(line[2:] if in_block else line)
    import tomllib

    parsed = config.parse(tomllib.loads("\n".join(lines)), "example")
    disks = parsed.repository("disques")
    assert disks.media == ("DISQUE-A", "DISQUE-B", "DISQUE-C", "DISQUE-D") and disks.mount == "/media/backupctl"


def test_passphrase_from_a_systemd_credential(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    cfg = config.load(str(path))
    monkeypatch.delenv("BACKUPCTL_PASSPHRASE", raising=False)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "passphrase").write_bytes(b"phrase du coffre\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert config.read_passphrase(cfg) == b"phrase du coffre"
    monkeypatch.setenv("BACKUPCTL_PASSPHRASE", "from env")
    assert config.read_passphrase(cfg) == b"from env"  # the environment still wins
    monkeypatch.setattr(config, "_passphrase_from_environment", None)  # a new process, without the variable
    (credentials / "passphrase").write_bytes(b"\n")
    with pytest.raises(config.ConfigError, match="empty"):
        config.read_passphrase(cfg)


# ---- [[databases]] restore_test ------------------------------------------------------------------


def _database(tmp_path: Path, kind: str, line: str) -> config.Config:
    return config.load(_write(tmp_path, MINIMAL + f'\n[[databases]]\nname = "x"\ntype = "{kind}"\n'
                                                 f'database = "x"\n{line}\n'))


@pytest.mark.parametrize("line, expected", [("", "throwaway"), ('restore_test = "throwaway"', "throwaway"),
                                            ('restore_test = "production"', "production"),
                                            ('restore_test = "none"', "none"),
                                            # Before the throwaway servers: true loaded into production.
                                            ("restore_test = true", "throwaway"), ("restore_test = false", "none")])
def test_restore_test_load(tmp_path, line, expected):
    assert _database(tmp_path, "postgresql", line).databases[0].restore_test == expected


def test_restore_test_errors(tmp_path):
    with pytest.raises(ConfigError, match='restore_test = .prod.: expected "throwaway"'):
        _database(tmp_path, "postgresql", 'restore_test = "prod"')
    with pytest.raises(ConfigError, match="PostgreSQL only"):
        _database(tmp_path, "mariadb", 'restore_test = "production"')


# ---- [source] databases: the recommended patterns are the default (issue 18, point 5) ------------


def test_database_patterns_default_to_the_recommended_ones_and_can_be_turned_off(tmp_path):
    assert config.load(_write(tmp_path, MINIMAL)).source.databases == ("*.db", "*.sqlite", "*.fdb")
    turned_off = MINIMAL.replace('exclude = ["*.tmp"]', 'exclude = ["*.tmp"]\ndatabases = []')
    assert config.load(_write(tmp_path, turned_off)).source.databases == ()
    own = MINIMAL.replace('exclude = ["*.tmp"]', 'exclude = ["*.tmp"]\ndatabases = ["*.mdb"]')
    assert config.load(_write(tmp_path, own)).source.databases == ("*.mdb",)
