"""The recovery sheet's install steps: the rescue kit fetched from the repository itself, its
SHA-256 printed to compare, an offline install; never `pip install backupctl` (that name on
the public index is someone else's project)."""

from __future__ import annotations

import html
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from agent import config as config_module
from agent.crypto import paper
from agent.crypto.kdf import KdfParams
from agent.repo.rescue_kit import KitRecord
from agent.repo.repository import Repository
from agent.reports import i18n, sheet
from agent.reports.html import render_sheet
from agent.storage.memory import MemoryStorage

ROOT = Path(__file__).resolve().parents[2]
SHA = "ab" * 32
KIT = KitRecord(version="0.1.0", sha256=SHA, size=123, stored="2026-12-06T00:00:00+00:00")


def _config(tmp_path: Path, repository: str, language: str = "fr") -> config_module.Config:
    text = f"""
[agent]
state_dir = "{tmp_path}/state"
report_language = "{language}"
[source]
paths = ["{tmp_path}/src"]
[repositories.main]
{repository}
"""
    return config_module.parse(tomllib.loads(text), str(tmp_path / "config.toml"))


def _page(tmp_path: Path, repository: str, *, language: str = "fr", kit: KitRecord | None = KIT) -> tuple[dict, str]:
    config = _config(tmp_path, repository, language)
    repo = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1))
    facts = sheet.build(config, config.repository(None), repo,
                        paper.RecoveryCode(repo.config.repository_id, repo.master.secret), kit=kit)
    return facts, render_sheet(facts, "<svg></svg>")


def _codes(page: str) -> list[str]:
    return [html.unescape(code) for code in re.findall(r"<code[^>]*>(.*?)</code>", page)]


@pytest.mark.parametrize("language", ["fr", "en"])
def test_s3_sheet_prints_the_aws_line_the_sha256_and_the_offline_install(tmp_path: Path, language: str) -> None:
    facts, page = _page(tmp_path, 'url = "s3://cabinet-sauvegardes/dr-martin/serveur"\n'
                                  'endpoint = "https://s3.example-hds.fr"\nregion = "fr-par"', language=language)
    codes = _codes(page)
    fetch = ("aws s3 cp s3://cabinet-sauvegardes/dr-martin/serveur/rescue/backupctl-rescue-kit-0.1.0.tar . "
             "--endpoint-url https://s3.example-hds.fr --region fr-par")
    assert fetch in codes and facts["commands"]["fetch_kit"] == fetch
    assert "sha256sum backupctl-rescue-kit-0.1.0.tar" in codes and SHA in codes
    install = facts["commands"]["install_kit"]
    assert install in codes
    assert ("/opt/backupctl/bin/pip install --no-index --find-links wheels --require-hashes -r requirements.txt"
            in install)
    assert "pip install backupctl" not in page and "pip install backupctl-sante" not in page
    # The access key step comes first: `aws s3 cp` needs it.
    steps = re.findall(r"<li>(.*?)</li>", page, flags=re.S)
    assert "AWS_ACCESS_KEY_ID" in steps[0] and fetch in html.unescape(steps[1])


def test_disk_sheet_copies_the_kit_from_the_mounted_disk(tmp_path: Path) -> None:
    facts, page = _page(tmp_path, 'url = "file:///media/backupctl"\nmedia = ["LUNDI", "MARDI"]')
    assert facts["commands"]["fetch_kit"] == "cp /media/backupctl/repository/rescue/backupctl-rescue-kit-0.1.0.tar ."
    assert facts["commands"]["fetch_kit"] in _codes(page)


def test_folder_sheet_copies_the_kit_from_the_folder(tmp_path: Path) -> None:
    facts, page = _page(tmp_path, 'url = "file:///mnt/sauvegarde dépôt/repo"')
    assert shlex.split(facts["commands"]["fetch_kit"]) == [
        "cp", "/mnt/sauvegarde dépôt/repo/rescue/backupctl-rescue-kit-0.1.0.tar", "."]
    assert facts["commands"]["fetch_kit"] in _codes(page)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_a_repository_without_a_kit_gets_no_public_index_advice(tmp_path: Path, language: str) -> None:
    facts, page = _page(tmp_path, 'url = "file:///mnt/repo"', language=language, kit=None)
    assert facts["rescue_kit"] is None and "fetch_kit" not in facts["commands"]
    assert "READ-ME-FIRST.txt" in page and "pip install" not in page


def test_no_catalog_tells_anyone_to_pip_install_backupctl() -> None:
    for path in [*(ROOT / "agent").rglob("*.py"), *(ROOT / "agent").rglob("*.j2"), ROOT / "README.md",
                 *(ROOT / "docs" / name for name in ("INSTALL.md", "REFERENCE.md", "GUIDE-CABINET.md"))]:
        text = path.read_text(encoding="utf-8")
        assert "pip install backupctl" not in text.replace("`pip install backupctl` would install", ""), path
    for labels in i18n.SHEET_LABELS.values():
        assert "{install}" in labels["steps"]
