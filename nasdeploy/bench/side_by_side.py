"""The shipped file and the network the search timed, side by side: one clock, one clean process, their rounds
interleaved, so that a change of the machine's speed between the search and the bench (minutes apart; on a shared
VM often 10-30%, which no bound within either timing covers) falls on both alike.

Two figures come out. **Shipped / searched** (round by round: each round's two medians were taken seconds apart)
says whether what ships runs as fast as what the search chose under; it does not move with the machine's speed.
**The machine, now / then** (the search's network now against the search's own figure) says how much of a gap
between the search and the bench is the machine's speed. Both are medians with order-statistic bounds
(``bench.stats``), like every latency nasdeploy reports.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .stats import RoundLatency
from .timing import Clock
from .worker import in_clean_process

AGREE = 0.10  # the shipped file and the search's network agree when their ratio is within 10% of 1


@dataclass(frozen=True)
class SideBySide:
    """The shipped engine and the search's network of the same architecture on the same engine, timed together."""

    engine: str
    batch: int
    shipped: dict  # RoundLatency record: the shipped file
    searched: dict  # RoundLatency record: the network the search timed (its latency table's setting)
    shipped_vs_searched: dict  # RoundLatency record of the per-round ratios shipped / searched
    machine_vs_search: float | None  # the search's network now / the search's figure for it

    @property
    def agrees(self) -> bool:
        """Whether the shipped file runs as the search's network: the ratio's bounds hold 1, or its median is
        within ``AGREE`` of 1."""
        r = self.shipped_vs_searched
        lo, hi = r.get("lower"), r.get("upper")
        return (lo is not None and hi is not None and lo <= 1.0 <= hi) or abs(r["median"] - 1.0) <= AGREE

    def as_dict(self) -> dict:
        return asdict(self)


def _time_pair(export_dir: str, engine: str, lut: str, arch: str, device: str, clock: Clock, seed: int,
               threads: int | None) -> tuple[int, list[float], list[float]]:
    """In the timing process: the export folder's engine and the latency table's network of ``arch``, built as the
    search's finalists are (with ``threads`` where given), timed by ``clock`` interleaved: the table's batch and each
    one's round medians."""
    from dataclasses import replace

    import torch

    from ..backends import tf32_mode
    from ..export.manifest import ExportFolder
    from ..latency.measure import network_for, runner_for, settings_of
    from ..latency.table import LatencyTable

    table = LatencyTable.load(lut)
    s = settings_of(table, clock)
    s = replace(s, threads=threads or s.threads)
    shape = (table.batch, 3, table.input_size, table.input_size)
    shipped = ExportFolder.open(export_dir).runner(engine, device, (table.batch, table.batch))
    searched = runner_for(network_for(table, arch), shape, s)
    runners = [shipped, searched]
    x = torch.randn(*shape)
    with tf32_mode(s.tf32):
        rounds = clock.time_all([r.timed(x) for r in runners], s.device, seed=seed,
                                streams=[r.stream for r in runners], clocks=[r.clock for r in runners])
    for r in runners:
        r.check_ran()
    n = min(len(rs) for rs in rounds)  # the same rounds for both: pairs
    return table.batch, [st.median for st in rounds[0][:n]], [st.median for st in rounds[1][:n]]


def side_by_side(export_dir: str | Path, engine: str, lut: str | Path, arch: str, device: str, clock: Clock,
                 search_ms: float | None = None, seed: int = 0, threads: int | None = None) -> SideBySide:
    """``engine`` of the export folder against ``arch`` built from its latency table ``lut`` (the table's batch and
    input; ``threads``: the engine's, where the table names none), in this process's timing worker; ``search_ms``:
    the search's figure for ``arch`` on ``engine``."""
    batch, a, b = in_clean_process(_time_pair, str(export_dir), engine, str(lut), arch, device, clock, seed,
                                   threads)
    shipped, searched = RoundLatency.of(a, clock.confidence), RoundLatency.of(b, clock.confidence)
    ratio = RoundLatency.of([x / y for x, y in zip(a, b)], clock.confidence)
    return SideBySide(engine=engine, batch=batch, shipped=shipped.as_dict(),
                      searched=searched.as_dict(), shipped_vs_searched=ratio.as_dict(),
                      machine_vs_search=searched.median / search_ms if search_ms else None)
