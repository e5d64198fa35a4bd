"""Search spaces and the ``Arch`` value (nasdeploy/nas/space.py): the channel and stride plan, the choices per layer,
the text form and its errors, other stride plans."""
import random

import pytest

from nasdeploy import Arch, get_space
from nasdeploy.errors import ArchError
from nasdeploy.nas.space import FAIRNAS, SCARLET, SKIP, Choice


def test_plan_matches_the_fairnas_channel_and_stride_plan():
    layers = FAIRNAS.layers
    assert len(layers) == 19
    assert [l.out_channels for l in layers] == [32] * 2 + [40] * 4 + [80] * 4 + [96] * 4 + [192] * 4 + [320]
    assert [l.stride for l in layers] == [2, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]


def test_choice_counts():
    assert all(len(FAIRNAS.choices_at(i)) == 6 for i in range(19))
    counts = [len(SCARLET.choices_at(i)) for i in range(19)]
    # skip only where stride 1 and width unchanged
    assert counts == [12, 13, 12, 13, 13, 13, 12, 13, 13, 13, 12, 13, 13, 13, 12, 13, 13, 13, 12]


@pytest.mark.parametrize("space", [FAIRNAS, SCARLET])
def test_text_form_round_trips(space):
    rng = random.Random(0)
    for _ in range(200):
        a = space.sample(rng)
        assert Arch.parse(str(a)) == a
        assert space.validate(str(a)) == a


def test_tokens():
    assert Choice.parse("k5e6se") == Choice(5, 6, True)
    assert Choice.parse("skip") == SKIP
    assert Choice(7, 3).token == "k7e3"


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("k7e3-" * 18 + "k9", "layer 18"),
    ("k7e3-" * 18, "19 layers"),
    ("-".join(["k7e3"] * 18 + ["k4e3"]), "layer 18"),
])
def test_malformed_fairnas_strings_name_the_position(text, fragment):
    with pytest.raises(ArchError, match=fragment):
        FAIRNAS.validate(text)


def test_disallowed_choice_names_position_and_allowed_choices():
    tokens = ["k3e3"] * 19
    tokens[0] = "skip"  # layer 0 changes width and stride
    with pytest.raises(ArchError) as e:
        SCARLET.validate("-".join(tokens))
    msg = str(e.value)
    assert "layer 0" in msg and "k3e3" in msg and "k7e6se" in msg
    tokens[0] = "k3e3se"
    with pytest.raises(ArchError, match="layer 0.*fairnas"):
        FAIRNAS.validate("-".join(tokens))


def test_unknown_space():
    with pytest.raises(ArchError, match="unknown search space 'mobilenet'"):
        get_space("mobilenet")


def test_space_sizes_are_the_papers():
    assert get_space("fairnas").size() == 6**19  # FairNAS: 6 choices in each of 19 layers
    # SCARLET: 12 choices where a skip is not allowed (each of the 6 stage-opening layers), 13 elsewhere
    assert get_space("scarlet").size() == 12**6 * 13**13


@pytest.mark.parametrize("name", ["fairnas", "scarlet"])
def test_another_stride_plan_keeps_the_choices_and_moves_the_strides(name):
    from nasdeploy.data import SMALL_INPUT_STRIDES

    sp = get_space(name)
    small = sp.with_strides(SMALL_INPUT_STRIDES)
    assert [small.choices_at(i) for i in range(19)] == [sp.choices_at(i) for i in range(19)]  # skips included
    assert small.allow_skip is sp.allow_skip and small.name == name
    firsts = [l.stride for l in small.layers if l.stride != 1]
    assert firsts == [s for s in SMALL_INPUT_STRIDES if s != 1]  # the plan's strides, not the default ones
    assert [l.stride for l in small.layers] != [l.stride for l in sp.layers]


def test_space_errors_list_the_choices():
    from nasdeploy.errors import ArchError

    with pytest.raises(ArchError, match=r"unknown search space 'mobilenet': choose one of fairnas, scarlet$"):
        get_space("mobilenet")
    with pytest.raises(ArchError, match=r"'skip' is not allowed in the fairnas space; choose one of k3e3, k3e6, "):
        get_space("fairnas").validate("-".join(["skip"] + ["k3e3"] * 18))


def test_architecture_tokens_and_their_errors():
    from nasdeploy.errors import ArchError
    from nasdeploy.nas.space import Arch, Choice, layer_plan

    assert Choice.parse("id") == Choice.parse("identity") == Choice.parse("skip") and Choice.parse("skip").skip
    a = Arch.parse("k3e3-k5e6se")
    assert Arch.parse(["k3e3", "k5e6se"]) == a == Arch.parse("k3e3, k5e6se")  # a list of tokens, other separators
    with pytest.raises(ArchError, match=r"^'k3x3' is not a layer token: use kKeE \(e\.g\. k7e3\), kKeEse"):
        Choice.parse("k3x3")
    with pytest.raises(ArchError, match=r"^empty architecture string: give one token per layer"):
        Arch.parse("  ")
    with pytest.raises(ArchError, match=r"^a stride plan needs 6 entries, got 2$"):
        layer_plan([2, 2])
