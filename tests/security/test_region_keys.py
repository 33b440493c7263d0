"""A release's environment is sealed for its region: only that region's runner agents, which
hold its key and no other, can open it. A runner of another region, a dedicated one
included, holds a key that opens nothing of this one's."""
import pytest
from cryptography.fernet import InvalidToken

from regio_common.sealing import new_key, open_sealed, region_key, seal
from regio_controlpanel.services.crypto import Vault

MASTER = new_key()
ENV = {"DATABASE_URL": "postgres://shop:secret@db/shop", "API_TOKEN": "tok-123"}


def sealed_by_the_control_panel(region: str) -> str:
    return Vault(new_key(), MASTER, per_region_sealing=True).seal_for_runners(ENV, region)


def test_a_regions_runners_open_what_was_sealed_for_their_region():
    assert open_sealed(region_key(MASTER, "eu-public"), sealed_by_the_control_panel("eu-public")) == ENV


@pytest.mark.parametrize("other", ["acme-dedicated", "us-public", "eu-public-2"])
def test_a_runner_of_another_region_cannot_open_it(other):
    with pytest.raises(InvalidToken):
        open_sealed(region_key(MASTER, other), sealed_by_the_control_panel("eu-public"))


def test_the_runners_never_need_the_master_and_the_master_does_not_open_it_directly():
    """What runners are given is derived one way: holding one region's key says nothing of
    the master, nor of the other regions' keys."""
    sealed = sealed_by_the_control_panel("eu-public")
    with pytest.raises(InvalidToken):
        open_sealed(MASTER, sealed)
    assert len({region_key(MASTER, r) for r in ("a", "b", "c")}) == 3
    assert region_key(MASTER, "a") == region_key(MASTER, "a")  # the same for every runner of a region


def test_a_region_made_before_keeps_its_shared_key_and_may_hold_both_while_it_switches():
    legacy = Vault(new_key(), MASTER).seal_for_runners(ENV, "local")
    assert open_sealed(MASTER, legacy) == ENV
    both = f"{region_key(MASTER, 'local')},{MASTER}"
    assert open_sealed(both, legacy) == ENV
    assert open_sealed(both, seal(region_key(MASTER, "local"), ENV)) == ENV
