"""How many threads a run uses and how its OpenMP threads wait, decided before torch starts.

OpenMP reads its environment once, when torch loads it, so the choice is made
and written to ``os.environ`` (:func:`apply_plan`) before anything imports torch.
The rule, with the defaults of :data:`DEFAULT_RULE`::

    threads    = train.threads | OMP_NUM_THREADS | granted CPUs / local processes
                 (nervana_lstm.resources.resolve_threads)
    look       = the load of the granted CPUs over sample_s = 0.2 s
                 (nervana_lstm.cpu_load: "pressure", CPUs' worth of other work on them),
                 unless NERVANA_LSTM_CONTENTION=off, several local processes, or one thread
    contended  = pressure >= busy_at = 0.5
    quiet      -> nothing is set: OpenMP's default wait policy, every thread
    contended  -> the remedy, NERVANA_LSTM_CONTENTION (default passive):
                  passive        OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep
                  fewer          threads = max(1, round(granted - pressure)), the CPUs left
                  fewer+passive  both
                 A remedy the user's own settings rule out gives way to the other one:
                 train.threads or OMP_NUM_THREADS fix the threads; OMP_WAIT_POLICY,
                 KMP_BLOCKTIME or GOMP_SPINCOUNT fix the waiting; a process that has
                 already imported torch can no longer change its wait policy.

Why: OpenMP's threads spin at each barrier for a while before they sleep. On
CPUs of their own that is the fastest (a fused LSTM call, H=256 N=64 T=25, on 2
quiet CPUs: 11.1 ms spinning against 15.7 ms passive), so a quiet machine keeps
the default. Beside a busy process a spinning thread burns the time slice its
descheduled partner needs (261.5 ms spinning, 18.7 ms passive, 19.2 ms with one
thread, same call, 2 CPUs, one busy process). ``python -m
nervana_lstm.perf.contention`` measures the remedies on a training run; change
:data:`DEFAULT_RULE` when it says otherwise.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

from nervana_lstm.choices import CONTENTION_MODES, ContentionMode
from nervana_lstm.cpu_load import LoadSample, measure_load
from nervana_lstm.errors import UsageError, short_repr
from nervana_lstm.resources import CpuGrant, cpu_grant, omp_threads, resolve_threads

__all__ = [
    "CONTENTION_ENV",
    "DEFAULT_RULE",
    "WAIT_VARS",
    "ContentionRule",
    "ThreadPlan",
    "apply_plan",
    "decide",
    "local_processes",
    "openvino_threads",
    "plan_threads",
    "recheck",
    "rule_from_env",
]

#: chooses the remedy for a contended start, or ``off`` (see :data:`CONTENTION_MODES`)
CONTENTION_ENV = "NERVANA_LSTM_CONTENTION"
#: variables with which a user sets how OpenMP threads wait (GNU and Intel OpenMP)
WAIT_VARS: tuple[str, ...] = ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT")


@dataclass(frozen=True)
class ContentionRule:
    """When other work counts as contention, and what a run does about it."""

    #: CPUs' worth of other work on the granted CPUs at which a start counts as contended
    busy_at: float = 0.5
    #: what a contended start does (not ``off``)
    remedy: ContentionMode = "passive"
    #: seconds the CPUs are watched before the decision
    sample_s: float = 0.2

    def as_dict(self) -> dict[str, object]:
        return {"busy_at": self.busy_at, "remedy": self.remedy, "sample_s": self.sample_s}


#: the rule a run follows unless ``NERVANA_LSTM_CONTENTION`` names another remedy
DEFAULT_RULE = ContentionRule()

#: variables :func:`apply_plan` wrote into ``os.environ`` in this process
_APPLIED: dict[str, str] = {}


def rule_from_env(
    environ: Mapping[str, str] | None = None, default: ContentionRule = DEFAULT_RULE
) -> ContentionRule | None:
    """``default`` with the remedy ``NERVANA_LSTM_CONTENTION`` names; None for ``off``."""
    env = os.environ if environ is None else environ
    text = env.get(CONTENTION_ENV, "").strip().lower()
    if not text:
        return default
    if text not in CONTENTION_MODES:
        raise UsageError(
            f"{CONTENTION_ENV}={short_repr(env.get(CONTENTION_ENV))} is not a contention mode; "
            f"expected one of {', '.join(CONTENTION_MODES)} (or leave it unset for "
            f"{default.remedy})"
        )
    if text == "off":
        return None
    return replace(default, remedy=text)  # type: ignore[arg-type]


def local_processes(environ: Mapping[str, str] | None = None) -> int:
    """Processes of this run on this machine: ``LOCAL_WORLD_SIZE`` (torchrun), else 1."""
    env = os.environ if environ is None else environ
    for name in ("LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        text = env.get(name, "").strip()
        if text.isdigit() and int(text) >= 1:
            return int(text)
    return 1


@dataclass(frozen=True)
class ThreadPlan:
    """The threads and OpenMP wait policy of a run, with what was seen and why."""

    threads: int
    threads_from: str  # "2 usable CPU(s)", "train.threads", "OMP_NUM_THREADS=1", ...
    wait_policy: str | None  # OMP_WAIT_POLICY torch runs with; None: OpenMP's default
    wait_from: str  # where that comes from
    contended: bool | None  # None: the load was not looked at
    seen: str  # what the look saw, or why there was none
    decided: str  # what was done about it
    grant: CpuGrant
    rule: ContentionRule | None
    requested: int | None = None
    option: str = "threads"
    processes: int = 1
    load: LoadSample | None = None
    set_env: dict[str, str] = field(default_factory=dict)  # written before torch starts
    when: str = "at start"
    earlier: ThreadPlan | None = None  # the plan a later look replaced

    def lines(self) -> list[str]:
        """The log lines under ``threads: ...``: each look and the wait policy."""
        looks = [self] if self.earlier is None else [self.earlier, self]
        out = [f"  CPU load {p.when}: {p.seen} -> {p.decided}" for p in looks]
        out.append(f"  OpenMP wait policy: {self.wait_policy or 'default'} ({self.wait_from})")
        return out

    def as_dict(self) -> dict[str, Any]:
        """What ``run.json`` keeps under ``threads``."""
        out: dict[str, Any] = {
            "threads": self.threads,
            "threads_from": self.threads_from,
            "wait_policy": self.wait_policy,
            "wait_from": self.wait_from,
            "contended": self.contended,
            "seen": self.seen,
            "decided": self.decided,
            "when": self.when,
            "cpus": self.grant.as_dict(),
            "load": None if self.load is None else self.load.as_dict(),
            "rule": None if self.rule is None else self.rule.as_dict(),
            "set_env": dict(self.set_env),
        }
        if self.earlier is not None:
            out["earlier"] = self.earlier.as_dict()
        return out


def _user_view(environ: Mapping[str, str], applied: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what an earlier plan of this process wrote there."""
    return {k: v for k, v in environ.items() if applied.get(k) != v}


def decide(
    requested: int | None,
    option: str,
    processes: int,
    grant: CpuGrant,
    load: LoadSample | None,
    rule: ContentionRule | None,
    environ: Mapping[str, str],
    *,
    torch_started: bool,
    applied: Mapping[str, str] | None = None,
    not_looked: str | None = None,
    when: str = "at start",
) -> ThreadPlan:
    """The plan for a run, from what was measured; no reading of the system here.

    ``load`` is the look at the CPUs (None with ``not_looked`` saying why);
    ``environ`` the variables now set, of which ``applied`` were written by an
    earlier plan of this process (not the user's); ``torch_started``: torch is
    imported, so its OpenMP wait policy can no longer change.
    """
    applied = dict(applied or {})
    user = _user_view(environ, applied)
    threads, threads_from = resolve_threads(requested, option, processes, grant=grant, environ=user)
    user_threads = requested is not None or omp_threads(user) is not None
    user_wait = [f"{k}={user[k]}" for k in WAIT_VARS if user.get(k, "").strip()]
    wait = (environ.get("OMP_WAIT_POLICY") or "").strip() or None
    if user_wait:
        wait_from = "set by the user: " + ", ".join(user_wait)
    elif wait is not None:
        wait_from = "set before torch started: the CPUs were busy"
    else:
        wait_from = "not set: OpenMP's threads spin a while at each barrier before they sleep"
    base: dict[str, Any] = {
        "threads_from": threads_from, "grant": grant, "rule": rule, "requested": requested,
        "option": option, "processes": processes, "load": load, "when": when,
    }  # fmt: skip
    if load is None or rule is None:
        return ThreadPlan(
            threads=threads, wait_policy=wait, wait_from=wait_from, contended=None,
            seen=f"not looked at ({not_looked or 'no reading'})", decided="nothing changed",
            **base,
        )  # fmt: skip
    seen = f"{load.describe()} over {load.seconds:.1f} s"
    if load.pressure < rule.busy_at:
        return ThreadPlan(
            threads=threads, wait_policy=wait, wait_from=wait_from, contended=False, seen=seen,
            decided=f"quiet (under {rule.busy_at:g} CPU of other work), nothing changed", **base,
        )  # fmt: skip

    free = max(1, min(threads, math.floor(grant.cpus - load.pressure + 0.5)))
    passive_now = wait is not None and wait.lower() == "passive"
    why_not = {
        "fewer": (
            f"the thread count is set ({threads_from})"
            if user_threads
            else f"{threads} thread(s) already fit the free CPUs"
            if free >= threads
            else None
        ),
        "passive": (
            f"OMP_WAIT_POLICY={wait} is in effect"
            if passive_now
            else f"the wait policy is set by the user ({', '.join(user_wait)})"
            if user_wait
            else "torch is already running, its OpenMP wait policy is fixed"
            if torch_started
            else None
        ),
    }
    wanted = ("fewer", "passive") if rule.remedy == "fewer+passive" else (rule.remedy,)
    taken = [r for r in wanted if why_not[r] is None]
    if not taken and not (passive_now and "passive" in wanted):
        other = "passive" if wanted == ("fewer",) else "fewer" if wanted == ("passive",) else None
        if other is not None and why_not[other] is None:
            taken = [other]
    set_env: dict[str, str] = {}
    done = []
    if "fewer" in taken:
        threads = free
        threads_from = f"{free} of {grant.cpus} CPU(s) left free by other work"
        done.append(f"{free} thread(s)")
    if "passive" in taken:
        set_env["OMP_WAIT_POLICY"] = "PASSIVE"
        wait, wait_from = "PASSIVE", "set before torch started: the CPUs were busy"
        done.append("OMP_WAIT_POLICY=PASSIVE")
    if passive_now and not done:
        done.append(f"OMP_WAIT_POLICY={wait} already in effect")
    head = f"contended ({rule.busy_at:g} CPU or more of other work, remedy {rule.remedy})"
    if done:
        decided = f"{head}: " + ", ".join(done)
    else:
        reasons = "; ".join(why for why in why_not.values() if why)
        decided = f"{head}: nothing changed ({reasons})"
    base["threads_from"] = threads_from
    return ThreadPlan(
        threads=threads, wait_policy=wait, wait_from=wait_from, contended=True, seen=seen,
        decided=decided, set_env=set_env, **base,
    )  # fmt: skip


#: ``measure(seconds, granted, with_processes=...)``: how :func:`plan_threads` looks
Measure = Callable[..., LoadSample | None]


def plan_threads(
    requested: int | None,
    option: str,
    processes: int = 1,
    *,
    environ: Mapping[str, str] | None = None,
    grant: CpuGrant | None = None,
    rule: ContentionRule | str | None = "from-env",
    measure: Measure = measure_load,
    torch_started: bool | None = None,
) -> ThreadPlan:
    """Decide a run's threads and wait policy: resolve the count, look at the CPUs, decide.

    ``rule`` defaults to :func:`rule_from_env`; ``grant`` to :func:`~nervana_lstm.resources.cpu_grant`;
    ``torch_started`` to whether this process has imported torch (``info`` passes False to
    show what a fresh run would decide).
    A bad ``requested``, ``OMP_NUM_THREADS`` or ``NERVANA_LSTM_CONTENTION`` is a
    :class:`UsageError` before the CPUs are watched.
    """
    env = os.environ if environ is None else environ
    the_rule = rule_from_env(env) if isinstance(rule, str) else rule
    grant = cpu_grant() if grant is None else grant
    applied = {k: v for k, v in _APPLIED.items() if env.get(k) == v}
    threads, _ = resolve_threads(
        requested, option, processes, grant=grant, environ=_user_view(env, applied)
    )
    why = None
    if the_rule is None:
        why = f"{CONTENTION_ENV}=off"
    elif processes > 1:
        why = f"{processes} processes of this run share the CPUs"
    elif threads <= 1:
        why = "one thread: no OpenMP team to wait at a barrier"
    load = None
    if why is None and the_rule is not None:
        load = measure(the_rule.sample_s, grant.cpus, with_processes=True)
        if load is None:
            why = "/proc/stat cannot be read"
    return decide(
        requested, option, processes, grant, load, the_rule, env, applied=applied,
        torch_started="torch" in sys.modules if torch_started is None else torch_started,
        not_looked=why,
    )  # fmt: skip


def apply_plan(plan: ThreadPlan, environ: MutableMapping[str, str] | None = None) -> None:
    """Write the plan's variables into ``environ`` (``os.environ``) before torch starts.

    Raises ``RuntimeError`` when the plan sets a variable but torch is imported
    already: OpenMP has read its environment, the setting would be a lie.
    """
    if not plan.set_env:
        return
    if environ is None:
        if "torch" in sys.modules:
            raise RuntimeError(
                f"apply_plan({plan.set_env}) after torch was imported: OpenMP has already read "
                "its environment; plan and apply before importing torch"
            )
        os.environ.update(plan.set_env)
        _APPLIED.update(plan.set_env)
    else:
        environ.update(plan.set_env)


def recheck(
    plan: ThreadPlan,
    when: str = "at auto's measurement",
    *,
    environ: Mapping[str, str] | None = None,
    measure: Measure = measure_load,
) -> ThreadPlan:
    """Look at the CPUs again (as ``auto`` starts to time backends) and decide anew.

    What was written before torch started stays (the wait policy cannot change
    now); the thread count may. A plan that did not look (off, several processes,
    one thread) is returned as it is.
    """
    if plan.load is None or plan.rule is None:
        return plan
    env = os.environ if environ is None else environ
    load = measure(plan.rule.sample_s, plan.grant.cpus, with_processes=True)
    if load is None:
        return plan
    applied = {**{k: v for k, v in _APPLIED.items() if env.get(k) == v}, **plan.set_env}
    new = decide(
        plan.requested, plan.option, plan.processes, plan.grant, load, plan.rule, env,
        torch_started="torch" in sys.modules, applied=applied, when=when,
    )  # fmt: skip
    return replace(new, set_env={**plan.set_env, **new.set_env}, earlier=plan)


def openvino_threads(grant: CpuGrant | None = None) -> int | None:
    """``INFERENCE_NUM_THREADS`` for OpenVINO: the granted CPUs when a cgroup quota is what
    limits them, else None (the plugin's own choice, from the affinity mask)."""
    grant = cpu_grant() if grant is None else grant
    return grant.cpus if grant.quota_limited else None
