"""Job bodies: each job runs the agent's own commands as child processes.

The record of every job (last run, last success, exit codes) is kept in
state_dir/daemon/jobs.json, which catch-up and `status` read. Logs name the job, the
repository, exit codes, counts and durations, never a file name (a file name can be
health data): the children's output is parsed, not copied.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from agent import clock
from agent.errors import StateDirError
from agent.state_file import load_json, save_json

log = logging.getLogger("backupctl.daemon")

# Exit codes of a backup that saved a snapshot (3: some files unreadable, listed).
BACKUP_SAVED = (0, 3)
HOOK_LINE_PREFIX = "backupctl: hook "  # what agent.cli.main prints for the hooks' output


@dataclass
class StepResult:
    command: str
    exit_code: int
    seconds: float
    summary: dict = field(default_factory=dict)


class JobRecord:
    """state_dir/daemon/jobs.json: {job id: {last_run, last_success, last_exit, steps}}."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "daemon", "jobs.json")

    def load(self) -> dict:
        return load_json(self.path)  # lost: one extra catch-up run, never a lost backup

    def last_success(self) -> dict[str, _dt.datetime]:
        out = {}
        for job_id, entry in self.load().items():
            if isinstance(entry, dict) and entry.get("last_success"):
                out[job_id] = _dt.datetime.fromisoformat(entry["last_success"])
        return out

    def save(self, job_id: str, *, started: _dt.datetime, ok: bool, steps: list[StepResult]) -> None:
        doc = self.load()
        entry = doc.setdefault(job_id, {})
        entry["last_run"] = started.isoformat()
        entry["last_exit"] = [s.exit_code for s in steps]
        entry["steps"] = [{"command": s.command, "exit_code": s.exit_code, "seconds": round(s.seconds, 1),
                           "summary": s.summary} for s in steps]
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
        self._child: subprocess.Popen | None = None
        self.restore_test_sample = 500  # set from [schedule] by install()

    def terminate_child(self) -> None:
        self.stopping.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # the command saves what it stored and exits 143

    def run(self, job_id: str, *, read_data_slice: tuple[int, int] | None, prune: bool) -> bool:
        kind, _, repository = job_id.partition(":")
        with self._lock:
            if self.stopping.is_set():
                return False
            started = clock.now()
            steps: list[StepResult] = []
            if kind == "check":
                steps.append(self._step("check", repository, []))
                ok = steps[-1].exit_code == 0
            elif kind == "restore-test":
                sample = ["--sample", str(self.restore_test_sample)] if self.restore_test_sample else ["--full"]
                steps.append(self._step("restore-test", repository, sample))
                ok = steps[-1].exit_code == 0
            else:
                steps.append(self._step("backup", repository, []))
                ok = steps[-1].exit_code in BACKUP_SAVED
                if ok and kind == "weekly" and prune and not self.stopping.is_set():
                    steps.append(self._step("prune", repository, []))
                    ok = steps[-1].exit_code == 0
                if ok and kind == "weekly" and read_data_slice and not self.stopping.is_set():
                    k, n = read_data_slice
                    steps.append(self._step("check", repository, ["--read-data-subset", f"{k}/{n}"]))
                    ok = steps[-1].exit_code == 0
            if self.stopping.is_set() and any(s.exit_code == 143 for s in steps):
                ok = False  # interrupted: caught up at the next start
            self.record.save(job_id, started=started, ok=ok, steps=steps)
            log.info("job %s %s (exit codes %s)", job_id, "succeeded" if ok else "FAILED",
                     ", ".join(str(s.exit_code) for s in steps))
            return ok

    def _step(self, command: str, repository: str, extra: list[str]) -> StepResult:
        args = [sys.executable, "-m", "agent", "--config", self.config_path, command, "--repo", repository,
                *extra, "--json"]
        started = time.monotonic()
        self._child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL)
        try:
            out, err = self._child.communicate()
        finally:
            code = self._child.returncode
            self._child = None
        summary = _summary(command, out)
        for line in err.decode("utf-8", "replace").splitlines():
            if line.startswith(HOOK_LINE_PREFIX):  # the hooks' own output belongs in the journal
                log.info("%s", line[len("backupctl: "):])
        if code not in (0, 3):
            # The error line names what failed (a disk, the storage, a lock), not a patient file.
            last = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
            summary["error"] = last[-1][:500] if last else ""
        log.info("%s of %s: exit %s in %.1f s", command, repository, code, time.monotonic() - started)
        return StepResult(command, code, time.monotonic() - started, summary)


def _summary(command: str, stdout: bytes) -> dict:
    """Counts only, from the command's JSON (no paths)."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        return {}
    keys = {
        "backup": ("snapshot_id", "files_new", "files_changed", "files_unchanged", "bytes_added", "partial",
                   "database_failures", "hook_failures"),
        "prune": ("snapshots_forgotten", "packs_deleted", "bytes_freed"),
        "check": ("ok", "read_data_subset", "packs", "blobs_verified"),
        "restore-test": ("ok", "files", "bytes", "sha256_verified", "seed", "scratch_wiped"),
    }[command]
    out = {k: doc.get(k) for k in keys if k in doc}
    if command == "backup":
        out["warnings"] = len(doc.get("warnings", []))
    if command == "check":
        out["errors"] = len(doc.get("errors", []))
    if command == "restore-test":
        out["failures"] = len(doc.get("failures", []))
        out["tests"] = [{k: t.get(k) for k in ("snapshot_id", "mode", "files", "duration_s", "throughput_mib_s")}
                        for t in doc.get("tests", [])]
        report = doc.get("report") or {}
        out["report"] = {k: report.get(k) for k in ("id", "html", "json", "pdf", "stored_in_repository")}
    return out


# Set by the daemon: APScheduler stores jobs as "module:function" + arguments, so the
# function it calls finds the runner and the configuration here.
_runner: JobRunner | None = None
_config = None

# The same obligations at risk are mailed again after this long, not at every job.
RISK_ALERT_REPEAT = _dt.timedelta(hours=24)
_WHAT = {"weekly": "la sauvegarde hebdomadaire", "daily": "la sauvegarde quotidienne",
         "check": "la vérification mensuelle"}


def install(runner: JobRunner, config) -> None:
    global _runner, _config
    _runner = runner
    _config = config
    runner.restore_test_sample = config.schedule.restore_test_sample


def run_job(job_id: str) -> None:
    """The function APScheduler's persistent jobs refer to (by name, so it survives restarts)."""
    if _runner is None:
        return
    from agent.daemon.schedule import read_data_slice

    schedule = _config.schedule
    ok = _runner.run(job_id, read_data_slice=read_data_slice(schedule.read_data_period_days, clock.now().date()),
                     prune=schedule.prune_after_backup)
    if not _config.alerts.enabled or _runner.stopping.is_set():
        return
    entry = _runner.record.load().get(job_id, {})
    if job_id.startswith("restore-test:"):
        # every report goes out, passed or not
        _alert(restore_test_alert(job_id, entry, ok, attach=_config.alerts.attach_report))
    elif not ok:
        _alert(failure_alert(job_id, entry))
    elif _backup_problems(entry):
        _alert(warning_alert(job_id, entry))
    _alert_risks(job_id.partition(":")[2])


def restore_test_alert(job_id: str, entry: dict, ok: bool, *, attach: bool = True):
    from agent.alerts import Alert

    repository = job_id.partition(":")[2]
    host = socket.gethostname()
    summary = entry.get("steps", [{}])[-1].get("summary", {}) if entry.get("steps") else {}
    lines = [f"Test de restauration trimestriel du dépôt « {repository} » sur {host} : "
             f"{'RÉUSSI' if ok else 'ÉCHEC'}.", "",
             f"Fichiers restaurés : {summary.get('files', 0)}, empreinte SHA-256 vérifiée pour "
             f"{summary.get('sha256_verified', 0)} ; fichiers en échec : {summary.get('failures', 0)}."]
    for test in summary.get("tests", []):
        lines.append(f"  - sauvegarde {str(test.get('snapshot_id'))[:8]} ({test.get('mode')}) : "
                     f"{test.get('files')} fichier(s) en {test.get('duration_s')} s "
                     f"({test.get('throughput_mib_s')} Mio/s)")
    if summary.get("error"):
        lines += ["", "Message :", f"  {summary['error']}"]
    lines += ["", "Les données restaurées pour le test ont été effacées." if summary.get("scratch_wiped")
              else "Attention : vérifier que le dossier de test a bien été effacé.",
              ]
    report = summary.get("report") or {}
    attachments, document = _report_files(report) if attach else ([], None)
    if attachments:
        lines.append("Le rapport complet est joint (à conserver : c'est la preuve du test pour un contrôle).")
    elif report.get("html"):
        lines.append(f"Rapport complet sur le serveur : {report['html']} (et une copie chiffrée dans le dépôt).")
    else:
        lines.append("Aucun rapport n'a pu être produit : voir backupctl restore-test (prestataire).")
    return Alert(subject=f"[backupctl] Test de restauration : {'réussi' if ok else 'ÉCHEC'} pour « {repository} » "
                         f"({host})", body="\n".join(lines),
                 facts={"event": "restore_test", "repository": repository, "host": host, "ok": ok,
                        "report": summary, **({"report_document": document} if document else {})},
                 attachments=attachments)


ATTACHMENT_LIMIT = 10 * 2**20  # a report is tens of KiB; never mail something unexpectedly large


def _report_files(report: dict) -> tuple[list[tuple[str, str, bytes]], dict | None]:
    """The report's HTML and PDF to attach, and its JSON facts for the webhook."""
    attachments, document = [], None
    for key, mime_type in (("html", "text/html"), ("pdf", "application/pdf")):
        path = report.get(key)
        try:
            if path and os.path.getsize(path) <= ATTACHMENT_LIMIT:
                with open(path, "rb") as handle:
                    attachments.append((os.path.basename(path), mime_type, handle.read()))
        except OSError as exc:
            log.warning("restore-test report %s not attached: %s", key, exc.strerror)
    try:
        if report.get("json") and os.path.getsize(report["json"]) <= ATTACHMENT_LIMIT:
            with open(report["json"], encoding="utf-8") as handle:
                document = json.load(handle)
    except (OSError, ValueError) as exc:
        log.warning("restore-test report facts not sent: %s", exc)
    return attachments, document


def _backup_problems(entry: dict) -> dict:
    """Database dumps or hooks that failed in a backup that was nevertheless saved."""
    summary = next((s.get("summary", {}) for s in entry.get("steps", []) if s.get("command") == "backup"), {})
    return {k: summary[k] for k in ("database_failures", "hook_failures") if summary.get(k)}


def warning_alert(job_id: str, entry: dict):
    from agent.alerts import Alert

    kind, _, repository = job_id.partition(":")
    what = _WHAT.get(kind, kind)
    host = socket.gethostname()
    problems = _backup_problems(entry)
    lines = [f"Sur le serveur {host}, {what} du dépôt « {repository} » est faite, mais incomplète :", ""]
    if problems.get("database_failures"):
        lines.append(f"  - {problems['database_failures']} sauvegarde(s) de base de données ont échoué : la base du "
                     f"logiciel n'est pas dans cette sauvegarde.")
    if problems.get("hook_failures"):
        lines.append(f"  - {problems['hook_failures']} commande(s) avant/après la sauvegarde ont échoué "
                     f"(par exemple l'arrêt ou le redémarrage du logiciel).")
    lines += ["", "Pour le prestataire : backupctl backup --json (liste des avertissements) ; journalctl -u backupctl."]
    return Alert(subject=f"[backupctl] À vérifier : {what} de « {repository} » incomplète ({host})",
                 body="\n".join(lines), facts={"event": "backup_warnings", "job": job_id, "host": host, **problems})


def failure_alert(job_id: str, entry: dict):
    from agent.alerts import Alert

    kind, _, repository = job_id.partition(":")
    what = _WHAT.get(kind, kind)
    host = socket.gethostname()
    steps = entry.get("steps", [])
    lines = [f"Sur le serveur {host}, {what} du dépôt « {repository} » a échoué.", "",
             "Étapes (code de sortie ; 0 = réussi) :"]
    lines += [f"  - {s['command']} : code {s['exit_code']}" for s in steps]
    errors = [s["summary"].get("error") for s in steps if s.get("summary", {}).get("error")]
    if errors:
        lines += ["", "Message :", f"  {errors[-1]}"]
    lines += ["", "Rien de ce qui était déjà sauvegardé n'est perdu. La tâche sera relancée au prochain "
              "démarrage du service ou à la prochaine échéance.",
              "Pour le prestataire : backupctl status ; journalctl -u backupctl ; codes de sortie dans le README."]
    return Alert(subject=f"[backupctl] ÉCHEC : {what} de « {repository} » ({host})", body="\n".join(lines),
                 facts={"event": "job_failed", "job": job_id, "host": host,
                        "exit_codes": [s["exit_code"] for s in steps], "error": errors[-1] if errors else None})


def _alert_risks(repository: str) -> None:
    from agent.alerts import Alert
    from agent.daemon.status import collect

    now = clock.now()
    repo = next((r for r in collect(_config, now)["repositories"] if r["repository"] == repository), None)
    if repo is None or not repo["at_risk"]:
        return
    path = os.path.join(_config.agent.state_dir, "daemon", "alerts.json")
    sent = load_json(path)
    previous = sent.get(repository, {})
    if previous.get("risks") == repo["at_risk"] and \
            now - _dt.datetime.fromisoformat(previous["time"]) < RISK_ALERT_REPEAT:
        return
    host = socket.gethostname()
    body = "\n".join([f"Sur le serveur {host}, des obligations de sauvegarde du dépôt « {repository} » "
                      f"ne sont pas remplies (mémento PGSSI-S) :", ""]
                     + [f"  - {risk}" for risk in repo["at_risk"]]
                     + ["", "Pour le prestataire : backupctl status"])
    if not _alert(Alert(subject=f"[backupctl] À surveiller : obligations non remplies pour « {repository} » "
                                f"({host})", body=body,
                        facts={"event": "obligations_at_risk", "repository": repository, "host": host,
                               "at_risk": repo["at_risk"]})):
        return
    sent[repository] = {"time": now.isoformat(), "risks": repo["at_risk"]}
    try:
        save_json(path, sent)
    except StateDirError as exc:
        log.error("the alert record cannot be written: %s", exc)


def _alert(alert) -> bool:
    """Send; a failing alert is logged, never raised (the job's own result stands)."""
    from agent.alerts import send

    problems = send(_config.alerts, alert)
    for problem in problems:
        log.error("alert not delivered: %s", problem)
    if not problems:
        log.info("alert sent: %s", alert.subject)
    return not problems
