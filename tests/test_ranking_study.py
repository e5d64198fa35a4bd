"""benchmarks/ranking_study.py end to end at --tiny settings (a smoke run, not a result), in this process: every stage
runs; every estimator and every signed proxy gets a tau (a number in [-1, 1], or NaN with the reason); a proxy and
its opposite sign give opposite taus; the zero-cost proxies are finite; a rerun on the same --out reuses every cache
and gives the same result; another configuration there is refused; a latency table replaces the MACs stand-in."""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import fields

import pytest

from benchmarks import ranking_study as R

# each cost proxy in both directions: (more is better, fewer is better)
PAIRS = [("macs", "fewest_macs"), ("params", "fewest_params"), ("most_skips", "fewest_skips"),
         ("latency_macs_standin", "lowest_latency_macs_standin")]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranking_study")
    t0 = time.perf_counter()
    R.main(["--tiny", "--out", str(out)])
    seconds = time.perf_counter() - t0
    yield out, json.loads((out / "ranking_study.json").read_text()), seconds
    shutil.rmtree(out, ignore_errors=True)  # the supernets' checkpoints: hundreds of MB each


def test_every_estimator_and_every_signed_proxy_has_a_tau(study):
    out, res, _ = study
    cfg = R.StudyConfig(**res["config"])
    assert res["tiny"] and "not a result" in res["note"]
    assert set(res["seconds"]) == {"archs", "reference", "supernets", "zero_cost", "latency", "analysis"}
    expected = ({f"{run}_{metric}" for run in R.supernet_runs(cfg) for metric in ("top1", "loss")}
                | {name for pair in PAIRS for name in pair} | {"naswot", "synflow"})
    for view in ("band", "wide"):
        v = res["views"][view]
        assert len(v["archs"]) == {"band": cfg.band_archs, "wide": cfg.wide_archs}[view]
        assert set(v["estimators"]) == expected
        for name, s in v["estimators"].items():
            assert s["sign"] in (1, -1) and s["what"] and len(s["values"]) == len(v["archs"]), name
            if math.isnan(s["tau"]):
                assert s["tau_undefined"], name
            else:
                assert -1 <= s["tau"] <= 1 and "tau_undefined" not in s, name
        assert v["estimators"][f"fair_{cfg.demo_steps}_s0_loss"]["sign"] == -1  # lower loss ranks first
        seed_tau = v["seed_vs_seed_tau"]
        assert (-1 <= seed_tau <= 1) if not math.isnan(seed_tau) else v["seed_vs_seed_tau_undefined"]


def test_a_proxy_and_its_opposite_sign_give_opposite_taus(study):
    _, res, _ = study
    finite = 0
    for view in ("band", "wide"):
        est = res["views"][view]["estimators"]
        for more, fewer in PAIRS:
            a, b = est[more], est[fewer]
            assert a["values"] == b["values"] and (a["sign"], b["sign"]) == (1, -1)
            if math.isnan(a["tau"]):
                assert math.isnan(b["tau"]) and a["tau_undefined"] == b["tau_undefined"]
            else:
                assert b["tau"] == pytest.approx(-a["tau"], abs=1e-12)
                finite += more == "macs"
        # without a latency table MACs stand in for predicted latency, and the name and the description say so
        assert est["latency_macs_standin"]["values"] == est["macs"]["values"]
        assert "MACs stand in" in est["latency_macs_standin"]["what"]
        best = res["views"][view]["best_free_proxy"]
        assert best is None or est[best]["kind"] == "free" and est[best]["tau"] >= 0
    assert finite  # in at least one view the tiny reference is not constant, so MACs' tau is a number
    assert res["latency_source"].startswith("none")


def test_the_zero_cost_proxies_are_finite(study):
    out, res, _ = study
    archs = res["views"]["band"]["archs"] + res["views"]["wide"]["archs"]
    zc = json.loads((out / "zero_cost.json").read_text())
    assert set(zc) == set(archs)
    assert all(math.isfinite(v[k]) for v in zc.values() for k in ("naswot", "synflow")), zc
    for view in ("band", "wide"):
        for k in ("naswot", "synflow"):
            s = res["views"][view]["estimators"][k]
            assert s["kind"] == "zero-cost" and s["sign"] == 1 and all(map(math.isfinite, s["values"]))


def test_a_rerun_on_the_same_out_reuses_every_cache(study, capsys):
    out, res, first = study
    capsys.readouterr()
    caches = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "ranking_study.json"}
    assert {"reference.json", "zero_cost.json", "estimates.json", "supernet.pt"} <= {p.name for p in caches}
    t0 = time.perf_counter()
    R.main(["--tiny", "--out", str(out)])
    again = time.perf_counter() - t0
    printed = capsys.readouterr().out
    assert "alone seed" not in printed and "scored in" not in printed, printed  # nothing trained, nothing scored
    assert {p: p.stat().st_mtime_ns for p in caches} == caches  # nothing cached was rewritten
    rerun = json.loads((out / "ranking_study.json").read_text())
    assert json.dumps(rerun["views"]) == json.dumps(res["views"])  # as text: NaN equals NaN
    assert again < first / 3, (again, first)


def test_another_configuration_on_the_same_out_is_refused(study):
    out = study[0]
    with pytest.raises(SystemExit, match="another configuration.*ref_steps 2 there, 3 now"):
        R.main(["--tiny", "--ref-steps", "3", "--out", str(out)])


def test_a_latency_table_replaces_the_stand_in(study, tmp_path):
    from nasdeploy.data import BUILTIN_SETTING as S
    from nasdeploy.latency import LatencyTable
    from nasdeploy.nas.space import get_space

    sp = get_space("scarlet")
    table = LatencyTable("scarlet", "cpu", "onnxruntime", 1, "fp32", S.size, list(S.stride_plan), S.num_classes,
                         stem={"median": 0.2}, head={"median": 0.1},
                         layers=[{c.token: {"median": 0.0 if c.skip else c.kernel * c.expansion / 10 + 0.5 * c.se}
                                  for c in sp.choices_at(i)} for i in range(sp.num_layers)])
    path = table.save(tmp_path / "lut.json")
    out = study[0]
    res = R.main(["--tiny", "--lut", str(path), "--out", str(out)])  # the table touches no cache: analysis only
    assert str(path) in res["latency_source"]
    for view in ("band", "wide"):
        v = res["views"][view]
        est = v["estimators"]
        assert not any("standin" in k for k in est)
        assert est["latency"]["values"] == pytest.approx([table.predict(a) for a in v["archs"]])
        assert (est["latency"]["sign"], est["lowest_latency"]["sign"]) == (1, -1)
        if not math.isnan(est["latency"]["tau"]):
            assert est["lowest_latency"]["tau"] == pytest.approx(-est["latency"]["tau"])
    other = tmp_path / "lut224.json"
    LatencyTable("scarlet", "cpu", "onnxruntime", 1, "fp32", 224, None, 1000, stem=table.stem, head=table.head,
                 layers=table.layers).save(other)
    with pytest.raises(SystemExit, match="needs the built-in setting"):
        R.main(["--tiny", "--lut", str(other), "--out", str(out)])


def test_every_field_of_the_config_is_an_option():
    argv, want = [], {}
    for f in fields(R.StudyConfig):
        d = f.default
        v = ((7, 8) if isinstance(d, tuple) else "scarlet" if f.name == "space" else "none" if f.name == "lut"
             else d / 2 if isinstance(d, float) else d + 1)
        argv += ["--" + f.name.replace("_", "-"), ",".join(map(str, v)) if isinstance(v, tuple) else str(v)]
        want[f.name] = v
    cfg = R.config_from(R.parser().parse_args(argv))
    assert {f.name: getattr(cfg, f.name) for f in fields(cfg)} == want
    tiny = R.config_from(R.parser().parse_args(["--tiny", "--ref-steps", "5"]))
    assert tiny.ref_steps == 5 and tiny.band_archs == R.TINY["band_archs"]  # an option beside --tiny wins
    assert "a smoke run, not a result" in R.parser().format_help()
    with pytest.raises(SystemExit, match="out of range: --demo-steps 0"):
        R.config_from(R.parser().parse_args(["--demo-steps", "0"]))
