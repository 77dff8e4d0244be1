# SPDX-License-Identifier: Apache-2.0
"""Which controller files differ from the copies installed on a host.

- ``files_differ(sources, installed, dest_dir, mode, owner)``: the paths of SOURCES
  (files on the controller) whose copy in DEST_DIR, as ``ansible.builtin.find`` with
  ``get_checksum`` listed it in INSTALLED, is missing or has another SHA-1 checksum,
  mode or owner. A role then ships only those, in one archive: a copy per file
  costs a second or more of every run.
"""

from __future__ import annotations

import hashlib
import posixpath


def _sha1(path: str) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(65536), b''):
            digest.update(block)
    return digest.hexdigest()


def files_differ(sources, installed, dest_dir, mode='0644', owner='root'):
    """SOURCES (sorted as given) whose installed copy is missing or not the same."""
    have = {f.get('path'): f for f in installed or []}
    out = []
    for src in sources:
        found = have.get(posixpath.join(dest_dir, posixpath.basename(src)))
        if (found is None or found.get('checksum') != _sha1(src)
                or found.get('mode') != mode or found.get('pw_name') != owner):
            out.append(src)
    return out


class FilterModule:
    """bmops file filters."""

    def filters(self):
        return {'bm_files_differ': files_differ}
