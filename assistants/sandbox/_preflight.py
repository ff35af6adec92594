"""Can the sandbox run here? Cheap checks with a fix in every message, then one real probe."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from assistants.sandbox._command import launch_command, launch_env, venv_root
from assistants.sandbox._config import SandboxConfig
from assistants.sandbox._errors import SandboxUnavailable
from assistants.sandbox._identity import Identity, resolve_identity

__all__ = ["Runtime", "preflight"]

_BUILD = "run scripts/build-sandbox"
_USERNS_HELP = (
    "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and "
    "user.max_user_namespaces>0; on Ubuntu 24.04 kernel.apparmor_restrict_unprivileged_userns=0 "
    "or an AppArmor profile for bwrap; in a container, a seccomp profile that allows "
    "unshare/clone with new namespaces)"
)


@dataclass(frozen=True)
class Runtime:
    """What a passed check found: the tools and the identity kernels run as."""

    bwrap: str
    prlimit: str
    identity: Identity


def preflight(config: SandboxConfig) -> Runtime:
    """Raise SandboxUnavailable with the reason and the fix, or return what to run with."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(f"bubblewrap is not installed (no bwrap on PATH): {_BUILD}")
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise SandboxUnavailable("prlimit is missing: install Debian's util-linux")
    _check_venv(config.python)
    identity = resolve_identity(config.uid)
    _prepare_root(config.root, identity)
    if identity.switch:
        _check_reachable(venv_root(config.python), "the sandbox venv")
        _check_reachable(config.root, "the working folder root")
        _check_reachable(Path(tempfile.gettempdir()), "the temp folder")
    runtime = Runtime(bwrap=bwrap, prlimit=prlimit, identity=identity)
    _probe(config, runtime)
    return runtime


def _check_venv(python: Path) -> None:
    if not os.access(python, os.X_OK):
        raise SandboxUnavailable(
            f"the sandbox Python {python} does not exist: {_BUILD} (it prints the path to use)"
        )
    venv = venv_root(python)
    if not (venv / "pyvenv.cfg").is_file():
        raise SandboxUnavailable(f"{python} is not the python of a venv: {_BUILD}")
    real = Path(os.path.realpath(python))
    if not (real.is_relative_to("/usr") or real.is_relative_to(os.path.realpath(venv))):
        raise SandboxUnavailable(
            f"the sandbox venv's python resolves to {real}, outside /usr: only /usr and the venv "
            f"are visible in the sandbox (pyenv venvs cannot be mounted); {_BUILD}, which "
            "builds the venv from Debian's /usr/bin/python3"
        )
    if not any(venv.glob("lib/python3*/site-packages/ipykernel/__init__.py")):
        raise SandboxUnavailable(f"ipykernel is missing from the sandbox venv {venv}: {_BUILD}")


def _prepare_root(root: Path, identity: Identity) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        if identity.switch:  # kernels' uids must pass through, but not list other keys
            os.chmod(root, 0o711)
    except OSError as exc:
        raise SandboxUnavailable(f"cannot create the working folder root {root}: {exc}") from exc


def _check_reachable(path: Path, what: str) -> None:
    """bubblewrap runs as the kernel uid, so every parent folder must be world-searchable."""
    for folder in [path, *path.parents]:
        try:
            mode = folder.stat().st_mode
        except OSError as exc:
            raise SandboxUnavailable(f"{what} {path} is not reachable: {exc}") from exc
        if not mode & stat.S_IXOTH:
            raise SandboxUnavailable(
                f"{what} {path} is not reachable by the sandbox uid: {folder} has mode "
                f"{stat.S_IMODE(mode):o}; choose a location whose parent folders are "
                "world-searchable (chmod o+x)"
            )


def _probe(config: SandboxConfig, runtime: Runtime) -> None:
    """Start the real sandbox once with `python -c pass`: namespaces, mounts, uid switch."""
    identity = runtime.identity
    uid = identity.uids[0]
    with (
        tempfile.TemporaryDirectory(prefix=".probe-", dir=config.root) as work,
        tempfile.TemporaryDirectory(prefix="sa-probe-") as run,
    ):
        if identity.switch:
            os.chmod(run, 0o711)
            os.chown(work, uid, identity.gid)
        argv = launch_command(
            config,
            bwrap=runtime.bwrap,
            prlimit=runtime.prlimit,
            workdir=Path(work),
            kernel_dir=Path(run),
            nproc=identity.nproc(uid, config.max_processes, config.max_kernels),
            argv=[str(venv_root(config.python) / "bin" / "python"), "-c", "pass"],
        )
        try:
            done = subprocess.run(
                argv,
                env=launch_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
                cwd="/",
                check=False,
                user=uid if identity.switch else None,
                group=identity.gid if identity.switch else None,
                extra_groups=[] if identity.switch else None,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxUnavailable(f"bubblewrap could not be started: {exc}") from exc
    if done.returncode == 0:
        return
    message = (done.stderr or done.stdout).strip()[-500:] or f"exit status {done.returncode}"
    if "disable-userns" in message:
        raise SandboxUnavailable(
            f"bubblewrap is too old ({message}): --disable-userns needs bubblewrap 0.8 or "
            f"newer (Debian 12's); {_BUILD}"
        )
    if any(
        hint in message
        for hint in ("uid map", "namespace", "Operation not permitted", "No permissions")
    ):
        raise SandboxUnavailable(
            f"bubblewrap cannot create its namespaces here ({message}): {_USERNS_HELP}"
        )
    raise SandboxUnavailable(f"the sandbox does not start: bubblewrap said: {message}")
