"""The restore-test report as one self-contained HTML page (jinja2, autoescaped).

Everything the page shows comes from the report document (agent.reports.document); file
names in it may hold anything a patient's letter can be called, so escaping is on for
every value and the page carries a content security policy that forbids scripts and any
outside resource. Styles are inline, charts inline SVG: the page opens offline, prints
(A4, print CSS) and can be turned into PDF (agent.reports.browser).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from agent import timefmt
from agent.reports import charts
from agent.reports.i18n import LABELS, SHEET_LABELS, status_text

MONTHS = {
    "fr": ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."],
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
}
_ENVIRONMENT = jinja2.Environment(loader=jinja2.PackageLoader("agent.reports", "templates"),
                                  autoescape=True, undefined=jinja2.StrictUndefined,
                                  trim_blocks=True, lstrip_blocks=True)


def render(document: dict[str, Any]) -> str:
    language = document["language"]
    zone = ZoneInfo(document.get("time_zone") or "UTC")
    french = language == "fr"

    def when(text: str | None) -> str:
        if not text:
            return "-"
        moment = _dt.datetime.fromisoformat(text).astimezone(zone)
        if not french:
            return timefmt.shown(moment, zone)
        return f"{moment:%d/%m/%Y %H:%M} {timefmt.zone_label(moment)}"  # French order, the same zone label

    def day(text: str) -> str:
        return when(text)[:10]

    def number(value: float, digits: int) -> str:
        text = f"{value:,.{digits}f}"
        return text.replace(",", "\u202f").replace(".", ",") if french else text

    def size(count: float) -> str:
        units = ("o", "Kio", "Mio", "Gio", "Tio") if french else ("B", "KiB", "MiB", "GiB", "TiB")
        for unit in units:
            if count < 1024 or unit == units[-1]:
                return f"{number(count, 0 if unit == units[0] else 1)} {unit}"
            count /= 1024
        return str(count)

    environment = _ENVIRONMENT.overlay()
    environment.filters.update(
        when=when, day=day, size=size, status=lambda s: status_text(s, language),
        seconds=lambda s: f"{number(s, 1)} s",
        rate=lambda r: f"{number(r, 0)} {'Mio/s' if french else 'MiB/s'}")
    template = environment.get_template("report.html.j2")
    return template.render(
        doc=document, L=LABELS[language],
        backups_chart=charts.backup_history_chart(document["history"]["backups"], MONTHS[language]),
        tests_chart=charts.restore_tests_chart(document["history"]["restore_tests"]))


def render_sheet(sheet: dict[str, Any], qr_svg: str) -> str:
    """The recovery sheet (agent.reports.sheet): catalog steps hold markup, the commands
    put into them are escaped (a bucket name is configuration, still not markup)."""
    labels = dict(SHEET_LABELS[sheet["language"]])
    commands = {name: Markup("<code>{}</code>").format(command) for name, command in sheet["commands"].items()}
    kit = sheet.get("rescue_kit")
    if kit is not None:  # fetch, check against the printed SHA-256, install offline
        facts = {**commands, "version": kit["version"],
                 "sha256": Markup('<code class="ident">{}</code>').format(kit["sha256"])}
        install = [Markup(step).format(**facts) for step in labels["install_kit"]]
    else:
        install = [Markup(labels["install_no_kit"])]
    steps: list[Markup] = []
    for step in labels["steps"]:
        steps += install if step == "{install}" else [Markup(step).format(**commands)]
    labels["steps"] = steps
    template = _ENVIRONMENT.get_template("recovery_sheet.html.j2")
    return template.render(sheet={**sheet, "commands": {}}, L=labels, qr=Markup(qr_svg))
