"""The words of the compliance table and of the restore-test report, in French and English.

Reports are read by the practitioner and an auditor, in French by default
(`[agent] report_language`); the command line speaks English to the IT provider. Engines
return codes with parameters (agent.engine.compliance.Evidence); this module alone turns
them into sentences. A catalog is a plain dict: a handful of pages do not need gettext's
compile step, and a test checks that both languages have exactly the same keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent import timefmt

if TYPE_CHECKING:
    from agent.engine.compliance import Row

LANGUAGES = ("fr", "en")

RULE_TITLES = {
    "en": {
        "S1": "a backup at least every week",
        "S2": "rotated media",
        "S3": "one monthly backup over 12 sliding months",
        "S4": "yearly backups",
        "S6": "kept off-site, in two places",
        "S7": "a restore test at least every quarter (SHA-256 compared: C5)",
        "S8": "a copy out of reach (object lock)",
        "C1-C4": "every backup encrypted with state-of-the-art algorithms; SHA-256 fingerprints",
        "K1": "a printed recovery sheet in the safe",
        "T2": "traces kept six months at most",
        "S5": "a copy before every installation or reconfiguration",
    },
    "fr": {
        "S1": "une sauvegarde au moins chaque semaine",
        "S2": "supports en rotation",
        "S3": "une sauvegarde mensuelle sur 12 mois glissants",
        "S4": "sauvegardes annuelles",
        "S6": "conservées hors du cabinet, en deux lieux",
        "S7": "un test de restauration au moins chaque trimestre (empreintes SHA-256 comparées : C5)",
        "S8": "une copie hors d'atteinte (verrouillage des objets)",
        "C1-C4": "toutes les sauvegardes chiffrées avec des algorithmes à l'état de l'art ; empreintes SHA-256",
        "K1": "une fiche de récupération imprimée, au coffre",
        "T2": "traces conservées six mois au plus",
        "S5": "une copie avant toute nouvelle installation ou reconfiguration",
    },
}

EVIDENCE = {
    "en": {
        "latest_snapshot": "latest snapshot {snapshot} of {repository} on {time}",
        "latest_snapshot_old": "latest snapshot on {date}",
        "no_snapshot": "no snapshot",
        "no_disks": "no set of rotated disks is configured",
        "disks_used": "{count} different disk(s) of {set} used in the last 4 weeks",
        "months_with": "months with a snapshot: {months}",
        "months_without": "months without: {months}",
        "yearly": "retention keeps {kept} year(s); years with snapshots: {years}",
        "places": "{count} repository(ies); off-site: {off_site}",
        "restore_test_passed": "{repository}: {date} passed",
        "restore_test_failed": "{repository}: {date} FAILED",
        "no_restore_test": "no restore test recorded",
        "no_restore_test_of": "{repository}: no restore test recorded",
        "restore_test_too_old": "{repository}: {date}, more than a quarter ago",
        "object_lock": "{repository}: object lock {mode}",
        "no_object_lock": "no S3 repository with object lock",
        "cipher": "{repository}: {cipher}",
        "unreadable": "{repository}: not readable now ({problem})",
        "algorithms": "key wrapping Argon2id; chunk ids keyed BLAKE3; file fingerprints SHA-256; "
                      "recorded in each repository's config",
        "sheet": "produced on {date}",
        "no_sheet": "no recovery sheet has been produced yet (backupctl key export --paper)",
        "no_audit": "no audit trail yet",
        "audit_intact": "audit trail intact: {records} record(s) since {first}; older records purged automatically",
        "audit_altered": "audit trail ALTERED: {records} record(s) since {first}",
        "no_dpkg_log": "no package log ({log}): not applicable",
        "no_package_change": "no package change in {log}: not applicable",
        "dpkg_log_unreadable": "the package log cannot be read ({problem})",
        "package_change": "last package change: {action} {package} on {time}",
        "copy_before_installation": "preceded by snapshot {snapshot} of {repository} (avant-installation) on {time}",
        "copy_before_installation_old": "the last snapshot avant-installation before it, {snapshot} of "
                                        "{repository} on {time}, is more than 24 h older",
        "no_copy_before_installation": "no snapshot avant-installation before it",
        "copies_unknown": "not readable now: {repositories}",
    },
    "fr": {
        "latest_snapshot": "dernière sauvegarde {snapshot} ({repository}) le {time}",
        "latest_snapshot_old": "dernière sauvegarde le {date}",
        "no_snapshot": "aucune sauvegarde",
        "no_disks": "aucun jeu de disques en rotation n'est configuré",
        "disks_used": "{count} disque(s) différent(s) du jeu {set} utilisé(s) ces 4 dernières semaines",
        "months_with": "mois avec une sauvegarde : {months}",
        "months_without": "mois sans sauvegarde : {months}",
        "yearly": "la conservation garde {kept} an(s) ; années avec des sauvegardes : {years}",
        "places": "{count} dépôt(s) ; hors du cabinet : {off_site}",
        "restore_test_passed": "{repository} : {date} réussi",
        "restore_test_failed": "{repository} : {date} ÉCHEC",
        "no_restore_test": "aucun test de restauration enregistré",
        "no_restore_test_of": "{repository} : aucun test de restauration enregistré",
        "restore_test_too_old": "{repository} : {date}, il y a plus d'un trimestre",
        "object_lock": "{repository} : verrouillage des objets {mode}",
        "no_object_lock": "aucun dépôt S3 avec verrouillage des objets",
        "cipher": "{repository} : {cipher}",
        "unreadable": "{repository} : illisible pour l'instant ({problem})",
        "algorithms": "clé protégée par Argon2id ; identifiants de blocs BLAKE3 avec clé ; empreintes des "
                      "fichiers SHA-256 ; inscrits dans la configuration de chaque dépôt",
        "sheet": "produite le {date}",
        "no_sheet": "aucune fiche de récupération n'a encore été produite (backupctl key export --paper)",
        "no_audit": "pas encore de journal d'audit",
        "audit_intact": "journal d'audit intact : {records} enregistrement(s) depuis le {first} ; les plus "
                        "anciens sont effacés automatiquement",
        "audit_altered": "journal d'audit MODIFIÉ : {records} enregistrement(s) depuis le {first}",
        "no_dpkg_log": "pas de journal des paquets ({log}) : sans objet",
        "no_package_change": "aucun changement de paquet dans {log} : sans objet",
        "dpkg_log_unreadable": "le journal des paquets est illisible ({problem})",
        "package_change": "dernier changement de paquet : {action} {package} le {time}",
        "copy_before_installation": "précédé de la sauvegarde {snapshot} ({repository}, avant-installation) "
                                    "le {time}",
        "copy_before_installation_old": "la dernière sauvegarde avant-installation qui le précède, {snapshot} "
                                        "({repository}) le {time}, a plus de 24 h d'avance",
        "no_copy_before_installation": "aucune sauvegarde avant-installation ne le précède",
        "copies_unknown": "illisibles pour l'instant : {repositories}",
    },
}

# The obligations at risk (agent.state.records.Risk codes): `status` prints them in
# English for the IT provider, the daemon's alerts in [agent] report_language.
RISKS = {
    "en": {
        "no_backup": "no backup has been made yet (rule S1: at least weekly)",
        "backup_old": "no backup for {days} days (rule S1: at least weekly)",
        "no_monthly": "no backup yet in {month_name} {year}: no monthly snapshot (rule S3)",
        "check_damage": "the last check, on {date}, found damage",
        "no_restore_test": "no restore test has been made (rule S7: at least quarterly)",
        "restore_test_old": "no restore test for {days} days (rule S7: quarterly)",
        "restore_test_failed": "the last restore test failed",
        "disk_due": "this week's disk, {disk}, has not received its backup (rule S2)",
        "daemon_stopped": "the service is installed ({unit}) but its daemon is not running: no scheduled "
                          "backup, check or restore test runs (systemctl start backupctl)",
    },
    "fr": {
        "no_backup": "aucune sauvegarde n'a encore été faite (règle S1 : au moins chaque semaine)",
        "backup_old": "aucune sauvegarde depuis {days} jours (règle S1 : au moins chaque semaine)",
        "no_monthly": "pas encore de sauvegarde en {month_name} {year} : pas de sauvegarde mensuelle (règle S3)",
        "check_damage": "la dernière vérification, le {date}, a trouvé des dommages",
        "no_restore_test": "aucun test de restauration n'a été fait (règle S7 : au moins chaque trimestre)",
        "restore_test_old": "aucun test de restauration depuis {days} jours (règle S7 : chaque trimestre)",
        "restore_test_failed": "le dernier test de restauration a échoué",
        "disk_due": "le disque de cette semaine, {disk}, n'a pas reçu sa sauvegarde (règle S2)",
        "daemon_stopped": "le service est installé ({unit}) mais ne tourne pas : aucune sauvegarde, vérification "
                          "ni test de restauration planifié n'a lieu (systemctl start backupctl)",
    },
}

MONTH_NAMES = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"),
}

# The frame of the daemon's alert about obligations at risk.
RISK_ALERT = {
    "en": {
        "subject": "[backupctl] To watch: obligations not met for « {repository} » ({host})",
        "intro": "On the server {host}, backup obligations of the repository « {repository} » are not met "
                 "(PGSSI-S memento):",
        "provider": "For the IT provider: backupctl status",
    },
    "fr": {
        "subject": "[backupctl] À surveiller : obligations non remplies pour « {repository} » ({host})",
        "intro": "Sur le serveur {host}, des obligations de sauvegarde du dépôt « {repository} » "
                 "ne sont pas remplies (mémento PGSSI-S) :",
        "provider": "Pour le prestataire : backupctl status",
    },
}

STATUS = {
    "en": {"OK": "OK", "WARN": "WARN", "FAIL": "FAIL"},
    "fr": {"OK": "CONFORME", "WARN": "À SURVEILLER", "FAIL": "NON CONFORME"},
}

# The page itself.
LABELS = {
    "en": {
        "title": "Restore test report", "colon": ":", "days": "days", "keyed": "keyed",
        "level": "level", "none": "none", "name": "Name",
        "databases": "Databases: the latest dump loaded into a scratch database", "db_name": "Database",
        "db_type": "Kind", "db_tables": "Tables", "db_rows": "Rows", "db_ok": "restored",
        "db_note": "Each dump is loaded into a throwaway database server started for the test, which is stopped "
                   "and deleted after counting the rows of every table.",
        "db_not_loaded": "read, not loaded", "db_production": "WARNING: ",
        "verdict_ok": "PASSED: every file tested restored identically (SHA-256 compared)",
        "verdict_fail": "FAILED: some files did not restore identically",
        "practice": "Practice", "host": "Server", "generated": "Report produced on", "report_id": "Report id",
        "program": "Program",
        "repository": "Repository", "kind": "Kind", "endpoint": "Endpoint", "bucket": "Bucket",
        "location": "Location", "object_lock": "Object lock", "repository_id": "Repository id",
        "format_version": "Format version", "created": "Created on",
        "kind_s3": "S3 object storage", "kind_local": "local folder", "kind_disks": "rotated disks",
        "lock_none": "none", "lock_governance": "governance", "lock_compliance": "compliance",
        "upload_verification": "Uploads verified by",
        "verify_head": "the server checks each upload's SHA-256; compared by HEAD, without a second transfer",
        "verify_read-back": "downloading each upload again and comparing its SHA-256",
        "tested": "Snapshots tested", "snapshot": "Snapshot", "snapshot_time": "Taken on", "mode": "Mode",
        "mode_full": "every file", "mode_sample": "random sample",
        "files": "Files restored", "bytes": "Data restored", "verified": "SHA-256 verified",
        "duration": "Duration", "throughput": "Throughput",
        "mismatches": "Files that did not restore identically", "no_mismatch": "None.",
        "path": "File", "problem": "Problem",
        "withheld": "{count} file(s). This copy was sent without file names (a name can be health data): "
                    "they are in the full report on the server, {where}, and in its encrypted copy in the "
                    "repository.",
        "shared_copy": "Copy without file names, sent by e-mail; the full report stays on the server.",
        "wiped": "The restored copy (patient data) was wiped after the test.",
        "not_wiped": "WARNING: the restored copy could not be wiped.",
        "algorithms": "Algorithms", "cipher": "Encryption", "kdf": "Key protection",
        "chunk_id": "Chunk identifiers", "fingerprint": "File fingerprint", "compression": "Compression",
        "retention": "Retention against the rules", "weeks": "Last weeks", "months": "Last 12 months",
        "years": "Years", "policy": "Policy",
        "policy_text": "keep {weekly} weekly, {monthly} monthly and {yearly} yearly snapshots",
        "state_present": "present", "state_missing": "missing", "state_pending": "still to come",
        "state_before": "before the first backup",
        "checks": "Last checks", "check": "Structure check", "read_data_check": "Data re-read",
        "never": "never", "passed": "passed", "failed": "FAILED",
        "history": "Backups over 12 months", "history_note": "Total size of each snapshot kept, by week; "
        "older weeks keep only their monthly snapshot, as the retention policy says.",
        "tests_history": "Restore tests", "tests_history_note": "Throughput of each restore test (MiB/s); "
        "red: failed.",
        "no_history": "No restore test before this one.",
        "compliance": "Compliance with the rules", "rule": "Rule", "status": "Status", "evidence": "Evidence",
        "footer": "Produced automatically by backupctl. The same facts are in the JSON file of this report, "
                  "and a copy is kept encrypted in the repository.",
    },
    "fr": {
        "title": "Rapport de test de restauration", "colon": "\u00a0:", "days": "jours", "keyed": "avec clé",
        "level": "niveau", "none": "aucune", "name": "Nom",
        "databases": "Bases de données : la dernière sauvegarde chargée dans une base de test", "db_name": "Base",
        "db_type": "Type", "db_tables": "Tables", "db_rows": "Lignes", "db_ok": "restaurée",
        "db_note": "Chaque sauvegarde est chargée dans un serveur de base de données jetable, démarré pour le test, "
                   "arrêté et supprimé après le comptage des lignes de chaque table.",
        "db_not_loaded": "lue, non chargée", "db_production": "ATTENTION : ",
        "verdict_ok": "RÉUSSI : chaque fichier testé a été restauré à l'identique (empreintes SHA-256 comparées)",
        "verdict_fail": "ÉCHEC : des fichiers n'ont pas été restaurés à l'identique",
        "practice": "Cabinet", "host": "Serveur", "generated": "Rapport produit le",
        "report_id": "Identifiant du rapport",
        "program": "Programme",
        "repository": "Dépôt de sauvegarde", "kind": "Type", "endpoint": "Point d'accès", "bucket": "Compartiment",
        "location": "Emplacement", "object_lock": "Verrouillage des objets", "repository_id": "Identifiant du dépôt",
        "format_version": "Version du format", "created": "Créé le",
        "kind_s3": "stockage objet S3", "kind_local": "dossier local", "kind_disks": "disques en rotation",
        "lock_none": "aucun", "lock_governance": "gouvernance", "lock_compliance": "conformité",
        "upload_verification": "Vérification des envois",
        "verify_head": "le serveur contrôle l'empreinte SHA-256 de chaque envoi ; comparée par HEAD, sans second "
                       "transfert",
        "verify_read-back": "chaque envoi relu et son empreinte SHA-256 comparée",
        "tested": "Sauvegardes testées", "snapshot": "Sauvegarde", "snapshot_time": "Faite le", "mode": "Étendue",
        "mode_full": "tous les fichiers", "mode_sample": "échantillon au hasard",
        "files": "Fichiers restaurés", "bytes": "Données restaurées", "verified": "Empreintes SHA-256 vérifiées",
        "duration": "Durée", "throughput": "Débit",
        "mismatches": "Fichiers non restaurés à l'identique", "no_mismatch": "Aucun.",
        "path": "Fichier", "problem": "Problème",
        "withheld": "{count} fichier(s). Cette copie est envoyée sans noms de fichiers (un nom peut être une "
                    "donnée de santé) : ils sont dans le rapport complet sur le serveur, {where}, et dans sa "
                    "copie chiffrée dans le dépôt.",
        "shared_copy": "Copie sans noms de fichiers, envoyée par courriel ; le rapport complet reste sur le "
                       "serveur.",
        "wiped": "La copie restaurée (données de patients) a été effacée après le test.",
        "not_wiped": "ATTENTION : la copie restaurée n'a pas pu être effacée.",
        "algorithms": "Algorithmes", "cipher": "Chiffrement", "kdf": "Protection de la clé",
        "chunk_id": "Identifiants des blocs", "fingerprint": "Empreinte des fichiers", "compression": "Compression",
        "retention": "Conservation au regard des règles", "weeks": "Dernières semaines", "months": "12 derniers mois",
        "years": "Années", "policy": "Règle de conservation",
        "policy_text": "garder {weekly} sauvegardes hebdomadaires, {monthly} mensuelles et {yearly} annuelles",
        "state_present": "présente", "state_missing": "MANQUANTE", "state_pending": "à venir",
        "state_before": "avant la première sauvegarde",
        "checks": "Dernières vérifications", "check": "Vérification de la structure",
        "read_data_check": "Relecture des données",
        "never": "jamais", "passed": "réussie", "failed": "ÉCHEC",
        "history": "Sauvegardes sur 12 mois", "history_note": "Taille totale de chaque sauvegarde conservée, par "
        "semaine ; pour les semaines anciennes, seule la sauvegarde mensuelle est gardée, comme le prévoit la "
        "règle de conservation.",
        "tests_history": "Tests de restauration", "tests_history_note": "Débit de chaque test de restauration "
        "(Mio/s) ; en rouge : échec.",
        "no_history": "Aucun test de restauration avant celui-ci.",
        "compliance": "Conformité aux règles", "rule": "Règle", "status": "État", "evidence": "Éléments de preuve",
        "footer": "Produit automatiquement par backupctl. Les mêmes faits figurent dans le fichier JSON de ce "
                  "rapport, et une copie est conservée chiffrée dans le dépôt.",
    },
}


def rule_title(rule: str, language: str = "en") -> str:
    return RULE_TITLES[language].get(rule, rule)


def evidence_text(code: str, params: dict[str, Any], language: str = "en") -> str:
    # A "time" is ISO 8601 in the codes (JSON), shown to people in its own zone, with it.
    shown = {k: timefmt.shown(v, None) if k == "time" else v for k, v in params.items()}
    return EVIDENCE[language][code].format(**shown)


def risk_text(code: str, params: dict[str, Any], language: str = "en") -> str:
    """An obligation at risk (agent.state.records.Risk) in words."""
    if "month" in params:
        params = {**params, "month_name": MONTH_NAMES[language][int(params["month"]) - 1]}
    return RISKS[language][code].format(**params)


def risk_alert_text(part: str, language: str = "en", **params: str) -> str:
    return RISK_ALERT[language][part].format(**params)


def status_text(status: str, language: str = "en") -> str:
    return STATUS[language].get(status, status)


def row_dict(row: Row, language: str = "en") -> dict[str, Any]:
    """A compliance row (agent.engine.compliance.Row) as JSON: the words and the codes."""
    return {"rule": row.rule, "title": rule_title(row.rule, language), "status": row.status,
            "evidence": [evidence_text(e.code, e.params, language) for e in row.evidence],
            "evidence_codes": [{"code": e.code, **e.params} for e in row.evidence]}

# The recovery sheet (rule K1): printed, kept in the safe, read on the worst day.
SHEET_LABELS = {
    "en": {
        "title": "Backup recovery sheet", "host": "server", "made": "made on",
        "warning": "Keep this sheet in the safe. Whoever holds it can read every backup of the practice: "
                   "never photograph it, scan it or send it.",
        "share": "Share {number} of {count}: any {threshold} of these sheets together recover the backups; "
                 "fewer reveal nothing.",
        "repository": "Repository", "name": "Name", "url": "Address", "endpoint": "Endpoint", "bucket": "Bucket",
        "location": "Location", "repository_id": "Repository id", "cipher": "Encryption",
        "code": "Recovery code",
        "code_help": "Type each line with its two check characters at the end (spaces do not matter). A typing "
                     "mistake is reported on its line. Only letters A-Z and digits 2-7 are used.",
        "qr_help": "The same code, to scan.",
        "steps_title": "Recovering on a new computer",
        "steps": [
            "For an S3 repository, get an access key of the bucket from the hosting provider's console, and "
            "put it in the environment: <code>export AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…</code>. For a "
            "disk, plug it in and mount it.",
            "{install}",
            "List the backups; the command asks for the recovery code (type it, or paste the QR code's text): "
            "{list}",
            "Restore the latest backup (or one by its id) into an empty folder: {restore}",
            "To back up again from this computer, give the repository a new passphrase: {add_key} then "
            "configure backupctl as in the kit's INSTALL.md (section 5.4).",
        ],
        # The "{install}" step: backupctl from the repository's own rescue kit, offline, checked
        # against the SHA-256 printed here (agent/repo/rescue_kit.py); never from a public index.
        "install_kit": [
            "Copy the rescue kit (backupctl {version} and everything it needs, kept in the repository itself) "
            "onto the new computer (Debian 12 or newer, Python 3.11; for S3 the <code>aws</code> command, "
            "Debian package awscli): {fetch_kit}",
            "Check it: {check_kit} must print {sha256}. If it prints anything else, do not install it (it was "
            "changed): take the kit from another repository or disk.",
            "Install it, without network: {install_kit} (for the whole server with its service, instead: "
            "<code>sudo sh install.sh</code> in the kit's folder).",
        ],
        "install_no_kit": "Install backupctl on the new computer from the practice's installation kit "
                          "(READ-ME-FIRST.txt); this repository held no rescue kit when this sheet was made. "
                          "Never install it from a public package index: a package of that name there is "
                          "someone else's.",
        "footer": "Produced by backupctl. If this sheet is lost or may have been copied, make a new one and "
                  "destroy the old one.",
    },
    "fr": {
        "title": "Fiche de récupération des sauvegardes", "host": "serveur", "made": "établie le",
        "warning": "À conserver au coffre. Quiconque détient cette fiche peut lire toutes les sauvegardes du "
                   "cabinet : ne jamais la photographier, la numériser ni l'envoyer.",
        "share": "Part {number} sur {count} : {threshold} de ces fiches réunies suffisent à récupérer les "
                 "sauvegardes ; moins ne révèlent rien.",
        "repository": "Dépôt de sauvegarde", "name": "Nom", "url": "Adresse", "endpoint": "Point d'accès",
        "bucket": "Compartiment", "location": "Emplacement", "repository_id": "Identifiant du dépôt",
        "cipher": "Chiffrement",
        "code": "Code de récupération",
        "code_help": "Saisir chaque ligne avec ses deux caractères de contrôle à la fin (les espaces ne comptent "
                     "pas). Une faute de frappe est signalée sur sa ligne. Seules les lettres A-Z et les chiffres "
                     "2-7 sont utilisés.",
        "qr_help": "Le même code, à scanner.",
        "steps_title": "Récupérer sur un nouvel ordinateur",
        "steps": [
            "Pour un dépôt S3, obtenir une clé d'accès au compartiment dans la console de l'hébergeur, et la "
            "placer dans l'environnement : <code>export AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…</code>. Pour "
            "un disque, le brancher et le monter.",
            "{install}",
            "Lister les sauvegardes ; la commande demande le code de récupération (le saisir, ou coller le texte "
            "du QR code) : {list}",
            "Restaurer la dernière sauvegarde (ou une autre par son identifiant) dans un dossier vide : {restore}",
            "Pour sauvegarder de nouveau depuis cet ordinateur, donner au dépôt une nouvelle phrase de passe : "
            "{add_key} puis configurer backupctl comme l'indique le fichier INSTALL.md du kit (section 5.4).",
        ],
        "install_kit": [
            "Copier le kit de secours (backupctl {version} et tout ce qu'il lui faut, conservé dans le dépôt "
            "lui-même) sur le nouvel ordinateur (Debian 12 ou plus récent, Python 3.11 ; pour S3 la commande "
            "<code>aws</code>, paquet Debian awscli) : {fetch_kit}",
            "Le vérifier : {check_kit} doit afficher {sha256}. S'il affiche autre chose, ne pas l'installer (il "
            "a été modifié) : prendre le kit d'un autre dépôt ou d'un autre disque.",
            "L'installer, sans réseau : {install_kit} (pour le serveur complet avec son service, à la place : "
            "<code>sudo sh install.sh</code> dans le dossier du kit).",
        ],
        "install_no_kit": "Installer backupctl sur le nouvel ordinateur à partir du kit d'installation du "
                          "cabinet (READ-ME-FIRST.txt) ; ce dépôt ne contenait pas de kit de secours quand "
                          "cette fiche a été établie. Ne jamais l'installer depuis un index public de paquets : "
                          "un paquet de ce nom y appartient à quelqu'un d'autre.",
        "footer": "Établie par backupctl. Si cette fiche est perdue ou a pu être copiée, en établir une nouvelle "
                  "et détruire l'ancienne.",
    },
}


# The ransomware alarm (issue 22): its risk (`status`, the daemon's risk alert), its
# compliance rule R1 and the rule's evidence. Folder names and counts, never a file name.
RULE_TITLES["en"]["R1"] = "no open ransomware alarm (a suspect backup acknowledged by a person)"
RULE_TITLES["fr"]["R1"] = "aucune alerte rançongiciel en cours (sauvegarde suspecte vérifiée par une personne)"
EVIDENCE["en"]["ransomware_alarm"] = ("{repository}: snapshot {snapshot} marked SUSPECT (last good {last_good}); "
                                      "see what changed: {diff}; then backupctl acknowledge {snapshot}")
EVIDENCE["fr"]["ransomware_alarm"] = ("{repository} : sauvegarde {snapshot} marquée SUSPECTE (dernière saine "
                                      "{last_good}) ; voir ce qui a changé : {diff} ; puis backupctl acknowledge "
                                      "{snapshot}")
EVIDENCE["en"]["no_ransomware_alarm"] = "no suspect snapshot waiting to be acknowledged"
EVIDENCE["fr"]["no_ransomware_alarm"] = "aucune sauvegarde suspecte en attente de vérification"
RISKS["en"]["ransomware_alarm"] = ("RANSOMWARE ALARM: snapshot {snapshot} is marked suspect ({lost_compression} "
                                   "file(s) no longer compress, {renamed} renamed to a new extension, {changed_share} "
                                   "of the files changed); prune keeps everything from {last_good} on; see what "
                                   "changed: backupctl diff {last_good} {snapshot}; then backupctl acknowledge "
                                   "{snapshot}")
RISKS["fr"]["ransomware_alarm"] = ("ALERTE RANÇONGICIEL : la sauvegarde {snapshot} est marquée suspecte "
                                   "({lost_compression} fichier(s) ne se compressent plus, {renamed} renommé(s) avec "
                                   "une nouvelle extension, {changed_share} des fichiers modifiés) ; rien n'est "
                                   "effacé à partir de {last_good} ; voir ce qui a changé : backupctl diff "
                                   "{last_good} {snapshot} ; puis backupctl acknowledge {snapshot}")
