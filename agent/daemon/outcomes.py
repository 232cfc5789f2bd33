"""What a child's exit code means, in French, for the alerts the daemon sends.

An alert says what failed from structured facts only (the job, the step, its exit code,
counts, snapshot ids, rule ids), never by quoting the child's output: an error line can
name a patient's file ("the restore target is full: …/Dupont Jean - compte rendu.pdf"),
and e-mails and webhooks leave the server. The exit codes themselves are read from the
exception tree (agent.errors), so this table cannot drift from what the children return.
"""

from __future__ import annotations

from agent import errors

# One plain meaning per exit code, and what to do about it (for the IT person).
_MEANINGS: dict[int, tuple[str, str]] = {
    errors.SUCCESS_EXIT_CODE: ("réussi", ""),
    errors.PARTIAL_BACKUP_EXIT_CODE: (
        "sauvegarde faite, avec des avertissements : fichiers illisibles, base de données ou commande en échec",
        "relancer la sauvegarde à la main sur le serveur pour voir la liste"),
    errors.SUSPECT_BACKUP_EXIT_CODE: (
        "sauvegarde faite, mais marquée suspecte : ses changements ressemblent à une attaque par rançongiciel",
        "voir l'alerte URGENT envoyée ; backupctl status sur le serveur, puis backupctl acknowledge une fois vérifié"),
    errors.BackupctlError.exit_code: (
        "erreur inattendue",
        "relancer la commande à la main sur le serveur, avec --debug"),
    errors.ConfigError.exit_code: (
        "la configuration ou le dossier d'état est invalide",
        "vérifier /etc/backupctl/config.toml et les droits du dossier d'état"),
    errors.RepositoryNotFound.exit_code: (
        "aucun dépôt à l'adresse configurée",
        "vérifier l'adresse du dépôt (url) et que le disque ou le stockage est bien là"),
    errors.RepositoryExists.exit_code: (
        "un dépôt existe déjà à cet endroit",
        "rien n'a été modifié ; choisir un autre emplacement"),
    errors.WrongPassphrase.exit_code: (
        "la phrase de passe ou le fichier de clé ne permet pas d'ouvrir le dépôt",
        "vérifier le fichier de phrase de passe (ou l'identifiant systemd) ; si la phrase est perdue ou les "
        "fichiers de clé endommagés : backupctl recover --add-key avec la feuille de secours"),
    errors.IntegrityError.exit_code: (
        "des données stockées sont endommagées, altérées ou manquantes",
        "lancer backupctl check --read-data sur le serveur"),
    errors.StorageError.exit_code: (
        "le stockage a échoué : disque, réseau ou droits d'accès",
        "vérifier que le stockage est joignable, monté et accessible en écriture"),
    errors.RestoreTargetError.exit_code: (
        "la cible de restauration est pleine, en lecture seule ou occupée",
        "libérer de la place dans le dossier de test de restauration ou en choisir un autre"),
    errors.RepositoryLocked.exit_code: (
        "un autre processus backupctl utilise le dépôt",
        "attendre la fin de l'autre processus"),
    errors.SourceError.exit_code: (
        "un dossier à sauvegarder est inaccessible",
        "vérifier les chemins de [source] dans la configuration"),
    errors.UnsupportedFormat.exit_code: (
        "le dépôt utilise un format plus récent que ce programme",
        "mettre à jour backupctl"),
    errors.MediumError.exit_code: (
        "aucun des disques de sauvegarde prévus n'est branché",
        "brancher le disque de la semaine (backupctl media status)"),
    errors.HookFailed.exit_code: (
        "une commande avant la sauvegarde a échoué : pas de sauvegarde",
        "voir la sortie de la commande dans journalctl -u backupctl"),
    errors.PermissionDenied.exit_code: (
        "droits insuffisants : un fichier du dépôt, de l'état ou un fichier d'identifiants appartient à un "
        "autre utilisateur (ce n'est pas un dommage)",
        "lancer les commandes à la main en tant qu'utilisateur du service (sudo -u backupctl) ; la ligne "
        "d'erreur (journalctl -u backupctl) nomme le fichier, son propriétaire et le chown qui le rend"),
    errors.ClockSkewError.exit_code: (
        "l'horloge du serveur et celle du stockage ne concordent pas",
        "régler l'horloge du serveur (NTP)"),
    errors.INTERRUPTED_EXIT_CODE: (
        "interrompu ; rien de ce qui était déjà sauvegardé n'est perdu",
        "la tâche sera reprise au prochain démarrage"),
    errors.TERMINATED_EXIT_CODE: (
        "arrêté par l'arrêt du service ; rien de ce qui était déjà sauvegardé n'est perdu",
        "la tâche sera reprise au prochain démarrage"),
}


def meaning(exit_code: int) -> str:
    """The plain meaning of an exit code ("code 42" for a code backupctl never returns)."""
    known = _MEANINGS.get(exit_code)
    return known[0] if known else f"code de sortie inconnu {exit_code}"


def advice(exit_code: int) -> str:
    known = _MEANINGS.get(exit_code)
    return known[1] if known else "relancer la commande à la main sur le serveur"


def known_exit_codes() -> set[int]:
    return set(_MEANINGS)
