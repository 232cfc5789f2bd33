"""The backup bar on a real terminal (issue 18, point 2), against a real moto_server
behind the fault proxy (tests/support/faultproxy.py).

The CLI runs in a pseudo-terminal, so rich draws as it does for a person: when the
server stops answering mid-backup, the bar says "S3 server not answering, retry N in T s"
and the backup then completes; an error raised while the bar is drawn starts on a line
of its own (the character before "backupctl: error:" is a newline).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

from tests.support.faultproxy import FaultProxy

from .test_s3 import Cli


def _port(s3) -> int:
    return int(s3.url.rsplit(":", 1)[1])


class Terminal:
    """The CLI in a pseudo-terminal 160 columns wide; everything it draws is kept."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        env = {**cli.env, "TERM": "xterm-256color", "COLUMNS": "160"}
        env.pop("NO_COLOR", None)
        self.process = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(cli.config), *args],
                                        stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.output = b""

    def read_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.output):
                return True
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    data = b""
                if not data:
                    return predicate(self.output)
                self.output += data
        return predicate(self.output)

    def finish(self, timeout: float = 300) -> int:
        self.read_until(lambda _out: self.process.poll() is not None, timeout)
        self.read_until(lambda _out: False, 0.5)  # what is left in the terminal
        os.close(self.master)
        return self.process.wait(timeout=10)

    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")


_CONTROL = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])")


def screen(text: str, width: int = 160) -> list[str]:
    """What a terminal shows after `text`: enough of a VT100 for what rich and the CLI send
    (printable characters, CR, LF, cursor up/down/column, erase line; colours ignored)."""
    rows: list[list[str]] = [[]]
    row = column = 0
    position = 0
    while position < len(text):
        match = _CONTROL.match(text, position)
        if match:
            arguments, final = match.groups()
            count = int(arguments) if arguments.isdigit() else 1
            if final == "A":
                row = max(0, row - count)
            elif final == "B":
                row += count
            elif final == "G":
                column = count - 1
            elif final == "K":
                line = rows[row] if row < len(rows) else []
                if arguments in ("", "0"):
                    del line[column:]
                else:  # 1: to the cursor, 2: the whole line
                    line[: column if arguments == "1" else len(line)] = [" "] * (column if arguments == "1" else 0)
            position = match.end()
            continue
        char = text[position]
        position += 1
        if char == "\r":
            column = 0
        elif char == "\n":
            row += 1
        elif char == "\x1b" or char in "\x07\x08":
            continue
        else:
            while len(rows) <= row:
                rows.append([])
            line = rows[row]
            while len(line) < column:
                line.append(" ")
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column = min(column + 1, width - 1)
        while len(rows) <= row:
            rows.append([])
    return ["".join(line).rstrip() for line in rows]


def _bar_drawn(output: bytes) -> bool:
    return "━".encode() in output


def _big_source(cli: Cli, megabytes: int) -> None:
    folder = cli.source / "scans"
    for number in range(megabytes):
        (folder / f"scan-{number:03d}.pdf").write_bytes(os.urandom(1024 * 1024))


def test_bar_says_the_server_is_not_answering_then_the_backup_completes(tmp_path, s3):
    with FaultProxy(_port(s3), error=1.0) as proxy:
        proxy.enabled = False
        # A bandwidth cap keeps the backup under the bar long enough to break the server mid-way.
        cli = Cli(tmp_path, proxy.url, s3, bucket=s3.plain_bucket, extra="bandwidth_limit_kib = 3000")
        assert cli.run("init").returncode == 0
        _big_source(cli, 24)
        terminal = Terminal(cli, "backup")
        assert terminal.read_until(_bar_drawn, 60), terminal.text()
        proxy.enabled = True  # every request now answers 500/503
        saw_retry = terminal.read_until(lambda out: b"S3 server not answering, retry" in out, 60)
        time.sleep(1.0)
        proxy.enabled = False
        code = terminal.finish()
        text = terminal.text()
        assert proxy.counts["error"] > 0
        assert saw_retry, text[-3000:]
        assert code == 0, text[-3000:]
        assert "Snapshot " in text and " saved " in text
        assert "Traceback" not in text


def test_an_error_while_the_bar_is_drawn_starts_on_its_own_line(tmp_path, s3):
    with FaultProxy(_port(s3), error=1.0) as proxy:
        proxy.enabled = False
        cli = Cli(tmp_path, proxy.url, s3, bucket=s3.plain_bucket,
                  extra="bandwidth_limit_kib = 3000\nretry_attempts = 2")
        assert cli.run("init").returncode == 0
        _big_source(cli, 24)
        terminal = Terminal(cli, "backup")
        assert terminal.read_until(_bar_drawn, 60), terminal.text()
        proxy.enabled = True  # and it stays broken: the backup fails
        code = terminal.finish()
        text = terminal.text()
        assert code == 14, text[-3000:]
        lines = screen(text)
        errors = [line for line in lines if "backupctl: error:" in line]
        assert len(errors) == 1, lines
        # At column 0, alone on its line: nothing of the bar before it or over it.
        assert errors[0].startswith("backupctl: error: S3"), lines
        assert not any("━" in line or "files," in line for line in lines), lines
        assert "Traceback" not in text
