"""Preflight's perf check on recorded probe output: what perf counts per event on a host, and
the problem (with its fix) when that is not what the inventory's perf_access allows. Then the
whole preflight on fake hosts: kernel facts, tools, the cached agent, perf per host, the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.remote import deploy, workdir
from orchestrator.experiment.config import Experiment
from orchestrator.errors import HostError
from orchestrator.remote.hosts import CommandResult
from orchestrator.experiment.inventory import HostSpec, Inventory
from orchestrator.run.preflight import classify_probe, probe_perf, run_preflight

PROBES = Path(__file__).parents[1] / "fixtures" / "perf" / "probe"
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


# ---------------------------------------------------------------- the whole preflight, on fake hosts

SERVER_IP, CLIENT_IP = "198.18.0.1", "198.18.0.2"
HOME = "/home/bench"
# What a Debian 12 host with gcc and perf prints for preflight's read-only probes.
BASICS = ["@kernel 6.1.0-18-amd64", "@arch x86_64", "@cc /usr/bin/cc", "@ccversion cc (Debian 12.2.0-14) 12.2.0",
          "@ccstatic 1", "@perf perf version 6.1.76"]


def workdir_output(before: list[str], then: list[str] = (), run_id: str = "r1") -> str:
    """preflight's one round trip: its probes, then workdir.py's script with every path passing."""
    wd = f"{HOME}/.cache/orchestrate"
    paths = [wd, f"{wd}/agents", f"{wd}/runs", f"{wd}/runs/{run_id}"]
    return "\n".join([*before, f"WORKDIR {wd}", *(f"OK {p}" for p in paths), workdir.THEN, *then]) + "\n"


class PreflightHost:
    """A host answering preflight's commands: the workdir round trip, the perf probe (recorded),
    and the network checks."""

    def __init__(self, role: str, basics: list[str] = BASICS, then: list[str] = (), probe: str | None = None,
                 access: str = "direct", network: str = "", workdir_out: str | None = None,
                 fail: str | None = None) -> None:
        self.role, self.name = role, f"{role} (fake)"
        self.shell_output: dict[str, bytes] = {}  # a quiet login shell
        self.shell_startup = 0.0
        self.spec = HostSpec(host=f"lab-{role}", user="bench", perf_access=access,
                             data_address=SERVER_IP if role == "server" else CLIENT_IP)
        self.workdir_out = workdir_out if workdir_out is not None else workdir_output(basics, list(then))
        self.probe, self.network, self.fail = probe, network, fail
        self.commands: list[str] = []

    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult:
        self.commands.append(command)
        if self.fail:
            raise HostError(self.name, self.fail)
        if workdir.THEN in command:
            return CommandResult(command, 0, self.workdir_out, "")
        if "@@orchestrate-perf " in command:
            assert self.probe is not None, "perf probed on a host that should not be"
            return CommandResult(command, 0, (PROBES / f"{self.probe}.stdout").read_text(),
                                 (PROBES / f"{self.probe}.stderr").read_text())
        if command.startswith("ip -o addr show to ") or command.startswith("ip -o route get "):
            return CommandResult(command, 0, self.network, "")
        raise AssertionError(f"unexpected command: {command[:120]}")


SERVER_NET = f"2: eth1    inet {SERVER_IP}/31 scope global eth1\\       valid_lft forever preferred_lft forever\n@@\n"
CLIENT_NET = f"{SERVER_IP} dev eth1 src {CLIENT_IP} uid 0 \n    cache \n"


def preflight(server: PreflightHost, client: PreflightHost, perf: bool = True, controller=lambda arch: None):
    experiment = Experiment.model_validate(
        {"name": "t", "matrix": {"mode": ["one_copy"]}, "perf": {"enabled": perf, "events": EVENTS}})
    inventory = Inventory(server=server.spec, client=client.spec)
    result = run_preflight({"server": server, "client": client}, experiment, inventory, ["r1"], controller)
    return {r.role: r for r in result.per_host}, result


def by_check(report) -> dict[str, list[tuple[bool, str]]]:
    found: dict[str, list[tuple[bool, str]]] = {}
    for f in report.findings:
        found.setdefault(f.check, []).append((f.ok, f.detail))
    return found


def test_kernel_toolchain_and_a_cached_agent_are_read_from_one_round_trip():
    server = PreflightHost("server", then=["@cached"], network=SERVER_NET)
    client = PreflightHost("client", basics=[b for b in BASICS if not b.startswith("@cc")] + ["@cached"],
                           network=CLIENT_NET)  # `@cached` before the workdir passed is no cached agent
    reports, result = preflight(server, client, perf=False)
    assert reports["server"].kernel == "6.1.0-18-amd64"
    assert by_check(reports["server"])["reachable"] == [(True, "kernel 6.1.0-18-amd64")]
    assert reports["server"].toolchain == deploy.Toolchain("x86_64", "/usr/bin/cc", "cc (Debian 12.2.0-14) 12.2.0", True)
    assert reports["client"].toolchain == deploy.Toolchain("x86_64")
    assert (reports["server"].cached_agent, reports["client"].cached_agent) == (True, False)
    # The hosts carry the workdir as resolved there, and each was asked once for all of it.
    assert server.spec.workdir == client.spec.workdir == f"{HOME}/.cache/orchestrate"
    assert len([c for c in server.commands if workdir.THEN in c]) == 1
    assert result.problems == []
    (ok, detail), = by_check(reports["client"])["compiler"]  # no cc there: a static agent built on the server
    assert ok and detail.startswith("no `cc` here: the agent is built as a static x86_64 binary on the server")
    assert not any("@@orchestrate-perf" in c for c in server.commands + client.commands)  # perf off: not probed


def test_missing_tools_are_named():
    basics = ["@kernel 6.1.0-18-amd64", "@arch aarch64", "@noperf", "@notar"]
    server = PreflightHost("server", basics=basics, network=SERVER_NET)
    client = PreflightHost("client", network=CLIENT_NET, probe="root_direct_process")
    reports, result = preflight(server, client)
    checks = by_check(reports["server"])
    assert checks["perf"] == [(False, "no `perf`: install linux-perf, or set perf.enabled: false")]
    assert checks["tar"] == [(False, "no `tar`, needed to push the agent")]
    (ok, detail), = checks["compiler"]
    assert not ok and "for aarch64" in detail  # no cc there, none for aarch64 anywhere, nothing cached
    assert not any("@@orchestrate-perf" in c for c in server.commands)
    assert {f.check for f in result.problems} == {"perf", "tar", "compiler"}
    assert all(f.host == "server (fake)" for f in result.problems)
    # perf off: a host without perf is no problem
    server = PreflightHost("server", basics=[*BASICS, "@noperf"], network=SERVER_NET)
    reports, _ = preflight(server, PreflightHost("client", network=CLIENT_NET), perf=False)
    assert "perf" not in by_check(reports["server"])


def test_perf_access_lines_per_host_and_the_events_each_can_count():
    server = PreflightHost("server", network=SERVER_NET, probe="unpriv_direct_process")
    client = PreflightHost("client", network=CLIENT_NET, probe="hw_unpriv_direct_process", access="user-only")
    reports, result = preflight(server, client)
    assert reports["server"].perf_events == {"cycles": False, "instructions": False, "context-switches": False,
                                             "task-clock": True, "page-faults": True}
    assert reports["client"].perf_events == {"cycles": True, "instructions": True, "context-switches": False,
                                             "task-clock": True, "page-faults": True}
    server_perf = by_check(reports["server"])["perf"]
    assert [ok for ok, _ in server_perf] == [True, False]  # what counts, then the problem with its fix
    assert "kernel and user: task-clock" in server_perf[0][1] and "perf_access: direct" in server_perf[0][1]
    assert "would leave out the kernel" in server_perf[1][1]
    (client_perf,) = by_check(reports["client"])["perf"]
    assert client_perf[0] and "user space only: cycles, instructions, page-faults" in client_perf[1]
    assert [f.host for f in result.problems if f.check == "perf"] == ["server (fake)"]
    assert (result.perf_check("server").uid, result.perf_check("client").uid) == (1001, 1000)


def test_an_unsafe_workdir_or_a_lost_host_is_a_finding_not_the_end():
    wd = f"{HOME}/.cache/orchestrate"
    refused = "\n".join([*BASICS, f"WORKDIR {wd}", f"UNSAFE {wd} is owned by uid 65534, not by uid 1000 who runs the agents"]) + "\n"
    server = PreflightHost("server", workdir_out=refused, network=SERVER_NET)
    client = PreflightHost("client", fail="connection lost: reset by peer")
    reports, _ = preflight(server, client, perf=False)
    (ok, detail), = by_check(reports["server"])["workdir"]
    assert not ok and "owned by uid 65534" in detail and "nothing was built or run from it" in detail
    assert server.spec.workdir != wd  # not adopted
    assert reports["server"].kernel == "6.1.0-18-amd64"  # the read-only probes still report
    assert by_check(reports["client"]) == {"reachable": [(False, "client (fake): connection lost: reset by peer")]}


def test_network_checks_name_a_foreign_address_a_busy_port_and_a_wrong_source():
    server = PreflightHost("server", network="@@\nLISTEN 0 4096 0.0.0.0:5301 0.0.0.0:*\n")
    client = PreflightHost("client", network=f"{SERVER_IP} via 10.0.0.1 dev eth0 src 10.0.0.9 uid 0 \n    cache \n")
    reports, _ = preflight(server, client, perf=False)
    server_checks, client_checks = by_check(reports["server"]), by_check(reports["client"])
    assert server_checks["data address"] == [(False, f"{SERVER_IP} is not an address of this host")]
    assert server_checks["port"] == [(False, "port 5301 is already in use: LISTEN 0 4096 0.0.0.0:5301 0.0.0.0:*")]
    assert client_checks["route to server"][0][0] is True
    (ok, detail), = client_checks["data address"]
    assert not ok and "would leave from 10.0.0.9" in detail and CLIENT_IP in detail
    # and all is well on a good lab
    reports, _ = preflight(PreflightHost("server", network=SERVER_NET), PreflightHost("client", network=CLIENT_NET), perf=False)
    assert by_check(reports["server"])["data address"] == [(True, SERVER_IP)]
    assert by_check(reports["server"])["port"] == [(True, "5301 free")]
    assert "data address" not in by_check(reports["client"])


def test_sudo_without_setpriv_is_named():
    stdout = "@@orchestrate-perf paranoid 2\n@@orchestrate-perf uid 1000\n@@orchestrate-perf no-setpriv\n"
    check = classify_probe(stdout, "", "sudo", EVENTS)
    assert check.counts == {}
    (problem,) = problems(check.findings("process"))
    assert "no `setpriv` (util-linux)" in problem


def test_a_failed_probe_without_words_gives_its_exit_status():
    check = classify_probe("@@orchestrate-perf paranoid 1\n@@orchestrate-perf uid 1000\n@@orchestrate-perf rc 129\n", "",
                           "direct", EVENTS)
    (problem,) = problems(check.findings("process"))
    assert "perf stat refused the events (kernel.perf_event_paranoid=1, uid 1000, perf_access: direct): exit status 129" == problem


def test_a_chatty_login_shell_is_named_in_one_line_with_its_first_words():
    from orchestrator.run.preflight import login_shell
    line = login_shell({"stdout": b"\n\x1b[1m*** SITE BANNER: caf\xe9 " + b"x" * 100 + b"\nmore\n",
                        "stderr": b"bash: warning: setlocale\n"}, 0.1, 0.5)
    assert "\n" not in line and "\x1b" not in line
    assert line.startswith("the account's start-up files print on stdout and stderr ('[1m*** SITE BANNER: caf\ufffd x")
    assert line.endswith("…'); set aside, never read as output")
    assert "print on stderr ('bash: warning: setlocale')" in login_shell({"stderr": b"bash: warning: setlocale\n"}, 0.0, 0.5)


def test_a_slow_login_shell_says_what_it_costs_the_cells():
    from orchestrator.run.preflight import login_shell
    assert login_shell({}, 1.9, 0.5) == ("a command's session takes 1.90 s to start (the start-up files run for each); "
                                         "with warm-up 0.5 s each cell waits for its own (a warm-up of 3.8 s would hide it)")
    assert login_shell({}, 0.3, 1.0).endswith("each cell's commands start during the previous cell's warm-up")


def test_a_chatty_login_shell_passes_preflight_with_one_line_on_that_host():
    server = PreflightHost("server", network=SERVER_NET)
    client = PreflightHost("client", network=CLIENT_NET)
    server.shell_output = {"stdout": b"*** SITE BANNER\n"}
    reports, result = preflight(server, client, perf=False)
    assert by_check(reports["server"])["login shell"] == [
        (True, "the account's start-up files print on stdout ('*** SITE BANNER'); set aside, never read as output")]
    assert "login shell" not in by_check(reports["client"]) and result.problems == []


# `df -Pk` in the workdir, as recorded on this machine: a 64 KiB tmpfs empty, then filled.
DF_EMPTY = "@@orchestrate-room tmpfs                   64     0        64       0% /tmp/hf_t"
DF_FULL = "@@orchestrate-room tmpfs                   64    64         0     100% /tmp/hf_t"
DF_ROOMY = "@@orchestrate-room /dev/vda         264212084 26297088  80093824      25% /"


def test_a_full_workdir_is_a_problem_naming_the_host_the_workdir_and_its_free_room():
    server = PreflightHost("server", then=[DF_FULL], network=SERVER_NET)
    client = PreflightHost("client", then=[DF_ROOMY], network=CLIENT_NET)
    reports, result = preflight(server, client, perf=False)
    assert any(workdir.ROOM_MARK.strip() in c and "df -Pk ." in c for c in server.commands)  # the same round trip
    (problem,) = result.problems
    assert problem.check == "room" and problem.host == "server (fake)"
    assert problem.detail.startswith(f"no room left on server (fake) in {HOME}/.cache/orchestrate (0 KiB free): ")
    assert by_check(reports["client"])["workdir"] == [(True, f"{HOME}/.cache/orchestrate (80093824 KiB free)")]


def test_a_workdir_with_less_than_four_cells_of_room_fails_and_df_silence_is_no_finding():
    experiment = Experiment.model_validate({"name": "t", "matrix": {"mode": ["one_copy"]}})
    assert workdir.room_needed_kib(experiment) > 64  # a 64 KiB disk holds less than one cell's raw files
    server = PreflightHost("server", then=[DF_EMPTY], network=SERVER_NET)
    client = PreflightHost("client", then=[], network=CLIENT_NET)  # no df line: nothing said
    reports, result = preflight(server, client, perf=False)
    assert [(p.host, p.check) for p in result.problems] == [("server (fake)", "room")]
    assert "(64 KiB free)" in result.problems[0].detail
    assert by_check(reports["client"])["workdir"] == [(True, f"{HOME}/.cache/orchestrate")]


def test_a_kernel_before_4_18_cannot_receive_with_tcp_zerocopy_receive():
    from orchestrator.run.preflight import zerocopy_receive_problem

    assert zerocopy_receive_problem("6.18.44-fc-v1252") is None
    assert zerocopy_receive_problem("4.18.0-553.el8") is None
    assert "no TCP_ZEROCOPY_RECEIVE" in zerocopy_receive_problem("4.14.336")
    assert "cannot tell" in zerocopy_receive_problem("")


# ---------------------------------------------------------------- io_uring send modes

# URING_PROBE's line as this Debian 12 VM (kernel 6.18, root, io_uring enabled) printed it.
URING_HERE = "@uring 0 -1 8192 0 0"


def uring_preflight(server: PreflightHost, client: PreflightHost, matrix: dict):
    experiment = Experiment.model_validate({"name": "t", "matrix": matrix, "perf": {"enabled": False}})
    inventory = Inventory(server=server.spec, client=client.spec)
    result = run_preflight({"server": server, "client": client}, experiment, inventory, ["r1"], lambda arch: None)
    return {r.role: r for r in result.per_host}, result


def test_io_uring_modes_are_checked_on_the_sending_host_only():
    server = PreflightHost("server", basics=["@kernel 6.18.44-fc-v1300", *BASICS[1:], URING_HERE],
                           network=SERVER_NET)
    client = PreflightHost("client", network=CLIENT_NET)
    reports, result = uring_preflight(server, client, {"mode": ["one_copy", "io_uring", "io_uring_zc"]})
    assert result.problems == []
    # The stream's sender is the server by default: only it is asked, only it is checked.
    assert any("io_uring_disabled" in c for c in server.commands)
    assert not any("io_uring_disabled" in c for c in client.commands)
    assert by_check(reports["server"])["io_uring_zc"][0][0] is True
    assert "io_uring_zc" not in by_check(reports["client"])


def test_a_kernel_before_6_2_fails_io_uring_zc_before_any_cell_and_rr_checks_both_hosts():
    basics = BASICS + [URING_HERE]  # kernel 6.1: IORING_OP_SEND_ZC, but no usage report
    server = PreflightHost("server", basics=basics, network=SERVER_NET)
    client = PreflightHost("client", basics=basics, network=CLIENT_NET)
    _, result = uring_preflight(server, client, {"mode": ["io_uring", "io_uring_zc"], "workload": ["rr"]})
    assert sorted((p.host, p.check) for p in result.problems) == [("client (fake)", "io_uring_zc"),
                                                                 ("server (fake)", "io_uring_zc")]
    assert "kernel 6.1.0-18-amd64 is too old for io_uring_zc" in result.problems[0].detail
    assert "IORING_SEND_ZC_REPORT_USAGE (Linux 6.2)" in result.problems[0].detail


def test_io_uring_disabled_and_limited_to_a_group_are_named_with_the_fix():
    from orchestrator.run.preflight import uring_problem

    assert uring_problem("io_uring_zc", "6.18.44-fc-v1300", URING_HERE) is None
    assert uring_problem("io_uring", "6.1.0-18-amd64", "@uring - - 8192 1000 1000") is None  # before 6.6: no sysctl
    assert uring_problem("io_uring", "5.10.0", URING_HERE).startswith("kernel 5.10.0 is too old for io_uring")
    off = uring_problem("io_uring", "6.8.0", "@uring 2 -1 8192 0 0")
    assert "disabled on this host (kernel.io_uring_disabled=2)" in off and "sysctl -w kernel.io_uring_disabled=0" in off
    assert uring_problem("io_uring", "6.8.0", "@uring 1 -1 8192 0 0") is None  # root may
    assert uring_problem("io_uring", "6.8.0", "@uring 1 1500 8192 1000 1000 1500") is None  # a member of the group may
    limited = uring_problem("io_uring_zc", "6.8.0", "@uring 1 1500 8192 1000 1000 27")
    assert "members of group 1500" in limited and "uid 1000" in limited and "add the account to group 1500" in limited
    assert "could not read" in uring_problem("io_uring", "6.8.0", "")
    assert "cannot tell" in uring_problem("io_uring", "", URING_HERE)


def test_registered_buffers_beyond_the_accounts_memlock_limit_fail_preflight():
    from orchestrator.run.preflight import pinned_bytes, uring_problem

    need = pinned_bytes(65536) * 2  # two connections' rings of 64 slots, each 16 pages and one more
    assert need == 2 * 64 * 17 * 4096
    short = uring_problem("io_uring_zc", "6.8.0", "@uring 0 -1 8192 1000 1000", need)
    assert "registers up to 8 MiB" in short and "may lock 8192 KiB (ulimit -l)" in short
    assert uring_problem("io_uring_zc", "6.8.0", "@uring 0 -1 8192 0 0", need) is None  # root: not accounted
    assert uring_problem("io_uring_zc", "6.8.0", "@uring 0 -1 unlimited 1000 1000", need) is None
    assert uring_problem("io_uring_zc", "6.8.0", "@uring 0 -1 65536 1000 1000", need) is None


def test_preflight_asks_for_the_memlock_limit_only_where_registered_buffers_are_planned():
    basics = ["@kernel 6.18.44-fc-v1300", *BASICS[1:], "@uring 0 -1 8192 1000 1000"]
    server = PreflightHost("server", basics=basics, network=SERVER_NET)
    client = PreflightHost("client", network=CLIENT_NET)
    _, result = uring_preflight(server, client, {"mode": ["io_uring_zc"], "threads": [1, 2],
                                                 "uring_buffers": ["plain", "registered"]})
    assert [(p.host, p.check) for p in result.problems] == [("server (fake)", "io_uring_zc")]
    assert "ulimit -l" in result.problems[0].detail
    server = PreflightHost("server", basics=basics, network=SERVER_NET)
    _, result = uring_preflight(server, client, {"mode": ["io_uring_zc"], "threads": [1, 2]})
    assert result.problems == []  # plain buffers: what is in flight only, and the agent waits past the limit
