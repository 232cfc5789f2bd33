"""Where the installed service's files live. scripts/install.sh creates the venv at VENV."""

from __future__ import annotations

# The wrapper's path and marker are the program's own (agent/run_as.py): it recognises the
# wrapper by them when root runs the real program, so both sides read one definition.
from agent import run_as

WRAPPER = run_as.SERVICE_WRAPPER
WRAPPER_MARKER = run_as.WRAPPER_MARKER

SERVICE_USER = "backupctl"
VENV = "/opt/backupctl"
PROGRAM = f"{VENV}/bin/backupctl"          # the real program: what the unit runs
CONFIG_DIR = "/etc/backupctl"
CONFIG = f"{CONFIG_DIR}/config.toml"
UNIT_NAME = "backupctl.service"
UNIT = f"/etc/systemd/system/{UNIT_NAME}"
DROPIN_DIR = f"{UNIT}.d"
PATHS_DROPIN = f"{DROPIN_DIR}/paths.conf"
CREDENTIALS_DROPIN = f"{DROPIN_DIR}/credentials.conf"
SYSUSERS = "/etc/sysusers.d/backupctl.conf"
TMPFILES = "/etc/tmpfiles.d/backupctl.conf"
POLKIT_RULE = "/etc/polkit-1/rules.d/50-backupctl.rules"
CREDSTORE = "/etc/credstore.encrypted"
# Credential name -> encrypted file. The name is sealed into the file by systemd-creds and
# must match the one LoadCredentialEncrypted= gives; backupctl reads
# $CREDENTIALS_DIRECTORY/<name> (agent/config.py: passphrase; agent/alerts.py: smtp-password;
# boto3 reads s3-credentials through AWS_SHARED_CREDENTIALS_FILE).
PASSPHRASE = "passphrase"
S3_CREDENTIALS = "s3-credentials"
SMTP_PASSWORD = "smtp-password"
CREDENTIAL_FILES = {name: f"{CREDSTORE}/backupctl-{name}" for name in (PASSPHRASE, S3_CREDENTIALS, SMTP_PASSWORD)}
# The apt hook (agent/service_install/apt_hook.py; a copy in contrib/apt/): installed only
# where apt is (this folder exists).
APT_CONF_DIR = "/etc/apt/apt.conf.d"
APT_HOOK = f"{APT_CONF_DIR}/80backupctl"
