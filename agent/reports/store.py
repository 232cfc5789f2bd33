"""Where restore-test reports go: files in the report folder, and a copy in the repository.

In the report folder (`[agent] report_dir`, default state_dir/reports), each report is
`<date>-restore-test-<repository>-<id>.html` and `.json`, and `.pdf` when Chromium is
installed; files are 0600 in a 0700 folder, because failed file names are patient data.
In the repository, `reports/<id>` holds the JSON document and the page together,
encrypted like every object (docs/FORMAT.md section 12.4): the proof travels off-site
with the backups, and the next report draws its history of past tests from it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from agent.errors import BackupctlError, ReportError, UsageError
from agent.repo.repository import Repository
from agent.reports import browser
from agent.reports.document import decode_stored, encode_stored, summary
from agent.state.files import save_bytes


@dataclass
class WrittenReport:
    report_id: str
    html: str
    json: str
    pdf: str | None = None
    pdf_problem: str | None = None  # why there is no PDF
    stored: bool = False
    store_problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.report_id, "html": self.html, "json": self.json, "pdf": self.pdf,
                "pdf_problem": self.pdf_problem, "stored_in_repository": self.stored,
                "store_problem": self.store_problem}


def base_name(document: dict[str, Any]) -> str:
    repository = "".join(c if c.isalnum() or c in "-_" else "_" for c in document["repository"]["name"])
    return f"{document['generated'][:10]}-restore-test-{repository}-{document['report_id'][:8]}"


def write(report_dir: str, document: dict[str, Any], html: str, *, pdf: bool = True) -> WrittenReport:
    stem = os.path.join(report_dir, base_name(document))
    written = WrittenReport(document["report_id"], stem + ".html", stem + ".json")
    save_bytes(written.json, json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8"))
    save_bytes(written.html, html.encode("utf-8"))
    executable = browser.find_chromium() if pdf else None
    if executable is None:
        written.pdf_problem = "Chromium is not installed (apt install chromium); print the HTML page instead"
    else:
        # Chromium writes where it is told, through any symbolic link: it prints into a
        # private folder, and the PDF is then written like the other files.
        private = tempfile.mkdtemp(prefix="backupctl-report-")
        try:
            browser.print_pdf(written.html, os.path.join(private, "report.pdf"), executable=executable)
            with open(os.path.join(private, "report.pdf"), "rb") as handle:
                save_bytes(stem + ".pdf", handle.read())
            written.pdf = stem + ".pdf"
        except ReportError as exc:
            written.pdf_problem = str(exc)
        finally:
            shutil.rmtree(private, ignore_errors=True)
    return written


def store(repo: Repository, written: WrittenReport, document: dict[str, Any], html: str) -> None:
    """Keep the report in the repository; a failure is told, not fatal (the files exist)."""
    try:
        repo.save_report(bytes.fromhex(document["report_id"]), encode_stored(document, html))
        written.stored = True
    except BackupctlError as exc:
        written.store_problem = exc.one_line()


def past_tests(repo: Repository) -> tuple[list[dict[str, Any]], list[str]]:
    """Summaries of the restore tests stored in the repository, oldest first, and the
    reports that could not be read (named, not fatal: a damaged old report must not stop
    this quarter's test)."""
    tests, problems = [], []
    for report_id in repo.list_report_ids():
        try:
            document, _html = decode_stored(repo.load_report(report_id), what=f"report {report_id.hex()[:8]}")
            tests.append({"report_id": document["report_id"], **summary(document["restore_test"])})
        except (BackupctlError, KeyError, TypeError) as exc:
            problems.append(f"report {report_id.hex()[:8]}: {exc}")
    return sorted(tests, key=lambda t: t["time"]), problems


def load(repo: Repository, wanted: str) -> tuple[dict[str, Any], str]:
    """A stored report by (a prefix of) its id."""
    matches = [i for i in repo.list_report_ids() if i.hex().startswith(wanted.lower())]
    if len(matches) != 1:
        raise UsageError(f"{'no' if not matches else len(matches)} stored report(s) match {wanted!r}",
                          hint="list them with `backupctl reports list`")
    return decode_stored(repo.load_report(matches[0]), what=f"report {matches[0].hex()[:8]}")
