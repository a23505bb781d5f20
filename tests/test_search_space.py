from collections import Counter

import numpy as np
import pytest

from kshot_bench.errors import UserError
from kshot_bench.search_space import SPACES
from kshot_bench.search_space import nb201 as s


def test_string_index_round_trip_all_15625(truth_csv):
    strings = truth_csv["arch_str"].tolist()
    assert len(strings) == s.NUM_ARCHS == 15625
    archs = s.all_archs()
    for index, (string, arch) in enumerate(zip(strings, archs)):
        assert s.from_str(string) == arch
        assert s.to_str(arch) == string
        assert s.to_index(arch) == index
        assert s.from_index(index) == arch
    assert len(set(archs)) == 15625


def test_code_round_trip():
    for code in range(s.NUM_ARCHS):
        assert s.to_code(s.from_code(code)) == code


def test_canonical_class_counts():
    assert len({s.canonical(a) for a in s.all_archs()}) == 6466
    assert len({s.canonical(a, "functional") for a in s.all_archs()}) == 4930
    assert len(s.unique_archs()) == 6466
    assert len(s.unique_archs("functional")) == 4930


def test_canonical_examples():
    # dead-end edge into node 1 (node 1 feeds nothing) does not change the function
    a = s.from_str("|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    b = s.from_str("|avg_pool_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    assert s.canonical(a) == s.canonical(b)
    assert s.canonical(a, "functional") == s.canonical(b, "functional")
    # a skip chain 0->1->3 is the identity, like a direct skip 0->3
    c = s.from_str("|skip_connect~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|")
    d = s.from_str("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert s.canonical(c, "functional") == s.canonical(d, "functional") == "x"
    # different ops are different functions
    e = s.from_str("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert s.canonical(e) != s.canonical(d)
    # no path from input to output: the zero function
    dead = s.from_str("|none~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|skip_connect~2|")
    assert s.canonical(dead, "functional") == "0"
    assert s.is_dead(dead)


def test_dead_archs_match_chance_level_rows(truth_csv):
    dead = np.array([s.is_dead(a) for a in s.all_archs()])
    assert dead.sum() == 341
    assert np.allclose(truth_csv["cifar10_test_200ep"].to_numpy()[dead], 10.0)


def test_live_edges_drop_unreachable_work():
    a = s.from_str("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    # node 1 reaches nothing: its conv is dead; node 2 reaches the output through the pool
    assert [e for e, *_ in s.live_edges(a)] == [1, 3, 5]
    b = s.from_str("|none~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    # node 1 is zero: the conv on 1->2 and the conv 2->3 read zeros; dropped only when zero is a fixed point
    assert [e for e, *_ in s.live_edges(b, True)] == [3]
    assert [e for e, *_ in s.live_edges(b, False)] == [2, 3, 5]


def test_sampling_is_seeded_and_uniform():
    a = [s.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(0)
    ops = np.array([s.sample(rng) for _ in range(5000)])
    freq = np.bincount(ops.ravel(), minlength=5) / ops.size
    assert np.all(np.abs(freq - 0.2) < 0.02)
    uniq = {s.canonical(s.sample(rng, unique=True)) for _ in range(300)}
    assert len(uniq) > 250  # 300 draws over 6,466 classes rarely repeat


def test_mutate_and_crossover():
    rng = np.random.default_rng(1)
    parent = s.sample(rng)
    for _ in range(200):
        child = s.mutate(parent, rng)
        assert child != parent and len(child) == 6 and all(0 <= op < 5 for op in child)
    a, b = (0, 0, 0, 0, 0, 0), (4, 4, 4, 4, 4, 4)
    kids = {s.crossover(a, b, rng) for _ in range(200)}
    assert all(set(k) <= {0, 4} for k in kids) and len(kids) > 20
    assert s.mutate(parent, np.random.default_rng(3)) == s.mutate(parent, np.random.default_rng(3))


def test_encode_one_hot():
    enc = s.encode((0, 1, 2, 3, 4, 0))
    assert len(enc) == 30 and sum(enc) == 6
    assert enc[0] == enc[6] == enc[12] == enc[18] == enc[24] == enc[25] == 1


@pytest.mark.parametrize("bad, words", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "3 nodes"),
    ("|conv_5x5~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "unknown op"),
    ("|nor_conv_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "input"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "inputs"),
    ("nor_conv_3x3~0+x+y", "malformed"),
])
def test_bad_arch_strings_name_the_problem(bad, words):
    with pytest.raises(UserError, match=words) as err:
        s.from_str(bad)
    assert err.value.fix


@pytest.mark.parametrize("bad", [-1, 15625, 10**6, 2.5, True])
def test_bad_index(bad):
    with pytest.raises(UserError, match="out of range"):
        s.from_index(bad)


def test_bad_arch_tuple():
    with pytest.raises(UserError, match="6 edges"):
        s.validate((0, 1))
    with pytest.raises(UserError, match="not an NB201 op id"):
        s.validate((0, 1, 2, 3, 4, 5))
    arch_str = s.to_str((0, 1, 2, 3, 4, 0))
    with pytest.raises(UserError, match="an arch string where op ids") as err:  # not "6 edges, got 87"
        s.enn(arch_str)
    assert "from_str" in err.value.fix and s.validate(s.from_str(arch_str)) == (0, 1, 2, 3, 4, 0)
    with pytest.raises(UserError, match="an integer where op ids") as err:
        s.enn(4087)
    assert "from_index" in err.value.fix


def test_space_registry():
    assert SPACES.names() == ["nb201", "mbv2", "macro"]
    with pytest.raises(UserError, match="choose one of: nb201, mbv2, macro"):
        SPACES.get("darts")


@pytest.mark.parametrize("name", SPACES.names())
def test_every_space_implements_the_interface(name):
    """Driven by the registry: every space has the whole interface, and its pieces fit together."""
    from kshot_bench.search_space import INTERFACE

    space = SPACES.get(name)
    missing = [f for f in INTERFACE if not hasattr(space, f)]
    assert not missing, missing
    assert space.NAME == name
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = space.sample(rng)
        assert hash(a) is not None and space.validate(a) == a
        assert space.from_str(space.to_str(a)) == a
        assert space.validate(space.mutate(a, rng)) != a
        assert space.validate(space.crossover(a, space.sample(rng), rng))
        assert all(v in (0.0, 1.0) for v in space.encode(a))
        params, flops = space.cost(a)
        assert params > 0 and flops > 0
        assert (space.encode_width(a) is not None) == space.HAS_WIDTHS
        assert isinstance(space.canonical(a), str)
        key = space.key_of(a)  # a key names a distinct network: its arch is the canonical representative
        assert space.key_of(space.from_key(key)) == key and isinstance(key, space.KEY_TYPE)
        assert isinstance(space.outputs_constant(a), bool)
    keys, archs, desc = space.arch_set("5", 3)
    assert len(keys) == len(archs) <= 5 and [space.key_of(a) for a in archs] == keys and desc
    assert keys == space.arch_set("5", 3)[0]  # seeded
    assert set(space.TRUTH) <= set(space.DATASETS) and space.SAMPLINGS[0] == "uniform"
    assert not space.TRUTH or space.NUM_ARCHS is not None  # a ground truth needs every arch listed
    if space.EMBEDDED_PRESET is not None:
        assert space.EMBEDDED_PRESET in space.PRESETS
    from kshot_bench.config import from_preset

    for preset in space.PRESETS:  # every preset is a valid config of this space
        assert from_preset(preset, space=name).space == name


def test_cost_params_equal_nb201_for_every_arch_and_dataset(truth_csv):
    archs = s.all_archs()
    for column, classes, size in (("params_M_cifar10", 10, 32), ("params_M_cifar100", 100, 32),
                                  ("params_M_imagenet16", 120, 16)):
        ours = np.array([s.cost(a, classes, size)[0] for a in archs])
        np.testing.assert_array_equal(np.round(truth_csv[column].to_numpy() * 1e6).astype(np.int64), ours)


def test_enn_counts_equal_spec_5a():
    """SPEC 5a, counted over all 15,625 archs: no path 341, ENN 0..3: 1,642 / 7,122 / 5,520 / 1,000."""
    counts = Counter(s.enn(a) for a in s.all_archs())
    assert counts == {None: 341, 0: 1642, 1: 7122, 2: 5520, 3: 1000}
    assert all((s.enn(a) is None) == s.is_dead(a) for a in s.all_archs())
    assert [len(g) for g in s.balanced_groups()] == [8764, 5520, 1000]


def test_enn_examples():
    # input -> conv3 -> conv1 -> conv3 -> output: three nonlinearities on the one path
    deep = s.from_str("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|nor_conv_3x3~2|")
    assert s.enn(deep) == 3
    # the longest conv path counts, not the sum over paths: a skip beside a conv is still ENN 1
    wide = s.from_str("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|skip_connect~1|avg_pool_3x3~2|")
    assert s.enn(wide) == 1
    assert s.enn(s.from_str("|none~0|+|none~0|none~1|+|avg_pool_3x3~0|none~1|none~2|")) == 0
    assert s.enn(s.from_str("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")) is None


def test_balanced_sampling_gives_each_enn_group_a_third_and_never_a_dead_arch():
    rng = np.random.default_rng(0)
    n = 30_000
    groups = Counter()
    for _ in range(n):
        e = s.enn(s.sample(rng, sampling="balanced"))
        assert e is not None
        groups[0 if e <= 1 else e - 1] += 1
    sd = (n * (1 / 3) * (2 / 3)) ** 0.5  # binomial standard deviation of one group's count
    for g in range(3):
        assert abs(groups[g] - n / 3) < 4 * sd, groups
    # inside a group the draw is uniform: ENN 0 vs ENN 1 in proportion to their counts (1,642 : 7,122)
    rng = np.random.default_rng(1)
    low = [s.enn(s.sample(rng, sampling="balanced")) for _ in range(9000)]
    low = [e for e in low if e <= 1]
    p0, m = 1642 / 8764, len(low)
    assert abs(low.count(0) - m * p0) < 4 * (m * p0 * (1 - p0)) ** 0.5
    # the unique classes' groups: still no dead arch, every draw a class representative
    reps = set(s.unique_archs())
    for _ in range(500):
        a = s.sample(rng, unique=True, sampling="balanced")
        assert a in reps and s.enn(a) is not None


def test_a_space_without_balanced_groups_refuses_balanced_sampling():
    from kshot_bench.config import from_preset
    from kshot_bench.search_space import mbv2

    with pytest.raises(UserError, match="not defined for the mbv2 space") as err:
        from_preset("smoke", space="mbv2", sampling="balanced")
    assert "sampling=uniform" in err.value.fix
    with pytest.raises(UserError, match="not defined for the nb201 space") as err:  # a misspelt value
        from_preset("smoke", sampling="balance")
    assert err.value.fix == "use --set sampling=uniform or --set sampling=balanced"
    with pytest.raises(UserError):
        mbv2.sample(np.random.default_rng(0), sampling="balanced")
    with pytest.raises(UserError, match="unknown sampling"):
        s.sample(np.random.default_rng(0), sampling="skewed")
