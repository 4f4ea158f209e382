"""Threads from the CPUs actually granted, and the contention rule decided before torch starts.

The cgroup files and ``/proc/stat`` readings are written by the tests (v1, v2, no
quota, a quota below one CPU; quiet and busy CPUs), so nothing here depends on
how busy the machine running the tests is. The CLI checks run ``nervana-lstm
train`` in a subprocess with ``/proc/stat`` replaced by such readings and
compare what the run reports with what torch ran with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from nervana_lstm import cpu_load, thread_plan
from nervana_lstm.cpu_load import LoadSample, load_between, parse_proc_stat
from nervana_lstm.errors import UsageError
from nervana_lstm.resources import CpuGrant, CpuQuota, cpu_quota, resolve_threads, usable_cpus
from nervana_lstm.thread_plan import ContentionRule, ThreadPlan, decide, plan_threads, recheck

# ---------------------------------------------------------------- cgroup CPU quota


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_and_the_tightest_ancestor(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _write(root / "cpu.max", "150000 100000\n")  # inside a container the mount is the group
    quota = cpu_quota("0::/\n", root)
    assert quota == CpuQuota(1.5, "cpu.max (cgroup v2)")
    _write(root / "a" / "b" / "cpu.max", "max 100000\n")  # the group itself: no limit
    _write(root / "a" / "cpu.max", "400000 100000\n")  # its parent: 4 CPUs
    assert cpu_quota("0::/a/b\n", root) == CpuQuota(1.5, "cpu.max (cgroup v2)")
    (root / "cpu.max").unlink()
    assert cpu_quota("0::/a/b\n", root) == CpuQuota(4.0, "cpu.max (cgroup v2)")


def test_cgroup_v1_quota_in_either_mount_name(tmp_path: Path) -> None:
    for mount in ("cpu", "cpu,cpuacct"):
        root = tmp_path / mount.replace(",", "_")
        _write(root / mount / "docker" / "x" / "cpu.cfs_quota_us", "300000\n")
        _write(root / mount / "docker" / "x" / "cpu.cfs_period_us", "100000\n")
        quota = cpu_quota("5:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n", root)
        assert quota == CpuQuota(3.0, "cpu.cfs_quota_us (cgroup v1)")
    # a container whose /proc/self/cgroup names a path the mount does not hold: the mount
    root = tmp_path / "ns"
    _write(root / "cpu" / "cpu.cfs_quota_us", "200000\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cpu_quota("4:cpu,cpuacct:/docker/abc\n", root) == CpuQuota(
        2.0, "cpu.cfs_quota_us (cgroup v1)"
    )


def test_no_quota(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cpu_quota("4:cpu,cpuacct:/\n", root) is None
    _write(root / "cpu.max", "max 100000\n")
    assert cpu_quota("0::/\n", root) is None
    assert cpu_quota("0::/\n", tmp_path / "nothing-mounted") is None
    assert cpu_quota("", root) is None
    grant = CpuGrant(8, None)
    assert (grant.cpus, grant.quota_limited, grant.describe()) == (8, False, "8 usable CPU(s)")


def test_quota_below_one_cpu_still_grants_one(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _write(root / "cpu.max", "50000 100000\n")
    quota = cpu_quota("0::/\n", root)
    assert quota is not None and quota.cpus == 0.5
    grant = CpuGrant(64, quota)
    assert grant.cpus == 1 and grant.quota_limited
    assert "a CPU quota of 0.5 (cpu.max (cgroup v2)) on 64 in the affinity mask" in grant.describe()


def test_quota_rounds_down_and_never_exceeds_the_affinity_mask() -> None:
    assert CpuGrant(64, CpuQuota(2.5, "q")).cpus == 2
    assert CpuGrant(64, CpuQuota(1.9999999999, "q")).cpus == 2
    assert CpuGrant(4, CpuQuota(16.0, "q")).cpus == 4
    assert not CpuGrant(4, CpuQuota(16.0, "q")).quota_limited


def test_default_threads_come_from_the_quota() -> None:
    grant = CpuGrant(64, CpuQuota(2.0, "cpu.max (cgroup v2)"))
    threads, why = resolve_threads(None, "train.threads", grant=grant, environ={})
    assert threads == 2 and why.startswith("2 usable CPU(s): a CPU quota of 2")
    assert resolve_threads(None, "t", 2, grant=grant, environ={})[0] == 1
    # OMP_NUM_THREADS is honoured, within the grant
    assert resolve_threads(None, "t", grant=grant, environ={"OMP_NUM_THREADS": "1"}) == (
        1,
        "OMP_NUM_THREADS=1",
    )
    assert resolve_threads(None, "t", grant=grant, environ={"OMP_NUM_THREADS": "8"})[0] == 2
    with pytest.raises(UsageError, match=r"train.threads got 3; expected 1..2"):
        resolve_threads(3, "train.threads", grant=grant, environ={})


# --------------------------------------------------------------- /proc/stat readings


def _stat(ticks: dict[int, tuple[int, int]]) -> str:
    """A /proc/stat text: per CPU (busy ticks, idle ticks), busy as user time."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    for cpu, (busy, idle) in sorted(ticks.items()):
        lines.append(f"cpu{cpu} {busy} 0 0 {idle} 0 0 0 0 0 0")
    return "\n".join([*lines, "intr 1 2 3", "ctxt 99"]) + "\n"


def test_proc_stat_parsing_counts_steal_and_leaves_guest_out() -> None:
    text = "cpu  9 9 9 9\ncpu0 10 1 2 100 5 1 1 3 7 7\ncpu1 0 0 0 50\nintr 5\n"
    assert parse_proc_stat(text) == {0: (18, 123), 1: (0, 50)}


def test_load_between_two_readings() -> None:
    before = parse_proc_stat(_stat({0: (0, 0), 1: (0, 0)}))
    after = parse_proc_stat(_stat({0: (20, 0), 1: (5, 15)}))  # CPU 0 busy, CPU 1 a quarter
    load = load_between(before, after, [0, 1], seconds=0.2, own_seconds=0.05, granted=2)
    assert load.busy == pytest.approx(1.25)
    assert load.own == pytest.approx(0.25)
    assert load.other == pytest.approx(1.0)
    assert load.pressure == pytest.approx(1.0)
    assert "other work on 1.0 of 2 CPUs" in load.describe()
    # a CPU outside the affinity mask is not looked at
    only0 = load_between(before, after, [0], seconds=0.2, own_seconds=0.0, granted=1)
    assert (only0.cpus, only0.other) == (1, pytest.approx(1.0))


def test_pressure_counts_only_what_lands_on_the_granted_cpus() -> None:
    # a quota of 2 on 8 CPUs: other work on 5 of them leaves 3 free, more than the 2 granted
    load = LoadSample(cpus=8, granted=2, seconds=0.2, busy=5.0, own=0.0)
    assert load.pressure == 0.0
    assert LoadSample(cpus=8, granted=2, seconds=0.2, busy=7.5, own=0.0).pressure == 1.5


# ------------------------------------------------------------------ the decision


def _load(other: float, cpus: int = 2, granted: int | None = None) -> LoadSample:
    return LoadSample(cpus, cpus if granted is None else granted, 0.2, other, 0.0)


def _decide(
    other: float,
    *,
    remedy: str = "passive",
    env: dict[str, str] | None = None,
    requested: int | None = None,
    torch_started: bool = False,
    grant: CpuGrant | None = None,
) -> ThreadPlan:
    grant = grant or CpuGrant(2)
    load = _load(other, grant.affinity, grant.cpus)
    rule = ContentionRule(remedy=remedy)  # type: ignore[arg-type]
    return decide(
        requested, "train.threads", 1, grant, load, rule, env or {}, torch_started=torch_started
    )


def test_a_quiet_machine_keeps_every_thread_and_openmps_default() -> None:
    plan = _decide(0.3)
    assert (plan.threads, plan.wait_policy, plan.contended, plan.set_env) == (2, None, False, {})
    assert "quiet" in plan.decided
    # the spin policy is faster on CPUs of one's own: PASSIVE is never set on a quiet machine
    assert _decide(0.49, remedy="fewer+passive").set_env == {}


def test_a_busy_cpu_makes_the_threads_wait_passively() -> None:
    plan = _decide(1.0)
    assert plan.contended is True
    assert plan.set_env == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert (plan.threads, plan.wait_policy) == (2, "PASSIVE")
    assert "OMP_WAIT_POLICY=PASSIVE" in plan.decided and "other work on 1.0 of 2" in plan.seen


def test_remedy_fewer_runs_on_the_free_cpus() -> None:
    plan = _decide(1.0, remedy="fewer")
    assert (plan.threads, plan.set_env, plan.wait_policy) == (1, {}, None)
    assert plan.threads_from == "1 of 2 CPU(s) left free by other work"
    both = _decide(2.6, remedy="fewer+passive", grant=CpuGrant(4))
    assert (both.threads, both.set_env) == (1, {"OMP_WAIT_POLICY": "PASSIVE"})
    # rounding: 1.4 CPUs of other work on 4 leaves 2.6 free -> 3 threads
    assert _decide(1.4, remedy="fewer", grant=CpuGrant(4)).threads == 3


def test_a_remedy_the_user_rules_out_gives_way_to_the_other() -> None:
    # the user's wait policy is kept; the threads shrink instead
    plan = _decide(1.0, env={"OMP_WAIT_POLICY": "ACTIVE"})
    assert (plan.threads, plan.set_env, plan.wait_policy) == (1, {}, "ACTIVE")
    assert "set by the user: OMP_WAIT_POLICY=ACTIVE" in plan.wait_from
    assert _decide(1.0, env={"KMP_BLOCKTIME": "0"}).set_env == {}
    # the user's thread count is kept; the threads wait passively instead
    plan = _decide(1.0, remedy="fewer", requested=2)
    assert (plan.threads, plan.threads_from, plan.set_env) == (
        2,
        "train.threads",
        {"OMP_WAIT_POLICY": "PASSIVE"},
    )
    plan = _decide(1.0, remedy="fewer", env={"OMP_NUM_THREADS": "2"})
    assert (plan.threads, plan.set_env) == (2, {"OMP_WAIT_POLICY": "PASSIVE"})
    # torch already running: its wait policy is fixed, only the threads can change
    plan = _decide(1.0, torch_started=True)
    assert (plan.threads, plan.set_env) == (1, {})
    # both set by the user: nothing changes, and the log says why
    plan = _decide(1.0, requested=2, env={"OMP_WAIT_POLICY": "active"})
    assert (plan.threads, plan.set_env) == (2, {})
    assert "nothing changed" in plan.decided and "train.threads" in plan.decided
    # the user's PASSIVE is already the remedy
    plan = _decide(1.0, env={"OMP_WAIT_POLICY": "passive"})
    assert (plan.threads, plan.set_env) == (2, {})
    assert "already in effect" in plan.decided


def test_other_work_outside_the_quota_is_no_contention() -> None:
    grant = CpuGrant(8, CpuQuota(2.0, "cpu.max (cgroup v2)"))
    assert _decide(5.0, grant=grant).contended is False
    assert _decide(6.8, grant=grant).set_env == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_the_mode_comes_from_the_environment() -> None:
    assert thread_plan.rule_from_env({}) == thread_plan.DEFAULT_RULE
    assert thread_plan.rule_from_env({"NERVANA_LSTM_CONTENTION": "Fewer"}).remedy == "fewer"
    assert thread_plan.rule_from_env({"NERVANA_LSTM_CONTENTION": "off"}) is None
    with pytest.raises(UsageError, match="expected one of passive, fewer, fewer\\+passive, off"):
        thread_plan.rule_from_env({"NERVANA_LSTM_CONTENTION": "spin"})


def _never(*_: object, **__: object) -> LoadSample:
    raise AssertionError("the CPUs must not be watched here")


def test_plan_threads_does_not_look_when_nothing_could_change() -> None:
    grant = CpuGrant(2)
    off = plan_threads(
        None, "t", grant=grant, environ={"NERVANA_LSTM_CONTENTION": "off"}, measure=_never
    )
    assert off.contended is None and "NERVANA_LSTM_CONTENTION=off" in off.seen
    one = plan_threads(1, "t", grant=grant, environ={}, measure=_never)
    assert one.threads == 1 and "one thread" in one.seen
    two = plan_threads(None, "t", 2, grant=grant, environ={}, measure=_never)
    assert "2 processes of this run share the CPUs" in two.seen
    with pytest.raises(UsageError, match="OMP_NUM_THREADS"):
        plan_threads(None, "t", grant=grant, environ={"OMP_NUM_THREADS": "x"}, measure=_never)


def _fake_proc_stat(monkeypatch: pytest.MonkeyPatch, busy_fraction: float) -> None:
    """Every read of /proc/stat advances each CPU by 100 ticks, ``busy_fraction`` of them busy."""
    cpus = sorted(os.sched_getaffinity(0))
    reads = [0]

    def read() -> str:
        reads[0] += 1
        busy = int(100 * busy_fraction) * reads[0]
        return _stat({c: (busy, 100 * reads[0] - busy) for c in cpus})

    monkeypatch.setattr(cpu_load, "_read_stat", read)


def test_the_decision_from_patched_proc_stat(monkeypatch: pytest.MonkeyPatch) -> None:
    grant = CpuGrant(len(os.sched_getaffinity(0)))
    if grant.cpus < 2:
        pytest.skip("needs two CPUs")
    _fake_proc_stat(monkeypatch, 1.0)
    busy = plan_threads(None, "t", grant=grant, environ={}, torch_started=False)
    assert busy.contended and busy.set_env == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert busy.load is not None and busy.load.other > grant.cpus - 0.5
    _fake_proc_stat(monkeypatch, 0.0)
    quiet = plan_threads(None, "t", grant=grant, environ={}, torch_started=False)
    assert quiet.contended is False and quiet.set_env == {} and quiet.threads == grant.cpus


def test_recheck_keeps_what_was_set_and_may_lower_the_threads() -> None:
    grant = CpuGrant(2)
    busy = plan_threads(
        None, "t", grant=grant, environ={}, measure=lambda *a, **k: _load(1.0), torch_started=False
    )
    env = dict(busy.set_env)  # as apply_plan left it
    again = recheck(busy, environ=env, measure=lambda *a, **k: _load(1.0))
    assert (again.threads, again.wait_policy, again.earlier) == (2, "PASSIVE", busy)
    assert "already in effect" in again.decided
    assert len(again.lines()) == 3 and "at auto's measurement" in again.lines()[1]
    import torch  # noqa: F401  (as in the training loop, where auto looks again)

    quiet = plan_threads(None, "t", grant=grant, environ={}, measure=lambda *a, **k: _load(0.0))
    later = recheck(quiet, environ={}, measure=lambda *a, **k: _load(1.0))
    assert (later.threads, later.set_env) == (1, {})  # the wait policy is fixed: fewer threads
    off = plan_threads(None, "t", grant=grant, environ={"NERVANA_LSTM_CONTENTION": "off"})
    assert recheck(off, measure=_never) is off


def test_apply_plan_writes_the_environment_only_before_torch() -> None:
    plan = _decide(1.0)
    env: dict[str, str] = {}
    thread_plan.apply_plan(plan, env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    import torch  # noqa: F401

    with pytest.raises(RuntimeError, match="after torch was imported"):
        thread_plan.apply_plan(plan)
    thread_plan.apply_plan(_decide(0.0))  # nothing to set: fine at any time


def test_the_auto_child_must_run_with_the_parents_settings() -> None:
    from nervana_lstm.train.autotune import settings_differ

    request = {"threads": 2, "wait_policy": "PASSIVE"}
    assert settings_differ(request, {"threads": 2, "wait_policy": "PASSIVE"}) is None
    assert settings_differ(request, {"threads": 2, "wait_policy": None}) == (
        "wait_policy=None, not 'PASSIVE'"
    )
    assert settings_differ(request, {}) == "threads=None, not 2; wait_policy=None, not 'PASSIVE'"


# ------------------------------------------------------------------------- the CLI


def _train_with_load(
    tmp_path: Path, busy_fraction: float, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict, dict]:
    wrapper = REPO / "tests" / "fake_load.py"
    record, out = tmp_path / "seen.json", tmp_path / "run"
    full_env = {k: v for k, v in os.environ.items() if k not in thread_plan.WAIT_VARS}
    full_env.pop("OMP_NUM_THREADS", None)
    full_env.pop("NERVANA_LSTM_CONTENTION", None)
    done = subprocess.run(
        [
            sys.executable, str(wrapper), str(busy_fraction), str(record),
            "train", "--config", "configs/adding.yaml", "--out", str(out), "--no-progress",
            "--set", "train.steps=2", "--set", "train.accel=onednn", "--set", "eval.every=2",
            "--set", "model.hidden_size=8", "--set", "task.options.T=10",
            "--set", "train.precision=fp32",
        ],
        capture_output=True, text=True, timeout=300, cwd=REPO, env={**full_env, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done, json.loads(record.read_text()), json.loads((out / "run.json").read_text())


def _reported(stdout: str) -> tuple[int, str]:
    """(threads, wait policy) as the run's log reports them."""
    threads = next(line for line in stdout.splitlines() if line.startswith("threads: "))
    wait = next(line for line in stdout.splitlines() if "OpenMP wait policy: " in line)
    return int(threads.split()[1]), wait.split("OpenMP wait policy: ")[1].split()[0]


@pytest.mark.skipif(usable_cpus() < 2, reason="one CPU: a single thread never contends")
def test_cli_on_busy_cpus_starts_torch_with_passive_waiting(tmp_path: Path) -> None:
    done, seen, run = _train_with_load(tmp_path, 1.0)
    threads, wait = _reported(done.stdout)
    assert wait == "PASSIVE" and seen["wait_at_import"] == "PASSIVE"
    assert threads == seen["torch_threads"] == run["threads_per_process"] == usable_cpus()
    assert run["threads"]["contended"] is True
    assert run["threads"]["wait_policy"] == "PASSIVE"
    assert run["threads"]["torch_num_threads"] == threads
    assert "CPU load at start: other work on" in done.stdout


@pytest.mark.skipif(usable_cpus() < 2, reason="one CPU: a single thread never contends")
def test_cli_on_quiet_cpus_leaves_openmp_alone(tmp_path: Path) -> None:
    done, seen, run = _train_with_load(tmp_path, 0.0)
    threads, wait = _reported(done.stdout)
    assert wait == "default" and seen["wait_at_import"] is None
    assert threads == seen["torch_threads"] == usable_cpus()
    assert run["threads"]["contended"] is False and run["threads"]["set_env"] == {}


@pytest.mark.skipif(usable_cpus() < 2, reason="one CPU: a single thread never contends")
def test_cli_remedy_fewer_runs_torch_on_the_free_cpus(tmp_path: Path) -> None:
    # every CPU looks busy: one thread is what is left
    done, seen, run = _train_with_load(tmp_path, 1.0, {"NERVANA_LSTM_CONTENTION": "fewer"})
    threads, wait = _reported(done.stdout)
    assert threads == seen["torch_threads"] == run["threads_per_process"] == 1
    assert wait == "default" and seen["wait_at_import"] is None


def test_cli_honours_the_users_wait_policy_and_thread_count(tmp_path: Path) -> None:
    env = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}
    done, seen, _ = _train_with_load(tmp_path, 1.0, env)
    threads, wait = _reported(done.stdout)
    assert (threads, seen["torch_threads"]) == (1, 1)
    assert wait == "ACTIVE" and seen["wait_at_import"] == "ACTIVE"
    assert "threads: 1 per process (OMP_NUM_THREADS=1)" in done.stdout


def test_info_reports_the_quota_and_the_default(cli) -> None:
    done = cli("info", "--json")
    assert done.returncode == 0, done.stderr
    threads = json.loads(done.stdout)["threads"]
    assert threads["default_threads"] == threads["cpus"]["granted"] == usable_cpus()
    assert set(threads["run_now"]) >= {"threads", "wait_policy", "seen", "decided"}
    text = cli("info", env={"NERVANA_LSTM_CONTENTION": "off"}).stdout
    assert f"-> {usable_cpus()} threads by default" in text
    assert "not looked at (NERVANA_LSTM_CONTENTION=off)" in text
