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
    assert facts["nic"]["offloads"]["scatter-gather"] == "on"
    assert set(facts["sysctls"]) >= {"net.ipv4.tcp_rmem", "net.core.optmem_max", "kernel.perf_event_paranoid"}


def test_physical_nic_facts():
    facts = parse_facts((FIXTURES / "client-mlx5.txt").read_text())
    nic = facts["nic"]
    assert (nic["interface"], nic["driver"], nic["speed"], nic["mtu"]) == ("enp65s0f0np0", "mlx5_core", "100000Mb/s", 9000)
    assert nic["firmware"].startswith("22.36.1010")
    assert nic["offloads"]["large-receive-offload"] == "off"
    assert facts["numa_nodes"] == "2"
    assert facts["numa"]["NUMA node1 CPU(s)"] == "8-15,24-31"
    assert facts["caches"]["L3 cache"].startswith("48 MiB")
    assert facts["sysctls"]["net.core.optmem_max"] == "20480"
    assert facts["memory_bytes"] == 131622116 * 1024


def test_interface_lookup_quotes_the_address():
    assert "to 198.18.0.1 |" in data_interface_command("server", "198.18.0.1")
    assert "route get '1; touch x' |" in data_interface_command("client", "1; touch x")
