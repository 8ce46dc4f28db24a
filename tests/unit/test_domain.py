"""The platform's rules, without Docker: names, scale grammar, plans, placement, crash policy."""

import random

import pytest

from labctl.domain import clock
from labctl.domain.actions import Placement, plan_restart, plan_stop
from labctl.domain.formation import (
    Process,
    apply_updates,
    describe,
    desired_dyno_names,
    initial_formation,
    parse_scale_args,
)
from labctl.domain.names import is_dyno_name, one_off_name, split_dyno_name, validate_app_name
from labctl.domain.placement import PACKED, PACKED_SLOTS, InstanceLoad, choose_pool_instance, new_instance_id
from labctl.domain.sizes import get_size
from labctl.errors import InvalidInput


@pytest.mark.parametrize("name", ["demo", "shop-1", "a" * 30, "abc"])
def test_valid_app_names(name):
    assert validate_app_name(name) == name


@pytest.mark.parametrize("name", ["Demo", "1demo", "ab", "a" * 31, "de_mo", "demo!", "", "-demo"])
def test_invalid_app_names(name):
    with pytest.raises(InvalidInput):
        validate_app_name(name)


def test_dyno_names():
    assert is_dyno_name("web.1") and not is_dyno_name("web")
    assert split_dyno_name("worker.12") == ("worker", 12)
    with pytest.raises(InvalidInput):
        split_dyno_name("web")
    name = one_off_name("run", {"run.1000"}, random.Random(1))
    assert name.startswith("run.") and 1000 <= int(name[4:]) <= 9999


def test_scale_grammar():
    ups = parse_scale_args(["web=2", "worker+1", "web-1", "web=3:standard-2x"])
    assert [(u.type, u.op, u.amount, u.size) for u in ups] == [
        ("web", "=", 2, None),
        ("worker", "+", 1, None),
        ("web", "-", 1, None),
        ("web", "=", 3, "standard-2x"),
    ]
    for bad in ["web", "web=", "web=x", "=2", "web==2", "web=2:"]:
        with pytest.raises(InvalidInput):
            parse_scale_args([bad])


def _formation():
    return {
        "web": Process("web", 1, "Standard-1X", "python3 app.py"),
        "worker": Process("worker", 0, "Standard-1X", "python3 app.py --worker"),
    }


def test_apply_updates_and_describe():
    new = apply_updates(_formation(), parse_scale_args(["web=3:standard-2x", "worker+2"]), None)
    assert new["web"].quantity == 3 and new["web"].size == "Standard-2X" and new["worker"].quantity == 2
    assert describe(new) == "web at 3:Standard-2X, worker at 2:Standard-1X"
    assert _formation()["web"].quantity == 1  # input untouched


@pytest.mark.parametrize(
    "args,space",
    [
        (["mailer=1"], None),
        (["web-2"], None),
        (["web=2:private-s"], None),
        (["web=1:standard-1x"], "tokyo"),
        (["web=2:eco"], None),
        (["web=1:huge"], None),
    ],
)
def test_apply_updates_rejects(args, space):
    with pytest.raises(InvalidInput):
        apply_updates(_formation(), parse_scale_args(args), space)


def test_desired_names_drop_highest_numbers():
    f = {"web": Process("web", 2, "Standard-1X", "x")}
    assert sorted(desired_dyno_names(f)) == ["web.1", "web.2"]


def test_initial_formation_keeps_scale_and_skips_release():
    first = initial_formation({"web": "a", "worker": "b", "release": "m"}, None, {})
    assert first["web"].quantity == 1 and first["worker"].quantity == 0 and "release" not in first
    again = initial_formation({"web": "a2"}, "tokyo", {"web": Process("web", 3, "Private-S", "a")})
    assert again["web"] == Process("web", 3, "Private-S", "a2")


def test_restart_and_stop_plans_follow_the_seed():
    # Private Space: restart keeps the instance; stop replaces it (seed 000).
    assert plan_restart("web.1", in_space=True, one_off=False).placement is Placement.SAME
    stop = plan_stop("web.1", in_space=True, one_off=False)
    assert stop.placement is Placement.NEW and stop.retire_instance and stop.start_again
    # Common Runtime: restart lands on another host; stop brings the dyno back.
    assert plan_restart("web.1", in_space=False, one_off=False).placement is Placement.OTHER
    cr_stop = plan_stop("web.1", in_space=False, one_off=False)
    assert cr_stop.start_again and not cr_stop.retire_instance
    # One-offs stop for good.
    assert not plan_stop("run.1234", in_space=False, one_off=True).start_again


def test_pool_placement():
    pool = [InstanceLoad("i-a", 2), InstanceLoad("i-b", 0), InstanceLoad("i-c", 0)]
    assert choose_pool_instance(pool, Placement.ANY, None, random.Random(0)) in ("i-b", "i-c")
    for seed in range(20):
        assert choose_pool_instance(pool, Placement.OTHER, "i-b", random.Random(seed)) != "i-b"
    assert choose_pool_instance(pool, Placement.SAME, "i-a") == "i-a"
    assert choose_pool_instance([InstanceLoad("i-a", 0)], Placement.OTHER, "i-a") == "i-a"
    assert choose_pool_instance([], Placement.ANY, None) is None
    iid = new_instance_id(random.Random(2))
    assert iid.startswith("i-") and len(iid) == 19


def test_packed_pool_placement_fills_the_oldest_instance_first():
    """The noisy-neighbour lesson relies on it: a second app's dyno lands beside the first, and its Common Runtime
    restart (OTHER) moves it to the next instance, every time (no random ties)."""
    empty = [InstanceLoad("i-c", 0), InstanceLoad("i-a", 0), InstanceLoad("i-b", 0)]  # in the order made
    for seed in range(20):
        assert choose_pool_instance(empty, Placement.ANY, None, random.Random(seed), PACKED) == "i-c"
    one = [InstanceLoad("i-c", 1), InstanceLoad("i-a", 0), InstanceLoad("i-b", 0)]
    assert choose_pool_instance(one, Placement.ANY, None, policy=PACKED) == "i-c"  # beside the first dyno
    two = [InstanceLoad("i-c", 2), InstanceLoad("i-a", 0), InstanceLoad("i-b", 0)]
    assert choose_pool_instance(two, Placement.OTHER, "i-c", policy=PACKED) == "i-a"  # a restart moves it on
    full = [InstanceLoad("i-c", PACKED_SLOTS), InstanceLoad("i-a", 1), InstanceLoad("i-b", 0)]
    assert choose_pool_instance(full, Placement.ANY, None, policy=PACKED) == "i-a"  # a full one takes no more
    all_full = [InstanceLoad("i-c", PACKED_SLOTS + 1), InstanceLoad("i-a", PACKED_SLOTS)]
    assert choose_pool_instance(all_full, Placement.ANY, None, policy=PACKED) == "i-a"  # then the least loaded
    assert choose_pool_instance(two, Placement.SAME, "i-c", policy=PACKED) == "i-c"


def test_crash_policy():
    assert clock.crash_delay(1, in_space=False) == 0
    assert [clock.crash_delay(n, False) / 60 for n in range(2, 8)] == [20, 40, 60, 180, 320, 320]
    assert all(clock.crash_delay(n, True) == 0 for n in range(1, 10))
    assert clock.TimeScale(0.02)(clock.BOOT_TIMEOUT) == pytest.approx(1.2)


def test_sizes():
    s = get_size("standard-2x")
    assert (s.name, s.memory_mb, s.r15_mb) == ("Standard-2X", 1024, 2048)
    assert get_size("Private-S").r15_mb == 1024
    with pytest.raises(InvalidInput):
        get_size("mega")


def test_a_placement_the_lab_does_not_know_is_refused():
    from labctl.errors import LabError
    from labctl.settings import Settings, check_settings

    check_settings(Settings(lab="x", placement="packed"))
    with pytest.raises(LabError, match=r"^Invalid placement 'tight': it must be one of spread, packed$"):
        check_settings(Settings(lab="x", placement="tight"))
