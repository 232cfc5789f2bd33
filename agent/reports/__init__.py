"""Reports for people: the compliance table's facts, the restore-test report (HTML, JSON,
PDF), their words in French and English. Above the engines, below the CLI and daemon."""
