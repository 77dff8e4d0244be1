# SPDX-License-Identifier: Apache-2.0
"""Start and stop managed-host containers (Debian 13, systemd as PID 1).

The run flags come from the shared Molecule platform in
``.config/molecule/config.yml`` (one source of truth, docs/architecture.md, "Test hosts"), so the
demo host, the integration-test host and the Molecule hosts are the same
machine.

    python tests/harness/hosts.py up NAME [--network NET]
    python tests/harness/hosts.py down NAME
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_FILE = ROOT / ".config" / "molecule" / "config.yml"


class HostError(RuntimeError):
    """A host container could not be started or did not boot."""


def platform() -> dict:
    """The shared Molecule platform definition of the systemd host."""
    config = yaml.safe_load(PLATFORM_FILE.read_text(encoding="utf-8"))
    return config["platforms"][0]


class DockerError(subprocess.CalledProcessError):
    """A failed docker command; unlike its parent, it prints what docker said."""

    def __str__(self) -> str:
        said = (self.stderr or "").strip()[-2000:]
        return f"{super().__str__()}\n--- docker said:\n{said}"


# runc sometimes cannot start an exec'd process on a loaded machine ("read init-p:
# connection reset by peer", "error executing setns process"): the runtime failed,
# not the command.  A stopped container or a missing file is not retried: it lasts.
_RUNTIME_FLAKE = "OCI runtime exec failed"
_LASTING = ("stopped container", "not running", "no such file or directory")
EXEC_ATTEMPTS = 3


def _runtime_flake(proc: subprocess.CompletedProcess) -> bool:
    err = (proc.stderr or "").lower()
    return (proc.returncode == 126 and _RUNTIME_FLAKE.lower() in err
            and not any(word in err for word in _LASTING))


def docker(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run docker ARGS; with CHECK, a failure raises DockerError naming its stderr.

    An exec the runtime could not start is tried again (at most EXEC_ATTEMPTS times in
    all), saying so on stderr: the command itself never ran, so nothing runs twice.
    """
    for attempt in range(1, EXEC_ATTEMPTS + 1):
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, **kw)
        if not (args and args[0] == "exec" and _runtime_flake(proc)) \
                or attempt == EXEC_ATTEMPTS:
            break
        print(f"docker exec: the runtime did not start the process (attempt {attempt}), "
              f"trying again: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        time.sleep(attempt)
    if check and proc.returncode != 0:
        raise DockerError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def _volume_name(name: str, path: str) -> str:
    return f"{name}-{path.strip('/').replace('/', '-')}"


def host_volumes(name: str) -> list[str]:
    """The named volumes `docker run` gives host NAME (its inner /var/lib/docker)."""
    return [_volume_name(name, v) for v in platform().get("volumes", []) if ":" not in v]


def run_args(name: str, network: str | None = None) -> list[str]:
    """`docker run` arguments for a host named NAME, from the shared platform."""
    p = platform()
    args = ["run", "-d", "--name", name, "--hostname", name]
    for cap in p.get("capabilities", []):
        args += ["--cap-add", cap]
    for opt in p.get("security_opts", []):
        args += ["--security-opt", opt]
    if p.get("cgroupns_mode"):
        args += [f"--cgroupns={p['cgroupns_mode']}"]
    for vol in p.get("volumes", []):
        # An anonymous volume in the platform (inner /var/lib/docker) becomes a
        # named one here, so `down` can remove it explicitly.
        if ":" not in vol:
            vol = f"{_volume_name(name, vol)}:{vol}"
        args += ["-v", vol]
    for tmpfs in p.get("tmpfs", []):
        args += ["--tmpfs", tmpfs]
    if p.get("stop_signal"):
        args += ["--stop-signal", p["stop_signal"]]
    if network:
        args += ["--network", network]
    args += [p["image"], *str(p["command"]).split()]
    return args


def wait_booted(name: str, timeout: float = 90.0) -> str:
    """Wait until systemd in NAME is running or degraded; return that state."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = docker("exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(1)
    raise HostError(f"{name}: systemd did not finish booting in {timeout:.0f} s (state {state!r})")


def up(name: str, network: str | None = None) -> str:
    """Start host NAME (reuse it when it already runs) and wait for systemd.

    A host that is not running starts fresh: a stopped container and the inner
    Docker volume a killed run left behind are removed first. Reusing them
    brought back an inner Compose network whose subnet the outer test network
    had since taken (172.19.0.0/16 on both sides), and the host could no longer
    reach its own backend.
    """
    status = docker("inspect", "-f", "{{.State.Status}}", name, check=False).stdout.strip()
    if status == "running":
        return wait_booted(name)
    down(name)
    image = platform()["image"]
    if docker("image", "inspect", image, check=False).returncode != 0:
        raise HostError(f"image {image} is missing: run `make images` first")
    proc = docker(*run_args(name, network), check=False)
    if proc.returncode != 0:
        raise HostError(f"docker run {name} failed: {proc.stderr.strip()}")
    return wait_booted(name)


def down(name: str) -> None:
    """Remove host NAME and its inner-Docker volumes."""
    mounts = docker("inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", name,
                    check=False).stdout.split()
    docker("rm", "-f", "-v", name, check=False)
    for vol in sorted(set(mounts) | set(host_volumes(name))):
        docker("volume", "rm", "-f", vol, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("name")
    parser.add_argument("--network")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            print(f"{args.name}: systemd {up(args.name, args.network)}")
        else:
            down(args.name)
    except HostError as exc:
        print(f"hosts.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
