"""A whole run through a bastion in the namespace lab: the server's and client's sshds are
reachable only through `<prefix>-bastion`, as in most university and company labs. Once by the
inventory's `jump:` key, once by an ssh_config alias with ProxyJump; an unknown bastion key
stops the run with exit status 3 and names the bastion, and so does a ProxyCommand `ssh -W`
that meets it, quoting what OpenSSH said."""

from __future__ import annotations

import os
import shlex
import socket
from pathlib import Path

import pytest
import yaml

from orchestrator.rows.results import read_results

from ..labs import running_lab
from ..conftest import ROOT, require_tool
from ..cli.test_cli import orchestrate

pytestmark = [pytest.mark.integration, pytest.mark.lab]

PREFIX = os.environ.get("ORCH_TEST_LAB_PREFIX", "orcht") + "j"


@pytest.fixture(scope="module")
def bastion_lab(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bastion-lab")
    with running_lab(folder, PREFIX, bastion=True) as (_, status):
        yield folder, status


def _smoke(folder: Path, port: int = 5301) -> Path:
    config = yaml.safe_load((ROOT / "configs" / "smoke.yml").read_text())
    config.update(matrix={"mode": ["one_copy", "zero_copy"]}, workload="stream", port=port)
    path = folder / "smoke.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run_smoke(inventory: Path, tmp_path: Path, timeout: float = 180):
    return orchestrate("run", str(_smoke(tmp_path)), "--inventory", str(inventory),
                       "--results", str(tmp_path / "results"), "--no-report", timeout=timeout)


def _ok_rows(results: Path) -> list[str]:
    run_dirs = [p for p in results.iterdir() if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs
    rows = read_results(run_dirs[0] / "results.csv")
    assert len(rows) == 2
    return list(rows["status"])


def test_hosts_are_unreachable_without_the_bastion(bastion_lab):
    folder, _ = bastion_lab
    inventory = yaml.safe_load((folder / "lab-inventory.yml").read_text())
    with pytest.raises(OSError):
        socket.create_connection((inventory["server"]["host"], 22), timeout=2).close()


def test_a_run_through_the_inventorys_jump_key(bastion_lab, tmp_path):
    folder, _ = bastion_lab
    inventory = yaml.safe_load((folder / "lab-inventory.yml").read_text())
    assert "jump" in inventory["server"] and "jump" in inventory["client"]
    done = _run_smoke(folder / "lab-inventory.yml", tmp_path)
    assert done.returncode == 0, done.stderr
    assert _ok_rows(tmp_path / "results") == ["ok", "ok"]


def test_a_run_through_an_ssh_config_proxyjump_alias(bastion_lab, tmp_path):
    folder, status = bastion_lab
    ssh_config = Path(status.ssh_config_path)
    assert f"ProxyJump {PREFIX}-bastion" in ssh_config.read_text()
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({
        "ssh_config": str(ssh_config),
        "server": {"host": f"{PREFIX}-server", "data_address": "198.18.0.1", "workdir": str(tmp_path / "w-server")},
        "client": {"host": f"{PREFIX}-client", "data_address": "198.18.0.2", "workdir": str(tmp_path / "w-client")},
    }))
    done = _run_smoke(tmp_path / "inventory.yml", tmp_path)
    assert done.returncode == 0, done.stderr
    assert _ok_rows(tmp_path / "results") == ["ok", "ok"]


def test_an_unknown_bastion_key_is_exit_3_naming_the_bastion(bastion_lab, tmp_path):
    folder, _ = bastion_lab
    inventory = yaml.safe_load((folder / "lab-inventory.yml").read_text())
    bastion = inventory["server"]["jump"]["host"]
    # The hosts' keys are known, the bastion's is not.
    lines = Path(inventory["server"]["known_hosts"]).read_text().splitlines()
    kept = [line for line in lines if not line.split()[0].split(",")[0] == bastion]
    assert len(kept) == len(lines) - 1, "the lab's known_hosts should hold the bastion's key once"
    (tmp_path / "known_hosts").write_text("\n".join(kept) + "\n")
    for role in ("server", "client"):
        inventory[role]["known_hosts"] = str(tmp_path / "known_hosts")
        inventory[role]["jump"]["known_hosts"] = str(tmp_path / "known_hosts")
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    results = tmp_path / "results"
    done = orchestrate("run", str(_smoke(tmp_path)), "--inventory", str(tmp_path / "inventory.yml"),
                       "--results", str(results), "--no-report", timeout=120)
    assert done.returncode == 3, done.stderr
    message = " ".join(done.stderr.split())
    assert "bastion" in message and bastion in message and "unknown host key" in message, message
    assert "Traceback" not in done.stderr
    # Nothing was measured.
    assert not any((p / "results.csv").exists() for p in results.iterdir())


def _proxy_command_inventory(folder: Path, tmp_path: Path, bastion_known_hosts: Path) -> tuple[Path, str]:
    """An inventory whose hosts are ssh_config aliases reached by ProxyCommand `ssh -W` through
    the lab's bastion, that ssh checking the bastion's key against `bastion_known_hosts`."""
    inventory = yaml.safe_load((folder / "lab-inventory.yml").read_text())
    jump = inventory["server"]["jump"]
    bastion = f"{jump['user']}@{jump['host']}"
    proxy = shlex.join(["ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                        "-o", f"UserKnownHostsFile={bastion_known_hosts}", "-i", jump["key"], "-p", str(jump["port"]),
                        "-W", "%h:%p", bastion])
    config, hosts = [], {}
    for role in ("server", "client"):
        entry = inventory[role]
        alias = f"{PREFIX}-proxied-{role}"
        config += [f"Host {alias}", f"  HostName {entry['host']}", f"  Port {entry['port']}", f"  User {entry['user']}",
                   f"  IdentityFile {entry['key']}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {entry['known_hosts']}",
                   "  StrictHostKeyChecking yes", f"  ProxyCommand {proxy}", ""]
        hosts[role] = {"host": alias, "data_address": entry["data_address"], "workdir": str(tmp_path / f"w-{role}")}
    (tmp_path / "ssh_config").write_text("\n".join(config))
    path = tmp_path / f"inventory-{bastion_known_hosts.name}.yml"
    path.write_text(yaml.safe_dump({"ssh_config": str(tmp_path / "ssh_config"), **hosts}))
    return path, bastion


def test_a_proxy_command_meeting_an_unknown_bastion_key_quotes_openssh(bastion_lab, tmp_path):
    """check and run: exit 3, each host's error names its ProxyCommand (and so the bastion) and
    quotes OpenSSH's "Host key verification failed."; paramiko's own "Exception (client)" lines
    and tracebacks go to run.log, never to the terminal."""
    require_tool("ssh")
    folder, _ = bastion_lab
    lab_known = Path(yaml.safe_load((folder / "lab-inventory.yml").read_text())["server"]["jump"]["known_hosts"])
    # The same ProxyCommand with the bastion's key known works: only the key is wrong below.
    good, _ = _proxy_command_inventory(folder, tmp_path, lab_known)
    done = orchestrate("check", str(_smoke(tmp_path)), "--inventory", str(good), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    inventory, bastion = _proxy_command_inventory(folder, tmp_path, empty)
    results = tmp_path / "results"
    checked = orchestrate("check", str(_smoke(tmp_path)), "--inventory", str(inventory), timeout=120)
    ran = orchestrate("run", str(_smoke(tmp_path)), "--inventory", str(inventory), "--results", str(results),
                      "--no-report", timeout=120)
    for done in (checked, ran):
        terminal = done.stdout + done.stderr
        assert done.returncode == 3, terminal
        for role in ("server", "client"):
            line = next(line for line in done.stderr.splitlines() if line.startswith(f"{role} ({PREFIX}-proxied-{role}): "))
            assert "cannot connect through its ProxyCommand: `ssh " in line and f" {bastion}` exited with status 255" in line, line
            assert line.endswith('Host key verification failed."'), line
        assert "Exception (client)" not in terminal and "Traceback" not in terminal, terminal
    (run_dir,) = results.iterdir()
    assert "paramiko.transport Exception (client)" in (run_dir / "run.log").read_text()
