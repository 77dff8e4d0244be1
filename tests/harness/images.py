#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Build the local test images of the air-gapped harness (never pulled).

Usage:
    images.py build [-v] [NAME ...]   build (or reuse) images, save archives
    images.py list                    show images, their input hash and state

NAME is a short name (``postgres``, ``base-trixie``, ...) or a full reference
(``bmops/postgres:15``); without NAME every image is built, in dependency order.

Every image carries the label ``org.bmops.inputs``: a sha256 over its build
context (relative paths and contents, sorted) and its base image's hash. When an
image with that label value exists the build is skipped; when a matching
archive exists in the cache it is loaded instead of built.

Base images come from ``debootstrap --variant=minbase SUITE``; the root file
system tarball is cached so a rebuild does not debootstrap again.

Archives (for hosts without a registry, see docs/contracts.md):
    ${BMOPS_CACHE:-/var/cache/bmops}/archives/<repo>-<tag>.tar
    ${BMOPS_CACHE:-/var/cache/bmops}/archives/<repo>-<tag>.tar.sha256  (sha256sum format)
    ${BMOPS_CACHE:-/var/cache/bmops}/archives/<repo>-<tag>.tar.inputs  (its input hash)

Python 3.11 standard library only; talks to Docker through the ``docker`` CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BMOPS_CACHE") or "/var/cache/bmops")
MIRROR = os.environ.get("BMOPS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
LABEL = "org.bmops.inputs"
# Bump when the way images are built changes without their context changing.
RECIPE_VERSION = "1"
IGNORED_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache", ".git", ".venv"}
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp")


class BuildError(Exception):
    """A step failed; the message names the image and the step."""


@dataclasses.dataclass(frozen=True)
class Image:
    name: str  # short name used on the command line
    ref: str  # repository:tag
    base: str | None = None  # short name of the base image
    context: str | None = None  # build context, relative to the repository
    suite: str | None = None  # Debian suite, for base images
    optional: bool = False  # skipped with a message when the context is missing
    archive: bool = True  # write a docker save archive
    # built by `ansible-builder build` from this definition (its inputs are the
    # definition and the files it names) instead of `docker build` of context
    ee_definition: str | None = None

    @property
    def archive_path(self) -> Path:
        repo, tag = self.ref.split(":")
        return CACHE / "archives" / f"{repo.split('/')[-1]}-{tag}.tar"


# Dependency order: bases first. Keep in step with docs/contracts.md.
IMAGES = [
    Image("base-bookworm", "bmops/base:bookworm", suite="bookworm", archive=False),
    Image("base-trixie", "bmops/base:trixie", suite="trixie", archive=False),
    Image("host", "bmops/host:trixie", base="base-trixie", context="images/host"),
    Image("postgres", "bmops/postgres:15", base="base-bookworm", context="images/postgres"),
    Image("redis", "bmops/redis:7", base="base-bookworm", context="images/redis"),
    Image(
        "backend", "bmops/backend:ref", base="base-bookworm", context="tests/refapp", optional=True
    ),
    Image("pebble", "bmops/pebble:latest", base="base-bookworm", context="images/pebble"),
    Image("smtp-sink", "bmops/smtp-sink:latest", base="base-bookworm", context="images/smtp-sink"),
    # the AWX execution environment (execution-environment.yml) and its base
    Image("ee-base", "bmops/ee-base:bookworm", base="base-bookworm", context="ee/base"),
    Image(
        "ee",
        "bmops/ee:0.1.0",
        base="ee-base",
        ee_definition="execution-environment.yml",
        archive=False,
    ),
]
# What an EE build reads besides its definition (ee/offline/ is made from these).
EE_INPUTS = ("ee/requirements.yml", "ee/requirements.txt", "ee/bindep.txt", "ee/prepare.py")
BY_NAME = {i.name: i for i in IMAGES} | {i.ref: i for i in IMAGES}


def docker(*args: str, **kw) -> subprocess.CompletedProcess:
    env = os.environ | {
        "DOCKER_BUILDKIT": "0"
    }  # no buildx here; legacy builder never pulls local bases
    return subprocess.run(["docker", *args], text=True, capture_output=True, env=env, **kw)


def image_label(ref: str) -> str | None:
    """The inputs label of a local image, or None when it does not exist."""
    res = docker("image", "inspect", "--format", f'{{{{ index .Config.Labels "{LABEL}" }}}}', ref)
    if res.returncode != 0:
        return None
    return res.stdout.strip() or ""


def image_with_label(value: str) -> str | None:
    res = docker("images", "-q", "--no-trunc", "--filter", f"label={LABEL}={value}")
    ids = res.stdout.split()
    return ids[0] if res.returncode == 0 and ids else None


def context_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES)
        for f in filenames:
            if f in IGNORED_NAMES or f.endswith(IGNORED_SUFFIXES):
                continue
            files.append(Path(dirpath, f))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def inputs_hash(img: Image, memo: dict[str, str] | None = None) -> str:
    """sha256 over the build context (paths + contents) and the base's hash."""
    memo = {} if memo is None else memo
    if img.name in memo:
        return memo[img.name]
    h = hashlib.sha256()
    h.update(f"bmops-images/{RECIPE_VERSION}\0{img.ref}\0".encode())
    if img.suite:
        # a base image is its recipe: suite, variant, mirror
        h.update(f"debootstrap\0minbase\0{img.suite}\0{MIRROR}\0".encode())
    else:
        if img.ee_definition:
            root = REPO_ROOT
            files = [REPO_ROOT / f for f in (img.ee_definition, *EE_INPUTS)]
        else:
            root = REPO_ROOT / img.context
            files = context_files(root)
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
            h.update(b"\1" if os.access(f, os.X_OK) else b"\0")
        h.update(b"base\0" + inputs_hash(BY_NAME[img.base], memo).encode())
    memo[img.name] = h.hexdigest()
    return memo[img.name]


def run_logged(img: Image, step: str, cmd: list[str], verbose: bool, **kw) -> None:
    """Run a command, output to the image's log; raise BuildError on failure."""
    logdir = CACHE / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    logfile = logdir / f"{img.name}.log"
    env = os.environ | {"DOCKER_BUILDKIT": "0"}
    with open(logfile, "a") as log:
        log.write(
            f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {step}: {' '.join(cmd)}\n"
        )
        log.flush()
        if verbose:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw
            )
            for line in proc.stdout:
                log.write(line)
                sys.stdout.write(f"  [{img.name}] {line}")
            rc = proc.wait()
        else:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, **kw).returncode
    if rc != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-25:]
        raise BuildError(
            f"{img.ref}: step '{step}' failed (exit {rc}); last lines of {logfile}:\n    "
            + "\n    ".join(tail)
        )


def rootfs_tarball(img: Image, verbose: bool) -> Path:
    """The cached debootstrap root file system of a suite, made once."""
    rootfs_dir = CACHE / "rootfs"
    rootfs_dir.mkdir(parents=True, exist_ok=True)
    tarball = rootfs_dir / f"{img.suite}-minbase.tar"
    if tarball.exists():
        return tarball
    if not shutil.which("debootstrap") and not Path("/usr/sbin/debootstrap").exists():
        raise BuildError(f"{img.ref}: debootstrap is not installed (run tests/harness/engine.sh)")
    work = Path(tempfile.mkdtemp(prefix=f".{img.suite}-", dir=rootfs_dir))
    try:
        target = work / "root"
        debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
        run_logged(
            img,
            "debootstrap",
            [debootstrap, "--variant=minbase", img.suite, str(target), MIRROR],
            verbose,
        )
        # host-specific files debootstrap copies in; docker provides its own
        for rel in ("etc/resolv.conf", "etc/hostname"):
            (target / rel).unlink(missing_ok=True)
        shutil.rmtree(target / "var/cache/apt/archives", ignore_errors=True)
        (target / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".tar.partial")
        run_logged(
            img,
            "tar rootfs",
            ["tar", "--numeric-owner", "-C", str(target), "-cf", str(partial), "."],
            verbose,
        )
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


def build_one(img: Image, digest: str, verbose: bool) -> None:
    if img.suite:
        tarball = rootfs_tarball(img, verbose)
        run_logged(
            img,
            "docker import",
            [
                "docker",
                "import",
                "--change",
                f"LABEL {LABEL}={digest}",
                "--change",
                'CMD ["/bin/bash"]',
                str(tarball),
                img.ref,
            ],
            verbose,
        )
        return
    base = BY_NAME[img.base]
    if image_label(base.ref) != inputs_hash(base):
        raise BuildError(
            f"{img.ref}: base image {base.ref} is missing or stale (build {base.name} first)"
        )
    if img.ee_definition:
        build_ee(img, digest, verbose)
        return
    run_logged(
        img,
        "docker build",
        [
            "docker",
            "build",
            "--force-rm",  # no stopped containers left behind by a failed step
            "--label",
            f"{LABEL}={digest}",
            "-t",
            img.ref,
            str(REPO_ROOT / img.context),
        ],
        verbose,
    )


def build_ee(img: Image, digest: str, verbose: bool) -> None:
    """ee/prepare.py (collections and wheels beside the build), then ansible-builder."""
    builder = Path(sys.executable).with_name("ansible-builder")
    run_logged(
        img,
        "prepare",
        [sys.executable, str(REPO_ROOT / "ee" / "prepare.py"),
         "--wheel-cache", str(CACHE / "wheels")],
        verbose,
    )
    context = CACHE / "ee-context"
    shutil.rmtree(context, ignore_errors=True)
    run_logged(
        img,
        "ansible-builder build",
        [
            str(builder),
            "build",
            "--file", str(REPO_ROOT / img.ee_definition),
            "--context", str(context),
            "--container-runtime", "docker",
            "--tag", img.ref,
            "--build-arg", f"EE_BASE_IMAGE={BY_NAME[img.base].ref}",
            "--extra-build-cli-args", f"--force-rm --label {LABEL}={digest}",
            "-v", "3",
        ],
        verbose,
        cwd=REPO_ROOT,
    )


def archive_current(img: Image, digest: str) -> bool:
    tar = img.archive_path
    meta = Path(f"{tar}.inputs")
    return (
        tar.exists()
        and Path(f"{tar}.sha256").exists()
        and meta.exists()
        and meta.read_text().strip() == digest
    )


def save_archive(img: Image, digest: str, verbose: bool) -> None:
    tar = img.archive_path
    tar.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(f"{tar}.partial")
    run_logged(img, "docker save", ["docker", "save", "-o", str(partial), img.ref], verbose)
    h = hashlib.sha256()
    with open(partial, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    # invalidate first: a crash in between leaves "stale", never a wrong match
    Path(f"{tar}.inputs").unlink(missing_ok=True)
    partial.rename(tar)
    for suffix, text in ((".sha256", f"{h.hexdigest()}  {tar.name}\n"), (".inputs", digest + "\n")):
        tmp = Path(f"{tar}{suffix}.partial")
        tmp.write_text(text)
        tmp.rename(f"{tar}{suffix}")


def ensure(img: Image, verbose: bool) -> str:
    """Build, reuse or load one image; return what happened."""
    if img.context and not (REPO_ROOT / img.context / "Dockerfile").exists():
        if img.optional:
            return f"skipped ({img.context}/Dockerfile does not exist yet)"
        raise BuildError(f"{img.ref}: {img.context}/Dockerfile is missing")
    digest = inputs_hash(img)
    how = None
    if image_label(img.ref) == digest:
        how = "cached"
    elif (found := image_with_label(digest)) is not None:
        run_logged(img, "docker tag", ["docker", "tag", found, img.ref], verbose)
        how = "cached (re-tagged)"
    elif img.archive and archive_current(img, digest):
        run_logged(img, "docker load", ["docker", "load", "-i", str(img.archive_path)], verbose)
        if image_label(img.ref) == digest:
            return "loaded from archive"
        how = None  # archive did not hold what its metadata claimed: build
    if how is None:
        build_one(img, digest, verbose)
        how = "built"
    if img.archive and not archive_current(img, digest):
        save_archive(img, digest, verbose)
        how += ", archive saved"
    return how


def select(names: list[str]) -> list[Image]:
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        known = ", ".join(i.name for i in IMAGES)
        raise SystemExit(f"images.py: unknown image(s) {', '.join(unknown)}; known: {known}")
    wanted = {BY_NAME[n].name for n in names} if names else {i.name for i in IMAGES}
    # add bases of the wanted images
    for img in IMAGES:
        if img.name in wanted and img.base:
            wanted.add(img.base)
    return [i for i in IMAGES if i.name in wanted]  # IMAGES is in dependency order


def cmd_build(args: argparse.Namespace) -> int:
    failed = []
    total = time.monotonic()
    for img in select(args.names):
        if img.base and img.base in failed:
            print(f"{img.ref:28} FAILED (base image {BY_NAME[img.base].ref} failed)", flush=True)
            failed.append(img.name)
            continue
        start = time.monotonic()
        try:
            how = ensure(img, args.verbose)
        except BuildError as exc:
            print(f"{img.ref:28} FAILED after {time.monotonic() - start:.1f}s", flush=True)
            print(f"images.py: ERROR: {exc}", file=sys.stderr, flush=True)
            failed.append(img.name)
            continue
        print(f"{img.ref:28} {how} in {time.monotonic() - start:.1f}s", flush=True)
    print(f"total {time.monotonic() - total:.1f}s", flush=True)
    if failed:
        print(f"images.py: {len(failed)} image(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print(f"{'NAME':14} {'IMAGE':26} {'INPUTS':14} {'STATE':9} ARCHIVE")
    for img in IMAGES:
        if img.context and not (REPO_ROOT / img.context / "Dockerfile").exists():
            print(f"{img.name:14} {img.ref:26} {'-':14} {'no ctx':9} -")
            continue
        digest = inputs_hash(img)
        label = image_label(img.ref)
        state = "missing" if label is None else ("current" if label == digest else "stale")
        arch = (
            "-"
            if not img.archive
            else (str(img.archive_path) if archive_current(img, digest) else "missing/stale")
        )
        print(f"{img.name:14} {img.ref:26} {digest[:12]:14} {state:9} {arch}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="images.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build images (default: all) in dependency order")
    b.add_argument("-v", "--verbose", action="store_true", help="stream build output")
    b.add_argument("names", nargs="*", metavar="NAME")
    b.set_defaults(func=cmd_build)
    ls = sub.add_parser("list", help="show images with their input hash")
    ls.set_defaults(func=cmd_list)
    args = parser.parse_args(argv)
    if shutil.which("docker") is None:
        print(
            "images.py: ERROR: the docker CLI is not installed (run tests/harness/engine.sh)",
            file=sys.stderr,
        )
        return 1
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
