"""The bubblewrap command line that starts one kernel, and its Jupyter connection info.

Why each piece (the design that passed the escape battery, shared/FACTS.md section 3):
- user/pid/net/ipc/uts/cgroup namespaces: no network at all (the sandbox's loopback is its
  own), no view of host processes; `--disable-userns` stops nested `unshare -U`;
  `--cap-drop ALL`, `--new-session` (no TIOCSTI), `--die-with-parent`.
- bubblewrap itself is started with only PATH in its environment: the pid 1 inside the
  sandbox is bubblewrap's reaper and its /proc/1/environ is readable from inside, which
  `--clearenv` does not cover.
- read-only /usr (with the /bin, /lib... links of a merged-/usr system), /etc/ld.so.cache and
  the venv; nothing else of the host: no /etc/passwd, /home, /root, /sys.
- sized tmpfs for /tmp and /dev/shm (`--dev` and the root tmpfs are unsized, so the root is
  remounted read-only last); the working folder read-write at /mnt/data (the cwd once the
  kernel has started); the kernel's socket folder at /run/kernel.
- rlimits are applied by prlimit(1) between the uid switch and bubblewrap, so they bind every
  process in the sandbox.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from assistants.sandbox._config import SandboxConfig

__all__ = [
    "DATA_DIR",
    "KERNEL_DIR",
    "connection_info",
    "launch_command",
    "launch_env",
    "venv_root",
]

DATA_DIR = "/mnt/data"
KERNEL_DIR = "/run/kernel"
CONNECTION_FILE = "kernel.json"
MAX_OPEN_FILES = 256
SHM_BYTES = 64 * 1024 * 1024
_MB = 1024 * 1024
_PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
# Not secrets, and needed: OpenBLAS picks a broken kernel on some CPUs without them.
_PASS_THROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def venv_root(python: Path) -> Path:
    """The venv folder of `python` (…/bin/python), without resolving the symlink."""
    return Path(os.path.abspath(python)).parent.parent


def launch_env() -> dict[str, str]:
    """The whole environment bubblewrap (and so the sandbox's pid 1) is started with."""
    return {"PATH": "/usr/bin:/bin"}


def connection_info(folder: str, key: str) -> dict[str, Any]:
    """ZMQ over Unix sockets named `{folder}/k-{port}`; no TCP port is ever opened."""
    return {
        "transport": "ipc",
        "ip": f"{folder}/k",
        **_PORTS,
        "key": key,
        "signature_scheme": "hmac-sha256",
        "kernel_name": "",
    }


def new_key() -> str:
    return secrets.token_hex(32)


def launch_command(
    config: SandboxConfig,
    *,
    bwrap: str,
    prlimit: str,
    workdir: Path,
    kernel_dir: Path,
    nproc: int,
    argv: list[str] | None = None,
) -> list[str]:
    """prlimit … -- bwrap … -- python -m ipykernel_launcher (or `argv`, for the probe)."""
    venv = venv_root(config.python)
    limits = [
        prlimit,
        f"--as={config.memory_mb * _MB}",
        f"--nproc={nproc}",
        f"--nofile={MAX_OPEN_FILES}",
        f"--fsize={config.max_file_mb * _MB}",
        "--core=0",
        "--",
    ]
    sandbox = [
        bwrap,
        "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
        "--unshare-cgroup-try", "--disable-userns", "--cap-drop", "ALL",
        "--die-with-parent", "--new-session", "--hostname", "sandbox",
        "--clearenv", *_setenv(venv),
        *_system_mounts(),
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm",
        "--size", str(config.tmp_mb * _MB), "--tmpfs", "/tmp",
        "--ro-bind", str(venv), str(venv),  # after /tmp, which would hide a venv under /tmp
        *_matplotlib_cache(venv),
        "--bind", str(workdir), DATA_DIR,
        "--bind", str(kernel_dir), KERNEL_DIR,
        "--chdir", "/tmp",
        "--remount-ro", "/",
        "--",
    ]  # fmt: skip
    kernel = [
        str(venv / "bin" / "python"),
        "-m", "ipykernel_launcher",
        "-f", f"{KERNEL_DIR}/{CONNECTION_FILE}",
        # start in /tmp and only then enter /mnt/data: a json.py or random.py the code left in
        # the working folder must not shadow the modules the kernel imports while starting
        f"--IPKernelApp.exec_lines=__import__('os').chdir('{DATA_DIR}')",
        "--HistoryManager.enabled=False",
        "--InteractiveShell.colors=nocolor",
        "--InteractiveShell.xmode=Plain",
    ]  # fmt: skip
    return [*limits, *sandbox, *(argv if argv is not None else kernel)]


def _setenv(venv: Path) -> list[str]:
    env = {
        "PATH": f"{venv}/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "IPYTHONDIR": "/tmp/.ipython",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.update({name: os.environ[name] for name in _PASS_THROUGH if name in os.environ})
    return [arg for name, value in env.items() for arg in ("--setenv", name, value)]


def _system_mounts() -> list[str]:
    """/usr read-only, plus the top-level links (or folders) a merged-/usr system has."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    if os.path.exists("/etc/ld.so.cache"):
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return args


def _matplotlib_cache(venv: Path) -> list[str]:
    """The font cache build-sandbox prebuilt, so no kernel spends ~1 s rebuilding it."""
    args = ["--dir", "/tmp/matplotlib"]
    cache = venv / "share" / "matplotlib-cache"
    if cache.is_dir():
        for item in sorted(cache.glob("fontlist-*.json")):
            args += ["--ro-bind", str(item), f"/tmp/matplotlib/{item.name}"]
    return args
