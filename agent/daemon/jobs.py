"""Job bodies: each job runs the agent's own commands as child processes.

The record of every job (last run, last success, exit codes) is kept in
state_dir/daemon/jobs.json, which catch-up and `status` read. Logs and alerts name the
job, the repository, exit codes and their meaning, counts, snapshot and rule ids, never
a file name (a file name can be health data): the children's output is parsed, not
copied (agent/daemon/children.py declares what is read). The one exception is each
failed step's last error line, kept for the IT person in jobs.json only (0600, on this
server), never in a log line, an e-mail or a webhook.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent import clock
from agent.daemon.children import child_command, summary
from agent.daemon.outcomes import advice, meaning
from agent.errors import SUSPECT_BACKUP_EXIT_CODE
from agent.errors import (PARTIAL_BACKUP_EXIT_CODE, SUCCESS_EXIT_CODE, TERMINATED_EXIT_CODE, BackupctlError,
                          StateDirError)
from agent.reports.document import shareable
from agent.reports.i18n import status_text
from agent.state.files import load_json, save_json
from agent.state.layout import StateLayout

if TYPE_CHECKING:  # for the annotations; at run time each function imports what it uses, as before
    from agent.alerts import Alert
    from agent.config import Config

log = logging.getLogger("backupctl.daemon")

# Exit codes of a backup that saved a snapshot (partial: some files unreadable, listed).
# Suspect: saved, marked by the ransomware alarm (issue 22).
BACKUP_SAVED = (SUCCESS_EXIT_CODE, PARTIAL_BACKUP_EXIT_CODE, SUSPECT_BACKUP_EXIT_CODE)
HOOK_LINE_PREFIX = "backupctl: hook "  # what agent.cli.main prints for the hooks' output


@dataclass
class StepResult:
    command: str
    exit_code: int
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    error_detail: str = ""  # the child's last error line: jobs.json only (it may name a file)


@dataclass(frozen=True)
class JobFailure:
    job_id: str
    exit_code: int  # the step's failing code (a backup saved with warnings is not one)
    when: _dt.datetime  # the run's start
    error_detail: str  # the child's last error line, for `status` on the server (may name a file)


class JobRecord:
    """state_dir/daemon/jobs.json: {job id: {last_run, last_success, last_exit, steps}}."""

    def __init__(self, state_dir: str) -> None:
        self.path = StateLayout(state_dir).job_record()

    def load(self) -> dict[str, Any]:
        return load_json(self.path)  # lost: one extra catch-up run, never a lost backup

    def last_success(self) -> dict[str, _dt.datetime]:
        out = {}
        for job_id, entry in self.load().items():
            if isinstance(entry, dict) and entry.get("last_success"):
                out[job_id] = _dt.datetime.fromisoformat(entry["last_success"])
        return out

    def failures(self, job_ids: set[str] | None = None) -> list[JobFailure]:
        """The jobs (of `job_ids`: those still planned) whose last run failed, newest first.
        A job's next success clears it (last_success == last_run)."""
        failures = []
        for job_id, entry in self.load().items():
            if job_ids is not None and job_id not in job_ids:
                continue
            if not isinstance(entry, dict) or not entry.get("last_run"):
                continue
            if entry.get("last_success") == entry["last_run"]:
                continue
            codes = [c for c in entry.get("last_exit") or [] if isinstance(c, int)]
            code = next((c for c in codes if c not in BACKUP_SAVED), codes[-1] if codes else BackupctlError.exit_code)
            steps = [s for s in entry.get("steps") or [] if isinstance(s, dict)]
            detail = next((str(s["error_detail"]) for s in steps
                           if s.get("exit_code") == code and s.get("error_detail")), "")
            try:
                when = _dt.datetime.fromisoformat(entry["last_run"])
            except (TypeError, ValueError):
                continue
            failures.append(JobFailure(job_id, code, when, detail))
        return sorted(failures, key=lambda f: f.when, reverse=True)

    def last_failure(self, job_ids: set[str] | None = None) -> tuple[str, int, _dt.datetime] | None:
        """The most recent failed job: (job id, failing exit code, start time), or None."""
        failures = self.failures(job_ids)
        return (failures[0].job_id, failures[0].exit_code, failures[0].when) if failures else None

    def save(self, job_id: str, *, started: _dt.datetime, ok: bool, steps: list[StepResult]) -> None:
        doc = self.load()
        entry = doc.setdefault(job_id, {})
        entry["last_run"] = started.isoformat()
        entry["last_exit"] = [s.exit_code for s in steps]
        entry["steps"] = [{"command": s.command, "exit_code": s.exit_code, "seconds": round(s.seconds, 1),
                           "summary": s.summary, **({"error_detail": s.error_detail} if s.error_detail else {})}
                          for s in steps]
        if ok:
            entry["last_success"] = started.isoformat()
        save_json(self.path, doc)


class JobRunner:
    """Runs one job at a time; SIGTERM to the daemon is passed on to the running child."""

    def __init__(self, config_path: str, state_dir: str) -> None:
        self.config_path = config_path
        self.record = JobRecord(state_dir)
        self.stopping = threading.Event()
        self._lock = threading.Lock()  # one job at a time, whatever the executor does
        self._child: subprocess.Popen[bytes] | None = None
        self.restore_test_sample = 500  # set from [schedule] by install()

    def terminate_child(self) -> None:
        self.stopping.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # the command saves what it stored, exits TERMINATED_EXIT_CODE

    def run(self, job_id: str, *, read_data_slice: tuple[int, int] | None, prune: bool) -> bool:
        kind, _, repository = job_id.partition(":")
        with self._lock:
            if self.stopping.is_set():
                return False
            started = clock.now()
            steps: list[StepResult] = []
            if kind == "check":
                steps.append(self._step("check", repository, []))
                ok = steps[-1].exit_code == SUCCESS_EXIT_CODE
            elif kind == "restore-test":
                sample = ["--sample", str(self.restore_test_sample)] if self.restore_test_sample else ["--full"]
                steps.append(self._step("restore-test", repository, sample))
                ok = steps[-1].exit_code == SUCCESS_EXIT_CODE
            else:
                steps.append(self._step("backup", repository, []))
                ok = steps[-1].exit_code in BACKUP_SAVED
                if ok and kind == "weekly" and prune and not self.stopping.is_set():
                    steps.append(self._step("prune", repository, []))
                    ok = steps[-1].exit_code == SUCCESS_EXIT_CODE
                if ok and kind == "weekly" and read_data_slice and not self.stopping.is_set():
                    k, n = read_data_slice
                    steps.append(self._step("check", repository, ["--read-data-subset", f"{k}/{n}"]))
                    ok = steps[-1].exit_code == SUCCESS_EXIT_CODE
            if self.stopping.is_set() and any(s.exit_code == TERMINATED_EXIT_CODE for s in steps):
                ok = False  # interrupted: caught up at the next start
            self.record.save(job_id, started=started, ok=ok, steps=steps)
            _log_outcome(job_id, ok, steps, interrupted=self.stopping.is_set())
            return ok

    def _step(self, command: str, repository: str, extra: list[str]) -> StepResult:
        args = child_command(self.config_path, command, repository, extra)
        started = time.monotonic()
        self._child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL)
        try:
            out, err = self._child.communicate()
        finally:
            code = self._child.returncode
            self._child = None
        counts = summary(command, out)
        # Of the child's standard error only the hooks' own output reaches the journal: the
        # rest (unreadable files of a partial backup, an error line) may name patient files.
        for line in err.decode("utf-8", "replace").splitlines():
            if line.startswith(HOOK_LINE_PREFIX):  # the hooks' own output belongs in the journal
                log.info("%s", line[len("backupctl: "):])
        detail = ""
        if code not in BACKUP_SAVED:
            last = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
            detail = last[-1][:500] if last else ""
        log.info("%s of %s: exit %s (%s) in %.1f s", command, repository, code, meaning(code),
                 time.monotonic() - started)
        return StepResult(command, code, time.monotonic() - started, counts, detail)


def _log_outcome(job_id: str, ok: bool, steps: list[StepResult], *, interrupted: bool) -> None:
    """One line per job, at the journal priority its outcome deserves (error: failed;
    warning: saved incomplete, or stopped by the service's stop), with the reason as exit
    code and plain meaning: never the child's own error line, which may name a file."""
    codes = ", ".join(str(s.exit_code) for s in steps)
    failed = next((s for s in steps if s.exit_code not in BACKUP_SAVED), None)
    if not ok and failed is not None and interrupted and failed.exit_code == TERMINATED_EXIT_CODE:
        log.warning("job %s interrupted by the stop of the service (exit codes %s): run again at the next start",
                    job_id, codes)
    elif not ok:
        step = failed or steps[-1]
        log.error("job %s FAILED: %s exit %s: %s — %s (exit codes %s)", job_id, step.command, step.exit_code,
                  meaning(step.exit_code), advice(step.exit_code), codes)
    elif any(s.exit_code == SUSPECT_BACKUP_EXIT_CODE for s in steps):
        log.warning("job %s: RANSOMWARE ALARM: %s (exit codes %s)", job_id, meaning(SUSPECT_BACKUP_EXIT_CODE), codes)
    elif any(s.exit_code == PARTIAL_BACKUP_EXIT_CODE for s in steps) or _problems(steps):
        counts = ", ".join(f"{k} {v}" for k, v in _problems(steps).items())
        log.warning("job %s saved incomplete: %s (%s) (exit codes %s)", job_id,
                    meaning(PARTIAL_BACKUP_EXIT_CODE), counts or "see backupctl backup by hand", codes)
    else:
        log.info("job %s succeeded (exit codes %s)", job_id, codes)


def _problems(steps: list[StepResult]) -> dict[str, Any]:
    """The counts a saved backup left out (never names): unreadable, failed dumps, hooks."""
    summary = next((s.summary for s in steps if s.command == "backup"), {})
    return {k: summary[k] for k in ("unreadable", "database_failures", "hook_failures") if summary.get(k)}


# Set by the daemon: APScheduler stores jobs as "module:function" + arguments, so the
# function it calls finds the runner and the configuration here.
_runner: JobRunner | None = None
_config: Config | None = None

# The same obligations at risk are mailed again after this long, not at every job.
RISK_ALERT_REPEAT = _dt.timedelta(hours=24)
_MODES = {"full": "complète", "sample": "échantillon"}  # a restore test's modes, in the alert's French
_WHAT = {"weekly": "la sauvegarde hebdomadaire", "daily": "la sauvegarde quotidienne",
         "check": "la vérification mensuelle"}


def install(runner: JobRunner, config: Config) -> None:
    global _runner, _config
    _runner = runner
    _config = config
    runner.restore_test_sample = config.schedule.restore_test_sample


def _installed_config() -> Config:
    """The configuration install() gave: what runs a job comes after it."""
    if _config is None:
        raise RuntimeError("agent.daemon.jobs.install() was not called")
    return _config


def run_job(job_id: str) -> None:
    """The function APScheduler's persistent jobs refer to (by name, so it survives restarts)."""
    if _runner is None:
        return
    from agent.daemon.schedule import read_data_slice

    _started(job_id)
    config = _installed_config()
    schedule = config.schedule
    ok = _runner.run(job_id, read_data_slice=read_data_slice(schedule.read_data_period_days, clock.now().date()),
                     prune=schedule.prune_after_backup)
    _publish_metrics(config)
    if _runner.stopping.is_set():
        return
    if not config.alerts.enabled:
        _risks(job_id.partition(":")[2])  # logged at warning priority, mailed only with [alerts]
        return
    entry = _runner.record.load().get(job_id, {})
    _alert_open_alarm(job_id, entry)  # the urgent one, before any other
    if job_id.startswith("restore-test:"):
        # every report goes out, passed or not
        _alert(restore_test_alert(job_id, entry, ok, attach=config.alerts.attach_report))
    elif not ok:
        _alert(failure_alert(job_id, entry))
    elif _backup_problems(entry):
        _alert(warning_alert(job_id, entry))
    _alert_risks(job_id.partition(":")[2])


def _publish_metrics(config: Config) -> None:
    """[metrics] textfile_dir: the job's outcome in the fleet's monitoring at once."""
    from agent.daemon.metrics_export import publish

    publish(config, daemon_up=True)


def restore_test_alert(job_id: str, entry: dict[str, Any], ok: bool, *, attach: bool = True) -> Alert:
    """Every restore test is mailed, passed or not: counts, snapshot ids, rule verdicts and
    a copy of the report without file names; the full report stays on this server."""
    from agent.alerts import Alert

    repository = job_id.partition(":")[2]
    host = socket.gethostname()
    step = (entry.get("steps") or [{}])[-1]
    summary, code = step.get("summary", {}), step.get("exit_code")
    report = summary.get("report") or {}
    on_server = report.get("html") or report.get("json")
    document = _report_document(report)
    rules = [{"rule": r.get("rule"), "status": r.get("status")}
             for r in (document or {}).get("compliance", {}).get("rules", [])]
    snapshots = [str(t.get("snapshot_id")) for t in summary.get("tests", [])]
    lines = [f"Test de restauration trimestriel du dépôt « {repository} » sur {host} : "
             f"{'RÉUSSI' if ok else 'ÉCHEC'}.", "",
             f"Fichiers restaurés : {summary.get('files', 0)}, empreinte SHA-256 vérifiée pour "
             f"{summary.get('sha256_verified', 0)} ; fichiers en échec : {summary.get('failures', 0)}."]
    for test in summary.get("tests", []):
        mode = _MODES.get(test.get("mode"), test.get("mode"))
        lines.append(f"  - sauvegarde {str(test.get('snapshot_id'))[:8]} ({mode}) : "
                     f"{test.get('files')} fichier(s) en {test.get('duration_s')} s "
                     f"({test.get('throughput_mib_s')} Mio/s)")
    if not ok and code is not None:
        lines += ["", f"Code de sortie {code} : {meaning(code)}.", f"À faire : {advice(code)}."]
    if rules:
        failing = [f"{r['rule']} ({status_text(r['status'], 'fr')})" for r in rules if r["status"] != "OK"]
        lines += ["", f"Règles du mémento : {sum(r['status'] == 'OK' for r in rules)} conforme(s) sur {len(rules)}"
                  + (f" ; à voir : {', '.join(failing)}." if failing else ".")]
    lines += ["", "Les données restaurées pour le test ont été effacées." if summary.get("scratch_wiped")
              else "Attention : vérifier que le dossier de test a bien été effacé."]
    shared = shareable(document, full_report=on_server or "") if document is not None and attach else None
    attachments = _shared_page(report, shared) if shared is not None else []
    if attachments:
        lines.append("Une copie du rapport est jointe, sans noms de fichiers (à conserver : c'est la preuve du "
                     "test pour un contrôle).")
    if on_server:
        lines.append(f"Rapport complet, avec les noms des fichiers en échec, sur le serveur seulement : {on_server} "
                     f"(et une copie chiffrée dans le dépôt).")
    else:
        lines.append("Aucun rapport n'a pu être produit : voir backupctl restore-test (prestataire).")
    return Alert(subject=f"[backupctl] Test de restauration : {'réussi' if ok else 'ÉCHEC'} pour « {repository} » "
                         f"({host})", body="\n".join(lines),
                 facts={"event": "restore_test", "repository": repository, "host": host, "ok": ok,
                        "exit_code": code, "meaning": meaning(code) if code is not None else None,
                        "files": summary.get("files", 0), "sha256_verified": summary.get("sha256_verified", 0),
                        "failures": summary.get("failures", 0), "snapshots": snapshots, "rules": rules,
                        "report_id": report.get("id"), "report_on_server": on_server,
                        **({"report_document": shared} if shared is not None else {})},
                 attachments=attachments)


ATTACHMENT_LIMIT = 10 * 2**20  # a report is tens of KiB; never mail something unexpectedly large


def _report_document(report: dict[str, Any]) -> dict[str, Any] | None:
    """The full report's JSON facts, read on this server (never sent as they are)."""
    try:
        if report.get("json") and os.path.getsize(report["json"]) <= ATTACHMENT_LIMIT:
            with open(report["json"], encoding="utf-8") as handle:
                document = json.load(handle)
                return document if isinstance(document, dict) else None
    except (OSError, ValueError) as exc:
        log.warning("restore-test report facts not read: %s", getattr(exc, "strerror", None) or type(exc).__name__)
    return None


def _shared_page(report: dict[str, Any], shared: dict[str, Any]) -> list[tuple[str, str, bytes]]:
    """The report page drawn again from the copy without file names. Only the page: a PDF
    of it would need Chromium at every alert, and the page prints as it is (A4 print CSS)."""
    from agent.reports.html import render

    try:
        page = render(shared).encode("utf-8")
    except Exception as exc:  # noqa: BLE001 - the alert goes out without its copy, never not at all
        log.warning("restore-test report copy not attached: %s", type(exc).__name__)
        return []
    if len(page) > ATTACHMENT_LIMIT:
        return []
    stem = os.path.splitext(os.path.basename(report.get("html") or report.get("json") or "rapport"))[0]
    return [(f"{stem}-sans-noms-de-fichiers.html", "text/html", page)]


def _backup_problems(entry: dict[str, Any]) -> dict[str, Any]:
    """What a backup that was nevertheless saved left out: unreadable files (counted, never
    named), database dumps or hooks that failed."""
    summary = _backup_summary(entry)
    return {k: summary[k] for k in ("unreadable", "database_failures", "hook_failures") if summary.get(k)}


def _backup_summary(entry: dict[str, Any]) -> dict[str, Any]:
    return next((s.get("summary", {}) for s in entry.get("steps", []) if s.get("command") == "backup"), {})


def warning_alert(job_id: str, entry: dict[str, Any]) -> Alert:
    from agent.alerts import Alert

    kind, _, repository = job_id.partition(":")
    what = _WHAT.get(kind, kind)
    host = socket.gethostname()
    problems = _backup_problems(entry)
    snapshot = _backup_summary(entry).get("snapshot_id")
    lines = [f"Sur le serveur {host}, {what} du dépôt « {repository} » est faite, mais incomplète"
             + (f" (sauvegarde {str(snapshot)[:8]})" if snapshot else "") + " :", ""]
    if problems.get("unreadable"):
        lines.append(f"  - {problems['unreadable']} fichier(s) ou dossier(s) n'ont pas pu être lus : ils ne sont "
                     f"pas dans cette sauvegarde (ils le seront à la suivante, une fois lisibles).")
    if problems.get("database_failures"):
        lines.append(f"  - {problems['database_failures']} sauvegarde(s) de base de données ont échoué : la base du "
                     f"logiciel n'est pas dans cette sauvegarde.")
    if problems.get("hook_failures"):
        lines.append(f"  - {problems['hook_failures']} commande(s) avant/après la sauvegarde ont échoué "
                     f"(par exemple l'arrêt ou le redémarrage du logiciel).")
    lines += ["", f"Pour le prestataire : les noms des fichiers (des données de santé) ne sont donnés que sur le "
                  f"serveur : backupctl backup --repo {repository} lancé à la main les liste."]
    return Alert(subject=f"[backupctl] À vérifier : {what} de « {repository} » incomplète ({host})",
                 body="\n".join(lines),
                 facts={"event": "backup_warnings", "job": job_id, "host": host, "snapshot_id": snapshot,
                        "exit_codes": [s.get("exit_code") for s in entry.get("steps", [])], **problems})


def failure_alert(job_id: str, entry: dict[str, Any]) -> Alert:
    """What failed, said by exit code: the child's own error line may name a patient's file,
    so it stays in jobs.json on the server."""
    from agent.alerts import Alert

    kind, _, repository = job_id.partition(":")
    what = _WHAT.get(kind, kind)
    host = socket.gethostname()
    steps = entry.get("steps", [])
    failed = next((s for s in reversed(steps) if s.get("exit_code") not in BACKUP_SAVED), steps[-1] if steps else {})
    code = failed.get("exit_code")
    snapshot = _backup_summary(entry).get("snapshot_id")
    lines = [f"Sur le serveur {host}, {what} du dépôt « {repository} » a échoué.", "",
             "Étapes (code de sortie ; 0 = réussi) :"]
    lines += [f"  - {s['command']} : code {s['exit_code']} ({meaning(s['exit_code'])})" for s in steps]
    if code is not None:
        lines += ["", f"À faire : {advice(code)}."]
    if snapshot:
        lines += [f"La sauvegarde {str(snapshot)[:8]} a bien été enregistrée avant l'échec."]
    problems = _backup_problems(entry)
    if problems.get("unreadable"):
        lines += [f"Elle est incomplète : {problems['unreadable']} fichier(s) ou dossier(s) n'ont pas pu être lus "
                  f"(leurs noms ne sont donnés que sur le serveur : backupctl backup --repo {repository})."]
    record = StateLayout(_config.agent.state_dir).job_record() if _config is not None else "jobs.json"
    lines += ["", "Rien de ce qui était déjà sauvegardé n'est perdu. La tâche sera relancée au prochain "
              "démarrage du service ou à la prochaine échéance.",
              f"Pour le prestataire : le message d'erreur complet n'est gardé que sur le serveur ({record}, "
              f"« error_detail ») ; backupctl status ; codes de sortie dans docs/REFERENCE.md."]
    return Alert(subject=f"[backupctl] ÉCHEC : {what} de « {repository} » ({host})", body="\n".join(lines),
                 facts={"event": "job_failed", "job": job_id, "host": host,
                        "exit_codes": [s["exit_code"] for s in steps],
                        "steps": [{"command": s["command"], "exit_code": s["exit_code"],
                                   "meaning": meaning(s["exit_code"])} for s in steps],
                        "failed_step": failed.get("command"), "meaning": meaning(code) if code is not None else None,
                        "advice": advice(code) if code is not None else None, "snapshot_id": snapshot,
                        **problems})


# Jobs the daemon has queued to run now (catch-ups at start, a missed run of a kept job), by
# job id, with the time they were queued; a job leaves this when it starts. A risk whose
# remedy is queued is not alerted: at the first start, the backup that runs before the
# catch-up restore test would otherwise mail "no restore test has been made" minutes before
# the test itself. An entry older than QUEUED_FOR_AT_MOST no longer hides anything (a job
# that never started must not silence its risk for good).
_queued: dict[str, _dt.datetime] = {}
_queued_lock = threading.Lock()
QUEUED_FOR_AT_MOST = _dt.timedelta(hours=12)
_REMEDIES = {"backup": ("weekly", "daily"), "restore-test": ("restore-test",)}


def note_queued(job_id: str) -> None:
    with _queued_lock:
        _queued[job_id] = clock.now()


def _started(job_id: str) -> None:
    with _queued_lock:
        _queued.pop(job_id, None)


def _remedy_queued(remedy: str, repository: str, now: _dt.datetime) -> bool:
    with _queued_lock:
        return any(f"{kind}:{repository}" in _queued and now - _queued[f"{kind}:{repository}"] < QUEUED_FOR_AT_MOST
                   for kind in _REMEDIES.get(remedy, ()))


def _risks(repository: str) -> list[str]:
    """The obligations at risk for a repository (rule ids and dates, no file names), in
    [agent] report_language, each logged at warning priority so that `journalctl -p warning`
    shows them; those whose remedy job is queued are left for that job to mend."""
    from agent.daemon.status import repository_risks
    from agent.reports.i18n import risk_text

    config = _installed_config()
    now = clock.now()
    language = config.agent.report_language
    risks = []
    for risk in repository_risks(config, repository, now):
        if _remedy_queued(risk.remedy, repository, now):
            log.info("not alerted yet for %s, its %s job is queued: %s", repository, risk.remedy,
                     risk_text(risk.code, risk.params))
            continue
        log.warning("obligation at risk for %s: %s", repository, risk_text(risk.code, risk.params))
        risks.append(risk_text(risk.code, risk.params, language))
    return risks


def _alert_risks(repository: str) -> None:
    from agent.alerts import Alert
    from agent.reports.i18n import risk_alert_text

    now = clock.now()
    risks = _risks(repository)
    if not risks:
        return
    config = _installed_config()
    path = StateLayout(config.agent.state_dir).alert_record()
    sent = load_json(path)
    previous = sent.get(repository, {})
    if previous.get("risks") == risks and \
            now - _dt.datetime.fromisoformat(previous["time"]) < RISK_ALERT_REPEAT:
        return
    host = socket.gethostname()
    language = config.agent.report_language
    body = "\n".join([risk_alert_text("intro", language, host=host, repository=repository), ""]
                     + [f"  - {risk}" for risk in risks]
                     + ["", risk_alert_text("provider", language)])
    if not _alert(Alert(subject=risk_alert_text("subject", language, host=host, repository=repository), body=body,
                        facts={"event": "obligations_at_risk", "repository": repository, "host": host,
                               "at_risk": risks})):
        return
    sent[repository] = {"time": now.isoformat(), "risks": risks}
    try:
        save_json(path, sent)
    except StateDirError as exc:
        log.error("the alert record cannot be written: %s", exc)


def _alert_open_alarm(job_id: str, entry: dict[str, Any]) -> None:
    """The URGENT alert, once per suspect snapshot, after whatever job: the suspect backup may
    not have been the daemon's (a backup by hand, `backupctl pre-installation` from apt), and
    the daemon's next backup, compared with the suspect snapshot, is not suspect itself. The
    alarm record (agent/state/alarm_state.py, written by every suspect backup) says whether an
    alarm is open and for which snapshot; the alert record keeps the snapshot last alerted, so
    an alert not delivered is tried again after the next job."""
    from agent.state.alarm_state import ALARM_RECORD
    from agent.state.records import Records

    repository = job_id.partition(":")[2]
    config = _installed_config()
    record = Records(config.agent.state_dir, repository).last(ALARM_RECORD)
    if record is None or record.detail.get("open") is not True:
        return
    suspect = str(record.detail.get("snapshot") or "")
    path = StateLayout(config.agent.state_dir).alert_record()
    key = f"{ALARM_RECORD}:{repository}"  # beside the risks' entries, which are by repository name
    sent = load_json(path)
    previous = sent.get(key)
    if suspect and isinstance(previous, dict) and previous.get("snapshot") == suspect:
        return
    if not _alert(alarm_alert(job_id, entry)):
        return
    sent = load_json(path)
    sent[key] = {"time": clock.now().isoformat(), "snapshot": suspect}
    try:
        save_json(path, sent)
    except StateDirError as exc:
        log.error("the alert record cannot be written: %s", exc)


def _alert(alert: Alert) -> bool:
    """Send; a failing alert is logged, never raised (the job's own result stands)."""
    from agent.alerts import send

    problems = send(_installed_config().alerts, alert)
    for problem in problems:
        log.error("alert not delivered: %s", problem)
    if not problems:
        log.info("alert sent: %s", alert.subject)
    return not problems


def alarm_alert(job_id: str, entry: dict[str, Any]) -> Alert:
    """The ransomware alarm's urgent alert (issue 22): counts and folder names from the state
    records (agent/state/alarm_state.py), never a file name, and the folders cut to their source
    folder, or [alarm] alert_folder_depth levels below it (engine.alarm.folders_for_alert: a
    folder below a source folder may be named after a patient)."""
    from agent.alerts import Alert, printable
    from agent.engine.alarm import folders_for_alert
    from agent.state.alarm_state import ALARM_RECORD
    from agent.state.records import Records

    _kind, _, repository = job_id.partition(":")
    host = socket.gethostname()
    record = Records(_installed_config().agent.state_dir, repository).last(ALARM_RECORD)
    alarm = record.detail if record is not None else {}
    suspect = str(alarm.get("snapshot") or _backup_summary(entry).get("snapshot_id") or "?")[:8]
    good = str(alarm.get("last_good") or "")[:8]
    share = alarm.get("changed_share")
    folders = [printable(name) for name in
               folders_for_alert([str(f) for f in alarm.get("folders", []) if isinstance(f, str)],
                                 _installed_config().source.paths, _installed_config().alarm.alert_folder_depth)]
    lines = [f"Sur le serveur {host}, la sauvegarde {suspect} du dépôt « {repository} » ressemble à une attaque "
             f"par rançongiciel. Elle est enregistrée, mais marquée SUSPECTE.", "",
             f"  - fichiers modifiés : {alarm.get('changed', '?')}, supprimés ou renommés : "
             f"{alarm.get('removed', '?')}, sur {alarm.get('files_before', '?')}"
             + (f" ({float(share):.0%})" if isinstance(share, (int, float)) else ""),
             f"  - fichiers qui se compressaient et ne se compressent plus (chiffrés ?) : "
             f"{alarm.get('lost_compression', '?')}",
             f"  - fichiers renommés avec une nouvelle extension : {alarm.get('renamed', '?')}",
             f"  - dossiers où un même nouveau fichier est apparu (message de rançon ?) : "
             f"{alarm.get('note_folders', '?')}"]
    if folders:
        lines.append(f"  - dossiers les plus touchés : {', '.join(folders)}")
    lines += ["", "À faire tout de suite : ne pas éteindre le serveur, débrancher les postes suspects du réseau, "
                  "appeler le prestataire informatique.",
              (f"Rien n'est effacé à partir de la dernière sauvegarde saine ({good}), et son verrouillage est "
               f"prolongé, jusqu'à vérification." if good else "Rien n'est effacé jusqu'à vérification."),
              "", f"Pour le prestataire : voir ce qui a changé : backupctl diff {good or suspect} {suspect} ; "
                  f"une fois vérifié : backupctl acknowledge {suspect}."]
    return Alert(subject=f"[backupctl] URGENT : alerte rançongiciel sur « {repository} » ({host})",
                 body="\n".join(lines),
                 facts={"event": "ransomware_alarm", "job": job_id, "host": host, "snapshot_id": suspect,
                        "last_good": good or None, "folders": folders,
                        **{k: alarm.get(k) for k in ("files_before", "changed", "removed", "changed_share",
                                                     "lost_compression", "renamed", "note_folders")},
                        "diff": f"backupctl diff {good or suspect} {suspect}"})
