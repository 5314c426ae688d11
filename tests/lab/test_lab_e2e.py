"""End to end over the namespace lab: two network stacks, a veth data link, an sshd in each,
real agents and real perf; then the faults a real lab meets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from orchestrator import lab
from orchestrator.run import runner
from orchestrator.report import ceiling
from orchestrator.rows import tcpinfo
from orchestrator.cli import main
from orchestrator.rows.results import read_results

from ..labs import namespace_processes, running_lab
from ..conftest import ROOT, require_tool
from ..cli.test_cli import ENV, ORCHESTRATE, orchestrate

pytestmark = [pytest.mark.integration, pytest.mark.lab]

# Its own prefix per checkout, so that two test sessions on one machine do not share a lab.
PREFIX = os.environ.get("ORCH_TEST_LAB_PREFIX", "orcht")
NAMESPACES = (f"{PREFIX}-server", f"{PREFIX}-client")


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory.mktemp("lab"), PREFIX) as (inventory, _):
        yield inventory


def lab_processes() -> list[tuple[str, int, list[str]]]:
    """(namespace, pid, argv) of every process in the lab's namespaces."""
    return namespace_processes(NAMESPACES)


def agents_alive() -> list[str]:
    """Agents, and perf processes wrapping one, still alive in the lab."""
    return [f"{ns} {pid}: {' '.join(argv)}" for ns, pid, argv in lab_processes()
            if any(arg.endswith("/bin/agent") for arg in argv)]


def agent_pid(role: str, threads: int | None = None) -> int | None:
    """An agent of one of the experiment's cells (16 KiB messages; the preflight's data-path
    probe uses 1 KiB and is left alone)."""
    for _, pid, argv in lab_processes():
        if argv[0].endswith("/bin/agent") and argv[1] == role and argv[argv.index("--size") + 1] == "16384":
            if threads is None or argv[argv.index("--threads") + 1] == str(threads):
                return pid
    return None


def experiment(tmp_path: Path, **overrides) -> Path:
    data = {"name": "lab-fault", "matrix": {"threads": [1, 2, 3]}, "mode": "one_copy", "message_size": "16KiB",
            "duration": "2s", "warmup": "0.2s", "order": "listed",
            "perf": {"events": ["cycles", "context-switches", "task-clock"]}}
    data.update(overrides)
    path = tmp_path / "experiment.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def only_run(results: Path) -> Path:
    (run_dir,) = results.iterdir()
    return run_dir


def test_smoke_runs_over_the_lab_data_link(lab_inventory, tmp_path):
    results = tmp_path / "results"
    code = main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(lab_inventory), "--results", str(results)])
    run_dir = only_run(results)
    frame = read_results(run_dir / "results.csv")
    assert code == 0, frame[["cell_id", "error"]]
    assert len(frame) == 8 and (frame["status"] == "ok").all()

    for cell_id in frame["cell_id"]:
        server = json.loads((run_dir / "cells" / cell_id / "server.json").read_text())
        client = json.loads((run_dir / "cells" / cell_id / "client.json").read_text())
        for thread in server["threads_detail"]:
            assert thread["local"].startswith("198.18.0.1:") and thread["peer"].startswith("198.18.0.2:")
        for thread in client["threads_detail"]:
            assert thread["local"].startswith("198.18.0.2:") and thread["peer"].startswith("198.18.0.1:")

    server_facts = json.loads((run_dir / "hosts" / "server.json").read_text())
    client_facts = json.loads((run_dir / "hosts" / "client.json").read_text())
    # Each namespace reported its own end of the veth data link, not loopback.
    assert server_facts["nic"]["kind"] == client_facts["nic"]["kind"] == "veth"
    assert "198.18.0.1" in server_facts["nic"]["addresses"] and "198.18.0.2" not in server_facts["nic"]["addresses"]
    assert "198.18.0.2" in client_facts["nic"]["addresses"] and "198.18.0.1" not in client_facts["nic"]["addresses"]
    assert server_facts["ssh_target"] != client_facts["ssh_target"]

    # Software counters parsed; hardware counters recorded as not supported on this VM.
    assert (frame["server_task_clock"] > 0).all() and (frame["client_task_clock"] > 0).all()
    assert (frame["server_context_switches"] >= 0).all()
    if not server_facts["perf_events_supported"]["cycles"]:
        assert "server_cycles" not in frame or frame["server_cycles"].isna().all()
    zero = frame[frame["mode"] == "zero_copy"]
    assert len(zero) == 2 and (zero["zerocopy_copied_fraction"] == 1.0).all()  # veth between namespaces copies too
    # Two network stacks, one kernel: the host counters say so, and the report does not add them up.
    assert frame["host_shared_kernel"].all()
    stream = frame[frame["workload"] == "stream"]
    assert (stream["server_host_cpu_system_s"] > 0).all() and (stream["client_host_softirq_net_rx"] > 0).all()
    # Each agent found its end of the veth as the data NIC: the driver's counters are read (the
    # same as `ethtool -S`), and there are no IRQ lines for it: blank, never 0.
    assert (frame["server_host_nic"] == lab.DATA_IF).all() and (frame["client_host_nic"] == lab.DATA_IF).all()
    assert frame["server_host_nic_rx_queues_drops"].notna().all() and frame["client_host_nic_rx_queues_xdp_packets"].notna().all()
    assert "server_host_nic_interrupts" not in frame and "client_host_nic_interrupts" not in frame
    assert frame["server_host_tcp_retranssegs"].notna().all() and frame["client_host_tcpext_tcprcvqdrop"].notna().all()
    # The agent's reading is the driver's table as `ethtool -S` prints it: the same names in the same order.
    require_tool("ethtool")
    snapshot = json.loads((run_dir / "cells" / frame["cell_id"].iloc[0] / "server.json").read_text())["host_counters"]
    printed = subprocess.run(["ip", "netns", "exec", NAMESPACES[0], "ethtool", "-S", lab.DATA_IF],
                             capture_output=True, text=True, check=True).stdout
    names = [line.split(":")[0].strip() for line in printed.splitlines()[1:]]
    assert names and [line.split(":")[0].strip() for line in snapshot["end"]["ethtool"].splitlines()[1:]] == names
    assert snapshot["nic"] == lab.DATA_IF and snapshot["nic_bus"] is None  # a veth has no bus
    report = (run_dir / "report.md").read_text()
    assert "**Both roles ran on one kernel**" in report and (run_dir / "plots" / "where_cpu_went.png").exists()
    assert not agents_alive()


def kill_when_running(role: str, timeout: float = 20) -> threading.Thread:
    def killer() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = agent_pid(role)
            if pid:
                time.sleep(0.8)  # mid-cell, after the warm-up
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


def test_killed_server_agent_fails_its_cell_and_the_run_goes_on(lab_inventory, tmp_path):
    results = tmp_path / "results"
    killer = kill_when_running("server")
    code = main(["run", str(experiment(tmp_path)), "--inventory", str(lab_inventory), "--results", str(results), "--no-report"])
    killer.join()
    frame = read_results(only_run(results) / "results.csv")
    assert code == 1
    assert len(frame) == 3
    failed = frame[frame["status"] == "failed"]
    assert list(failed["cell_id"]) == ["stream-one_copy-16384B-1t-r1"]
    assert "server agent" in failed.iloc[0]["error"]
    assert (frame[frame["status"] == "ok"]["threads"].tolist()) == [2, 3]
    assert not agents_alive()


def test_client_sshd_stopping_mid_run_names_the_host(lab_inventory, tmp_path):
    results = tmp_path / "results"
    client_ns = NAMESPACES[1]

    def stop_sshd() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not agent_pid("client"):
            time.sleep(0.05)
        # Every sshd in the client namespace: the listener and the session serving us.
        for pid in subprocess.run(["ip", "netns", "pids", client_ns], capture_output=True, text=True).stdout.split():
            try:
                if b"sshd" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass

    stopper = threading.Thread(target=stop_sshd, daemon=True)
    stopper.start()
    started = time.monotonic()
    done = orchestrate("run", str(experiment(tmp_path)), "--inventory", str(lab_inventory), "--results", str(results),
                       "--no-report", timeout=120)
    stopper.join()
    elapsed = time.monotonic() - started
    try:
        assert done.returncode == 3, done.stderr
        assert "client (root@198.19." in done.stderr
        assert "Traceback" not in done.stderr
        assert elapsed < 60
        run_dir = only_run(results)
        # The interrupted cell has no row: it was not measured, and its raw files are kept.
        assert not (run_dir / "results.csv").exists()
        assert (run_dir / "cells" / "stream-one_copy-16384B-1t-r1").is_dir()
        deadline = time.monotonic() + 15  # the agent's lifetime limit ends it if nothing else does
        while agents_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not agents_alive()
    finally:
        lab.up(lab.LabOptions(prefix=PREFIX, inventory_path=lab_inventory))  # restores the sshd
    resumed = orchestrate("run", "--resume", str(run_dir), "--no-report", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    frame = read_results(run_dir / "results.csv")
    assert sorted(frame["threads"]) == [1, 2, 3] and (frame["status"] == "ok").all()


def ours_alive() -> list[str]:
    """Every process of ours in the lab: all but the sshd listeners (sessions, shells, perf, agents)."""
    return [f"{ns} {pid}: {' '.join(argv)}" for ns, pid, argv in lab_processes() if "[listener]" not in " ".join(argv)]


def wait_until_none_of_ours(timeout: float) -> list[str]:
    """What is still running after `timeout` (an sshd session takes a moment to go after its connection)."""
    deadline = time.monotonic() + timeout
    while (left := ours_alive()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_kills_agents_and_resume_completes_the_run(lab_inventory, tmp_path, sig):
    results = tmp_path / "results"
    command = [*ORCHESTRATE, "run", str(experiment(tmp_path)), "--inventory", str(lab_inventory),
               "--results", str(results), "--no-report"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not agent_pid("server", threads=2):
        time.sleep(0.05)
    time.sleep(0.5)
    assert agents_alive(), "the cell to interrupt is not running"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + sig, stderr  # 130 SIGINT, 143 SIGTERM, 129 SIGHUP
    assert f"interrupted ({sig.name})" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    assert not agents_alive()  # at once: the orchestrator killed them before it exited
    assert not wait_until_none_of_ours(5)
    run_dir = only_run(results)
    assert len(read_results(run_dir / "results.csv")) == 1
    assert f"{sig.name} received" in (run_dir / "run.log").read_text()

    resumed = orchestrate("run", "--resume", str(run_dir), "--no-report", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    frame = read_results(run_dir / "results.csv")
    assert sorted(frame["cell_id"]) == sorted(f"stream-one_copy-16384B-{t}t-r1" for t in (1, 2, 3))
    assert (frame["status"] == "ok").all()
    assert (run_dir / "cells" / "stream-one_copy-16384B-2t-r1.interrupted-1").is_dir()
    assert not wait_until_none_of_ours(5)


def test_port_taken_on_the_server_is_found_by_preflight(lab_inventory, tmp_path):
    listener = subprocess.Popen(
        ["ip", "netns", "exec", NAMESPACES[0], sys.executable, "-c",
         "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
         "s.bind(('198.18.0.1', 5301)); s.listen(); print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert listener.stdout.readline().strip() == "up"
        done = orchestrate("check", str(experiment(tmp_path)), "--inventory", str(lab_inventory))
    finally:
        listener.kill()
        listener.wait()
    assert done.returncode == 3
    assert "port 5301 is already in use" in " ".join(done.stderr.split())


@pytest.mark.parametrize("fault", ["unreachable", "wrong key", "unknown host key"])
def test_ssh_faults_give_a_clear_error(lab_inventory, tmp_path, fault):
    inventory = yaml.safe_load(lab_inventory.read_text())
    cleanup = []
    if fault == "unreachable":
        # An "unreachable" route makes the kernel refuse at once: no packet leaves this machine.
        subprocess.run(["ip", "route", "replace", "unreachable", "198.19.250.2/32"], check=True)
        cleanup.append(["ip", "route", "del", "unreachable", "198.19.250.2/32"])
        inventory["client"]["host"] = "198.19.250.2"
        expected = "client (root@198.19.250.2"
    elif fault == "wrong key":
        other = tmp_path / "other_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        inventory["server"]["key"] = str(other)
        expected = "authentication failed"
    else:
        empty = tmp_path / "known_hosts"
        empty.write_text("")
        inventory["server"]["known_hosts"] = str(empty)
        expected = "unknown host key"
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    started = time.monotonic()
    try:
        done = orchestrate("run", str(experiment(tmp_path)), "--inventory", str(path), "--results", str(tmp_path / "results"))
    finally:
        for command in cleanup:
            subprocess.run(command, check=False)
    assert done.returncode == 3, done.stderr
    assert expected in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30


def run_during(fault, undo: list[str], config: Path, inventory: Path, results: Path):
    """`orchestrate run` while `fault` acts on the lab from a thread; `undo` (an ip command)
    restores the lab afterwards whatever happened."""
    thread = threading.Thread(target=fault, daemon=True)
    thread.start()
    try:
        return orchestrate("run", str(config), "--inventory", str(inventory), "--results", str(results),
                           "--no-report", timeout=120)
    finally:
        thread.join()
        subprocess.run(undo, check=False)


def test_data_link_down_inside_the_window_is_not_a_plain_ok(lab_inventory, tmp_path):
    """The data link goes down for 1.5 s inside a 4 s window: the row must not say `ok`."""
    results = tmp_path / "results"
    client_ns = NAMESPACES[1]
    config = experiment(tmp_path, matrix={"threads": [1]}, duration="4s", warmup="0.5s", interval="0.5s")

    def outage() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not agent_pid("client"):
            time.sleep(0.02)
        time.sleep(0.5 + 1.0)  # past the warm-up, one second into the window
        subprocess.run(["ip", "-n", client_ns, "link", "set", lab.DATA_IF, "down"], check=True)
        try:
            time.sleep(1.5)
        finally:
            subprocess.run(["ip", "-n", client_ns, "link", "set", lab.DATA_IF, "up"], check=True)

    done = run_during(outage, ["ip", "-n", client_ns, "link", "set", lab.DATA_IF, "up"], config, lab_inventory, results)
    frame = read_results(only_run(results) / "results.csv")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["status"] == "degraded", (row["status"], row["error"], done.stderr)
    assert "stalled" in row["error"] or "measured window" in row["error"]
    assert done.returncode == 1
    assert "1 degraded" in " ".join(done.stderr.split())
    assert not agents_alive()
    # The outage is in the time series (intervals.csv, written as the cell finished) and in the
    # report's stall list, by the same rule as the degraded row.
    run_dir = only_run(results)
    series = pd.read_csv(run_dir / "intervals.csv")
    assert len(series) == 8 and series["interval"].tolist() == list(range(8))
    assert series["bytes"].sum() == row["window_bytes"]
    median = series["bytes"].median()
    dark = series.loc[series["bytes"] < 0.1 * median, "interval"].tolist()
    # Inside the window, never its first or last interval: the 1.5 s outage starts about 1 s in,
    # later on a busy machine, and TCP's retransmission backoff can keep the next interval dark
    # after the link is up (intervals 3 to 6 in one CI run).
    assert dark and set(dark) <= {1, 2, 3, 4, 5, 6}, series[["interval", "t_start_s", "bytes"]]
    assert "stalled" in row["error"]  # the progress samples' rule; the report's stall list is by interval
    report = orchestrate("report", str(run_dir), timeout=120)
    assert report.returncode == 0, report.stderr
    text = (run_dir / "report.md").read_text()
    stalls = text[text.index("Cells with a stall"):]
    assert f"`{row['cell_id']}`: {len(dark)} of " in stalls.split("\n\n")[1]
    assert (run_dir / "plots" / "throughput_over_time.png").stat().st_size > 0


def test_a_client_that_cannot_connect_ends_its_cell_at_once(lab_inventory, tmp_path):
    """After preflight, the client loses its route to the server: its agent fails at once
    ("No route to host"), and the cell ends then, not after the server's whole lifetime."""
    results = tmp_path / "results"
    client_ns = NAMESPACES[1]
    route = ["route", "add", "unreachable", "198.18.0.1/32"]
    config = experiment(tmp_path, matrix={"threads": [1]})

    def cut_route_before_the_first_cell() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # hosts/client.json is written once preflight and its data-path check are over.
            if results.exists() and any((p / "hosts" / "client.json").exists() for p in results.iterdir()):
                subprocess.run(["ip", "-n", client_ns, *route], check=True)
                return
            time.sleep(0.005)

    done = run_during(cut_route_before_the_first_cell, ["ip", "-n", client_ns, "route", "del", "unreachable", "198.18.0.1/32"],
                      config, lab_inventory, results)
    run_dir = only_run(results)
    frame = read_results(run_dir / "results.csv")
    assert done.returncode == 1, done.stderr
    row = frame.iloc[0]
    assert row["status"] == "failed"
    assert "client agent" in row["error"] and "cannot connect to 198.18.0.1" in row["error"], row["error"]
    cell = json.loads((run_dir / "cells" / row["cell_id"] / "cell.json").read_text())
    # The server's lifetime is 0.2 + 2 + 30 s: the cell ends long before that.
    assert cell["seconds"] < 8, cell
    assert not agents_alive()


def test_dry_run_contacts_no_host_and_plans_the_order_the_real_run_takes(lab_inventory, tmp_path, capsys):
    """The dry run contacts no host, and plans the cells in the order the real run over the lab
    takes. How close its estimate comes to the wall time is a speed figure, so it lives in
    benchmarks/dry_run_estimate.py, not here."""
    config = tmp_path / "estimate.yml"
    config.write_text(yaml.safe_dump({
        "name": "estimate", "matrix": {"mode": ["one_copy", "two_copy"], "threads": [1, 2], "message_size": ["16KiB", "64KiB"]},
        "duration": "0.5s", "warmup": "0.2s", "seed": 7, "perf": {"events": ["cycles", "context-switches", "task-clock"]},
    }))
    inventory = yaml.safe_load(lab_inventory.read_text())
    # Unreachable hosts would fail any contact: the dry run must not try.
    unreachable = tmp_path / "unreachable.yml"
    unreachable.write_text(yaml.safe_dump({role: {**inventory[role], "host": "198.18.255.254"} for role in ("server", "client")}))
    assert main(["run", "--dry-run", str(config), "--inventory", str(unreachable), "--json", "-q"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dry_run"] and plan["cells"] == {"planned": 8, "to_run": 8, "done": 0} and len(plan["plan"]) == 8
    assert plan["seed"] == 7 and plan["hosts"]["server"]["data_address"] == inventory["server"]["data_address"]

    # The estimate assumes a build; make it true for this run.
    for role in ("server", "client"):
        subprocess.run(["rm", "-rf", f"{inventory[role]['workdir']}/agents"], check=True)
    results = tmp_path / "results"
    started = time.monotonic()
    code = main(["run", str(config), "--inventory", str(lab_inventory), "--results", str(results), "--json", "-q"])
    wall = time.monotonic() - started
    done = json.loads(capsys.readouterr().out)
    assert code == 0 and done["cells"]["run"] == 8, done
    saved = json.loads((only_run(results) / "plan.json").read_text())
    assert [c["cell_id"] for c in saved["cells"]] == plan["plan"]  # the same seed, the same order
    parts = plan["estimate"]
    print(f"dry-run estimate {parts['total_s']:.1f} s, real wall time {wall:.1f} s")
    # The cells alone (8 x (0.5 s + 0.2 s warm-up)) are a floor under both figures.
    assert parts["total_s"] >= 5.6 and wall >= 5.6, (parts, wall)


def server_agents() -> list[int]:
    """Every server agent alive in the lab, the preflight's data-path probe included."""
    return [pid for _, pid, argv in lab_processes() if argv[0].endswith("/bin/agent") and argv[1:2] == ["server"]]


def test_resume_right_after_sigkill_ends_the_orphans_before_it_measures(lab_inventory, tmp_path):
    results = tmp_path / "results"
    # One long cell: its orphans would still send for most of 30 s after the SIGKILL, far longer
    # than the resume takes to reach its first measurement, however loaded the machine.
    duration = 30
    config = experiment(tmp_path, duration=f"{duration}s", matrix={"threads": [2]})
    process = subprocess.Popen([*ORCHESTRATE, "run", str(config), "--inventory", str(lab_inventory),
                                "--results", str(results), "--no-report"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not agent_pid("server", threads=2):
        time.sleep(0.05)
    time.sleep(1.0)
    orphan = agent_pid("server", threads=2)
    assert orphan, "the cell to interrupt is not running"
    process.kill()
    killed = time.monotonic()
    process.communicate(timeout=10)
    run_dir = only_run(results)
    recorded = [json.loads(line) for line in (run_dir / "processes.jsonl").read_text().splitlines()]
    assert {"server", "client"} <= {e["role"] for e in recorded if e["cell"] == "stream-one_copy-16384B-2t-r1"}

    # The orphans are still sending when the resume starts; poll every server agent during it.
    seen: list[list[int]] = []
    orphan_gone = None
    resume = subprocess.Popen([*ORCHESTRATE, "run", "--resume", str(run_dir), "--no-report"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    while resume.poll() is None:
        seen.append(server_agents())
        if orphan_gone is None and orphan not in seen[-1]:
            orphan_gone = time.monotonic() - killed
        time.sleep(0.01)
    _, stderr = resume.communicate()
    assert resume.returncode == 0, stderr
    assert seen and seen[0] == [orphan]  # the poll did start while the orphan ran
    assert max(len(s) for s in seen) == 1, [s for s in seen if len(s) > 1][:5]
    # The resume ended it itself, long before the orphan's own duration was up.
    assert "ended process group" in stderr and "stream-one_copy-16384B-2t-r1" in stderr
    assert orphan_gone is not None and orphan_gone < duration - 5, orphan_gone
    assert any(orphan not in s and s for s in seen)  # later server agents were the resume's own
    frame = read_results(run_dir / "results.csv")
    assert list(frame["threads"]) == [2] and (frame["status"] == "ok").all()
    assert not wait_until_none_of_ours(5)


def test_a_second_run_on_the_same_hosts_fails_fast_and_leaves_the_first_alone(lab_inventory, tmp_path):
    config = experiment(tmp_path, duration="8s")  # long enough for the second run's slow start on a loaded machine
    first_results, second_results = tmp_path / "first", tmp_path / "second"
    # Which runs ever had an agent alive in the lab: the run id is in each agent's working folder.
    seen_runs: set[str] = set()
    polling = threading.Event()

    def poll() -> None:
        while not polling.is_set():
            for _, pid, argv in lab_processes():
                if argv[0].endswith("/bin/agent"):
                    try:
                        cwd = os.readlink(f"/proc/{pid}/cwd")
                    except OSError:
                        continue
                    seen_runs.add(cwd.split("/runs/")[1].split("/")[0].removesuffix(runner.PROBE_SUFFIX))
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    first = subprocess.Popen([*ORCHESTRATE, "run", str(config), "--inventory", str(lab_inventory),
                              "--results", str(first_results), "--no-report"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not agent_pid("server"):
            time.sleep(0.05)
        assert agent_pid("server"), "the first run is not measuring"
        first_id = only_run(first_results).name
        started = time.monotonic()
        second = orchestrate("run", str(config), "--inventory", str(lab_inventory), "--results", str(second_results),
                             "--no-report", timeout=60)
        elapsed = time.monotonic() - started
        assert first.poll() is None, f"the first run ended before the second was tried ({elapsed:.1f}s): {second.stderr}"
    finally:
        _, first_stderr = first.communicate(timeout=120)
        polling.set()
        poller.join()
    assert second.returncode == 3, second.stderr
    assert first_id in second.stderr and "in use by another run" in " ".join(second.stderr.split())
    assert "Traceback" not in second.stderr
    assert elapsed < 30  # interpreter start-up on a loaded machine included; no cell was waited for
    second_dir = only_run(second_results)
    assert not (second_dir / "processes.jsonl").exists() and not (second_dir / "cells").exists()
    assert seen_runs == {first_id}  # the second run never started an agent
    assert first.returncode == 0, first_stderr
    frame = read_results(only_run(first_results) / "results.csv")
    assert len(frame) == 3 and (frame["status"] == "ok").all()
    assert not wait_until_none_of_ours(5)


def test_after_sigkill_a_stuck_agent_ends_by_its_own_lifetime_limit(lab_inventory, tmp_path):
    """Nobody is left to kill anything: the server agent, its client stopped (SIGSTOP) so that it
    cannot end by its duration, ends by its watchdog (--lifetime: warm-up + duration + cell_grace)."""
    config = experiment(tmp_path, duration="3s", timeouts={"cell_grace": "3s"})
    lifetime = 0.2 + 3 + 3
    process = subprocess.Popen([*ORCHESTRATE, "run", str(config), "--inventory", str(lab_inventory),
                                "--results", str(tmp_path / "results"), "--no-report"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (agent_pid("server") and agent_pid("client")):
        time.sleep(0.02)
    server, client = agent_pid("server"), agent_pid("client")
    assert server and client, "the cell is not running"
    started = time.monotonic()
    process.kill()
    os.kill(client, signal.SIGSTOP)
    process.communicate(timeout=10)
    try:
        while Path(f"/proc/{server}").exists() and time.monotonic() - started < lifetime + 10:
            time.sleep(0.05)
        ended = time.monotonic() - started
        cell_dir = Path(os.readlink(f"/proc/{client}/cwd"))
    finally:
        os.kill(client, signal.SIGCONT)
    assert not Path(f"/proc/{server}").exists(), "the server agent outlived its lifetime limit"
    assert ended > 3 + 1, "the server ended by its duration: the test did not hold it"
    server_dir = Path(str(cell_dir).replace(f"/{PREFIX}/client/", f"/{PREFIX}/server/"))
    assert "lifetime" in json.loads((server_dir / "server.json").read_text())["error"]
    assert not wait_until_none_of_ours(lifetime + 5)  # the client, let go, ends by its own limit too


def test_a_closed_terminal_stops_the_run_cleanly(lab_inventory, tmp_path):
    """SIGHUP as a closed terminal sends it: the terminal is gone first, so every write to it fails."""
    import pty

    results = tmp_path / "results"
    master, terminal = pty.openpty()
    process = subprocess.Popen([*ORCHESTRATE, "run", str(experiment(tmp_path)), "--inventory", str(lab_inventory),
                                "--results", str(results), "--no-report"],
                               stdin=terminal, stdout=terminal, stderr=terminal, env=ENV, start_new_session=True)
    os.close(terminal)

    def drain() -> None:
        try:
            while os.read(master, 4096):
                pass
        except OSError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not agent_pid("server", threads=2):
        time.sleep(0.05)
    time.sleep(0.5)
    assert agents_alive(), "the cell to interrupt is not running"
    os.close(master)  # the terminal closes...
    process.send_signal(signal.SIGHUP)  # ...and its session hears of it
    assert process.wait(timeout=60) == 128 + signal.SIGHUP
    assert not agents_alive()
    assert not wait_until_none_of_ours(5)
    run_dir = only_run(results)
    log = (run_dir / "run.log").read_text()
    assert "SIGHUP received" in log and "Traceback" not in log
    assert len(read_results(run_dir / "results.csv")) == 1


def at_the_link(row, tcp_bound: str = "neither") -> str:
    """What bounded a one-repetition cell of the 200 Mbit/s lab: the link where its row was ok and
    ran within ceiling.TOLERANCE of the tbf's rate (goodput at MTU 1280 sits right about there;
    the ceiling reads ok rows only), beside its TCP bound if it had one."""
    if row.status != "ok" or row.throughput_gbps < (1 - ceiling.TOLERANCE) * 0.2:
        return tcp_bound
    return "the link: the tbf qdisc rate (0.2 Gbit/s)" if tcp_bound == "neither" else f"{tcp_bound}; the link"


def test_a_rate_limited_small_mtu_link_shows_in_the_tcp_columns(tmp_path):
    """A lab of its own with a 1280-byte MTU and a 200 Mbit/s rate: throughput near the rate, the
    path MTU in tcp_pmtu, the kernel's delivery-rate estimate near the rate, the busy time of the
    window counted, and the columns that say what bounded each cell: with default buffers neither
    the receive window nor the send buffer (the link's queue did: the RTT grows by its queueing
    delay); a small receive buffer shows in the receive-window column; the report's TCP section
    names each bound by its rule and flags the cells that retransmitted. The veth's counters are there, its IRQs blank.
    (A small send buffer is not asserted: its limited share was 33 % with 16 KiB and 1 % with
    4 KiB on this VM, not a bound a test can rely on.)"""
    results, bounded = tmp_path / "results", tmp_path / "bounded"
    (tmp_path / "b").mkdir()
    with running_lab(tmp_path, f"{PREFIX}-r", ("tc",), mtu=1280, rate_mbit=200) as (inventory, _):
        config = experiment(tmp_path, matrix={"threads": [1, 2]}, duration="2s", warmup="0.5s", interval="0.5s")
        done = orchestrate("run", str(config), "--inventory", str(inventory), "--results", str(results), timeout=180)
        assert done.returncode in (0, 1), done.stderr
        buffers = experiment(tmp_path / "b", matrix={"rcvbuf": ["0", "16KiB"]},
                             duration="2s", warmup="0.5s", interval="0.5s")
        done = orchestrate("run", str(buffers), "--inventory", str(inventory), "--results", str(bounded), timeout=240)
        assert done.returncode in (0, 1), done.stderr
    run_dir = only_run(results)
    frame = read_results(run_dir / "results.csv")
    assert len(frame) == 2
    for _, row in frame.iterrows():
        assert row["status"] in ("ok", "degraded"), row["error"]
        assert 0.1 < row["throughput_gbps"] < 0.21, row["throughput_gbps"]
        assert row["tcp_pmtu"] == 1280
        # The kernel's own estimate agrees with what the receiver measured: the link's rate.
        assert abs(row["tcp_delivery_rate_gbps"] - row["throughput_gbps"]) < 0.25 * row["throughput_gbps"]
        assert 0.5 * row["threads"] < row["tcp_busy_s"] <= 2.2 * row["threads"]
        assert row["tcp_retrans"] >= 0 and row["tcp_rtt_us"] > 0
        for limit in ("rwnd", "sndbuf"):
            assert 0 <= row[f"tcp_{limit}_limited_fraction"] <= 1
        # What bounded it: not the buffers (neither limit held it), but the rate-limited queue,
        # whose waiting shows in the RTT (the bare veth's is tens of microseconds).
        assert row["tcp_rwnd_limited_fraction"] < 0.5 and row["tcp_sndbuf_limited_fraction"] < 0.5
        assert row["tcp_rtt_us"] > 1000, row["tcp_rtt_us"]
        # The data NIC is the veth: its statistics are counted, it has no IRQs (blank, never 0).
        for role in ("server", "client"):
            assert row[f"{role}_host_nic"] == lab.DATA_IF
            assert row[f"{role}_host_nic_rx_queues_drops"] >= 0 and row[f"{role}_host_tcp_retranssegs"] >= 0
        # The hosts count the window's retransmits too. Their snapshots and the sender's TCP_INFO
        # samples are taken a few ms (at the end up to one 100 ms send wait) apart: a few segments of slack.
        assert row["client_host_tcp_retranssegs"] + row["server_host_tcp_retranssegs"] >= row["tcp_retrans"] - 5
    assert "server_host_nic_interrupts" not in frame or frame["server_host_nic_interrupts"].isna().all()
    # The host facts name the ceiling: the data link's tbf root qdisc and its rate, gathered over SSH.
    for role in ("server", "client"):
        nic = json.loads((run_dir / "hosts" / f"{role}.json").read_text())["nic"]
        assert (nic["qdisc"], nic["qdisc_rate_mbit"], nic["mtu"]) == ("tbf", 200.0, 1280), nic
    text = (run_dir / "report.md").read_text()
    section = text[text.index("## TCP: retransmits and limits"):]
    assert "| `stream-one_copy-16384B-1t` |" in section and "| `stream-one_copy-16384B-2t` |" in section
    for _, row in frame.iterrows():
        line = next(line for line in section.splitlines() if line.startswith(f"| `{row['cell_id'].replace('-r1', '')}` |"))
        assert line.endswith(f"| {at_the_link(row)} |"), line

    # Small socket buffers: the limit they set is the one the columns and the report name.
    frame = read_results(only_run(bounded) / "results.csv")
    assert len(frame) == 2 and frame["status"].isin(["ok", "degraded"]).all(), frame["error"]
    (default,) = frame[frame["rcvbuf"] == 0].itertuples()
    (rwnd,) = frame[frame["rcvbuf"] == 16384].itertuples()
    # The small receive buffer shows in its column. On a rate-limited link the queue the window
    # feeds is the link's, so the sender waits on the window about half the time, not all of it:
    # 0.47 with 16 KiB in one CI run, 0.54 with 4 KiB in another: a 0.5 line is not asserted.
    assert rwnd.tcp_rwnd_limited_fraction > default.tcp_rwnd_limited_fraction + 0.25, \
        (rwnd.tcp_rwnd_limited_fraction, default.tcp_rwnd_limited_fraction)
    assert default.tcp_rwnd_limited_fraction < 0.5 and default.tcp_sndbuf_limited_fraction < 0.5
    text = (only_run(bounded) / "report.md").read_text()
    section = text[text.index("## TCP: retransmits and limits"):]
    bounds = {line.split("|")[1].strip(" `"): line.split("|")[-2].strip() for line in section.splitlines()
              if line.startswith("| `stream-")}
    # The report names the bound by its rule (tcpinfo.LIMIT_FRACTION) on the fraction measured.
    assert bounds[rwnd.cell_id.replace("-r1", "")] == at_the_link(
        rwnd, "receive window" if rwnd.tcp_rwnd_limited_fraction >= tcpinfo.LIMIT_FRACTION else "neither"), bounds
    assert bounds[default.cell_id.replace("-r1", "")] == at_the_link(default), bounds
    # Each cell's retransmits show in its row. A cell is named as a threat only where the
    # retransmitted bytes (segments × the path MTU's payload) reach 1% of its window's bytes.
    table = {line.split("|")[1].strip(" `"): line.split("|")[2].strip() for line in section.splitlines()
             if line.startswith("| `stream-")}
    for row in frame.itertuples():
        cell = row.cell_id.replace("-r1", "")
        assert table[cell] == str(row.tcp_retrans), (cell, table)
        share = row.tcp_retrans * (row.tcp_pmtu - 40) / row.window_bytes
        named = f"`{cell}` (" in section.split("| cell |")[0]
        assert named == (share >= 0.01), (cell, share, section)
