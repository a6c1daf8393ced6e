import math

import numpy as np
import pytest

from tune_spacenas.spaces import (
    DARTSSpace,
    MobileNetSpace,
    NASBench201Space,
    OFASpace,
    SearchSpace,
    Slot,
    costs,
    space_from_config,
    space_from_spec,
)
from tune_spacenas.spaces.neighbourhood import (
    distance,
    neighbourhood,
    neighbourhood_size,
    paper_subspace_size,
    sample_neighbour,
)

ALL_SPACES = [
    NASBench201Space(),
    MobileNetSpace(),
    OFASpace(),
    DARTSSpace(),
    SearchSpace([Slot("a", ("x", "y")), Slot("b", ("x", "y", "z"))], name="toy"),
]


@pytest.mark.parametrize("space", ALL_SPACES, ids=lambda s: s.name)
def test_string_round_trip_and_spec(space):
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.sample(rng)
        text = space.to_string(arch)
        assert space.from_string(text) == arch
        assert space.validate(list(arch)) == arch
    assert space_from_spec(space.to_spec()) == space


@pytest.mark.parametrize("space", ALL_SPACES, ids=lambda s: s.name)
def test_bad_architectures_name_the_slot(space):
    arch = list(space.sample(np.random.default_rng(1)))
    bad = list(arch)
    bad[0] = len(space.slots[0].ops)
    with pytest.raises(ValueError, match=space.slots[0].name.replace("|", r"\|")):
        space.validate(bad)
    with pytest.raises(ValueError, match="slots"):
        space.validate(arch[:-1])
    with pytest.raises(ValueError):
        space.from_string("not an architecture")
    named = space.op_names(tuple(arch))
    named[-1] = "no_such_op"
    with pytest.raises(ValueError, match="no_such_op"):
        space.validate(named)


def test_nasbench201_string_is_the_benchmarks():
    space = NASBench201Space()
    text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    arch = space.from_string(text)
    assert arch == (3, 3, 3, 1, 2, 3)
    assert space.to_string(arch) == text
    assert space.size == 5**6
    with pytest.raises(ValueError, match="NAS-Bench-201 string"):
        space.from_string(
            "|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
        )


def test_distance_is_eq4():
    assert distance((0, 1, 2, 3), (0, 1, 2, 3)) == 0
    assert distance((0, 1, 2, 3), (1, 1, 0, 3)) == 2
    with pytest.raises(ValueError):
        distance((0, 1), (0, 1, 2))


@pytest.mark.parametrize("m", [0, 1, 2, 3, 6])
def test_neighbourhood_within_m_and_sizes_match_formula(m):
    space = NASBench201Space()
    center = (3, 1, 0, 4, 2, 3)
    ball = list(neighbourhood(space, center, m))
    assert len(ball) == len(set(ball))
    assert all(distance(center, b) <= m for b in ball)
    exact = sum(math.comb(6, d) * 4**d for d in range(m + 1))
    assert len(ball) == exact == neighbourhood_size(space, center, m)
    # ASE-NAS III-C counts C(L, M) C^M (M edits, each possibly a no-op): an upper bound, equal at M = L.
    assert paper_subspace_size(space, m) >= exact
    if m == 6:
        assert paper_subspace_size(space, m) == space.size == exact


def test_sample_neighbour_is_uniform_over_the_ball():
    space = NASBench201Space()
    center = (0, 0, 0, 0, 0, 0)
    rng = np.random.default_rng(0)
    draws = [sample_neighbour(space, center, 1, rng) for _ in range(25_000)]
    assert all(distance(center, b) <= 1 for b in draws)
    counts = np.array(list({b: draws.count(b) for b in set(draws)}.values()))
    assert len(counts) == 25  # the centre and its 24 one-edge neighbours
    assert counts.min() > 0.75 * 1000 and counts.max() < 1.25 * 1000


def test_restrict_makes_a_subspace_and_refuses_empty_slots():
    space = NASBench201Space()
    sub = space.restrict({"1<-0": ["nor_conv_3x3", "skip_connect"], "3<-2": [0]})
    assert sub.size == 2 * 5**4 * 1
    assert sub.contains((3, 0, 0, 0, 0, 0)) and not sub.contains((2, 0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="outside this subspace"):
        sub.validate((2, 0, 0, 0, 0, 0))
    assert all(sub.contains(a) for a in sub.sample_many(np.random.default_rng(0), 50))
    assert space_from_spec(sub.to_spec()) == sub and sub.full_space() == space
    with pytest.raises(ValueError, match="no operation"):
        space.restrict({"2<-1": []})
    with pytest.raises(ValueError, match="unknown slots"):
        space.restrict({"9<-9": [0]})


def test_mobilenet_madds_match_hand_computation():
    space = MobileNetSpace()
    assert len(space.slots) == 21
    first_of_stage = [0, 4, 8, 12, 16, 20]
    assert all("identity" not in space.slots[i].ops for i in first_of_stage)
    assert all("identity" in s.ops for i, s in enumerate(space.slots) if i not in first_of_stage)
    # All layers identity where allowed, k3 e3 elsewhere: compute by hand.
    arch = space.validate(["mb_k3_e3" if i in first_of_stage else "identity" for i in range(21)])

    def conv(cin, cout, k, hw, groups=1):
        return k * k * (cin // groups) * cout * hw * hw

    def mb(cin, cout, k, e, size, stride):
        mid, out = cin * e, size // stride
        return conv(cin, mid, 1, size) + conv(mid, mid, k, out, mid) + conv(mid, cout, 1, out)

    hand = conv(3, 40, 3, 112) + conv(40, 40, 3, 112, 40) + conv(40, 24, 1, 112)  # stem, first MBConv e1
    hand += mb(24, 32, 3, 3, 112, 2) + mb(32, 56, 3, 3, 56, 2) + mb(56, 112, 3, 3, 28, 2)
    hand += mb(112, 128, 3, 3, 14, 1) + mb(128, 256, 3, 3, 14, 2) + mb(256, 432, 3, 3, 7, 1)
    hand += conv(432, 1728, 1, 7) + 1728 * 1000
    assert space.cost(arch).madds == hand
    bigger = list(arch)
    bigger[1] = space.slots[1].index("mb_k7_e6")
    assert space.cost(bigger).madds == hand + mb(32, 32, 7, 6, 56, 1)


def test_ofa_canonical_form_and_madds():
    space = OFASpace()
    rng = np.random.default_rng(0)
    arch = list(space.sample(rng))
    arch[0] = 0  # unit 1 depth 2: its layers 3 and 4 do not exist
    other = list(arch)
    other[3], other[4] = 8, 7
    assert space.validate(arch) == space.validate(other)
    small = space.validate(["d2"] + ["k3_e3"] * 4 + (["d2"] + ["k3_e3"] * 4) * 4)
    large = space.validate(["d4"] + ["k7_e6"] * 4 + (["d4"] + ["k7_e6"] * 4) * 4)
    assert 100e6 < space.cost(small).madds < space.cost(large).madds < 700e6
    assert space.size == (9**2 + 9**3 + 9**4) ** 5


def test_ofa_subspace_keeps_the_full_spaces_encoding_of_missing_layers():
    """A layer beyond its unit's depth is not constrained by a subspace, and every space encodes it alike,
    so an architecture round-trips between a subspace and the full space (SE-NAS maps results back)."""
    full = OFASpace()
    sub = full.restrict({"u1.l4": ["k5_e6", "k7_e6"]})
    shallow = full.from_string(full.to_string(full.validate(["d2"] + ["k3_e3"] * 4 + (["d2"] + ["k3_e3"] * 4) * 4)))
    assert sub.validate(shallow) == shallow  # u1.l4 does not exist at depth 2
    for arch in sub.sample_many(np.random.default_rng(0), 50):
        assert full.from_string(sub.to_string(arch)) == arch == sub.validate(full.to_string(arch))
    with pytest.raises(ValueError, match="u1.l4"):
        sub.validate(["d4"] + ["k3_e3"] * 4 + (["d2"] + ["k3_e3"] * 4) * 4)  # at depth 4 it exists


def test_darts_and_sizes():
    assert DARTSSpace().size == 8**28
    assert len(DARTSSpace().slots) == 28
    assert NASBench201Space().cost((3,) * 6).params > NASBench201Space().cost((1,) * 6).params


def test_param_space_round_trip(nb201):
    from ray.tune.search.sample import Categorical

    config = nb201.param_space()
    assert isinstance(config["ops"]["1<-0"], Categorical)
    assert space_from_config(config) == nb201
    arch = (3, 1, 0, 4, 2, 3)
    chosen = {"ops": dict(zip((s.name for s in nb201.slots), nb201.op_names(arch)))}
    assert nb201.arch_from_config(chosen) == arch
    assert nb201.arch_from_config(nb201.to_config(arch)) == arch
    with pytest.raises(ValueError, match="names no architecture"):
        nb201.arch_from_config({"x": 1})
    with pytest.raises(ValueError, match="malformed space spec"):
        space_from_spec({"nope": 1})
    with pytest.raises(ValueError, match="unknown space kind"):
        space_from_spec({"kind": "nope"})


def test_cost_helpers():
    assert costs.conv(3, 8, 3, 32).madds == 27 * 8 * 32 * 32
    assert costs.conv(8, 8, 3, 32, 2, groups=8).params == 72
    assert (costs.Cost(1, 2) + costs.Cost(3, 4)) == costs.Cost(4, 6)
