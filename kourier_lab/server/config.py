"""Server configuration (the `serve` options, validated once)."""
from dataclasses import dataclass, field
from typing import List, Optional

from ..http.limits import DEFAULT_LIMITS, Limits

# the benchmark app's response presets (server/app.py renders them)
RESPONSE_PRESETS = ("default", "kourier")    # server/app.py renders them

# the io_uring loop's switches (native/loop.h KL_URING_*), each on or off
# (`serve --uring-features`); the default is the set that measured best
URING_FEATURES = ("multishot", "buf-ring", "defer-taskrun", "fixed-files")
URING_DEFAULT = ("multishot", "buf-ring", "defer-taskrun")


def parse_uring_features(text: str) -> str:
    """`--uring-features` -> the canonical string every row records: the
    switches that are on, in URING_FEATURES order, joined by "+" ("none": all
    off).  text names switches to turn on ("fixed-files") or off
    ("no-multishot"), comma-separated, from the defaults; "none" starts from
    all off, "default" is the defaults."""
    on = set(URING_DEFAULT)
    for item in (t.strip() for t in text.split(",")):
        if item in ("", "default"):
            continue
        if item == "none":
            on.clear()
            continue
        name = item[3:] if item.startswith("no-") else item
        if name not in URING_FEATURES:
            raise ValueError(f"unknown io_uring feature {name!r} (switches: {', '.join(URING_FEATURES)}; "
                             f"prefix no- to turn one off)")
        (on.discard if item.startswith("no-") else on.add)(name)
    if "multishot" in on and "buf-ring" not in on:
        raise ValueError("io_uring feature multishot needs buf-ring (a multishot recv picks provided buffers)")
    return "+".join(f for f in URING_FEATURES if f in on) or "none"


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 3275
    worker_count: int = 1
    request_timeout: float = 20.0     # seconds to receive a whole request -> 408
    idle_timeout: float = 60.0        # seconds an idle keep-alive connection stays open
    loop: str = "python"
    parser: str = "python"
    buffer: str = "python"
    cpus: Optional[List[int]] = None  # pin worker i to cpus[i % len(cpus)]
    app: Optional[str] = None         # module:object; None = the benchmark app
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)
    max_connections: int = 10000      # per worker; past it: 503 and close
    read_buffer: int = 16384          # initial read buffer per connection
    read_buffer_limit: int = 0        # 0: head + body limits + slack
    write_buffer_limit: int = 1 << 20  # queued output that pauses reading
    graceful_timeout: float = 10.0    # SIGTERM: seconds to finish in-flight work
    backlog: int = 4096
    uvloop: bool = False              # asyncio loop: use uvloop when installed
    # the head memo (kourier_lab/parsers/memo.py): off by default, so that every
    # request is parsed; on, a byte-identical head skips the parser
    head_memo: bool = False
    # folding runs of equal consecutive requests (one route look-up, one answer
    # repeated, the parser's fields shared): off by default, so that every
    # request gets its own parse result, route look-up and answer written
    fold_runs: bool = False
    # the benchmark app's response: "default" (Server, Date, Content-Type,
    # Content-Length) or "kourier" (the posts' 105 bytes, no Content-Type)
    response: str = "default"
    # the io_uring loop's switches (parse_uring_features' canonical string)
    uring_features: str = "+".join(URING_DEFAULT)

    def __post_init__(self):
        if not (0 <= self.port <= 65535):
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.worker_count < 1:
            raise ValueError(f"worker count must be >= 1, got {self.worker_count}")
        for name in ("request_timeout", "idle_timeout", "graceful_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.replace('_', ' ')} must be > 0 seconds, got {getattr(self, name)}")
        if self.response not in RESPONSE_PRESETS:
            raise ValueError(f"unknown response preset {self.response!r} "
                             f"(choose one of: {', '.join(RESPONSE_PRESETS)})")
        # the canonical form names every switch that is on
        self.uring_features = parse_uring_features("none," + self.uring_features.replace("+", ","))
        if self.max_connections < 1:
            raise ValueError("max connections must be >= 1")
        if not self.read_buffer_limit:
            self.read_buffer_limit = max(self.read_buffer,
                                         self.limits.max_header_bytes * 2 + self.limits.max_body + 65536)
