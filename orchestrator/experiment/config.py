"""The experiment file: what to measure, how often and for how long.

Every per-cell parameter may be given once at the top level or as a list under `matrix`,
which makes it a dimension of the experiment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from . import dimensions, iperf3, units
from ..errors import ConfigError
from ..roles import Role
from .yamlfile import load_yaml, validate

MAX_MESSAGE_SIZE = 4 << 20
MAX_THREADS = 64
MAX_FIELDS = 64

Mode = Literal["two_copy", "one_copy", "zero_copy", "sendfile", "io_uring", "io_uring_zc"]
Workload = Literal["stream", "rr"]
# How a stream receiver takes its data: read() (copy), or pages mapped by TCP_ZEROCOPY_RECEIVE.
Receive = Literal["copy", "zerocopy"]
# Where an io_uring_zc sender's buffers come from: plain memory, pinned per send, or buffers
# registered with the ring once (IORING_RECVSEND_FIXED_BUF). The kernel has registered buffers for
# zero-copy sends only.
UringBuffers = Literal["plain", "registered"]


def _size(value: object) -> int:
    return units.parse_size(value)


def _duration(value: object) -> float:
    return units.parse_duration(value)


# Matched with fullmatch: `$` would also match before a trailing newline ("0\n").
_CPU_LIST = re.compile(r"\d{1,4}(-\d{1,4})?(,\d{1,4}(-\d{1,4})?)*")
MAX_CPU = 4095  # the agent's --cpus takes CPU numbers below its CPU set size


def _cpu_list(value: object) -> str:
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 1000 or not _CPU_LIST.fullmatch(value):
        raise ValueError("expected CPUs as a list [0, 2] or a string such as '0,2-3'")
    for part in value.split(","):
        low, _, high = part.partition("-")
        if int(low) > MAX_CPU or (high and not int(low) <= int(high) <= MAX_CPU):
            raise ValueError(f"CPU numbers go from 0 to {MAX_CPU}, and a range from low to high")
    return value


def _no_duplicates(values: list) -> list:
    if len(set(map(repr, values))) != len(values):
        raise ValueError("values repeat; each value of a dimension must appear once")
    return values


MessageSize = Annotated[int, BeforeValidator(_size), Field(ge=1, le=MAX_MESSAGE_SIZE)]
Threads = Annotated[StrictInt, Field(ge=1, le=MAX_THREADS)]
Fields = Annotated[StrictInt, Field(ge=1, le=MAX_FIELDS)]
BufferSize = Annotated[int, BeforeValidator(_size), Field(ge=0, le=1 << 30)]
Seconds = Annotated[float, BeforeValidator(_duration), Field(gt=0, le=3600)]
WarmupSeconds = Annotated[float, BeforeValidator(_duration), Field(ge=0, le=3600)]
CpuList = Annotated[str, BeforeValidator(_cpu_list)]
PerfEvent = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/=-]{1,64}$")]


def _dimension(item):
    return Annotated[list[item], Field(min_length=1, max_length=64), AfterValidator(_no_duplicates)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The per-cell parameters, in the order cell ids and tables list them.
CELL_KEYS = dimensions.CELL_KEYS


class Matrix(_Strict):
    workload: _dimension(Workload) | None = None
    mode: _dimension(Mode) | None = None
    message_size: _dimension(MessageSize) | None = None
    threads: _dimension(Threads) | None = None
    fields: _dimension(Fields) | None = None
    sender: _dimension(Role) | None = None
    nodelay: _dimension(StrictBool) | None = None
    sndbuf: _dimension(BufferSize) | None = None
    rcvbuf: _dimension(BufferSize) | None = None
    receive: _dimension(Receive) | None = None
    uring_buffers: _dimension(UringBuffers) | None = None


class Perf(_Strict):
    enabled: StrictBool = True
    events: list[PerfEvent] = Field(
        default=[
            "cycles",
            "instructions",
            "L1-dcache-load-misses",
            "LLC-load-misses",
            "context-switches",
            "cpu-migrations",
            "task-clock",
        ],
        min_length=1,
        max_length=32,
    )
    # process: the agent alone; system: `perf stat -a`, which also sees softirq receive work.
    scope: Literal["process", "system"] = "process"


class Affinity(_Strict):
    server: CpuList | None = None
    client: CpuList | None = None


class Timeouts(_Strict):
    connect: Seconds = 10.0
    command: Seconds = 120.0
    # Beyond warm-up plus duration, how long a cell may take before it is declared hung.
    cell_grace: Seconds = 30.0


class Checks(_Strict):
    """When a measured cell is `degraded` rather than `ok` (docs/results-schema.md)."""

    # The measuring side's window may differ from `duration` by this fraction of it, or by
    # window_slack, whichever is more: draining many connections' socket buffers after the
    # sender's deadline takes a few tens of milliseconds, whatever the duration.
    window_tolerance: Annotated[float, Field(gt=0, le=1)] = 0.05
    window_slack: Annotated[float, BeforeValidator(_duration), Field(ge=0, le=60)] = 0.1
    # An interval whose rate is below this fraction of the cell's median interval is a stall.
    min_interval_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1


class Experiment(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    matrix: Matrix
    repetitions: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    duration: Seconds = 10.0
    warmup: WarmupSeconds = 2.0
    order: Literal["shuffled", "listed"] = "shuffled"
    seed: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)] | None = None
    port: Annotated[StrictInt, Field(ge=1024, le=65535)] = 5301
    interval: Seconds = 1.0
    verify: StrictBool = False
    workload: Workload = "stream"
    mode: Mode = "one_copy"
    message_size: MessageSize = 65536
    threads: Threads = 1
    fields: Fields = 8
    sender: Role = "server"
    nodelay: StrictBool = True
    sndbuf: BufferSize = 0
    rcvbuf: BufferSize = 0
    receive: Receive = "copy"
    uring_buffers: UringBuffers = "plain"
    affinity: Affinity = Affinity()
    perf: Perf = Perf()
    timeouts: Timeouts = Timeouts()
    checks: Checks = Checks()
    # iperf3 cells beside the stream cells, at the same settings (experiment/iperf3.py).
    reference: Literal["iperf3"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_place_per_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("matrix"), dict):
            both = sorted(set(data["matrix"]) & set(data) & set(CELL_KEYS))
            if both:
                raise ValueError(f"{', '.join(both)} set both at the top level and under matrix; keep one")
        return data

    @model_validator(mode="after")
    def _matrix_not_empty(self) -> "Experiment":
        if not any(getattr(self.matrix, key) for key in CELL_KEYS):
            raise ValueError("matrix is empty; give at least one dimension, such as mode: [one_copy]")
        return self

    @model_validator(mode="after")
    def _receive_applies(self) -> "Experiment":
        if "zerocopy" in self.dimension("receive") and "rr" in self.dimension("workload"):
            raise ValueError("receive: zerocopy maps a stream's pages at its receiver and does not apply to the rr "
                             "workload (each side reads one message at a time); run rr with receive: copy only, "
                             "in an experiment of its own")
        return self

    @model_validator(mode="after")
    def _registered_buffers_apply(self) -> "Experiment":
        others = [m for m in self.dimension("mode") if m != "io_uring_zc"]
        if "registered" in self.dimension("uring_buffers") and others:
            raise ValueError("uring_buffers: registered applies to mode io_uring_zc only (the kernel registers buffers "
                             f"for IORING_OP_SEND_ZC, not for {', '.join(others)}); vary uring_buffers in an experiment "
                             "whose mode is [io_uring_zc]")
        return self

    @model_validator(mode="after")
    def _reference_runs(self) -> "Experiment":
        if self.reference is not None:
            problems = iperf3.settings_problems(self.dimension, self.duration, self.warmup)
            if problems:
                raise ValueError(f"reference: {self.reference}: " + "; ".join(problems))
        return self

    def dimension(self, key: str) -> list:
        """The values a cell parameter takes: its matrix list, or its single top-level value."""
        values = getattr(self.matrix, key)
        return list(values) if values is not None else [getattr(self, key)]

    def resolved(self, seed: int) -> dict[str, Any]:
        """Everything, defaults included, as it is saved with a run."""
        data = self.model_dump(mode="json")
        data["seed"] = seed
        data["matrix"] = {k: v for k, v in data["matrix"].items() if v is not None}
        for key in data["matrix"]:
            del data[key]  # a dimension lives under matrix only, as the file must have it
        return data


def load_experiment(path: Path) -> Experiment:
    path = Path(path)
    experiment = validate(Experiment, load_yaml(path), path)
    assert isinstance(experiment, Experiment)
    return experiment


def experiment_from_resolved(data: dict[str, Any], origin: Path) -> Experiment:
    try:
        return Experiment.model_validate(data)
    except Exception as exc:  # a saved run's config that no longer validates
        raise ConfigError(f"{origin}: saved config does not validate: {str(exc)[:1000]}") from None
