import re

import pytest

from orchestrator.errors import ConfigError
from orchestrator.run import runner
from orchestrator.experiment.inventory import Inventory, concurrent_pairs_share_nothing, load_inventory

from ..conftest import ROOT
from .test_config import expected_message

FIXTURES = ROOT / "tests" / "fixtures"
BAD = sorted((FIXTURES / "bad").glob("inv-*.yml"))


def test_ssh_inventory(tmp_path):
    inventory = load_inventory(FIXTURES / "good" / "inventory-ssh.yml")
    assert inventory.server.label == "bench@lab-a.example.org:2222"
    assert inventory.client.label == "lab-b.example.org"
    assert inventory.server.data_address == "198.18.0.1"
    assert inventory.client.workdir == "~/.cache/orchestrate"  # private to the SSH user, resolved on the host
    # A key named relative to the inventory is found beside it.
    assert inventory.server.key == str(FIXTURES / "good" / "keys" / "id_ed25519")


def test_public_form_names_the_key_file_only():
    inventory = load_inventory(FIXTURES / "good" / "inventory-ssh.yml")
    public = inventory.server.public()
    assert public["key"].endswith("id_ed25519")
    assert "password" not in public


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_inventory_names_file_and_key(path):
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    assert str(path) in str(caught.value)
    assert expected_message(path) in str(caught.value)


def test_same_host_with_separate_workdirs_is_allowed(tmp_path):
    path = tmp_path / "inv.yml"
    path.write_text("server: {host: lab-a, workdir: /tmp/a}\nclient: {host: lab-a, workdir: /tmp/b}\n")
    inventory = load_inventory(path)
    assert inventory.server.workdir != inventory.client.workdir


# ---------------------------------------------------------------- several pairs


def _write(tmp_path, text: str):
    path = tmp_path / "inv.yml"
    path.write_text(text)
    return path


def test_one_pair_form_is_the_pair_named_default(tmp_path):
    inventory = load_inventory(FIXTURES / "good" / "inventory-ssh.yml")
    assert list(inventory.pairs) == ["default"]
    assert inventory.pair("default").server == inventory.server
    assert inventory.role("client") == inventory.pairs["default"].client


def test_pairs_keep_their_order_and_inherit_pair_defaults(tmp_path):
    (tmp_path / "k").write_text("placeholder key\n")
    path = _write(tmp_path, """
pairs:
  gen9:
    user: bench
    workdir: /srv/bench
    key: k
    jump: {host: bastion.example.org, user: jumper}
    server: {host: a9, data_address: 198.18.9.1}
    client: {host: b9, data_address: 198.18.9.2, user: other, workdir: /srv/other}
  gen8:
    server: {host: a8, data_address: 198.18.8.1}
    client: {host: b8, data_address: 198.18.8.2}
""")
    inventory = load_inventory(path)
    assert list(inventory.pairs) == ["gen9", "gen8"]
    gen9 = inventory.pair("gen9")
    assert (gen9.server.user, gen9.server.workdir) == ("bench", "/srv/bench")
    assert (gen9.client.user, gen9.client.workdir) == ("other", "/srv/other")  # its own keys win
    assert gen9.server.jump is not None and gen9.server.jump.host == "bastion.example.org"
    assert gen9.client.key == str(tmp_path / "k")  # an inherited key is found beside the inventory too
    gen8 = inventory.pair("gen8")
    assert gen8.server.user is None and gen8.server.workdir == "~/.cache/orchestrate" and gen8.server.jump is None


def test_several_pairs_have_no_single_server(tmp_path):
    path = _write(tmp_path, """
pairs:
  a: {server: {host: a1, data_address: 198.18.1.1}, client: {host: a2, data_address: 198.18.1.2}}
  b: {server: {host: b1, data_address: 198.18.2.1}, client: {host: b2, data_address: 198.18.2.2}}
""")
    inventory = load_inventory(path)
    with pytest.raises(ConfigError, match="2 pairs"):
        inventory.server
    with pytest.raises(ConfigError, match="no pair named 'c'"):
        inventory.pair("c")


@pytest.mark.parametrize("name", ["bad name", "-lead", "a/b", "..", "x" * 33, "ü"])
def test_pair_names_are_plain(tmp_path, name):
    path = _write(tmp_path, f"pairs:\n  {name!r}: {{server: {{host: a}}, client: {{host: b}}}}\n")
    with pytest.raises(ConfigError, match="a pair name is"):
        load_inventory(path)


@pytest.mark.parametrize("text, message", [
    ("server: {host: a}\nclient: {host: b}\npairs: {x: {server: {host: c}, client: {host: d}}}\n", "not both"),
    ("pairs: {}\n", "at least one pair"),
    ("pairs: {x: {server: {host: a}}}\n", "pairs.x.client: required key is missing"),
    ("pairs: {x: {server: {host: a}, client: {host: b}, usr: me}}\n", "pairs.x.usr: unknown key"),
    ("pairs: {x: {server: {host: a}, client: {host: b}, user: 'r$(id)'}}\n", "pairs.x.user"),
    ("pairs: {x: {server: {host: a}, client: {host: b}, key: nowhere}}\n", "pairs.x.server.key"),
])
def test_bad_pairs_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_inventory(_write(tmp_path, text))


@pytest.mark.parametrize("first, second, shared", [
    ("{host: a, port: 2222}", "{host: a, port: 2222, data_address: 198.18.3.1}", "host a:2222"),
    ("{host: a}", "{host: a, port: 22, data_address: 198.18.3.1}", "host a:22"),  # 22 is the default port
    ("{host: a, data_address: 198.18.0.1}", "{host: z, data_address: 198.18.0.1}", "data address 198.18.0.1"),
    ("{host: local}", "{host: local, data_address: 198.18.3.1}", "host local"),
])
def test_concurrent_pairs_may_not_share_a_host(tmp_path, first, second, shared):
    text = f"""
pairs:
  one: {{server: {first}, client: {{host: b, data_address: 198.18.1.2}}}}
  two: {{server: {{host: c, data_address: 198.18.2.1}}, client: {second}}}
"""
    with pytest.raises(ConfigError) as caught:
        runner.select_pairs(load_inventory(_write(tmp_path, text)), None)
    message = str(caught.value)
    assert "pairs one and two" in message and shared in message and "one.server" in message and "two.client" in message
    # The same pairs run one after another are allowed: by the inventory, or by --serial.
    inventory = load_inventory(_write(tmp_path, "concurrent: false\n" + text))
    assert list(runner.select_pairs(inventory, None).pairs) == ["one", "two"] and inventory.concurrent is False
    assert list(runner.select_pairs(load_inventory(_write(tmp_path, text)), None, serial=True).pairs) == ["one", "two"]


THREE_PAIRS_B_AND_C_SHARE = """
pairs:
  a: {server: {host: a1, data_address: 198.18.1.1}, client: {host: a2, data_address: 198.18.1.2}}
  b: {server: {host: s, data_address: 198.18.2.1}, client: {host: b2, data_address: 198.18.2.2}}
  c: {server: {host: s, data_address: 198.18.3.1}, client: {host: c2, data_address: 198.18.3.2}}
"""


def test_the_shared_host_check_applies_to_the_pairs_that_run_together(tmp_path):
    inventory = load_inventory(_write(tmp_path, THREE_PAIRS_B_AND_C_SHARE))  # loading alone refuses nothing
    assert list(runner.select_pairs(inventory, ("a",)).pairs) == ["a"]
    assert list(runner.select_pairs(inventory, ("a", "b")).pairs) == ["a", "b"]
    with pytest.raises(ConfigError, match="pairs b and c both use host s:22"):
        runner.select_pairs(inventory, ("b", "c"))
    with pytest.raises(ConfigError, match="--serial"):
        runner.select_pairs(inventory, None)
    assert list(runner.select_pairs(inventory, None, serial=True).pairs) == ["a", "b", "c"]



def test_serial_is_kept_with_the_run_so_resume_runs_the_pairs_one_after_another_too(tmp_path):
    from orchestrator.experiment.config import Experiment

    inventory = runner.select_pairs(load_inventory(_write(tmp_path, THREE_PAIRS_B_AND_C_SHARE)), None, serial=True)
    assert inventory.concurrent is False
    state = runner.create_run(Experiment.model_validate({"name": "x", "matrix": {"threads": [1]}}), inventory,
                              tmp_path / "results")
    reopened = runner.reopen_run(state.run_dir)
    assert reopened.inventory.concurrent is False and list(reopened.inventory.pairs) == ["a", "b", "c"]
    # --resume without --serial: still one after another, so the shared host s is not refused.
    assert runner.select_pairs(reopened.inventory, None).concurrent is False


def test_the_shared_host_check_sees_through_ssh_config_aliases_and_counts_bastions(tmp_path):
    """Where a connection ends up decides: two aliases of one machine are one host, and one
    private address behind two different bastions is two hosts."""
    (tmp_path / "ssh_config").write_text("Host gen9-a\n  HostName 10.1.0.5\n  Port 2222\n"
                                         "Host gen9-b\n  HostName 10.1.0.5\n  Port 2222\n")
    aliased = load_inventory(_write(tmp_path, """
ssh_config: ssh_config
pairs:
  one: {server: {host: gen9-a, data_address: 198.18.1.1}, client: {host: b, data_address: 198.18.1.2}}
  two: {server: {host: gen9-b, data_address: 198.18.2.1}, client: {host: d, data_address: 198.18.2.2}}
"""))
    concurrent_pairs_share_nothing(aliased)  # as written, the names differ...
    with pytest.raises(ConfigError, match=re.escape("pairs one and two both use host 10.1.0.5:2222 (one.server and two.server)")):
        runner.select_pairs(aliased, None)  # ...but both connect to 10.1.0.5 port 2222
    assert list(runner.select_pairs(aliased, None, serial=True).pairs) == ["one", "two"]
    behind = load_inventory(_write(tmp_path, """
pairs:
  one: {server: {host: 10.0.0.5, jump: {host: bastion-one}, data_address: 198.18.1.1}, client: {host: b, data_address: 198.18.1.2}}
  two: {server: {host: 10.0.0.5, jump: {host: bastion-two}, data_address: 198.18.2.1}, client: {host: d, data_address: 198.18.2.2}}
"""))
    assert list(runner.select_pairs(behind, None).pairs) == ["one", "two"]
    with pytest.raises(ConfigError, match="both use host 10.0.0.5:22 via bastion-one:22"):
        runner.select_pairs(behind.model_copy(update={"pairs": {**behind.pairs, "three": behind.pairs["one"]}}), None)


def test_loopback_data_addresses_are_shared_only_on_the_same_machine(tmp_path):
    """127.0.0.1, the default data address, is each machine's own: two pairs on four machines
    that all leave it as it is share nothing; on one SSH host they do."""
    apart = load_inventory(_write(tmp_path, """
pairs:
  one: {server: {host: a}, client: {host: b}}
  two: {server: {host: c}, client: {host: d, data_address: "::1"}}
  three: {server: {host: e, data_address: 127.0.0.2}, client: {host: f, data_address: "::1"}}
"""))
    concurrent_pairs_share_nothing(apart)
    same = load_inventory(_write(tmp_path, """
pairs:
  one: {server: {host: a}, client: {host: b}}
  two: {server: {host: c, data_address: 198.18.3.1}, client: {host: a, port: 22}}
"""))
    with pytest.raises(ConfigError, match=re.escape("pairs one and two both use host a:22 (one.server and two.client)")):
        concurrent_pairs_share_nothing(same)
    # A real data address on two machines is one address on the data link: shared.
    with pytest.raises(ConfigError, match=re.escape("data address 198.18.0.1 (one.server and two.server)")):
        concurrent_pairs_share_nothing(load_inventory(_write(tmp_path, """
pairs:
  one: {server: {host: a, data_address: 198.18.0.1}, client: {host: b}}
  two: {server: {host: c, data_address: 198.18.0.1}, client: {host: d}}
""")))


def test_concurrent_pairs_on_separate_hosts_are_allowed(tmp_path):
    inventory = load_inventory(_write(tmp_path, """
pairs:
  one: {server: {host: a, data_address: 198.18.1.1}, client: {host: b, data_address: 198.18.1.2}}
  two: {server: {host: a, port: 2201, data_address: 198.18.2.1}, client: {host: b, port: 2202, data_address: 198.18.2.2}}
"""))
    assert inventory.concurrent is True and len(inventory.pairs) == 2


def test_saved_one_pair_form_reloads_as_before():
    # A run folder keeps {server, client}; resume reads it back with the model itself.
    inventory = Inventory.model_validate({"server": {"host": "local"}, "client": {"host": "local"}})
    assert list(inventory.pairs) == ["default"] and inventory.server.is_local
