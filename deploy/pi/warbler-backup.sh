#!/bin/sh
# Run by warbler-backup.service: one online backup of the data dir with
# `warbler backup` (consistent while the service runs), then removal of the
# backups older than WARBLER_BACKUP_KEEP_DAYS days. Old backups are removed
# only after the new one was written and checked.
set -eu
bin=${WARBLER_BIN:-/usr/local/bin/warbler}
dir=${WARBLER_BACKUP_DIR:-/var/backups/warbler}
keep=${WARBLER_BACKUP_KEEP_DAYS:-14}
case "$keep" in ''|*[!0-9]*) echo "warbler-backup: WARBLER_BACKUP_KEEP_DAYS must be a whole number" >&2; exit 2 ;; esac

file="$dir/warbler-$(date -u +%Y%m%dT%H%M%SZ).db"
"$bin" backup "$file"
find "$dir" -maxdepth 1 -type f -name 'warbler-*.db' -mtime +"$keep" -print -delete
