"""A real multi-node Ray cluster on this machine: `ray start --head` plus worker nodes started with
`ray start --address`, token authentication on, and a study driven by `incsweep study run
--address` as a separate process. The node running a trial is SIGKILLed mid-trial (its raylet and
every process under it, as when a machine vanishes); the study must still finish, the trial
retried on the surviving node from its last task checkpoint.

Teardown kills exactly the process groups and process trees these tests started (never `ray
stop`, which kills every Ray process of the machine by name, other users' too).
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
import yaml

from incsweep.study.results import list_trial_files, read_trial_file
from incsweep.study.searcher import make_optuna_storage

pytestmark = [pytest.mark.ray, pytest.mark.cluster]

BIN = Path(sys.executable).parent  # the venv's `ray` and `incsweep`
# 4 tasks of 2 synthetic classes, 160 training images per class, 15 epochs: 1.3-3 s per task measured
# here on the shared 2 cores, so a trial is mid-run for several seconds after its first checkpoint
# and the kill lands between two task checkpoints.
SPEC = {
    "name": "cl", "methods": ["finetune"], "trials": 2, "concurrency": 1, "max_failures": 2, "prefix_cache": False,
    "benchmark": {"name": "synthetic", "n_classes": 8, "init_classes": 2, "increment": 2, "image_size": 16,
                  "train_per_class": 160, "test_per_class": 8, "val_fraction": 0.25},
    "search": {"finetune": {"backbone": "tiny", "width": 8, "epochs": 15, "batch_size": 16,
                            "lr": {"low": 0.01, "high": 0.2}}},
}
N_TASKS = 4


# ---- processes ----------------------------------------------------------------------------------
def _procs() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, title) of every process, read from /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if fields[0] != "Z":  # zombies are dead already; their parent reaps them
            out[int(entry)] = (int(fields[1]), int(fields[2]), title)
    return out


def _tree(pgids: set[int]) -> set[int]:
    """Every live process in one of ``pgids`` plus all their descendants (Ray workers call setsid,
    so they leave their raylet's process group but stay its children)."""
    procs = _procs()
    found = {pid for pid, (_, pgid, _) in procs.items() if pgid in pgids}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in procs.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found


def _kill(pgids: set[int]) -> set[int]:
    """SIGSTOP the whole tree (no process can spawn a new one meanwhile), then SIGKILL it."""
    killed: set[int] = set()
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in _tree(pgids) | killed:
            try:
                os.kill(pid, sig)
                killed.add(pid)
            except ProcessLookupError:
                pass
    return killed


def _wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    deadline = time.time() + timeout
    alive = pids
    while time.time() < deadline:
        alive = pids & set(_procs())
        if not alive:
            break
        time.sleep(0.1)
    return alive


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


# ---- the cluster --------------------------------------------------------------------------------
@dataclass
class Cluster:
    temp_dir: str
    env: dict
    address: str = ""
    dashboard: str = ""
    head_pgid: int = 0
    workers: dict = field(default_factory=dict)  # name -> pgid
    others: set = field(default_factory=set)  # pgids of `ray start` runs and drivers started by tests

    def _spawn(self, *args: str, temp_dir: str) -> subprocess.Popen:
        """Start `ray start ARGS` in a new session: the daemons it leaves behind share one new
        process group (torn down even if `ray start` fails halfway)."""
        proc = subprocess.Popen([str(BIN / "ray"), "start", *args, "--temp-dir", temp_dir,
                                 "--disable-usage-stats", f"--dashboard-agent-listen-port={_free_port()}"],
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        self.others.add(proc.pid)
        return proc

    @staticmethod
    def _wait(proc: subprocess.Popen) -> str:
        text = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, text
        return text

    def start_head(self, cpus: int) -> None:
        # Every port the head binds is a free one: other Ray instances may run on this machine.
        self.dashboard = f"http://127.0.0.1:{_free_port()}"
        proc = self._spawn("--head", f"--port={_free_port()}", f"--num-cpus={cpus}", "--include-dashboard=true",
                           f"--dashboard-port={self.dashboard.rsplit(':', 1)[1]}",
                           f"--ray-client-server-port={_free_port()}", temp_dir=self.temp_dir)
        match = re.search(r"ray start --address='([^']+)'", self._wait(proc))  # the address the head bound (trap 10)
        assert match
        self.head_pgid, self.address = proc.pid, match.group(1)

    def start_workers(self, **cpus: int) -> None:
        """Worker nodes ``name=cpus``, started side by side, each with its own temp dir as on separate
        machines (nodes sharing one race at registration, and unpack a job's working dir over
        each other: docs/cluster.md)."""
        procs = {name: self._spawn(f"--address={self.address}", f"--num-cpus={n}",
                                   temp_dir=os.path.join(self.temp_dir, name)) for name, n in cpus.items()}
        for name, proc in procs.items():
            self._wait(proc)
            self.workers[name] = proc.pid

    def wait_for_cpus(self, cpus: int, timeout: float = 60.0) -> None:
        """Poll `ray status` (the CLI talks to a token-auth cluster only with RAY_AUTH_MODE=token)
        until the nodes that joined are registered."""
        deadline, text = time.time() + timeout, ""
        while time.time() < deadline:
            status = subprocess.run([str(BIN / "ray"), "status", f"--address={self.address}"], env=self.env,
                                    capture_output=True, text=True, timeout=60)
            text = status.stdout + status.stderr
            assert status.returncode == 0, text
            if f"/{cpus:.1f} CPU" in text:
                return
            time.sleep(1)
        pytest.fail(f"the cluster never showed {cpus} CPUs:\n{text}")

    def raylet_of(self, pid: int) -> int | None:
        """The process group of the raylet that ``pid`` runs under (walking up the process tree)."""
        procs = _procs()
        while pid in procs and pid > 1:
            ppid, pgid, title = procs[pid]
            if "raylet/raylet" in title:
                return pgid
            pid = ppid
        return None

    def pgids(self) -> set[int]:
        return {self.head_pgid, *self.workers.values(), *self.others} - {0}


@pytest.fixture
def cluster():
    temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths have a length limit
    token = Path(temp_dir) / "auth_token"
    token.write_text(secrets.token_hex(32))
    # Token authentication as on a real cluster: every node and driver reads the same token (here
    # from a file in the temp dir instead of ~/.ray/auth_token, so the test leaves $HOME alone).
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    c = Cluster(temp_dir=temp_dir, env=env)
    try:
        yield c
    finally:
        killed = _kill(c.pgids())
        left = _wait_gone(killed) | _tree(c.pgids())
        shutil.rmtree(temp_dir, ignore_errors=True)  # Ray never cleans its session logs (trap 11)
        assert not left, f"Ray processes left behind: {sorted(left)}"


# ---- PostgreSQL --------------------------------------------------------------------------------------
def _pg_bin() -> Path | None:
    """The server's programs: Debian's postgresql package puts them in /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


@pytest.fixture
def postgres():
    """A real PostgreSQL server on 127.0.0.1 (a fresh data directory, a free port), with a database
    ``optuna``; yields its SQLAlchemy URL. As root the server runs as the ``postgres`` user (initdb
    refuses root). Stopped and removed after."""
    pg_bin = _pg_bin()
    if pg_bin is None or importlib.util.find_spec("psycopg2") is None:
        why = "PostgreSQL (Debian: apt-get install postgresql) or psycopg2 is not installed; .ci/run installs both"
        if os.environ.get("INCSWEEP_REQUIRE_POSTGRES"):
            pytest.fail(why)
        pytest.skip(why)
    data = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    as_user: list[str] = []
    user = os.environ.get("USER") or "postgres"
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(data, pw.pw_uid, pw.pw_gid)
        as_user, user = ["runuser", "-u", "postgres", "--"], "postgres"
    port = _free_port()

    def pg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    done = pg(str(pg_bin / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", user)
    assert done.returncode == 0, done.stdout + done.stderr
    done = pg(str(pg_bin / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"), "-o",
              f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start")
    assert done.returncode == 0, done.stdout + done.stderr + (data / "log").read_text()
    try:
        done = pg(str(pg_bin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "optuna")
        assert done.returncode == 0, done.stdout + done.stderr
        yield f"postgresql+psycopg2://{user}@127.0.0.1:{port}/optuna"
    finally:
        pg(str(pg_bin / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)


# ---- the study ------------------------------------------------------------------------------------
def _rows(storage: str, study: str) -> list[dict]:
    return [r for method, tid in list_trial_files(storage, study) for r in read_trial_file(storage, study, method, tid)]


def _complete_once(rows: list[dict], n_trials: int, n_tasks: int) -> set[str]:
    """Assert ``n_trials`` complete trials, each with every task once and one final row; their ids."""
    keys = [(r["trial_id"], r["task"], r["is_final"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate rows"
    trials = {r["trial_id"] for r in rows}
    assert len(trials) == n_trials
    for tid in trials:
        tasks = sorted(r["task"] for r in rows if r["trial_id"] == tid and not r["is_final"])
        finals = [r for r in rows if r["trial_id"] == tid and r["is_final"]]
        assert tasks == list(range(n_tasks)) and len(finals) == 1 and finals[0]["status"] == "complete", (tid, tasks)
    return trials


def _trial_actor_pids(pgids: set[int]) -> set[int]:
    """This cluster's processes running a Tune trainable (Ray titles them ray::<actor class>.<method>)."""
    procs = _procs()
    return {pid for pid in _tree(pgids) if pid in procs and procs[pid][2].startswith("ray::ImplicitFunc")}


def test_killing_the_node_of_a_running_trial_still_completes_the_study(cluster, tmp_path):
    """Head (no CPU) + two 1-CPU worker nodes; `incsweep study run --address HOST:PORT` from outside
    the cluster; the node that runs the first trial is killed after the trial's first task: the
    trial resumes on the other node from its checkpoint and every task lands in Parquet once."""
    cluster.start_head(cpus=0)  # the head runs no trial: each trial lands on a worker node
    cluster.start_workers(w1=1, w2=1)
    cluster.wait_for_cpus(2)

    storage = tmp_path / "storage"
    spec = tmp_path / "cl.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    log_path = tmp_path / "driver.log"
    with log_path.open("w") as log:
        driver = subprocess.Popen([str(BIN / "incsweep"), "study", "run", str(spec), "--address", cluster.address,
                                   "--storage", str(storage)], env=cluster.env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    cluster.others.add(driver.pid)

    victim, node, before, killed_at = _kill_node_of_running_trial(
        cluster, storage, "cl", lambda: None if driver.poll() is None else log_path.read_text())
    assert driver.wait(timeout=180) == 0, log_path.read_text()
    _check_resumed_from_checkpoint(storage, "cl", victim, before, killed_at)

    study = optuna.load_study(study_name="cl", storage=make_optuna_storage(str(storage / "optuna.journal")))
    assert Counter(t.state.name for t in study.get_trials()) == Counter(COMPLETE=SPEC["trials"])


def _kill_node_of_running_trial(cluster: Cluster, storage: Path, study: str, ended) -> tuple[str, int, list, float]:
    """Once the one running trial (concurrency 1) has stored a task, SIGKILL the node it runs on (its
    raylet, agents and the trial's worker, all at once). ``ended()``: None while the study runs,
    else what to show. Returns the trial, the node's process group, its rows before, the kill time."""
    deadline = time.time() + 120
    while True:
        gone = ended()
        assert gone is None, "the study ended before a node could be killed:\n" + gone
        assert time.time() < deadline, "no trial reported a task in time"
        rows = _rows(str(storage), study) if (storage / "results").exists() else []
        running = {r["trial_id"] for r in rows} - {r["trial_id"] for r in rows if r["is_final"]}
        actors = _trial_actor_pids(cluster.pgids())
        if len(running) == 1 and len(actors) == 1:  # concurrency 1: the one running trial is on that actor
            victim, node = running.pop(), cluster.raylet_of(actors.pop())
            before = [r for r in rows if r["trial_id"] == victim]
            killed_at = time.time()
            _kill({node})
            break
        time.sleep(0.1)
    assert node in cluster.workers.values()
    assert 1 <= len(before) < N_TASKS, "the kill missed the middle of the trial"
    return victim, node, before, killed_at


def _check_resumed_from_checkpoint(storage: Path, study: str, victim: str, before: list, killed_at: float) -> None:
    """Every trial complete once; the victim resumed from its last checkpoint, not restarted: the tasks
    finished before the kill keep the rows of the first attempt, and only the later tasks come from
    the retry (started after the kill); Tune recorded exactly one failure of it (the lost node)."""
    rows = _rows(str(storage), study)
    assert victim in _complete_once(rows, SPEC["trials"], N_TASKS)
    after = {r["task"]: r for r in rows if r["trial_id"] == victim and not r["is_final"]}
    for r in before:
        assert after[r["task"]]["started_at"] == r["started_at"]
        assert after[r["task"]]["finished_at"] == r["finished_at"]
    retried = [after[t] for t in range(len(before), N_TASKS)]
    assert all(r["started_at"].timestamp() > killed_at for r in retried)
    error_txt = (storage / "tune" / f"trial_{victim}" / "error.txt").read_text()
    assert error_txt.count("Failure #") == 1 and "actor" in error_txt


def test_a_job_on_postgres_survives_a_worker_node_loss(cluster, postgres, tmp_path):
    """What a GPU cluster runs: head (no CPU) + two 1-CPU worker nodes, the study submitted with
    `ray job submit` (its driver on the head), Optuna on a PostgreSQL server, results on storage
    every node shares; the node of the running trial is killed after its first task. The job
    succeeds, every trial is stored once, the victim resumed from its checkpoint, and PostgreSQL
    holds every trial COMPLETE."""
    cluster.start_head(cpus=0)
    cluster.start_workers(w1=1, w2=1)
    cluster.wait_for_cpus(2)
    work = tmp_path / "job"
    work.mkdir()
    (work / "cl.yaml").write_text(yaml.safe_dump({**SPEC, "optuna_storage": postgres}))
    storage = tmp_path / "storage"
    job_id = f"incsweep-{secrets.token_hex(4)}"
    submit = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--working-dir",
                             str(work), "--submission-id", job_id, "--no-wait", "--", "incsweep", "study", "run",
                             "cl.yaml", "--storage", str(storage)],
                            env=cluster.env, capture_output=True, text=True, timeout=120)
    assert submit.returncode == 0, submit.stdout + submit.stderr

    def job(*args: str, timeout: float = 60) -> str:
        out = subprocess.run([str(BIN / "ray"), "job", *args, "--address", cluster.dashboard, job_id],
                             env=cluster.env, capture_output=True, text=True, timeout=timeout)
        return out.stdout + out.stderr

    victim, _, before, killed_at = _kill_node_of_running_trial(cluster, storage, "cl", lambda: None)
    logs = job("logs", "--follow", timeout=300)  # returns when the job ends
    assert "succeeded" in job("status"), logs[-4000:]
    assert f"{SPEC['trials']}/{SPEC['trials']} trials finished" in logs, logs[-4000:]
    _check_resumed_from_checkpoint(storage, "cl", victim, before, killed_at)
    assert not (storage / "optuna.journal").exists()  # the search lives in PostgreSQL only
    study = optuna.load_study(study_name="cl", storage=make_optuna_storage(postgres))
    assert Counter(t.state.name for t in study.get_trials()) == Counter(COMPLETE=SPEC["trials"])


def test_ray_job_submit_runs_a_study_and_a_driver_without_the_token_is_told_why(cluster, tmp_path):
    """`ray job submit --working-dir`: the job's driver runs on the head with RAY_ADDRESS set and
    joins this cluster (no embedded Ray). A driver given the address without RAY_AUTH_MODE=token is
    refused with one line naming the fix, before anything is written."""
    cluster.start_head(cpus=1)
    work = tmp_path / "job"
    work.mkdir()
    shutil.copy(Path(__file__).parents[2] / "configs" / "studies" / "tiny.yaml", work / "tiny.yaml")
    storage = tmp_path / "storage"
    job = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--working-dir", str(work),
                          "--", "incsweep", "study", "run", "tiny.yaml", "--storage", str(storage)],
                         env=cluster.env, capture_output=True, text=True, timeout=240)
    out = job.stdout + job.stderr
    assert job.returncode == 0 and "succeeded" in out, out
    assert f"{cluster.temp_dir}/session_" in out  # Tune's artifacts are in this cluster's session
    tiny = yaml.safe_load((work / "tiny.yaml").read_text())
    _complete_once(_rows(str(storage), tiny["name"]), tiny["trials"], 3)

    env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}
    env["RAY_NUM_REDIS_GET_RETRIES"] = "2"  # Ray's connect window, 20 tries of 1 s by default
    refused = subprocess.run([str(BIN / "incsweep"), "study", "run", str(work / "tiny.yaml"), "--address",
                              cluster.address, "--storage", str(tmp_path / "refused")],
                             env=env, capture_output=True, text=True, timeout=120)
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert last.startswith("incsweep study: error: the Ray cluster at") and "RAY_AUTH_MODE=token" in last
    assert not (tmp_path / "refused").exists()


@pytest.mark.skipif(importlib.util.find_spec("incsweep_example") is None,
                    reason="examples/incsweep_example is not installed (make test installs it)")
def test_a_plugin_method_and_benchmark_run_on_both_worker_nodes(cluster, tmp_path):
    """The example package's entry-point method and .npz benchmark, named by their registered names
    only, on head (no CPU) + two 1-CPU workers with two trials at once: each worker node resolves
    them itself, so both trials complete, one per node."""
    cluster.start_head(cpus=0)
    cluster.start_workers(w1=1, w2=1)
    cluster.wait_for_cpus(2)
    plug = {"name": "plug", "methods": ["frozen_ncm"], "trials": 2, "concurrency": 2, "scenario": "class_il",
            "benchmark": {"name": "toy-shapes", "val_fraction": 0.25},
            "search": {"frozen_ncm": {"backbone": "tiny", "width": 8, "batch_size": 32, "epochs": {"low": 1, "high": 3}}}}
    spec = tmp_path / "plug.yaml"
    spec.write_text(yaml.safe_dump(plug))
    storage = tmp_path / "storage"
    out = subprocess.run([str(BIN / "incsweep"), "study", "run", str(spec), "--address", cluster.address,
                          "--storage", str(storage)], env=cluster.env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = _rows(str(storage), "plug")
    _complete_once(rows, 2, 3)  # toy-shapes: 6 classes in tasks of 2
    finals = [r for r in rows if r["is_final"]]
    assert all(r["method"] == "frozen_ncm" and r["avg_acc"] > 0.4 for r in finals)
