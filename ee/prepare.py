#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Put beside the execution environment's build everything it would download.

The EE build (``ansible-builder build``, execution-environment.yml) never
reaches Galaxy or PyPI: closed networks have neither. This script fills
``ee/offline/`` (its contents are git-ignored), which the build copies into its
context:

``collections/``
    one tarball per entry of ee/requirements.yml, under the file name that
    entry gives (``<namespace>-<name>-<version>.tar.gz``). By default each is
    made from the collection installed in this Python (the ``ansible`` pip
    package bundles them); the installed version must be the pinned one.
    ``--collections-from DIR`` takes them from a directory of tarballs instead
    (``ansible-galaxy collection download`` on a connected machine, or a
    private Automation Hub).
``wheels/``
    the Python wheels the build installs (ansible-core, ansible-runner,
    ee/requirements.txt, the collections' own Python requirements and
    ansible-builder's tools), for the EE's Python (3.11, x86_64 manylinux),
    fetched once with ``pip download`` from PyPI or the index pip is set to
    use, and kept in ``--wheel-cache`` between runs.

Usage:
    python3 ee/prepare.py [--collections-from DIR] [--wheel-cache DIR]

Run it with the Python of bmops's virtualenv (``make ee`` does). Standard
library and PyYAML only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

EE_DIR = Path(__file__).resolve().parent
ROOT = EE_DIR.parent
OFFLINE = EE_DIR / "offline"
TARBALL_RE = re.compile(
    r"^collections/(?P<ns>[a-z0-9_]+)-(?P<name>[a-z0-9_]+)-(?P<version>\d+\.\d+\.\d+[^/]*)\.tar\.gz$"
)
# The EE's interpreter (ee/base/Dockerfile: Debian 12) and platform.
PYTHON_VERSION = "3.11"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# What ansible-builder's own scripts install in the build (its Containerfile).
BUILDER_TOOLS = ("bindep", "pyyaml", "packaging", "dumb-init==1.2.5")


class PrepareError(Exception):
    """Something the operator has to fix; the message says what."""


def pinned_collections() -> list[dict[str, str]]:
    """The collections of ee/requirements.yml with namespace, name, version, file."""
    data = yaml.safe_load((EE_DIR / "requirements.yml").read_text())
    out = []
    for entry in data.get("collections") or []:
        m = TARBALL_RE.match(str(entry.get("name", "")))
        if entry.get("type") != "file" or not m:
            raise PrepareError(
                f"ee/requirements.yml: entry {entry!r} is not a collection tarball; "
                "write it as `name: collections/<namespace>-<name>-<version>.tar.gz` "
                "with `type: file`"
            )
        out.append(m.groupdict() | {"file": entry["name"].split("/", 1)[1]})
    return out


def installed_collection(ns: str, name: str) -> Path:
    spec = importlib.util.find_spec("ansible_collections")
    for base in spec.submodule_search_locations if spec else []:
        path = Path(base) / ns / name
        if (path / "MANIFEST.json").exists():
            return path
    raise PrepareError(
        f"collection {ns}.{name} is not installed in {sys.executable}; "
        "install the `ansible` package (make setup) or pass --collections-from DIR"
    )


def artifact_from_installed(src: Path, dest: Path) -> None:
    """A collection artifact (what `ansible-galaxy collection build` makes) of an
    installed collection, byte for byte. The `ansible` package leaves out a
    collection's CI and test files, which its FILES.json still lists, so the
    artifact carries a FILES.json of the files that are there (each checked
    against its recorded checksum) and a MANIFEST.json that names its checksum.
    Reproducible: sorted, no times, no owners."""
    listed = json.loads((src / "FILES.json").read_text())
    kept, members = [], []
    for f in listed["files"]:
        path = src / f["name"]
        if f["name"] == ".":
            kept.append(f)
        elif f["ftype"] == "dir" and path.is_dir():
            kept.append(f)
            members.append((f["name"], None))
        elif f["ftype"] == "file" and path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != f["chksum_sha256"]:
                raise PrepareError(
                    f"{path} differs from the checksum in {src}/FILES.json: the installed "
                    "collection was modified; reinstall it (make setup)"
                )
            kept.append(f)
            members.append((f["name"], data))
    files_json = json.dumps(listed | {"files": kept}, indent=4).encode()
    manifest = json.loads((src / "MANIFEST.json").read_text())
    manifest["file_manifest_file"]["chksum_sha256"] = hashlib.sha256(files_json).hexdigest()
    members = [("MANIFEST.json", json.dumps(manifest, indent=4).encode()),
               ("FILES.json", files_json), *members]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, data in members:
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            info.size = len(data)
            info.mode = 0o755 if (src / rel).stat().st_mode & 0o111 else 0o644
            tar.addfile(info, io.BytesIO(data))
    part = dest.with_suffix(".partial")
    with open(part, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue())
    part.rename(dest)


def prepare_collections(source: Path | None) -> list[dict[str, str]]:
    outdir = OFFLINE / "collections"
    outdir.mkdir(parents=True, exist_ok=True)
    pins = pinned_collections()
    for col in pins:
        dest = outdir / col["file"]
        if source is not None:
            found = source / col["file"]
            if not found.exists():
                raise PrepareError(
                    f"{found} is missing: download {col['ns']}.{col['name']}:{col['version']} "
                    "there (ansible-galaxy collection download) or change ee/requirements.yml"
                )
            shutil.copyfile(found, dest)
            continue
        src = installed_collection(col["ns"], col["name"])
        version = json.loads((src / "MANIFEST.json").read_text())["collection_info"]["version"]
        if version != col["version"]:
            raise PrepareError(
                f"ee/requirements.yml pins {col['ns']}.{col['name']} {col['version']} but "
                f"{src} is {version}: change the pin to what the tests ran with, or pass "
                "--collections-from DIR"
            )
        if not dest.exists():
            artifact_from_installed(src, dest)
    wanted = {c["file"] for c in pins}
    for stale in outdir.glob("*.tar.gz"):
        if stale.name not in wanted:
            stale.unlink()
    return pins


def python_requirements(pins: list[dict[str, str]]) -> list[str]:
    """ansible-core and ansible-runner (execution-environment.yml), ee/requirements.txt,
    the collections' Python requirements (what ansible-builder's introspection
    adds) and the builder's tools."""
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    deps = ee["dependencies"]
    reqs = [deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"]]
    texts = [(EE_DIR / "requirements.txt").read_text()]
    for col in pins:
        with tarfile.open(OFFLINE / "collections" / col["file"]) as tar:
            names = set(tar.getnames())
            meta = "meta/execution-environment.yml"
            rel = "requirements.txt"
            if meta in names:
                rel = (yaml.safe_load(tar.extractfile(meta)) or {}).get(
                    "dependencies", {}).get("python", "")
            if rel in names:
                texts.append(tar.extractfile(rel).read().decode())
    for text in texts:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                reqs.append(line)
    return reqs + list(BUILDER_TOOLS)


def prepare_wheels(reqs: list[str], cache: Path) -> Path:
    key = hashlib.sha256(json.dumps([PYTHON_VERSION, PLATFORMS, sorted(reqs)]).encode())
    house = cache / f"ee-{key.hexdigest()[:12]}"
    if not (house / ".complete").exists():
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
               "--python-version", PYTHON_VERSION, "--implementation", "cp", *platforms,
               "-d", str(house), *reqs]
        if subprocess.run(cmd, check=False).returncode != 0:
            raise PrepareError(
                "pip download of the EE's wheels failed (see above): this step needs PyPI "
                "or a mirror (pip's index-url); run it where one is reachable and copy "
                f"{house} to the build machine"
            )
        (house / ".complete").touch()
    dest = OFFLINE / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    for wheel in house.glob("*.whl"):
        shutil.copyfile(wheel, dest / wheel.name)
    return house


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collections-from", type=Path, metavar="DIR",
                        help="take the collection tarballs from DIR, not the installed ones")
    parser.add_argument("--wheel-cache", type=Path, metavar="DIR",
                        default=Path("/var/cache/bmops/wheels"),
                        help="where downloaded wheels are kept (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        pins = prepare_collections(args.collections_from)
        house = prepare_wheels(python_requirements(pins), args.wheel_cache)
    except PrepareError as exc:
        print(f"prepare.py: ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"prepare.py: {len(pins)} collections in {OFFLINE / 'collections'}, "
          f"wheels from {house} in {OFFLINE / 'wheels'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
