"""The machine's speed when the search starts (nasdeploy/search/speed.py): the tables rescaled to it, the headroom a
choice keeps for the speed changing again, and what the pipeline's search stage makes of both."""
from __future__ import annotations

import random
import statistics

import pytest

from nasdeploy.bench.stats import RoundLatency
from nasdeploy.bench.timing import Clock
from nasdeploy.latency import EngineTables, LatencyTable
from nasdeploy.nas.space import get_space
from nasdeploy.search.speed import SpeedCheck, check_speed, headroom, rescaled


def _check(ratios_rounds: list[list[float]], predicted: list[float]) -> SpeedCheck:
    timing = [RoundLatency.of([r * p for r in rs], 0.9) for rs, p in zip(ratios_rounds, predicted)]
    return SpeedCheck("e", [f"a{i}" for i in range(len(predicted))], predicted, timing)


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.25, 2.0])
def test_headroom_is_the_largest_change_either_way(factor):
    """A machine 25% slower than its table and one 20% faster (1/1.25) change by the same share; steady rounds add
    nothing to it."""
    c = _check([[factor] * 5, [factor * 1.01] * 5, [factor * 0.99] * 5], [0.4, 0.8, 1.6])
    assert c.factor == pytest.approx(factor)
    assert c.largest_change == pytest.approx(max(factor, 1 / factor) - 1)
    assert headroom({"e": c}) == pytest.approx(max(factor, 1 / factor) - 1)
    assert headroom({}) == 0.0


def test_two_speed_modes_within_the_rounds_widen_the_headroom():
    """Rounds in two modes 30% apart: the machine changed speed that much while the check ran, whatever the median
    ratio says."""
    c = _check([[1.0, 1.0, 1.3, 1.3, 1.0, 1.3], [1.0] * 6], [0.5, 0.7])
    modes = c.timing[0].stability.modes
    assert modes is not None
    assert c.largest_change == pytest.approx(modes[1] / modes[0] - 1) and c.largest_change > 0.25
    assert headroom({"e": c, "f": _check([[1.05] * 5], [1.0])}) == pytest.approx(c.largest_change)


@pytest.mark.parametrize("factor", [0.7, 1.0, 1.3])
def test_a_rescaled_table_predicts_factor_times_its_own(tiny_tables, tmp_path, factor):
    table = LatencyTable.load(tiny_tables[0])
    copy = rescaled(table, factor, tmp_path / "t" / "lut.json")
    back = LatencyTable.load(tmp_path / "t" / "lut.json")
    rng = random.Random(factor)
    for arch in [get_space(table.space).sample(rng) for _ in range(20)]:
        assert back.predict(arch) == pytest.approx(factor * table.predict(arch), rel=1e-9)
        assert copy.predict(arch) == pytest.approx(back.predict(arch), rel=1e-12)
    assert back.provenance["rescaled"]["factor"] == round(factor, 4)
    assert back.setting() == table.setting() and table.calibration == LatencyTable.load(tiny_tables[0]).calibration


def test_the_speed_check_times_random_architectures_on_every_engine(tiny_tables):
    """End to end in the finalists' clean process: per engine, the asked architectures, the clock's rounds and no
    more (a level, not a verdict), the table's prediction beside each; the factor is their median ratio."""
    tables = EngineTables.load(tiny_tables)
    clock = Clock(warmup=1, repeats=3, rounds=2, confidence=0.75)
    checks = check_speed(tables, clock, archs=2, seed=3)
    assert set(checks) == set(tables.tables)
    for engine, c in checks.items():
        assert len(c.archs) == 2 and all(t.rounds == 2 for t in c.timing)
        assert c.predicted_ms == [tables.tables[engine].predict(a) for a in c.archs]
        assert c.factor == pytest.approx(statistics.median(t.median / p for t, p in zip(c.timing, c.predicted_ms)))
        assert c.as_dict()["measured_ms"] == [round(t.median, 4) for t in c.timing]
    assert headroom(checks) >= max(max(c.factor, 1 / c.factor) - 1 for c in checks.values())
    with pytest.raises(ValueError, match="at least 1"):
        check_speed(tables, clock, archs=0)


@pytest.mark.parametrize("target, h, aim", [
    (1.0, 0.25, 0.8),       # the target less the headroom
    (1.0, 0.0, 1.0),        # no headroom: the target itself
    (1.0, 0.99, 0.525),     # never below 5% over the fastest possible (0.5 ms)
    (0.51, 0.3, 0.51),      # a target within 5% of the fastest: the target, no headroom left
])
def test_the_search_aims_under_the_target_by_the_headroom(target, h, aim):
    from nasdeploy.pipeline.model_stages import aim as aim_of

    class Tables:
        def fastest(self):
            return None, 0.5

    got, left = aim_of(Tables(), target, h)
    assert got == pytest.approx(aim) and left == pytest.approx(target / aim - 1, abs=1e-4)


def test_a_kept_speed_check_is_read_back_only_whole(tmp_path):
    """A search resumed after a kill reuses the speed check of its first start (same tables, target, aim); one
    cut short, or whose tables are gone, is measured again."""
    from nasdeploy.io import write_json
    from nasdeploy.pipeline.model_stages import read_kept
    from nasdeploy.pipeline.results import SpeedRecord

    lut = tmp_path / "lut.json"
    lut.write_text("{}")
    path = tmp_path / "speed.json"
    assert read_kept(path) is None
    write_json(path, {"checks": {}, "headroom": 0.1, "luts": [str(lut)]})
    assert read_kept(path) == SpeedRecord(luts=[str(lut)], headroom=0.1)
    path.write_text('{"checks": {}, "headroom": 0.1, "lu')
    assert read_kept(path) is None
    for bad in ({"headroom": 0.1, "luts": [str(tmp_path / "gone.json")]}, {"headroom": "a lot", "luts": [str(lut)]},
                {"headroom": 0.1, "luts": []}):
        write_json(path, bad)
        assert read_kept(path) is None, bad
