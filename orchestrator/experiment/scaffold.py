"""`orchestrate init`: a starting point in a folder of the user's choice — an example inventory
for two real hosts, with every key explained, and the shipped experiments to copy from."""

from __future__ import annotations

from pathlib import Path

from . import shipped
from ..errors import ConfigError

# Every value below validates as it stands (tests load it), so a user replaces values and never
# has to fix the syntax. Keep the comments true to inventory.py.
INVENTORY_TEMPLATE = """\
# Which machine plays the server and which the client, and how orchestrate reaches them.
# Replace the example names, user and addresses with yours, then:
#   orchestrate check configs/smoke.yml    # preflight only: reach both hosts, check what a run needs
#   orchestrate run configs/quick.yml      # about a minute; configs/full.yml is the whole study
#
# Host keys are checked, never accepted blindly: each host (and jump host) must already be in
# known_hosts (connect once with ssh, or add its key with ssh-keyscan after checking it).
# Each host needs perf (Debian: linux-perf) and tar; a host without a C compiler gets an agent
# built on this machine (static, for its architecture; needs gcc and libc6-dev here) or on the
# other host, pushed and checked.

# ssh_config: ssh_config              # optional: an ssh_config file read instead of ~/.ssh/config
                                      # (Host aliases, ProxyJump); relative to this file

server:
  host: lab-a.example.org             # an SSH target (name, address or ~/.ssh/config Host alias),
                                      # or "local": this machine, without SSH
  user: bench                         # SSH user; need not be root (see perf_access). Default: yours
  # port: 22                          # SSH port
  # key: ~/.ssh/id_ed25519            # private key file (default: ssh-agent and ~/.ssh/id_*)
  # known_hosts: ~/.ssh/known_hosts   # host keys checked against (this is the default)
  jump:                               # optional: a bastion (SSH jump host) reached first
    host: bastion.example.org
    user: bench                       # also port, key, and known_hosts (default: the host's)
  data_address: 198.18.0.1            # this host's address on the NIC under test; the server binds it
  # workdir: ~/.cache/orchestrate     # the default: absolute, or ~/ for the SSH user's home there.
                                      # Created 0700; refused if it is a symlink, someone else's,
                                      # or writable by group or others
  perf_access: sudo                   # how perf gets its counters; give both hosts the same, or
                                      # their counts do not compare (kernel and user on one side,
                                      # user space only on the other):
                                      #   direct     perf as the SSH user; kernel counts need
                                      #              kernel.perf_event_paranoid low enough (default)
                                      #   sudo       perf, and only perf, through `sudo -n`
                                      #   user-only  user-space counts only (:u), labelled so in results

client:
  host: lab-b.example.org
  user: bench
  jump:
    host: bastion.example.org
    user: bench
  data_address: 198.18.0.2            # where the client's traffic to the server leaves from
  perf_access: sudo                   # the same as the server's (direct, sudo or user-only, above)

# Several pairs of hosts (one per hardware generation, say), measured in one run: instead of the
# server and client above, name each pair under `pairs`. Keys beside a pair's server and client
# are defaults both its hosts take. The report then compares the pairs (README, "The inventory").
#  concurrent: true                   # the default: all pairs at once; false: one after another
#                                     # (pairs that share a host or a switch)
#  pairs:
#    gen9:
#      user: bench
#      jump: {host: bastion.example.org, user: bench}
#      server: {host: a9.example.org, data_address: 198.18.9.1}
#      client: {host: b9.example.org, data_address: 198.18.9.2}
#    gen8:
#      user: bench
#      server: {host: a8.example.org, data_address: 198.18.8.1}
#      client: {host: b8.example.org, data_address: 198.18.8.2}
"""


def init(directory: Path, force: bool = False) -> list[Path]:
    """Write DIR/inventory.yml and DIR/configs/*.yml; refuse to overwrite any unless `force`.
    Nothing is written when anything would be overwritten."""
    directory = Path(directory)
    configs = sorted((p for p in shipped.configs().iterdir() if p.name.endswith(".yml")), key=lambda p: p.name)
    if not configs:
        raise ConfigError(f"no shipped experiment files found in {shipped.configs()}")
    plan = [(directory / "inventory.yml", INVENTORY_TEMPLATE.encode())]
    plan += [(directory / "configs" / p.name, p.read_bytes()) for p in configs]
    existing = [str(path) for path, _ in plan if path.exists() or path.is_symlink()]
    if existing and not force:
        raise ConfigError("orchestrate init: would overwrite " + ", ".join(existing) + " (use --force to replace them)")
    try:
        (directory / "configs").mkdir(parents=True, exist_ok=True)
        for path, data in plan:
            if path.is_symlink():
                path.unlink()  # replace the link itself, never write through it
            path.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"orchestrate init: cannot write into {directory}: {exc.strerror or exc}") from None
    return [path for path, _ in plan]
