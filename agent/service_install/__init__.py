"""`backupctl install-service`: the service on a Debian 12 server, installed and kept in step
with its configuration.

What it owns, one module per concern:

    layout.py       where every installed file lives (one table, no path spelt twice)
    folders.py      the service user and folders (sysusers, tmpfiles) and the folders the
                    configuration names (file:// repositories, the disks' mount)
    units.py        the unit as shipped, and the drop-ins derived from the configuration
    wrapper.py      /usr/local/bin/backupctl: commands run as the service user, in its sandbox
    polkit.py       the rule letting the service start/stop/restart the units its hooks name
    credentials.py  the passphrase, S3 keys and SMTP password as encrypted systemd credentials
    installer.py    applies all that to a root folder, idempotently, and undoes it (--uninstall)

Everything but installer.py and credentials.py' commands is a pure function from the
configuration to file contents, so that each is tested without a system; the installer runs
the system's commands through one small interface (`System`), replaced in the unit tests.
"""
