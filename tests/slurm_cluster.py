"""A real single-node SLURM for the tests: munge, slurmctld and slurmd from Debian's packages.

`SlurmCluster(root).start()` writes a `slurm.conf` for this host's CPUs and memory (as
`slurmd -C` reports them; `select/cons_tres`, no accounting), starts its own munged (own key
and socket), slurmctld and slurmd in the foreground as children of this process, on free
loopback ports, and waits for the node to be idle. `stop()` cancels what is left and ends
exactly those three processes, by pid. Client commands reach this cluster only through
`cluster.env` (`SLURM_CONF`), so a SLURM already configured on the machine is left alone.

`install_packages()` installs the Debian packages when they are missing and we are root;
`unavailable()` says in one line why a cluster cannot be had here (None when it can).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "munged")
# Where Debian puts the daemons; root's PATH has them, a plain user's may not.
SBIN = ("/usr/sbin", "/sbin")


def which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(Path(d) / name) for d in SBIN if (Path(d) / name).exists()), None
    )


def install_packages(timeout: float = 600.0) -> str | None:
    """apt-get install the packages if a binary is missing; None on success, else why not."""
    if all(which(b) for b in BINARIES):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        missing = [b for b in BINARIES if not which(b)]
        return f"SLURM binaries missing ({', '.join(missing)}); installing them needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:  # a stale package list: update once, then try again
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=timeout)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return f"apt-get install {' '.join(PACKAGES)} failed: {proc.stderr.strip()[-300:]}"
    return None


def unavailable() -> str | None:
    """One line saying why no cluster can be started here, or None."""
    if os.geteuid() != 0:
        if not all(which(b) for b in BINARIES):
            return "SLURM is not installed and installing it needs root"
        return "a private slurmctld/slurmd needs root (slurmd runs jobs as their user)"
    return install_packages()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_resources() -> dict[str, str]:
    """`slurmd -C`: this host's NodeName line (CPUs, sockets, cores, threads, RealMemory)."""
    out = subprocess.run([which("slurmd"), "-C"], capture_output=True, text=True, timeout=30)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("NodeName="))
    return dict(kv.split("=", 1) for kv in line.split())


class SlurmCluster:
    """One controller, one node (this host), one partition `cpu`: no GPUs, no accounting."""

    def __init__(self, root: Path, *, kill_wait: int = 30, cred_expire: int = 10) -> None:
        self.root = Path(root)
        self.kill_wait = kill_wait  # SLURM's default: a stopping run exits well within it
        self.cred_expire = cred_expire  # also how long a requeued job waits (slurm.conf(5))
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "etc" / "slurm.conf"
        self.node = socket.gethostname().split(".")[0]
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for var in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SQUEUE_"))]:
            if var != "SLURM_CONF":  # running inside a SLURM job: do not leak its settings
                del self.env[var]

    # -- configuration ---------------------------------------------------------------------
    def _write_conf(self) -> None:
        res = host_resources()
        d = {n: self.root / n for n in ("etc", "state", "spool", "log", "run", "munge")}
        for p in d.values():
            p.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.munge_socket = d["munge"] / "munge.socket"
        lines = [
            "ClusterName=probetest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket},cred_expire={self.cred_expire}",
            f"StateSaveLocation={d['state']}",
            f"SlurmdSpoolDir={d['spool']}",
            f"SlurmctldPidFile={d['run'] / 'slurmctld.pid'}",
            f"SlurmdPidFile={d['run'] / 'slurmd.pid'}",
            f"SlurmctldLogFile={d['log'] / 'slurmctld.log'}",
            f"SlurmdLogFile={d['log'] / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/builtin",
            "SchedulerParameters=sched_interval=1",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            f"KillWait={self.kill_wait}",
            "ReturnToService=2",
            "DefMemPerCPU=1024",
            "MinJobAge=600",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={res['CPUs']} "
            f"Boards={res.get('Boards', 1)} SocketsPerBoard={res['SocketsPerBoard']} "
            f"CoresPerSocket={res['CoresPerSocket']} ThreadsPerCore={res['ThreadsPerCore']} "
            f"RealMemory={res['RealMemory']} State=UNKNOWN",
            # two jobs may share a core: the tests' jobs mostly sleep in a slow stub encoder
            "PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP "
            "OverSubscribe=FORCE:2",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    # -- daemons -----------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 - kept by the child
        self.procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        log.close()

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        m = self.root / "munge"
        self._spawn("munged", [which("munged"), "--foreground", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={m / 'munged.pid'}",
                               f"--log-file={m / 'munged.log'}", f"--seed-file={m / 'seed'}",
                               "--force"])  # fmt: skip
        self._wait(lambda: self.munge_socket.exists(), what="munged's socket", name="munged")

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        self._write_conf()
        self._start_munge()
        self._spawn("slurmctld", [which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self._ok(["scontrol", "ping"], "UP"), what="slurmctld", name="slurmctld",
                   timeout=timeout)  # fmt: skip
        self._spawn("slurmd", [which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(lambda: self._ok(["sinfo", "-h", "-o", "%T"], "idle"), what="an idle node",
                   name="slurmd", timeout=timeout)  # fmt: skip
        return self

    def _ok(self, cmd: list[str], want: str) -> bool:
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=20)
        return out.returncode == 0 and want in out.stdout

    def _wait(self, cond, *, what: str, name: str, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            if self.procs[name].poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SLURM test cluster: timed out waiting for {what}\n{self.logs()}")

    def logs(self) -> str:
        out = []
        for p in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            if p.exists():
                out.append(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def cancel_all(self, timeout: float = 30.0) -> None:
        """Cancel every job of this cluster and wait until the queue is empty."""
        if "slurmctld" not in self.procs or self.procs["slurmctld"].poll() is not None:
            return
        if self.squeue("%i"):
            self.run(["scancel", "--user", str(os.getuid())], check=False)
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.squeue("%i"):
            time.sleep(0.3)

    def stop(self) -> None:
        """Cancel every job of this cluster, then end our three daemons (SIGTERM, then KILL)."""
        self.cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

    # -- client commands ---------------------------------------------------------------------
    def run(self, cmd: list[str] | str, *, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:  # fmt: skip
        """A client command (a list, or a shell string as a user types it) on this cluster."""
        proc = subprocess.run(
            cmd, shell=isinstance(cmd, str), cwd=cwd, env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(f"{cmd} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def squeue(self, fmt: str = "%i %T") -> list[str]:
        out = self.run(["squeue", "-h", "-r", "-o", fmt], check=False)
        return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (the first record: a job, or one array task)."""
        out = self.run(["scontrol", "show", "job", "-o", job_id]).stdout
        first = out.strip().splitlines()[0]
        return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", first))

    def tasks(self, job_id: str) -> dict[int, dict[str, str]]:
        """Array task id -> its `scontrol show job` record."""
        out = self.run(["scontrol", "show", "job", "-o", job_id]).stdout
        recs = [dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", ln))
                for ln in out.strip().splitlines()]  # fmt: skip
        return {int(r["ArrayTaskId"]): r for r in recs if r.get("ArrayTaskId", "").isdigit()}

    def wait(self, job_id: str, *, timeout: float = 90.0) -> dict[int, dict[str, str]]:
        """Wait until no task of `job_id` is pending or running; its tasks' final records."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            live = [ln for ln in self.squeue("%F") if ln == job_id]
            if not live:
                return self.tasks(job_id)
            time.sleep(0.3)
        raise TimeoutError(f"job {job_id} still queued after {timeout}s: {self.squeue()}")
