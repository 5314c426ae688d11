import pytest

from orchestrator.errors import ConfigError
from orchestrator.inventory import load_inventory

from .conftest import ROOT
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
