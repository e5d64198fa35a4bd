"""The zoo reproduces the official definitions exactly (float64 goldens of the official code)."""
import json

import numpy as np
import pytest
import torch

import nasdeploy
from nasdeploy.errors import ModelNotFoundError

from .conftest import REFWEIGHTS, SHARED_REF, needs_shared

MODELS = nasdeploy.list_models()


def _golden_keys():
    if REFWEIGHTS is None:
        return []
    with np.load(REFWEIGHTS.EXPECTED) as z:
        return sorted(z.keys())


def test_zoo_has_the_18_official_models():
    assert len(MODELS) == 18
    for fam in ("fairnas_{}", "scarlet_{}", "fairnas_{}_se", "fairnas_{}_se_0.5", "fairnas_{}_se_transfer",
                "fairnas_{}_se_0.5_transfer"):
        for v in "abc":
            assert fam.format(v) in MODELS


@needs_shared
@pytest.mark.parametrize("key", _golden_keys())
def test_float64_outputs_match_the_official_definition(key, official_ckpt, refweights):
    """Every MODEL/seedN in expected_outputs.npz: seed 0 here, any seed the generator was run with."""
    model, seed = key.split("/")
    seed = int(seed.removeprefix("seed"))
    m = nasdeploy.create_model(model, weights=official_ckpt(model, seed)).double()
    with torch.no_grad():
        y = m(refweights.make_input(model, seed).double()).numpy()
    ref = refweights.expected_logits(model, seed)
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() / np.abs(ref).max() <= 1e-9


@needs_shared
@pytest.mark.parametrize("model", ["fairnas_a", "scarlet_c", "fairnas_b_se_0.5_transfer"])
def test_other_seeds_load_and_differ(model, official_ckpt, refweights):
    """The check does not depend on the weight values: another seed loads and changes the logits."""
    x = refweights.make_input(model, 0).double()
    with torch.no_grad():
        y0 = nasdeploy.create_model(model, weights=official_ckpt(model, 0)).double()(x)
        y7 = nasdeploy.create_model(model, weights=official_ckpt(model, 7)).double()(x)
    assert not torch.allclose(y0, y7)


@needs_shared
@pytest.mark.parametrize("model", MODELS)
def test_params_and_macs_equal_the_official_counts(model):
    official = json.loads((SHARED_REF / "official_models.json").read_text())["models"][model]
    info = nasdeploy.model_info(model)
    assert info["params"] == official["params"]
    assert info["macs"] == official["macs_conv_linear"]


def test_published_counts_quoted():
    assert nasdeploy.model_info("fairnas_a")["params"] == 4_651_352
    assert nasdeploy.model_info("fairnas_a")["macs"] == 388_122_848
    assert nasdeploy.model_info("scarlet_b")["macs"] == 326_853_440


def test_checkpoint_without_num_batches_tracked_loads(tmp_path, refweights):
    sd = refweights.make_checkpoint("scarlet_a", 0)["model_state"]
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    p = tmp_path / "raw.pth"
    torch.save(sd, p)  # raw state dict, no wrapper
    nasdeploy.create_model("scarlet_a", weights=p)


def test_nasdeploy_checkpoint_round_trip(tmp_path):
    from nasdeploy.zoo import load_network, save_checkpoint

    m = nasdeploy.create_model("scarlet_b")
    save_checkpoint(m, tmp_path / "m.pt")
    m2 = load_network(tmp_path / "m.pt")
    m3 = nasdeploy.create_model("scarlet_b", weights=tmp_path / "m.pt")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x)) and torch.equal(m(x), m3(x))


def test_unknown_model():
    with pytest.raises(ModelNotFoundError, match="did you mean fairnas_a"):
        nasdeploy.create_model("fairnas_aa")
