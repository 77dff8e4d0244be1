# SPDX-License-Identifier: Apache-2.0
"""filter_plugins/bm_files.py: which controller files differ from their installed copies."""

from __future__ import annotations

import hashlib

# tests/conftest.py puts filter_plugins on sys.path.
import bm_files
import pytest


@pytest.fixture
def sources(tmp_path):
    paths = []
    for name, text in (("a.py", "A\n"), ("b.py", "B\n"), ("c.py", "C\n")):
        path = tmp_path / name
        path.write_text(text)
        paths.append(str(path))
    return paths


def installed(name, text, mode="0644", owner="root"):
    return {"path": f"/usr/local/lib/bmops/pkg/{name}", "mode": mode, "pw_name": owner,
            "checksum": hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()}


def names(paths):
    return [p.rsplit("/", 1)[-1] for p in paths]


@pytest.mark.parametrize(
    ("have", "expected"),
    [
        ([], ["a.py", "b.py", "c.py"]),  # a fresh host: everything
        ([installed("a.py", "A\n"), installed("b.py", "B\n"), installed("c.py", "C\n")], []),
        ([installed("a.py", "A\n"), installed("b.py", "old\n"), installed("c.py", "C\n")],
         ["b.py"]),
        ([installed("a.py", "A\n", mode="0600"), installed("b.py", "B\n"),
          installed("c.py", "C\n", owner="nobody")], ["a.py", "c.py"]),
        ([installed("a.py", "A\n"), installed("c.py", "C\n"), installed("gone.py", "x")],
         ["b.py"]),  # an extra installed file is not this filter's business
    ],
)
def test_files_differ(sources, have, expected):
    assert names(bm_files.files_differ(sources, have, "/usr/local/lib/bmops/pkg")) == expected


def test_an_installed_copy_in_another_directory_does_not_count(sources):
    have = [installed("a.py", "A\n") | {"path": "/elsewhere/a.py"}]
    assert "a.py" in names(bm_files.files_differ(sources, have, "/usr/local/lib/bmops/pkg"))
