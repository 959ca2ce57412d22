"""Installing and removing regnotify: the migration runner, each file's undo, the
catalog snapshots that let `migrate --to` and `uninstall` restore what they found,
the preflight that names a conflicting existing table before anything changes,
and the generators of sql/schema.sql and db/vocabulary.py."""
