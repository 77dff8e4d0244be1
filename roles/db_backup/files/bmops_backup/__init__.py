# SPDX-License-Identifier: Apache-2.0
"""bmops-backup: verified PostgreSQL backups and restores for the backup-mgmt stack.

A stdlib-only package (Python 3.11+), installed by the ``db_backup`` role under
``db_backup_lib_dir`` (/usr/local/lib/bmops/bmops_backup) with a small launcher at
``db_backup_tool_path`` (/usr/local/sbin/bmops-backup), run by cron and by the
backup/restore playbooks; ``python3 -m bmops_backup`` runs it as well.  Settings come
from a 0600 JSON file (default /etc/bmops/backup.json, env BMOPS_BACKUP_CONFIG,
option --config).

The dump runs inside the db container (client == server version) over the unix socket,
so no password is needed and none is ever on a command line.  Compression happens on
the host.  A backup exists only once it has been verified:

    <id>.<ext>.partial -> fsync -> verify (every member decompresses and passes its
    codec checksum, the TOC parses, every table file it names is there and ends with
    pg_dump's end-of-data marker; sha256) -> rename -> fsync dir -> manifest <id>.json
    written last (atomically).

Row counts in the manifest come from the dump's own data (the COPY rows of each table
file), so they describe exactly what is in the file, taken in pg_dump's single snapshot.

Exit codes: 0 ok, 1 failure, 2 usage/config error, 3 lock held by another run.
Every command prints one JSON document on stdout; human messages go to stderr.

Modules, one concern each (after barman's layout):

    exceptions        exit codes and ToolError
    utils             constants, stderr log, UTC times, process liveness
    config            the JSON configuration; how to reach the db container
    lockfile          the host-wide flock and ``lock acquire|release|status``
    command_wrappers  process plumbing: pipelines, feeding files, psql in the container
    compression       host codecs (zstd, gzip)
    toc               pg_dump's directory-format toc.dat
    archive           the .dir.tar format: pack, read back, count rows
    fs                fsync/atomic writes; the container's filesystem via /proc/<pid>/root
    infofile          backup file names and manifests
    catalogue         what is in the backup directory; ``list``
    retention         which backups to keep; ``prune``
    verify            reading a backup end to end; ``verify``, ``check``
    metrics           the node_exporter textfile
    backup_executor   ``backup``
    restore_executor  ``restore``, ``restore-test``, ``swap``, ``drop-old``
    cli               parses arguments and dispatches
"""
