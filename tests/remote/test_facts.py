from pathlib import Path

import pytest

from orchestrator.remote.facts import data_interface_command, parse_facts

from ..conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "facts"


def test_loopback_vm_facts():
    facts = parse_facts((FIXTURES / "server-loopback.txt").read_text())
    assert facts["hostname"] == "vm"
    assert facts["kernel"].startswith("Linux 6.18")
    assert facts["cores"] == 2
    assert facts["cpu_model"] == "AMD EPYC"
    assert facts["memory_bytes"] > 1 << 30
    assert facts["nic"]["interface"] == "lo"
    assert facts["nic"]["mtu"] == 65536
    assert "127.0.0.1" in facts["nic"]["addresses"]
    assert facts["nic"]["driver"] is None  # loopback has no driver to report
    assert facts["nic"]["kind"] == "loopback"  # compare names lo -> veth a change of link, not of name
    assert facts["nic"]["offloads"]["scatter-gather"] == "on"
    assert set(facts["sysctls"]) >= {"net.ipv4.tcp_rmem", "net.core.optmem_max", "kernel.perf_event_paranoid"}


def test_physical_nic_facts():
    facts = parse_facts((FIXTURES / "client-mlx5.txt").read_text())
    nic = facts["nic"]
    assert (nic["interface"], nic["driver"], nic["speed"], nic["mtu"]) == ("enp65s0f0np0", "mlx5_core", "100000Mb/s", 9000)
    assert nic["kind"] is None  # this hand-written ip output has no link_type (see the next test)
    assert nic["firmware"].startswith("22.36.1010")
    assert nic["offloads"]["large-receive-offload"] == "off"
    assert facts["numa_nodes"] == "2"
    assert facts["numa"]["NUMA node1 CPU(s)"] == "8-15,24-31"
    assert facts["caches"]["L3 cache"].startswith("48 MiB")
    assert facts["sysctls"]["net.core.optmem_max"] == "20480"
    assert facts["memory_bytes"] == 131622116 * 1024


def test_a_nic_is_a_device_a_software_link_its_kind():
    """A NIC (here the VM's virtio eth0, recorded) is of kind `device`; loopback and veth keep
    theirs, so that compare sees any change among them as a change of link."""
    import json

    from orchestrator.remote.facts import _link_kind

    (eth0,) = json.loads((FIXTURES / "ip-link-eth0-virtio.json").read_text())
    assert _link_kind(eth0) == "device"
    assert parse_facts((FIXTURES / "server-loopback.txt").read_text())["nic"]["kind"] == "loopback"
    assert parse_facts((FIXTURES / "server-veth-tbf.txt").read_text())["nic"]["kind"] == "veth"


def test_interface_lookup_quotes_the_address():
    assert "to 198.18.0.1 |" in data_interface_command("server", "198.18.0.1")
    assert "route get '1; touch x' |" in data_interface_command("client", "1; touch x")


def test_a_non_root_account_without_ethtool_gets_every_sysctl_and_says_why_the_nic_is_unknown():
    """Recorded: the facts script run as `nobody` with sshd's non-root PATH (no sbin), where
    `sysctl` and `ethtool` are out of reach. Sysctls come from /proc/sys all the same; the NIC
    facts that need ethtool are unknown, with why, never blank."""
    facts = parse_facts((FIXTURES / "server-nonroot-no-ethtool.txt").read_text())
    assert facts["sysctls"]["kernel.perf_event_paranoid"] == "2"
    assert all(value != "" for value in facts["sysctls"].values()) and len(facts["sysctls"]) == 7
    assert facts["unknown"] == {key: "ethtool not found" for key in (
        "nic.driver", "nic.driver_version", "nic.firmware", "nic.bus", "nic.speed", "nic.speed_mbit", "nic.duplex",
        "nic.offloads")}
    assert facts["nic"]["mtu"] == 65536  # ip still answered


def test_the_facts_script_reads_sysctls_without_the_sysctl_tool(tmp_path):
    """The script itself, run here with a PATH that has no sysctl and no ethtool."""
    import subprocess
    from orchestrator.remote.facts import SYSCTLS, _script
    done = subprocess.run(["sh", "-c", _script("echo lo")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=60)
    facts = parse_facts(done.stdout)
    assert set(facts["sysctls"]) == set(SYSCTLS) and "" not in facts["sysctls"].values()
    assert facts["unknown"]["nic.driver"] == "ethtool not found"


def test_a_facts_command_s_stderr_never_lands_in_its_facts_and_a_failure_names_why():
    """ethtool as non-root exits 0 yet warns on stderr ("Cannot get wake-on-lan settings"); a
    failing command's first stderr line is the reason its facts are unknown."""
    import subprocess
    from orchestrator.remote.facts import _FACT, _sections
    script = (f"{_FACT}; echo '@@@ ethtool'; fact ethtool sh -c 'echo Speed: 1000Mb/s; echo warn >&2'; "
              f"echo '@@@ link'; fact link sh -c 'echo first >&2; echo second >&2; exit 3'")
    sections = _sections(subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30).stdout)
    assert sections["ethtool"] == "Speed: 1000Mb/s"
    assert sections["unknown"] == "link: first"
    facts = parse_facts("@@@ unknown\nlink: first\n")
    assert {k: v for k, v in facts["unknown"].items()} == {"nic.addresses": "first", "nic.mtu": "first", "nic.kind": "first"}


def test_a_shaped_link_s_root_qdisc_and_its_rate():
    """Recorded: the facts script in the server namespace of `orchestrate lab up --rate-mbit 1000
    --mtu 9000` (tbf on a veth link): the root qdisc, its rate in Mbit/s, and the NIC's speed."""
    facts = parse_facts((FIXTURES / "server-veth-tbf.txt").read_text())
    nic = facts["nic"]
    assert (nic["interface"], nic["kind"], nic["mtu"]) == ("data0", "veth", 9000)
    assert (nic["qdisc"], nic["qdisc_rate_mbit"]) == ("tbf", 1000.0)
    assert (nic["speed"], nic["speed_mbit"]) == ("10000Mb/s", 10000.0)
    assert facts["unknown"] == {}


def test_facts_from_before_qdiscs_were_gathered_hold_none_and_no_reason():
    facts = parse_facts((FIXTURES / "server-loopback.txt").read_text())
    assert facts["nic"]["qdisc"] is None and facts["nic"]["qdisc_rate_mbit"] is None
    assert "nic.qdisc" not in facts["unknown"]


def test_the_script_reads_the_loopback_qdisc_and_says_why_without_tc(tmp_path):
    """The script itself, here: with tc reachable, loopback's root qdisc (noqueue, no rate); with a
    PATH that has no tc (a non-root account's), the qdisc facts are unknown and say why."""
    import shutil
    import subprocess
    from orchestrator.remote.facts import _script
    tc = shutil.which("tc", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if tc is None:
        pytest.skip("no tc on this machine")
    with_tc = parse_facts(subprocess.run(["sh", "-c", _script("echo lo")], capture_output=True, text=True, timeout=60,
                                         env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"}).stdout)
    assert (with_tc["nic"]["qdisc"], with_tc["nic"]["qdisc_rate_mbit"]) == ("noqueue", None)
    assert "nic.qdisc" not in with_tc["unknown"]
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sh", "ip", "cat", "tr", "head", "grep", "hostname", "uname", "awk", "sed"):
        found = shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
        if found:
            (bare / tool).symlink_to(found)
    without = parse_facts(subprocess.run([str(bare / "sh"), "-c", _script("echo lo")], capture_output=True, text=True,
                                         timeout=60, env={"PATH": str(bare)}).stdout)
    assert without["nic"]["qdisc"] is None and without["nic"]["mtu"] == 65536
    assert without["unknown"]["nic.qdisc"] == without["unknown"]["nic.qdisc_rate_mbit"] == "tc not found"


@pytest.mark.parametrize("name", ["x;touch /tmp/orchestrate-facts-pwned", "", "a" * 16, "$(id)", "eth0 lo"])
def test_an_interface_name_no_host_can_have_never_reaches_a_command(name, tmp_path):
    """The data interface's name comes from the host: one Linux could not have is passed to no
    command, and every NIC fact says why it is unknown."""
    import subprocess
    from orchestrator.remote.facts import _script
    from orchestrator.processes import shell_quote
    done = subprocess.run(["sh", "-c", _script(f"printf '%s' {shell_quote(name)}")], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    facts = parse_facts(done.stdout)
    assert facts["nic"]["interface"] is None and facts["nic"]["mtu"] is None
    assert facts["unknown"]["nic.qdisc"] == facts["unknown"]["nic.mtu"] == "no valid data interface name"
    assert not list(tmp_path.iterdir()) and not Path("/tmp/orchestrate-facts-pwned").exists()


def test_the_cpu_frequency_driver_or_why_there_is_none():
    """The script here: a host with cpufreq gives its driver and governor; one without (this VM)
    says why they are unknown, so that compare never counts them as a change."""
    import subprocess
    from orchestrator.remote.facts import _script
    facts = parse_facts(subprocess.run(["sh", "-c", _script("echo lo")], capture_output=True, text=True, timeout=60).stdout)
    driver = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_driver")
    if driver.exists():
        assert facts["cpu_freq_driver"] == driver.read_text().strip() and "cpu_freq_driver" not in facts["unknown"]
    else:
        assert facts["cpu_freq_driver"] is None and facts["cpu_governor"] is None
        assert facts["unknown"]["cpu_freq_driver"].startswith("no /sys/devices/system/cpu/cpu0/cpufreq")
