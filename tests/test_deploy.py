"""The rule that ships an engine (nasdeploy/deploy.py): among the engines that passed the gate and were timed, the
fastest whose lead over the reference holds in every bench round; else the reference."""
from __future__ import annotations

from dataclasses import replace

from nasdeploy.deploy import Contender, choose_engine, faster_every_round

REF = "onnxruntime:fp32"


def _c(engine: str, throughput, rounds, passed: bool = True) -> Contender:
    return Contender(engine=engine, throughput=throughput, round_medians=rounds, gate={"passed": passed},
                     files={f"{engine}.bin": "0" * 64})


def test_the_fastest_engine_faster_in_every_round_ships():
    cands = [_c(REF, 100.0, [1.0, 1.0]), _c("onnxruntime:int8", 150.0, [0.7, 0.8]),
             _c("openvino:int8", 160.0, [0.6, 1.1])]
    r = choose_engine(cands, REF)
    # OpenVINO has the higher throughput but was slower than the reference in the second round
    assert r.engine == "onnxruntime:int8" and r.fastest == "openvino:int8" and r.reference == REF
    assert r.faster_in_every_round is True and r.throughput == 150.0
    assert r.faster_in_every_round_by_engine == {"openvino:int8": False, "onnxruntime:int8": True, REF: None}
    assert r.files == {"onnxruntime:int8.bin": "0" * 64}


def test_without_an_established_lead_the_reference_ships():
    r = choose_engine([_c(REF, 100.0, [1.0, 1.0]), _c("onnxruntime:int8", 120.0, [0.9, 1.05])], REF)
    assert r.engine == REF and r.fastest == "onnxruntime:int8" and r.faster_in_every_round is False
    r = choose_engine([_c(REF, 100.0, [1.0, 1.0]), _c("onnxruntime:int8", 90.0, [1.1, 1.2])], REF)
    assert r.engine == REF and r.faster_in_every_round is None  # the reference is the fastest itself


def test_an_engine_that_failed_the_gate_or_was_not_timed_never_ships():
    cands = [_c(REF, 100.0, [1.0]), _c("onnxruntime:int8", 200.0, [0.5], passed=False),
             _c("openvino:int8", None, None)]
    assert choose_engine(cands, REF).engine == REF
    assert choose_engine([_c(REF, 100.0, [1.0], passed=False)], REF) is None


def test_rounds_are_compared_round_by_round():
    assert faster_every_round([1.0, 2.0], [2.0, 3.0]) is True
    assert faster_every_round([1.0, 3.0], [2.0, 3.0]) is False  # a tie is no lead
    assert faster_every_round(None, [1.0]) is None and faster_every_round([1.0], []) is None
    # a row timed in more rounds than the other (it had not settled): the rounds both ran are compared
    assert faster_every_round([1.0], [2.0, 0.5]) is True and faster_every_round([1.0, 2.0, 0.1], [2.0, 3.0]) is True
    assert faster_every_round([1.0, 4.0, 0.1], [2.0, 3.0]) is False


def _v(c: Contender, verdict: str) -> Contender:
    return replace(c, verdict=verdict)


def test_the_target_comes_first_where_some_engines_hold_it():
    """Where the reference does not hold the latency target and another passing engine does, that one ships even
    without an established lead; where every engine (or none) holds it, the speed rule alone decides."""
    ref, int8, ov = _c(REF, 100.0, [1.0, 1.0]), _c("onnxruntime:int8", 110.0, [0.9, 1.05]), \
        _c("openvino:bf16", 105.0, [0.95, 0.97])
    r = choose_engine([_v(ref, "undecided"), _v(int8, "meets"), _v(ov, "misses")], REF)
    assert r.engine == "onnxruntime:int8" and r.holding_target == ["onnxruntime:int8"]
    assert "does not hold the latency target" in r.why
    for verdict in ("meets", "undecided"):  # the same verdict everywhere: the speed rule
        r = choose_engine([_v(ref, verdict), _v(int8, verdict), _v(ov, verdict)], REF)
        assert r.engine == "openvino:bf16" and r.faster_in_every_round is True
    r = choose_engine([_v(ref, "meets"), _v(int8, "meets"), _v(ov, "misses")], REF)
    assert r.engine == REF and r.faster_in_every_round is False  # the only lead is an engine that misses
    failed = _v(_c("openvino:int8", 300.0, [0.3, 0.3], passed=False), "meets")
    assert choose_engine([_v(ref, "misses"), failed], REF).engine == REF  # the gate comes before the target
