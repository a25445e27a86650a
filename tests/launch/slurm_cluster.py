"""A real single-node Slurm (munged + slurmctld + slurmd) under a temporary directory, for the launch tests.

Everything lives under `root`: munge key/socket, slurm.conf, state, spool, logs, pid files, and the daemons talk on
free ports, so several engineers (or test sessions) on one machine never share a cluster. Facts it relies on are in
the team's notes on Slurm in CI: munged needs --force as root, every client needs SLURM_CONF, `cred_expire` and
`sched_interval` decide how fast a requeued job runs again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "scancel", "sinfo", "squeue")


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


class SlurmCluster:
    """`start()` returns once the node is idle; `env` is what every client command (and the tests) needs."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.socket = self.root / "munge" / "munge.socket"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.setup_seconds = None

    def _munge(self) -> None:
        directory = self.root / "munge"
        directory.mkdir(mode=0o700)
        key = directory / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        subprocess.run([shutil.which("munged"), "--force", f"--key-file={key}", f"--socket={self.socket}",
                        f"--pid-file={directory / 'munged.pid'}", f"--log-file={directory / 'munged.log'}",
                        f"--seed-file={directory / 'munged.seed'}"], check=True, capture_output=True)

    def _write_conf(self) -> None:
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
        host = socket.gethostname().split(".")[0]
        r = self.root
        for sub in ("state", "spool", "log"):
            (r / sub).mkdir()
        self.conf.write_text("\n".join([
            "ClusterName=myllmtest", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.socket},cred_expire=10",
            f"StateSaveLocation={r / 'state'}", f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}", f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=2,bf_interval=5,sched_min_interval=0",
            "MpiDefault=none", "ReturnToService=2", "JobRequeue=1", "MailProg=/bin/true",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            "KillWait=10", "InactiveLimit=0",
            "MinJobAge=4",   # sbatch --wait backs off (2 s ×4 … 32 s) only while its sleep < MinJobAge/2: 2 s here
            f"{node} State=UNKNOWN",
            f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO",
        ]) + "\n")

    def start(self, timeout: float = 60) -> "SlurmCluster":
        started = time.monotonic()
        self._munge()
        self._write_conf()
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([shutil.which(daemon), "-f", str(self.conf)], env=self.env, check=True,
                           capture_output=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                self.setup_seconds = time.monotonic() - started
                return self
            time.sleep(0.3)
        raise RuntimeError(f"slurm node not idle after {timeout}s: {state.stdout.strip()} {state.stderr.strip()}\n"
                           + self.log_tail())

    def log_tail(self, chars: int = 3000) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / "log" / name
            if path.exists():
                out.append(f"--- {name}\n" + path.read_text(errors="replace")[-chars:])
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel what is still queued or running (a failed test may leave a job: its slurmstepd and tasks would
        outlive slurmd), then stop slurmd, slurmctld and munged by the PIDs they wrote, waiting for each."""
        jobs = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True, text=True).stdout
        if jobs.split():
            subprocess.run(["scancel", "--signal=KILL", "--full", *jobs.split()], env=self.env, capture_output=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and subprocess.run(
                    ["squeue", "-h", "-t", "R,CG", "-o", "%i"], env=self.env, capture_output=True,
                    text=True).stdout.strip():
                time.sleep(0.5)
            subprocess.run(["scancel", *jobs.split()], env=self.env, capture_output=True)
        for pid_file in (self.root / "slurmd.pid", self.root / "slurmctld.pid", self.root / "munge" / "munged.pid"):
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                continue
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)

    def job_state(self, job_id: str) -> dict:
        """`scontrol show job` as a dict of its KEY=VALUE fields (empty when the job is gone)."""
        out = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=self.env, capture_output=True,
                             text=True).stdout
        return dict(field.split("=", 1) for field in out.split() if "=" in field)
