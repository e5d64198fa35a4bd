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
