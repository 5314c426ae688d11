"""The unprivileged login account (``--user``): refused if the lab did not create it, created
with a mark, given the lab's key as its own file, and removed with its processes.
"""

from __future__ import annotations

import contextlib
import os
import pwd
from pathlib import Path
from typing import Any

from ..errors import LabError
from .options import SHELLS, LabOptions
from .pids import stop_all, uid_pids
from .state import write_state
from .tools import run, tool

_ACCOUNT_MARK = "orchestrate lab {prefix}"  # the GECOS field of an account the lab created


def find_account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def is_our_account(name: str, prefix: str, state: dict[str, Any] | None) -> bool:
    """Ours: recorded in this lab's state, and marked by the lab in its comment field."""
    account = find_account(name)
    record = (state or {}).get("user") or {}
    return (
        account is not None
        and record.get("name") == name
        and account.pw_gecos == _ACCOUNT_MARK.format(prefix=prefix)
        and record.get("uid") in (None, account.pw_uid)
    )


def _home(name: str) -> Path:
    return Path("/home") / name


def check_user(opts: LabOptions, state: dict[str, Any] | None) -> None:
    """Refuse, before anything is built, an account (or home) the lab did not create."""
    if opts.user is None or is_our_account(opts.user, opts.prefix, state):
        return
    if find_account(opts.user) is not None:
        raise LabError(f"an account named {opts.user!r} exists and was not created by this lab; choose another --user")
    if _home(opts.user).exists() or os.path.lexists(_home(opts.user)):
        raise LabError(f"{_home(opts.user)} exists and was not created by this lab; choose another --user")
    tool("useradd")
    tool("userdel")


def create_user(opts: LabOptions, state: dict[str, Any]) -> pwd.struct_passwd:
    assert opts.user is not None
    account = find_account(opts.user)
    if account is None:
        # Recorded before it exists, so that a crash between the two still lets down find it.
        state["user"] = {"name": opts.user, "uid": None}
        write_state(opts, state)
        run([tool("useradd"), "--create-home", "--home-dir", str(_home(opts.user)), "--user-group",
              "--shell", SHELLS[opts.shell], "--comment", _ACCOUNT_MARK.format(prefix=opts.prefix),
              # `*`: no password can log in, yet the account is not locked (`!`), which sshd
              # without PAM would refuse.
              "--password", "*", opts.user])
        account = pwd.getpwnam(opts.user)
    if account.pw_shell != SHELLS[opts.shell]:
        run([tool("usermod"), "--shell", SHELLS[opts.shell], opts.user])
        account = pwd.getpwnam(opts.user)
    state["user"] = {"name": opts.user, "uid": account.pw_uid, "home": account.pw_dir}
    write_state(opts, state)
    return account


def pair_account(opts: LabOptions) -> pwd.struct_passwd:
    """A pair's account: the one its lab of several made (before any pair), never another."""
    assert opts.user is not None and opts.parent is not None
    account = find_account(opts.user)
    if account is None or account.pw_gecos != _ACCOUNT_MARK.format(prefix=opts.parent):
        raise LabError(f"the account {opts.user!r} of lab {opts.parent} is missing or not the lab's; "
                       f"run `orchestrate lab down --prefix {opts.parent}`")
    return account


def key_file_name(opts: LabOptions) -> str:
    # The pairs of a lab of several share the account and its home, but each pair has its own
    # key (and address block): one file per pair, named in that pair's sshd_config.
    return "authorized_keys" if opts.parent is None else f"authorized_keys-{opts.prefix}"


# --chatty: what real sites' start-up files do to every SSH command. bash reads .bashrc for the
# commands sshd runs, and .profile for a login; both print on stdout and on stderr, one line with a
# byte that is not UTF-8, set umask 000 and a locale this machine has not generated.
CHATTY_MARK = "# orchestrate lab --chatty"
CHATTY_BANNER = "*** SITE BANNER"
CHATTY_RC = f"""{CHATTY_MARK}: a real site's noisy start-up file
echo "{CHATTY_BANNER}: $(hostname) is a shared machine; jobs over 1 hour are killed ***"
printf 'caf\\351 \\342\\230\\225 site notice\\n'
echo "*** site notice on stderr: modules loaded" >&2
umask 000
export LANG=de_DE.ISO-8859-1 LC_ALL=de_DE.ISO-8859-1
"""
CHATTY_FILES = (".bashrc", ".profile")


def write_start_up_files(account: pwd.struct_passwd, chatty: bool) -> None:
    """--chatty writes the account's .bashrc and .profile; without it, the ones it wrote go (the
    account's skeleton files, which print nothing, are left as they are)."""
    for name in CHATTY_FILES:
        path = Path(account.pw_dir) / name
        ours = path.is_file() and not path.is_symlink() and path.read_text(errors="replace").startswith(CHATTY_MARK)
        if chatty:
            _write_own_file(account, ".", name, CHATTY_RC)
        elif ours:
            path.unlink()


def _own_home(account: pwd.struct_passwd) -> int:
    """The account's home, opened without following a link, and refused unless the user owns it."""
    home = os.open(account.pw_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    if os.fstat(home).st_uid != account.pw_uid:
        os.close(home)
        raise LabError(f"{account.pw_dir} is not owned by {account.pw_name}; run `orchestrate lab down`")
    return home


def _write_own_file(account: pwd.struct_passwd, folder: str, name: str, text: str) -> None:
    """~/<folder>/<name> as the user's own file, never following a link the user made."""
    home = _own_home(account)
    try:
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=home)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=directory)
            with os.fdopen(fd, "w") as f:
                os.fchown(f.fileno(), account.pw_uid, account.pw_gid)
                os.fchmod(f.fileno(), 0o600)
                f.write(text)
        finally:
            os.close(directory)
    finally:
        os.close(home)


def install_user_key(account: pwd.struct_passwd, line: str, name: str = "authorized_keys") -> Path:
    """Write ~/.ssh/<name> as the user's own file, never following a link the user made."""
    home = _own_home(account)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(".ssh", 0o700, dir_fd=home)
        ssh_dir = os.open(".ssh", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=home)
        try:
            os.fchown(ssh_dir, account.pw_uid, account.pw_gid)
            os.fchmod(ssh_dir, 0o700)
        finally:
            os.close(ssh_dir)
    finally:
        os.close(home)
    _write_own_file(account, ".ssh", name, line)
    return Path(account.pw_dir) / ".ssh" / name


def remove_user(prefix: str, state: dict[str, Any] | None, removed: list[str]) -> None:
    record = (state or {}).get("user") or {}
    name = record.get("name")
    if record.get("owner") not in (None, prefix):
        return  # a pair's: its lab of several removes the account once, after every pair
    if not name or not is_our_account(name, prefix, state):
        return
    account = find_account(name)
    assert account is not None
    # userdel refuses an account with processes; they are the lab's (sessions, agents).
    stop_all(uid_pids(account.pw_uid))
    proc = run([tool("userdel"), "--remove", name], check=False)
    if find_account(name) is not None:
        raise LabError(f"userdel could not remove the lab's account {name}: {proc.stderr.strip()}")
    removed.append(f"account {name} and its home {account.pw_dir}")
