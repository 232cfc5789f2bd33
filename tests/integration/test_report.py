"""The restore-test report (issue 7, points 2 and 4): HTML in French or English, the same
facts as JSON, a PDF, a copy kept encrypted in the repository; FAIL naming the damaged
files; a missing monthly snapshot is a WARN; the page rendered by a real headless
Chromium (Debian's `chromium`, installed by `make test`) to a PNG that is checked."""

from __future__ import annotations

import datetime as dt
import json
import re
import stat
from pathlib import Path

import pytest
from PIL import Image

from agent.reports import browser

from .support import Backupctl, assert_error, random_file, write

GREEN, RED = (0x1A, 0x7F, 0x37), (0xC6, 0x28, 0x28)  # the verdict banner's colours (report.html.j2)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = browser.find_chromium()
    # Not a skip: `make test` installs Debian's chromium, and a skipped rendering test
    # would let a broken page pass CI.
    assert found, "chromium is not installed: run `make test` (it installs Debian's chromium)"
    return found


def _practice(bk: Backupctl, *, language: str = "fr") -> None:
    bk.write_config(agent_lines=f'practice_name = "Cabinet du Dr Martin"\nreport_language = "{language}"')
    for i in range(8):
        write(bk.src / "courriers" / f"lettre-{i}.txt", f"Madame, consultation {i}. " * 300)
    random_file(bk.src / "imagerie" / "radio.jpg", 2 * 1024 * 1024)
    bk.init()
    bk.backup()
    bk.ok("check", "--read-data")


def _report(result) -> dict:
    doc = result.json()
    return doc["report"]


def _compliance_status(html: str, rule: str) -> str:
    match = re.search(rf'<tr><td>{re.escape(rule)}</td><td class="status (\w+)">', html)
    assert match, f"no row for {rule} in the compliance table"
    return match.group(1)


def _pixels_near(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    rgb = image.convert("RGB")
    return sum(count for count, pixel in rgb.getcolors(maxcolors=1 << 24)
               if all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True)))


def test_a_passing_test_writes_html_json_pdf_and_keeps_a_copy_in_the_repository(bk: Backupctl, chromium):
    _practice(bk)
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 0, str(result)
    report = _report(result)
    html_path, json_path, pdf_path = Path(report["html"]), Path(report["json"]), Path(report["pdf"])
    assert html_path.parent == bk.state / "reports" and report["stored_in_repository"] is True
    for path in (html_path, json_path, pdf_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # failed file names are patient data
    assert pdf_path.read_bytes().startswith(b"%PDF-") and b"/Type /Page" in pdf_path.read_bytes()

    document = json.loads(json_path.read_text(encoding="utf-8"))
    html = html_path.read_text(encoding="utf-8")
    assert document["schema"] == "backupctl-restore-test-report/1" and document["language"] == "fr"
    assert document["restore_test"]["ok"] is True and document["restore_test"]["sha256_verified"] == 9
    assert document["practice"] == "Cabinet du Dr Martin" and document["repository"]["name"] == "main"
    algorithms = document["algorithms"]
    assert algorithms["cipher"] == "XChaCha20-Poly1305" and algorithms["file_fingerprint"] == "SHA-256"
    assert document["algorithms"]["kdf"].startswith("Argon2id (m = ")
    assert document["checks"]["check"]["ok"] is True and document["checks"]["read_data_check"]["ok"] is True
    assert len(document["history"]["backups"]) == 53 and document["history"]["backups"][-1]["snapshot"]
    # The page shows the document's facts, in French.
    assert '<html lang="fr">' in html and "RÉUSSI" in html and "Cabinet du Dr Martin" in html
    assert document["report_id"] in html and document["repository"]["repository_id"] in html
    assert _compliance_status(html, "S7") == "OK" and _compliance_status(html, "K1") == "FAIL"
    assert "<script" not in html and 'src="http' not in html  # self-contained, opens offline

    # The copy in the repository is the same report, and feeds the next report's history.
    listed = bk.ok_json("reports", "list")["reports"]
    assert [r["report_id"] for r in listed] == [document["report_id"]]
    out = bk.base / "out"
    bk.ok("reports", "get", document["report_id"][:8], "--output-dir", str(out))
    assert json.loads((out / json_path.name).read_text(encoding="utf-8")) == document
    assert (out / html_path.name).read_text(encoding="utf-8") == html
    second = _report(bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json"))
    history = json.loads(Path(second["json"]).read_text(encoding="utf-8"))["history"]["restore_tests"]
    assert [t["report_id"] for t in history] == [document["report_id"], second["id"]]
    assert [r["report_id"] for r in bk.ok_json("reports", "list")["reports"]] == [document["report_id"], second["id"]]


def test_report_dir_option_and_english(bk: Backupctl):
    _practice(bk, language="en")
    elsewhere = bk.base / "for-the-auditor"
    report = _report(bk.run("restore-test", "--sample", "3", "--scratch-dir", str(bk.base / "s"),
                            "--report-dir", str(elsewhere), "--json"))
    html = Path(report["html"]).read_text(encoding="utf-8")
    assert Path(report["html"]).parent == elsewhere and '<html lang="en">' in html
    assert "Restore test report" in html and "PASSED" in html and "random sample" in html


def test_a_damaged_pack_gives_a_failed_report_naming_the_files(bk: Backupctl, chromium):
    _practice(bk)
    biggest = max((p for p in (bk.repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 13
    report = _report(result)
    document = json.loads(Path(report["json"]).read_text(encoding="utf-8"))
    html = Path(report["html"]).read_text(encoding="utf-8")
    failures = document["restore_test"]["failures"]
    assert failures and document["restore_test"]["ok"] is False
    assert "ÉCHEC" in html and 'id="mismatches"' in html
    for failure in failures:
        assert f"/{failure['path']}" in html
    assert _compliance_status(html, "S7") == "FAIL"
    assert report["stored_in_repository"] is True  # the proof of failure is kept too

    png = bk.base / "failed.png"
    browser.screenshot(report["html"], str(png), executable=chromium)
    image = Image.open(png)
    assert _pixels_near(image, RED) > 20_000 and _pixels_near(image, GREEN) < _pixels_near(image, RED)


def test_a_missing_monthly_snapshot_is_a_warning_in_the_report(bk: Backupctl):
    bk.write_config()
    write(bk.src / "dossier.txt", "patient " * 1000)
    bk.init()
    now = dt.datetime.now().astimezone()
    skipped = None
    for back in range(12, 0, -1):
        index = now.year * 12 + now.month - 1 - back
        moment = dt.datetime(index // 12, index % 12 + 1, 10, 18, 0, tzinfo=now.tzinfo)
        if back == 5:
            skipped = f"{moment:%Y-%m}"
            continue
        write(bk.src / "dossier.txt", f"patient {back} " * 1000)
        bk.backup("--time", moment.isoformat())
    bk.backup()
    report = _report(bk.run("restore-test", "--sample", "1", "--scratch-dir", str(bk.base / "s"), "--json"))
    document = json.loads(Path(report["json"]).read_text(encoding="utf-8"))
    months = {m["period"]: m["state"] for m in document["retention"]["months"]}
    assert months[skipped] == "missing"
    assert sum(state == "present" for state in months.values()) == 11
    rules = {r["rule"]: r for r in document["compliance"]["rules"]}
    assert rules["S3"]["status"] == "WARN" and skipped in rules["S3"]["evidence"][-1]
    html = Path(report["html"]).read_text(encoding="utf-8")
    assert _compliance_status(html, "S3") == "WARN" and "À SURVEILLER" in html
    assert re.search(rf'{skipped}\u00a0:\s*<span class="state missing">MANQUANTE</span>', html)


def test_the_page_renders_in_headless_chromium(bk: Backupctl, chromium):
    _practice(bk)
    report = _report(bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json"))
    png = bk.base / "report.png"
    browser.screenshot(report["html"], str(png), executable=chromium, width=1100, height=2400)
    assert png.stat().st_size > 30_000  # a full page of text and charts, not a blank image
    image = Image.open(png)
    assert image.size == (1100, 2400)
    assert _pixels_near(image, GREEN) > 20_000  # the verdict banner, and the charts' bars
    assert _pixels_near(image, RED) < 5_000  # nothing failed
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) > 50  # text is drawn (anti-aliased)
    top = image.crop((0, 0, 1100, 300)).convert("RGB")
    assert _pixels_near(top, GREEN) > 10_000  # the banner is at the top, where the reader starts


def test_reports_get_refuses_an_unknown_id(bk: Backupctl):
    _practice(bk)
    assert_error(bk.run("reports", "get", "ffffffff", "--output-dir", str(bk.base / "o")), 2, "no stored report")


def test_a_file_name_with_markup_is_escaped_and_the_shared_copy_names_no_file_nor_row(bk: Backupctl):
    """A local user names a file so that it would be markup in the report (which Chromium
    renders as root, with file:// access); the full page shows it as text. The copy that
    leaves by e-mail names neither the file nor what a failed database client quoted."""
    from agent.reports.document import shareable
    from agent.reports.html import render

    evil = "<img src=x onerror=alert(1)><svg onload=alert(2)>Dupont &amp; \"'.pdf"
    random_file(bk.src / evil, 300 * 1024)
    bk.init()
    bk.backup()
    biggest = max(bk.packs(), key=lambda p: p.stat().st_size)  # the file's data
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 13, str(result)
    report = _report(result)
    html = Path(report["html"]).read_text(encoding="utf-8")
    assert "<img" not in html and "<svg onload" not in html and "onerror=alert(1)&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;svg onload=alert(2)&gt;Dupont &amp;amp; &#34;&#39;.pdf" in html

    document = json.loads(Path(report["json"]).read_text(encoding="utf-8"))
    assert any("Dupont" in f["path"] for f in document["restore_test"]["failures"])
    document["restore_test"]["databases"] = [{
        "name": "cabinet", "type": "postgresql", "path": "/var/backups/cabinet.dump", "ok": False, "tables": 0,
        "rows": {}, "loaded_into": "throwaway", "note": None,
        "problem": "pg_restore failed (exit code 1): DETAIL: Key (nom)=(Durand Marie) already exists."}]
    shared = shareable(document, full_report=report["html"])
    page = render(shared)
    text = json.dumps(shared, ensure_ascii=False) + page
    assert "Dupont" not in text and "onerror" not in text and "Durand" not in text
    assert shared["shared_copy"]["failures"] == len(document["restore_test"]["failures"])
