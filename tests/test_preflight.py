"""Preflight's perf check on recorded probe output: what perf counts per event on a host, and
the problem (with its fix) when that is not what the inventory's perf_access allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import Experiment
from orchestrator.hosts import CommandResult
from orchestrator.inventory import HostSpec
from orchestrator.preflight import probe_perf

PROBES = Path(__file__).parent / "fixtures" / "perf" / "probe"
EVENTS = ["cycles", "instructions", "context-switches", "task-clock", "page-faults"]


class RecordedHost:
    """A host whose one command, the perf probe, answers with a recorded stdout and stderr."""

    role = "server"
    name = "server (recorded)"

    def __init__(self, recording: str, access: str) -> None:
        self.spec = HostSpec(host="lab-a", user="bench", perf_access=access)
        self.stdout = (PROBES / f"{recording}.stdout").read_text()
        self.stderr = (PROBES / f"{recording}.stderr").read_text()
        self.commands: list[str] = []

    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult:
        self.commands.append(command)
        return CommandResult(command, 0, self.stdout, self.stderr)


def check(recording: str, access: str = "direct", scope: str = "process"):
    experiment = Experiment.model_validate(
        {"name": "t", "matrix": {"mode": ["one_copy"]}, "perf": {"events": EVENTS, "scope": scope}})
    host = RecordedHost(recording, access)
    result = probe_perf(host, experiment, 10)
    return result, result.findings(scope), host.commands[0]


def problems(findings) -> list[str]:
    return [detail for ok, detail in findings if not ok]


def test_probe_reads_paranoid_and_uid_in_the_same_round_trip():
    result, _, command = check("unpriv_direct_process")
    assert "perf_event_paranoid" in command and "id -u" in command and "perf stat -x," in command
    assert (result.paranoid, result.uid, result.user) == (2, 1001, "hpfuser")


def test_root_counts_kernel_and_user_whatever_the_paranoid_level():
    result, findings, command = check("root_direct_process")
    assert "sudo" not in command
    assert result.counts == {"cycles": "nothing", "instructions": "nothing", "context-switches": "user+kernel",
                             "task-clock": "user+kernel", "page-faults": "user+kernel"}
    assert problems(findings) == []


def test_direct_at_paranoid_2_is_a_problem_naming_the_fixes():
    result, findings, _ = check("unpriv_direct_process")
    assert result.counts["page-faults"] == "user" and result.counts["context-switches"] == "nothing"
    assert result.counts["task-clock"] == "user+kernel"
    assert result.narrowed == ["context-switches", "page-faults"]
    (problem,) = problems(findings)
    assert "page-faults would leave out the kernel" in problem
    assert "context-switches (counted in the kernel) would count nothing" in problem
    assert "kernel.perf_event_paranoid=1" in problem
    assert "perf_access: sudo" in problem and "perf_access: user-only" in problem
    # The way without root comes first; the sudo rule says plainly that it hands out root.
    recipe = ("groupadd perf_users; chgrp perf_users /usr/bin/perf; chmod o-rwx /usr/bin/perf; "
              "setcap cap_perfmon,cap_sys_ptrace,cap_syslog=ep /usr/bin/perf; usermod -aG perf_users")
    assert recipe in problem and "then `perf_access: direct` works for members" in problem
    assert problem.index("perf_users") < problem.index("perf_access: sudo")
    assert "this hands out root: `sudo perf stat -- /bin/sh` is a root shell" in problem


def test_hardware_host_direct_at_paranoid_2_names_the_user_only_counters():
    result, findings, _ = check("hw_unpriv_direct_process")
    assert result.counts == {"cycles": "user", "instructions": "user", "context-switches": "nothing",
                             "task-clock": "user+kernel", "page-faults": "user"}
    (problem,) = problems(findings)
    assert "cycles, instructions, page-faults would leave out the kernel" in problem


def test_user_only_accepts_the_same_host_and_says_what_counts():
    _, findings, _ = check("hw_unpriv_direct_process", access="user-only")
    assert problems(findings) == []
    (detail,) = [d for ok, d in findings]
    assert "user space only: cycles, instructions, page-faults" in detail
    assert "kernel and user: task-clock" in detail and "nothing: context-switches" in detail
    assert "perf_access: user-only" in detail


def test_paranoid_1_counts_the_kernel_directly():
    result, findings, _ = check("hw_paranoid1_direct_process")
    assert set(result.counts.values()) == {"user+kernel"} and result.narrowed == []
    assert problems(findings) == []


def test_system_scope_refused_names_the_system_wide_level():
    _, findings, _ = check("unpriv_direct_system", scope="system")
    (problem,) = problems(findings)
    assert "perf stat refused the events (kernel.perf_event_paranoid=2, uid 1001" in problem
    assert "kernel.perf_event_paranoid=0" in problem and "0 or -1" in problem
    assert "perf_access: sudo" in problem
    assert "user-only" not in problem  # user-space counting cannot make perf -a legal


def test_sudo_with_a_nopasswd_rule_counts_kernel_and_user_and_drops_back_to_the_user():
    result, findings, command = check("unpriv_sudo_nopasswd_process", access="sudo")
    assert "sudo -n perf stat" in command and "</dev/null" in command
    assert 'setpriv --reuid="$(id -u)" --regid="$(id -g)" --init-groups' in command
    assert result.counts["context-switches"] == "user+kernel" and result.counts["page-faults"] == "user+kernel"
    assert problems(findings) == []


def test_sudo_that_would_prompt_is_a_clear_error_naming_the_rule():
    _, findings, _ = check("unpriv_sudo_norule_process", access="sudo")
    (problem,) = problems(findings)
    assert "`sudo -n perf` would ask for a password" in problem
    assert "hpfuser2 ALL=(root) NOPASSWD: /usr/bin/perf" in problem
    assert "`sudo perf stat -- /bin/sh` is a root shell" in problem
    assert "usermod -aG perf_users hpfuser2" in problem and problem.index("perf_users") < problem.index("NOPASSWD")
    assert "perf_access: user-only" in problem


def test_sudo_not_installed():
    _, findings, _ = check("nosudo_sudo_process", access="sudo")
    (problem,) = problems(findings)
    assert "`sudo` is not installed" in problem


@pytest.mark.parametrize("recording", ["root_direct_process", "unpriv_direct_process", "hw_unpriv_direct_process"])
def test_every_requested_event_is_classified(recording):
    result, _, _ = check(recording)
    assert list(result.counts) == EVENTS
    assert set(result.counts.values()) <= {"user+kernel", "user", "nothing"}
    assert result.to_json()["counts"] == result.counts


def test_a_kernel_refusing_all_unprivileged_perf_is_not_offered_user_only():
    # Some distribution kernels take 3 or 4: perf refuses even user-space counting.
    _, findings, _ = check("paranoid4_direct_process", access="user-only")
    (problem,) = problems(findings)
    assert "kernel.perf_event_paranoid=4, uid 1000" in problem
    assert "`sysctl -w kernel.perf_event_paranoid=1`" in problem and "perf_access: sudo" in problem
    assert "perf_access: user-only`" not in problem
