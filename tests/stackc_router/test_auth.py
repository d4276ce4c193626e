"""API keys as RFC 9110 11.4 and RFC 6750 2.1 write them: ``Bearer`` in any case, spaces, a token68."""

from __future__ import annotations

import hmac
import json
import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stackc_router.config import parse
from stackc_router.server import TOKEN68, presented_key
from stackc_router.testing import connect, exchange, running_router

KEYS = ("sk-right.key_1~+/==", "other")


def request(authorization: bytes) -> bytes:
    return (b"GET /v1/models HTTP/1.1\r\nHost: r\r\nConnection: close\r\n%s\r\n"
            % (b"Authorization: %s\r\n" % authorization if authorization else b""))


@pytest.fixture(scope="module")
def router():
    config = parse({"models": {"tiny": {"backends": ["http://127.0.0.1:9"], "health": {"interval_s": 60}}}})
    with running_router(config, api_keys=KEYS) as running:
        yield running


@pytest.mark.parametrize("authorization", [
    b"Bearer sk-right.key_1~+/==", b"bearer sk-right.key_1~+/==", b"BEARER other", b"bEaReR other",
    b"Bearer   other",  # 1*SP
    b"   Bearer other",  # leading whitespace is not part of the field value
    b"Bearer other  \t ",  # nor is trailing whitespace (RFC 9110 5.5): it was never part of the key
])
def test_a_key_is_accepted_as_rfc_9110_writes_it(router, authorization) -> None:
    _, base = router
    assert [status for status, _ in exchange(base, request(authorization))] == [200]


@pytest.mark.parametrize("authorization", [
    b"", b"other",  # no scheme: a bare key is not credentials
    b"Bearer", b"Bearer ", b"Bearerother", b"Bearer\tother",  # the scheme, then one or more spaces (no tab)
    b"Basic other", b"Token other",
    b"Bearer other other", b"Bearer other,", b"Bearer ot her", b"Bearer other=x", b"Bearer =other",  # not a token68
    b"Bearer sk-right.key_1~+/=", b"Bearer Other", b"Bearer othe",  # not the key (keys are case-sensitive)
])
def test_anything_else_is_401_with_a_challenge(router, authorization) -> None:
    _, base = router
    with_head = exchange(base, request(authorization))
    assert [status for status, _ in with_head] == [401]
    assert json.loads(with_head[0][1])["error"]["code"] == "invalid_api_key"


def test_two_authorization_fields_are_refused_even_when_one_is_right(router) -> None:
    _, base = router
    data = request(b"Bearer other").replace(b"\r\n\r\n", b"\r\nAuthorization: Bearer other\r\n\r\n")
    assert [status for status, _ in exchange(base, data)] == [401]


def test_the_401_says_which_scheme_the_router_expects(router) -> None:
    _, base = router
    with connect(base) as connection:
        connection.sendall(request(b"Basic x"))
        head = connection.recv(65536).split(b"\r\n\r\n")[0].lower()
    assert b"\r\nwww-authenticate: bearer\r\n" in head + b"\r\n"


def test_every_key_is_compared_whichever_matches(router, monkeypatch) -> None:
    """The comparison takes as long for the first key as for the last, or for none."""
    _, base = router
    calls = []
    compare = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(len(a)) or compare(a, b))
    for key in (*KEYS, "wrong"):
        calls.clear()
        exchange(base, request(b"Bearer " + key.encode()))
        assert calls == [32] * len(KEYS)  # SHA-256 digests: equal lengths whatever was sent


bearer = st.tuples(*(st.sampled_from((c, c.upper())) for c in "bearer")).map("".join)


@given(scheme=bearer, spaces=st.integers(1, 4), key=st.from_regex(TOKEN68, fullmatch=True))
def test_any_case_of_the_scheme_and_any_spaces_give_the_key(scheme, spaces, key) -> None:
    assert presented_key(f"{scheme}{' ' * spaces}{key}") == key


@given(st.text())
def test_whatever_is_presented_a_key_found_is_a_token68_after_bearer(value) -> None:
    key = presented_key(value)
    assert key is None or (re.fullmatch(TOKEN68, key, re.ASCII) and value.lower().startswith("bearer ")
                           and value.endswith(key))


def test_a_key_no_client_could_send_is_a_config_error(tmp_path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("good-key\nmy secret key\n")
    config = tmp_path / "router.yaml"
    config.write_text(f"auth: {{api_keys_file: {keys}}}\nmodels:\n  a:\n    backends: [http://127.0.0.1:1]\n")
    result = subprocess.run([sys.executable, "-m", "stackc_router", "--config", str(config)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{keys}: key 2 of 2 is not a token68" in result.stderr and "secret" not in result.stderr
