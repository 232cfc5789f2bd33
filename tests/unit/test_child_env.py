"""agent/child_env.py: a child's environment is an allow-list of ours plus what its caller gives."""

from __future__ import annotations

from agent.child_env import PASSED, child_environment


def test_only_the_allow_list_is_inherited(monkeypatch):
    for name, value in {"PATH": "/usr/bin", "LANG": "fr_FR.UTF-8", "LC_TIME": "fr_FR.UTF-8", "TZ": "Europe/Paris",
                        "HOME": "/var/lib/backupctl", "USER": "backupctl", "TMPDIR": "/var/tmp",
                        "BACKUPCTL_PASSPHRASE": "phrase", "AWS_SECRET_ACCESS_KEY": "s3", "AWS_PROFILE": "cabinet",
                        "CREDENTIALS_DIRECTORY": "/run/credentials/backupctl.service", "PGPASSWORD": "pg",
                        "SMTP_PASSWORD": "smtp", "LOGICIEL_TOKEN": "t", "PYTHONPATH": "/x",
                        "NOTIFY_SOCKET": "/run/systemd/notify"}.items():
        monkeypatch.setenv(name, value)
    env = child_environment()
    assert {name: env[name] for name in ("PATH", "LANG", "LC_TIME", "TZ", "HOME", "USER", "TMPDIR")} == {
        "PATH": "/usr/bin", "LANG": "fr_FR.UTF-8", "LC_TIME": "fr_FR.UTF-8", "TZ": "Europe/Paris",
        "HOME": "/var/lib/backupctl", "USER": "backupctl", "TMPDIR": "/var/tmp"}
    assert all(name in PASSED or name.startswith("LC_") for name in env)
    assert not {"BACKUPCTL_PASSPHRASE", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "CREDENTIALS_DIRECTORY",
                "PGPASSWORD", "SMTP_PASSWORD", "LOGICIEL_TOKEN", "NOTIFY_SOCKET"} & set(env)


def test_what_the_caller_gives_is_added_and_wins(monkeypatch):
    monkeypatch.setenv("HOME", "/root")
    env = child_environment({"HOME": "/tmp/profile", "PGPASSFILE": "/var/lib/backupctl/credentials/1-a/pgpass"})
    assert env["HOME"] == "/tmp/profile" and env["PGPASSFILE"].endswith("/pgpass")


def test_a_child_always_has_a_path(monkeypatch):
    monkeypatch.delenv("PATH", raising=False)
    assert "/usr/bin" in child_environment()["PATH"]
