"""Whether a zero-copy send mode's result was zero-copy: the one rule the tables, plots, answers,
`compare` and the terminal summary all follow (README, "copied").

Each completion says whether the kernel copied the data after all (SO_EE_CODE_ZEROCOPY_COPIED for
`zero_copy`'s MSG_ZEROCOPY, IORING_NOTIF_USAGE_ZC_COPIED for `io_uring_zc`'s notifications);
results.csv keeps the copied fraction of the sends. A result the
kernel copied, even in part, is never shown as zero-copy. This module imports nothing from
the package, so any module may use it.
"""

from __future__ import annotations

import enum
import math

# The send modes whose sends the kernel reports back as zero-copy or copied: the rule below
# applies to them, and only to them. Everything that asks "is this a zero-copy mode?" asks here.
# Each with the kernel interface it sends through and the flag by which the kernel says it copied.
ZERO_COPY_MODES = {
    "zero_copy": ("MSG_ZEROCOPY", "SO_EE_CODE_ZEROCOPY_COPIED"),
    "io_uring_zc": ("IORING_OP_SEND_ZC", "IORING_NOTIF_USAGE_ZC_COPIED"),
}

# From this fraction of copied sends up, a cell is a copy outright; below it, it is shown with
# the copied percentage.
COPIED_THRESHOLD = 0.5


class Copying(enum.Enum):
    OTHER_MODE = "not a zero-copy mode"  # the rule does not apply
    NONE_COPIED = "zero-copy"
    PARTLY_COPIED = "partly copied"
    COPIED = "copied"
    UNVERIFIED = "unverified"  # no completion counted, so nothing is known

    @property
    def kernel_copied(self) -> bool:
        """The kernel copied some or all sends: the result must not be shown as zero-copy."""
        return self in (Copying.PARTLY_COPIED, Copying.COPIED)


def copying(mode: str, copied_fraction: object) -> Copying:
    """The rule: what a cell of `mode` with this copied fraction (NaN, None or <NA> when no
    completion was counted) is, as far as zero-copy goes."""
    if mode not in ZERO_COPY_MODES:
        return Copying.OTHER_MODE
    try:
        fraction = float(copied_fraction)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # None, pandas' <NA>
        return Copying.UNVERIFIED
    if math.isnan(fraction):
        return Copying.UNVERIFIED
    if fraction >= COPIED_THRESHOLD:
        return Copying.COPIED
    if fraction > 0:
        return Copying.PARTLY_COPIED
    return Copying.NONE_COPIED


def label(mode: str, copied_fraction: object) -> str:
    """The name a cell is shown under in tables, legends and comparisons."""
    verdict = copying(mode, copied_fraction)
    if verdict is Copying.UNVERIFIED:
        return f"{mode} (unverified: no completions counted)"
    if verdict is Copying.COPIED:
        return f"{mode}: copied (not zero-copy)"
    if verdict is Copying.PARTLY_COPIED:
        fraction = float(copied_fraction)  # type: ignore[arg-type]
        # Never "0% copied": that would read as zero-copy.
        share = f"{fraction:.0%}" if fraction >= 0.01 else "<1%"
        return f"{mode} ({share} of sends copied)"
    return mode


def mark(mode: str, copied_fraction: object) -> str:
    """The terminal summary's one-character mark after the mode: `*` copied (some or all sends),
    `?` unverified, empty otherwise."""
    verdict = copying(mode, copied_fraction)
    return "*" if verdict.kernel_copied else "?" if verdict is Copying.UNVERIFIED else ""


# The receive side's rule, beside the send side's: a `receive: zerocopy` cell maps pages only
# where every segment carries whole, page-aligned pages (TCP_ZEROCOPY_RECEIVE); what it could not
# map it read with read(), a copy. results.csv keeps the mapped fraction of the bytes received.
# From this fraction up a cell is shown as zero-copy receive; below it, never.
MAPPED_THRESHOLD = 0.99
# Below this the receive was a copy outright; between the two, partly mapped.
MAPPED_NONE = 0.01


class Mapping(enum.Enum):
    OTHER_RECEIVE = "receive: copy"  # the rule does not apply
    MAPPED = "mapped"
    PARTLY_MAPPED = "partly mapped"
    NOT_MAPPED = "not mapped"
    UNVERIFIED = "unverified"  # the receiver counted nothing

    @property
    def zero_copy(self) -> bool:
        return self is Mapping.MAPPED


def mapping(receive: str, mapped_fraction: object) -> Mapping:
    """The rule: what a cell with this receive mode and mapped fraction (NaN, None or <NA> when
    nothing was counted) is, as far as zero-copy receive goes."""
    if receive != "zerocopy":
        return Mapping.OTHER_RECEIVE
    try:
        fraction = float(mapped_fraction)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return Mapping.UNVERIFIED
    if math.isnan(fraction):
        return Mapping.UNVERIFIED
    if fraction >= MAPPED_THRESHOLD:
        return Mapping.MAPPED
    if fraction >= MAPPED_NONE:
        return Mapping.PARTLY_MAPPED
    return Mapping.NOT_MAPPED


def receive_label(receive: str, mapped_fraction: object) -> str:
    """The receive mode as tables and answers show it: never "zerocopy" for bytes it read."""
    verdict = mapping(receive, mapped_fraction)
    if verdict is Mapping.OTHER_RECEIVE:
        return receive
    if verdict is Mapping.UNVERIFIED:
        return "zerocopy (unverified: nothing counted)"
    if verdict is Mapping.MAPPED:
        return "zerocopy"
    share = f"{float(mapped_fraction):.0%}"  # type: ignore[arg-type]
    if verdict is Mapping.NOT_MAPPED:
        return "zerocopy: not mapped (read)"
    return f"zerocopy ({share} mapped, the rest read)"


# TCP_ZEROCOPY_RECEIVE maps a segment's payload only in whole pages of this size.
PAGE = 4096
# The IP and TCP headers (timestamps on) a segment carries: IPv4 20 + 32, IPv6 40 + 32. An MTU
# carries whole pages when MTU - headers is a multiple of PAGE (61492 carries 15 pages over IPv4).
HEADERS = (52, 72)


def whole_pages(pmtu: object) -> bool | None:
    """Whether segments at this path MTU (results.csv tcp_pmtu, from TCP_INFO) carry whole pages;
    None when unknown."""
    try:
        value = int(pmtu)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value > 0 and any((value - h) % PAGE == 0 for h in HEADERS)


def why_not_mapped(pmtu: object, sender_mode: str) -> str:
    """Why a receive: zerocopy cell mapped little or nothing, from what the run knows: the path
    MTU the connection used and the sender's mode."""
    if whole_pages(pmtu) is False:
        return (f"the segments do not carry whole pages: the path MTU is {int(pmtu)} bytes, so a segment's payload "  # type: ignore[arg-type]
                f"is not a multiple of {PAGE} (an MTU of 61492 = 15 × {PAGE} + 52 is; `orchestrate lab up --mtu 61492`). "
                "On loopback and veth the sender's TSO packets (up to 64 KiB) are never cut into segments, and a "
                "zero_copy sender's arrive in whole pages: all are mapped but the part page that ends each packet, "
                "which is read")
    if sender_mode not in ZERO_COPY_MODES:
        return (f"the sender's pages were not page-aligned: a {sender_mode} sender's bytes sit in the socket's "
                "pages at any offset (a zero_copy sender's arrive in whole pages)")
    return "the segments did not carry whole, page-aligned pages (the path MTU is unknown)"
