"""Signed link tokens: round trips, tampering, wrong list/purpose/key, expiry."""

from __future__ import annotations

import re
import time

import pytest

from digest.errors import DigestError, InputError
from digest.settings import Settings
from subscribers.tokens import CONFIRM, UNSUBSCRIBE, BadToken, make_token, verify_token

SECRET = b"k" * 40
LIST = "digest.news.example.com"
URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


@pytest.mark.parametrize("subscriber_id", [0, 1, 127, 128, 99_999, 2**31 - 1, 10**12])
def test_unsubscribe_round_trip_is_short_and_url_safe(subscriber_id: int) -> None:
    token = make_token(SECRET, UNSUBSCRIBE, subscriber_id, LIST)
    assert URL_SAFE.fullmatch(token)
    assert len(token) <= 40
    assert verify_token(SECRET, UNSUBSCRIBE, token, LIST) == subscriber_id


def test_unsubscribe_tokens_do_not_expire() -> None:
    token = make_token(SECRET, UNSUBSCRIBE, 42, LIST)
    assert make_token(SECRET, UNSUBSCRIBE, 42, LIST) == token  # deterministic, no time in it
    assert verify_token(SECRET, UNSUBSCRIBE, token, LIST) == 42


def test_confirm_round_trip_with_settings_secret(settings: Settings) -> None:
    secret = settings.secret()
    token = make_token(secret, CONFIRM, 7, settings.effective_list_id)
    assert len(token) <= 40 and URL_SAFE.fullmatch(token)
    assert verify_token(secret, CONFIRM, token, settings.effective_list_id) == 7


def test_every_single_character_change_is_rejected() -> None:
    token = make_token(SECRET, UNSUBSCRIBE, 123456, LIST)
    for i, char in enumerate(token):
        for replacement in "AQg_-":
            if replacement == char:
                continue
            forged = token[:i] + replacement + token[i + 1 :]
            with pytest.raises(BadToken):
                verify_token(SECRET, UNSUBSCRIBE, forged, LIST)


@pytest.mark.parametrize(
    "garbage", ["", "x", "!!!!", "a" * 22, "a" * 500, "====", "AAAAAAAAAAAAAAAAAAAAAAAA="]
)
def test_garbage_is_rejected(garbage: str) -> None:
    with pytest.raises(BadToken):
        verify_token(SECRET, UNSUBSCRIBE, garbage, LIST)


def test_truncated_or_extended_token_rejected() -> None:
    token = make_token(SECRET, UNSUBSCRIBE, 5, LIST)
    for forged in (token[:-1], token + "A", token + "=="):
        with pytest.raises(BadToken):
            verify_token(SECRET, UNSUBSCRIBE, forged, LIST)


def test_token_for_another_list_purpose_or_key_is_rejected() -> None:
    token = make_token(SECRET, UNSUBSCRIBE, 9, LIST)
    with pytest.raises(BadToken):
        verify_token(SECRET, UNSUBSCRIBE, token, "digest.other.example.com")
    with pytest.raises(BadToken):
        verify_token(SECRET, CONFIRM, token, LIST)
    with pytest.raises(BadToken):
        verify_token(b"z" * 40, UNSUBSCRIBE, token, LIST)
    confirm = make_token(SECRET, CONFIRM, 9, LIST)
    with pytest.raises(BadToken):
        verify_token(SECRET, UNSUBSCRIBE, confirm, LIST)


def test_expired_confirm_token_rejected_fresh_one_accepted() -> None:
    now = int(time.time())
    old = make_token(SECRET, CONFIRM, 3, LIST, issued_at=now - 8 * 24 * 3600)
    with pytest.raises(BadToken, match="invalid or expired link"):
        verify_token(SECRET, CONFIRM, old, LIST)  # default maximum age is 7 days
    assert verify_token(SECRET, CONFIRM, old, LIST, max_age=9 * 24 * 3600) == 3
    recent = make_token(SECRET, CONFIRM, 3, LIST, issued_at=now - 3600)
    assert verify_token(SECRET, CONFIRM, recent, LIST) == 3
    with pytest.raises(BadToken):
        verify_token(SECRET, CONFIRM, recent, LIST, max_age=60)


def test_token_from_the_future_rejected() -> None:
    future = make_token(SECRET, CONFIRM, 3, LIST, issued_at=int(time.time()) + 3600)
    with pytest.raises(BadToken):
        verify_token(SECRET, CONFIRM, future, LIST)


def test_max_age_on_a_token_without_time_is_rejected() -> None:
    token = make_token(SECRET, UNSUBSCRIBE, 3, LIST)
    with pytest.raises(BadToken):
        verify_token(SECRET, UNSUBSCRIBE, token, LIST, max_age=3600)


def test_bad_token_is_a_user_error() -> None:
    err = BadToken()
    assert isinstance(err, InputError) and isinstance(err, DigestError)
    assert str(err) == "invalid or expired link"


def test_make_token_is_fast() -> None:
    start = time.perf_counter()
    for i in range(20_000):
        make_token(SECRET, UNSUBSCRIBE, i, LIST)
    assert time.perf_counter() - start < 2.0  # ~100k/s on a laptop; generous for CI
