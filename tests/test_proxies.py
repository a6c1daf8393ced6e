"""Zero-cost proxies (tune_spacenas.proxies), the shipped NAS-Bench-201 scores and the searchers' prior."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tune_spacenas.data import DataSpec
from tune_spacenas.proxies import PROXIES, ProxyScorer, ReLUCodes, _synflow_copy, jacov, synflow
from tune_spacenas.searchers import RegularizedEvolutionSearcher
from tune_spacenas.searchers.prior import select_by_prior
from tune_spacenas.spaces import NASBench201Space


def test_synflow_of_a_linear_chain_is_params_times_the_output():
    """With |w| = 2 and 3 and input 1, R = 6 and every weight's theta * dR/dtheta is R: synflow = 2 * 6."""
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(-2.0)
        net[1].weight.fill_(3.0)
    twin = _synflow_copy(net)
    assert synflow(twin, twin, (1,)) == pytest.approx(12.0)
    assert net[0].weight.item() == -2.0  # the network itself keeps its signs


def test_naswot_kernel_counts_agreeing_units():
    """K_ij = number of ReLUs where images i and j are both active or both inactive (N_A - hamming)."""
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU())
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    codes = ReLUCodes(net)
    with torch.no_grad():
        h = net[1](net[0](x))
        out = net[3](net[2](h))
    codes.remove()
    c = torch.cat([h > 0, out > 0], 1).double()
    expected = (c[:, None, :] == c[None, :, :]).sum(-1).double()
    assert torch.equal(codes.kernel, expected)
    assert codes.score() == pytest.approx(float(torch.linalg.slogdet(expected).logabsdet))


def test_jacov_prefers_uncorrelated_input_gradients():
    rng = torch.Generator().manual_seed(1)
    independent = torch.randn(8, 50, generator=rng, dtype=torch.float64)
    correlated = independent[:1] + 0.05 * independent
    assert jacov(independent) > jacov(correlated)
    assert jacov(torch.zeros(8, 50)) == -math.inf


@pytest.fixture(scope="module")
def scorer():
    space = NASBench201Space(channels=8, cells_per_stage=1, input_size=8)
    return ProxyScorer(space, batch_size=16, data=DataSpec("digits", val_size=300))


def test_scores_are_cached_per_architecture_and_rank_a_deeper_cell_higher(scorer):
    space = scorer.space
    convs = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    pools = space.from_string("|avg_pool_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|avg_pool_3x3~2|")
    first = scorer.scores(space.to_string(convs))
    assert set(first) == set(PROXIES) and all(math.isfinite(v) for v in first.values())
    assert scorer.scores(convs) is first  # computed once
    assert all(first[p] > scorer.scores(pools)[p] for p in ("synflow", "naswot", "grad_norm"))
    dead = scorer.scores((0,) * 6)  # every edge "none": the image never reaches the classifier
    assert dead["jacov"] == -math.inf and dead["synflow"] < first["synflow"]
    assert scorer.prior("naswot")(space.to_string(convs)) == first["naswot"]
    with pytest.raises(ValueError, match="unknown proxies"):
        ProxyScorer(space, proxies=("snip",))


def test_the_shipped_nasbench201_scores_cover_every_cell():
    from tune_spacenas.tables.proxies import PROXY_TABLE, nasbench201_prior

    if not PROXY_TABLE.is_file():
        pytest.skip("proxy table not generated yet")
    space = NASBench201Space()
    synflow_prior = nasbench201_prior("synflow")
    assert len(synflow_prior) == space.size and all(space.contains(a) for a in list(synflow_prior)[:50])
    ensemble = nasbench201_prior(("synflow", "naswot", "jacov"))
    assert 0 < min(ensemble.values()) and max(ensemble.values()) <= 1
    assert PROXY_TABLE.stat().st_size < 1.5 * 2**20
    with pytest.raises(ValueError, match="unknown proxies"):
        nasbench201_prior("params")


def test_select_by_prior_takes_the_best_of_the_space_or_of_a_seeded_pool():
    space = NASBench201Space()
    prior = {space.to_string(a): float(sum(a)) for a in space.enumerate()}
    best = select_by_prior(prior, space, 3, np.random.default_rng(0))
    assert best[0] == (4,) * 6 and all(sum(a) == 23 for a in best[1:])
    assert select_by_prior(prior, space, 2, np.random.default_rng(0), exclude=best[:1]) == best[1:]
    pool = select_by_prior(prior, space, 2, np.random.default_rng(5), pool=30)
    assert pool == select_by_prior(prior, space, 2, np.random.default_rng(5), pool=30)
    assert sum(pool[0]) >= sum(pool[1]) and pool != best[:2]
    with pytest.raises(ValueError, match="pool"):
        select_by_prior(lambda a: 0.0, space, 2, np.random.default_rng(0))


def test_regularized_evolution_starts_from_its_initial_population(nb201):
    warm = [nb201.to_string(a) for a in nb201.sample_many(np.random.default_rng(3), 4, distinct=True)]
    s = RegularizedEvolutionSearcher(space=nb201, metric="accuracy", mode="max", seed=0, initial_population=warm)
    first = []
    for i in range(6):
        config = s.suggest(f"t{i}")
        first.append(config["arch"])
        s.on_trial_complete(f"t{i}", result={"accuracy": float(i)})
    assert first[:4] == warm and len(s.population) == 6
