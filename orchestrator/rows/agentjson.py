"""The agent's JSON document (docs/agent-protocol.md), checked and turned into dataclasses.

pydantic does the type checking, in strict mode so that a count written as `1.0`, `"12"` or
`true` is refused rather than coerced: every byte and count in the contract is an integer.
Keys the contract does not name are ignored, so a newer agent can add fields.

An `"status": "error"` document may stop early; only the identity of the agent and its error
are required then, and every measured section may be None.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from ..experiment.config import Mode, Workload
from ..roles import Role
from ..errors import OrchestrateError

# Validation runs on the JSON text (validate_json), where strict mode still takes objects for
# the dataclasses but refuses 1.0, "12" and true where the contract says integer.
_CONTRACT = ConfigDict(strict=True, extra="ignore")



class AgentOutputError(OrchestrateError):
    """An agent JSON document that is missing, not JSON, or breaks the contract."""


@dataclass(frozen=True, config=_CONTRACT)
class Counts:
    seconds: float
    bytes_sent: int
    bytes_received: int
    messages_sent: int
    messages_received: int
    send_calls: int
    recv_calls: int


@dataclass(frozen=True, config=_CONTRACT)
class Rusage:
    user_s: float
    sys_s: float
    voluntary_ctxt_switches: int
    involuntary_ctxt_switches: int

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


@dataclass(frozen=True, config=_CONTRACT)
class Mapped:
    """A --receive zerocopy receiver's TCP_ZEROCOPY_RECEIVE counts (agents/recvmap.c)."""

    calls: int
    mapped_calls: int
    bytes_mapped: int
    bytes_read: int
    reads: int


@dataclass(frozen=True, config=_CONTRACT)
class Receive:
    mode: Literal["copy", "zerocopy"]
    mapped: Mapped | None = None  # None: a copy receiver, or a side that sends


@dataclass(frozen=True, config=_CONTRACT)
class ZeroCopy:
    sends: int
    notifications: int
    completed_sends: int
    copied_sends: int
    copied_notifications: int
    enobufs: int
    outstanding_at_end: int


@dataclass(frozen=True, config=_CONTRACT)
class Latency:
    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True, config=_CONTRACT)
class RequestResponse:
    # The server reports transactions only; the client adds the rate and latencies.
    transactions: int
    transactions_total: int | None = None
    transactions_per_s: float | None = None
    latency_us: Latency | None = None


@dataclass(frozen=True, config=_CONTRACT)
class Options:
    nodelay: bool
    sndbuf: int
    rcvbuf: int
    sndbuf_effective: int
    rcvbuf_effective: int
    cpus: list[int]
    verify: bool
    lifetime_s: float
    uring_buffers: Literal["plain", "registered"] | None = None  # None: an agent from before --uring-buffers


@dataclass(frozen=True, config=_CONTRACT)
class Times:
    start_monotonic: float
    end_monotonic: float
    start_realtime: float
    end_realtime: float


@dataclass(frozen=True, config=_CONTRACT)
class Interval:
    t: float
    bytes: int


@dataclass(frozen=True, config=_CONTRACT)
class Progress:
    """The window's bytes in this side's direction, connections summed, sampled every `step_s`
    whatever the interval (each sample counts the bytes since the one before; the last one
    closes the window)."""

    step_s: float
    samples: list[Interval]


@dataclass(frozen=True, config=_CONTRACT)
class TcpInfo:
    """One getsockopt(TCP_INFO) sample of a connection; a field the kernel did not return is None."""

    t: float
    total_retrans: int | None
    rtt_us: int | None
    rttvar_us: int | None
    snd_cwnd: int | None
    delivery_rate: int | None
    busy_us: int | None
    rwnd_limited_us: int | None
    sndbuf_limited_us: int | None
    pmtu: int | None


@dataclass(frozen=True, config=_CONTRACT)
class ThreadDetail:
    index: int
    cpu: int | None
    local: str
    peer: str
    window: Counts
    total: Counts
    intervals: list[Interval]
    zerocopy: ZeroCopy | None = None
    rr: RequestResponse | None = None
    # Window start, each interval boundary, window end; None: sampling off or an older agent.
    tcp_info: list[TcpInfo | None] | None = None


@dataclass(frozen=True, config=_CONTRACT)
class HostSnapshot:
    """This host's counter files as text at one moment (None: missing, unreadable or over 1 MiB)."""

    t: float
    stat: str | None
    softirqs: str | None
    interrupts: str | None
    snmp: str | None
    netstat: str | None
    ethtool: str | None = None  # the data NIC's statistics in `ethtool -S`'s layout; None: none or an older agent


@dataclass(frozen=True, config=_CONTRACT)
class HostCounters:
    clk_tck: int | None  # /proc/stat's ticks per second, from sysconf(_SC_CLK_TCK)
    start: HostSnapshot | None
    end: HostSnapshot | None
    nic: str | None = None  # the data NIC: the interface holding connection 0's local address
    nic_bus: str | None = None  # its bus address (`ethtool -i`'s bus-info), which mlx5's IRQ names carry


@dataclass(frozen=True, config=_CONTRACT)
class AgentDocument:
    agent: Literal["orchestrate-agent"]
    schema: Literal[1]
    status: Literal["ok", "error"]
    error: str | None
    role: Role
    workload: Workload | None = None
    mode: Mode | None = None
    sender: Role | None = None
    direction: Literal["send", "receive", "rr"] | None = None
    message_size: int | None = None
    fields: int | None = None
    threads: int | None = None
    warmup_s: float | None = None
    duration_s: float | None = None
    interval_s: float | None = None
    options: Options | None = None
    time: Times | None = None
    window: Counts | None = None
    total: Counts | None = None
    threads_detail: list[ThreadDetail] | None = None
    rusage: Rusage | None = None
    zerocopy: ZeroCopy | None = None
    rr: RequestResponse | None = None
    host_counters: HostCounters | None = None
    progress: Progress | None = None  # None: an agent from before it was recorded, or no window
    receive: Receive | None = None  # None: an agent from before --receive


# Present in every document with "status": "ok"; an error document may lack them.
_REQUIRED_WHEN_OK = (
    "workload", "mode", "sender", "direction", "message_size", "fields", "threads",
    "warmup_s", "duration_s", "interval_s", "options", "time", "window", "total",
    "threads_detail", "rusage",
)  # fmt: skip
# Sections that must be present as keys (null allowed) in an ok document.
_NULLABLE_WHEN_OK = ("error", "zerocopy", "rr")
_SUMMED = ("bytes_sent", "bytes_received", "messages_sent", "messages_received",
           "send_calls", "recv_calls")  # fmt: skip

_ADAPTER = TypeAdapter(AgentDocument)


def _location(loc: tuple[int | str, ...]) -> str:
    """A key path as a reader finds it in the file: `threads_detail[1].window.seconds`."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _check_progress(agent: AgentDocument, source: str) -> None:
    """The progress samples sum to the window's bytes in this side's direction, in time order."""
    assert agent.progress is not None and agent.threads_detail is not None
    samples = agent.progress.samples
    if not agent.progress.step_s > 0:
        raise AgentOutputError(f"{source}: key 'progress.step_s' must be positive, got {agent.progress.step_s!r}")
    for i in range(1, len(samples)):
        if samples[i].t < samples[i - 1].t:
            raise AgentOutputError(f"{source}: key 'progress.samples[{i}].t' goes back in time "
                                   f"({samples[i].t} after {samples[i - 1].t})")
    key = "bytes_sent" if agent.direction == "send" else "bytes_received"
    moved = sum(getattr(t.window, key) for t in agent.threads_detail)
    sampled = sum(s.bytes for s in samples)
    if sampled != moved:
        raise AgentOutputError(f"{source}: key 'progress.samples' sums to {sampled} bytes but the "
                               f"connections' window.{key} sum to {moved}")


def _check_ok_document(doc: dict[str, Any], agent: AgentDocument, source: str) -> None:
    missing = [key for key in _REQUIRED_WHEN_OK if getattr(agent, key) is None]
    missing += [key for key in _NULLABLE_WHEN_OK if key not in doc]
    if missing:
        raise AgentOutputError(f"{source}: missing key {missing[0]!r} in an ok document")
    assert agent.threads_detail is not None and agent.window is not None
    assert agent.total is not None
    if agent.error is not None:
        raise AgentOutputError(f"{source}: key 'error' must be null when status is ok")
    # One entry per connection, and the totals are their sums: this is what catches a
    # report that kept only the last thread's figures.
    if len(agent.threads_detail) != agent.threads:
        raise AgentOutputError(
            f"{source}: key 'threads_detail' has {len(agent.threads_detail)} entries "
            f"for threads={agent.threads}"
        )
    for thread in agent.threads_detail:
        # Intervals count the bytes this side moved in its direction (rr: received).
        key = "bytes_sent" if agent.direction == "send" else "bytes_received"
        moved = getattr(thread.window, key)
        sampled = sum(interval.bytes for interval in thread.intervals)
        if sampled != moved:
            raise AgentOutputError(
                f"{source}: key 'threads_detail[{thread.index}].intervals' sums to {sampled} "
                f"bytes but its window.{key} is {moved}"
            )
    if agent.progress is not None:
        _check_progress(agent, source)
    for section in ("window", "total"):
        whole = getattr(agent, section)
        for key in _SUMMED:
            parts = sum(getattr(getattr(t, section), key) for t in agent.threads_detail)
            if parts != getattr(whole, key):
                raise AgentOutputError(
                    f"{source}: key '{section}.{key}' is {getattr(whole, key)} but the "
                    f"threads_detail entries sum to {parts}"
                )


def parse_agent_json(text: str, source: str = "<agent JSON>") -> AgentDocument:
    """An AgentDocument from the document's text; AgentOutputError names `source` and the key."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AgentOutputError(f"{source}: not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise AgentOutputError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    for key in ("agent", "schema", "status", "error", "role"):
        if key not in doc:
            raise AgentOutputError(f"{source}: missing key {key!r}")
    try:
        agent = _ADAPTER.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _location(first["loc"])
        if first["type"] == "missing":
            raise AgentOutputError(f"{source}: missing key {where!r}") from None
        raise AgentOutputError(
            f"{source}: key {where!r}: {first['msg']} (got {first.get('input')!r:.80})"
        ) from None
    if agent.status == "ok":
        _check_ok_document(doc, agent, source)
    elif not agent.error:
        raise AgentOutputError(f"{source}: key 'error' must give a message when status is error")
    return agent


def load_agent_json(path: str | Path) -> AgentDocument:
    """The agent document at `path`; AgentOutputError if missing, unreadable or invalid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentOutputError(f"{path}: cannot read agent output: {exc}") from exc
    return parse_agent_json(text, source=str(path))
