"""Chromium, headless, turns the report page into a PDF (and, for tests, a PNG).

PDF is made only when a Chromium is installed: on a practice server it is an optional
package (`apt install chromium`), and the HTML page, printable as it is, remains the
report. Chromium is well kept and prints the page exactly as a browser shows it, with
the print CSS; WeasyPrint would need Pango from the system as well and lays out CSS on
its own. The page has no script, and its content security policy forbids scripts and
outside resources (see html.py); Chromium is also started with networking off, a fresh
profile, and a time limit. (Turning scripts off by a switch makes headless printing fail.)
Its environment is the clean one of agent/child_env.py, with its profile as HOME: none of
the agent's secrets (passphrase, S3 keys) reaches a browser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from agent.child_env import child_environment
from agent.errors import ReportError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 120


def find_chromium() -> str | None:
    override = os.environ.get("BACKUPCTL_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def _run(executable: str, html_path: str, *arguments: str) -> None:
    with tempfile.TemporaryDirectory(prefix="backupctl-chromium-") as profile:
        command = [executable, "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-quic",
                   "--no-proxy-server", f"--user-data-dir={profile}",
                   *arguments, "file://" + os.path.abspath(html_path)]
        if os.geteuid() == 0:
            command.insert(1, "--no-sandbox")  # Chromium refuses root otherwise; the page runs no script
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT_S,
                                  env=child_environment({"HOME": profile}))
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReportError(f"Chromium ({executable}) did not render the report: {exc}") from None
        if done.returncode != 0:
            last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
            raise ReportError(f"Chromium ({executable}) failed with exit code {done.returncode}: {last[:200]}")


def print_pdf(html_path: str, pdf_path: str, *, executable: str) -> None:
    _run(executable, html_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf_path}")
    if not os.path.exists(pdf_path) or os.path.getsize(pdf_path) == 0:
        raise ReportError(f"Chromium wrote no PDF at {pdf_path}")


def screenshot(html_path: str, png_path: str, *, executable: str, width: int = 1100, height: int = 2400) -> None:
    _run(executable, html_path, "--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={png_path}")
    if not os.path.exists(png_path) or os.path.getsize(png_path) == 0:
        raise ReportError(f"Chromium wrote no screenshot at {png_path}")
