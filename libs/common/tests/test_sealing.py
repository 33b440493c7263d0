"""Each region's builder has a key of its own, derived from the control panel's master."""
import pytest
from cryptography.fernet import InvalidToken

from regio_common.sealing import build_key, decrypt_value, encrypt_value, new_key, region_key

MASTER = new_key()


def test_a_regions_build_key_opens_what_was_sealed_for_it_and_no_other_regions():
    sealed = encrypt_value(build_key(MASTER, "local-2"), "repository token")

    assert decrypt_value(build_key(MASTER, "local-2"), sealed) == "repository token"
    for other in (build_key(MASTER, "local"), build_key(MASTER, "local-3"), region_key(MASTER, "local-2"), MASTER):
        with pytest.raises(InvalidToken):
            decrypt_value(other, sealed)


def test_build_keys_are_hkdf_of_the_master_with_their_own_info():
    from base64 import urlsafe_b64encode

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    expected = urlsafe_b64encode(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                      info=b"regio region build key\0local").derive(MASTER.encode())).decode()
    assert build_key(MASTER, "local") == expected
    assert build_key(new_key(), "local") != expected
