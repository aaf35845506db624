"""Rate limits count the right client: a real key, the address behind a trusted proxy,
and every process at once when Redis is configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from flask import Flask

from announcements import apikeys
from announcements.models import utcnow
from app.mail.jobs import JOBS_KEY
from tests.conftest import csrf_token
from tests.factories import make_member, make_product

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="Redis is not configured: run the suite with `make test`"
)


def _limited(app_factory, **overrides: object) -> Flask:
    """An app with rate limits on; each app counts in a fresh in-memory store."""
    return app_factory(RATELIMIT_ENABLED=True, **overrides)


def _login(client, email: str, **headers: str) -> int:
    form = {"email": email, "password": "wrong password", "csrf_token": csrf_token(client)}
    return client.post("/console/login", data=form, headers=headers).status_code


def test_a_made_up_key_with_a_real_prefix_does_not_spend_the_real_keys_allowance(
    app_factory, session
) -> None:
    app = _limited(app_factory, RATELIMIT_API="5 per minute")
    owner = make_member(session)
    product = make_product(session, owner=owner)
    key, secret = apikeys.create(session, product, "ci", ["notes:read"], by=owner, now=utcnow())
    path = f"/api/v1/products/{product.slug}/notes"
    client = app.test_client()
    forged = {"Authorization": f"Bearer {key.prefix}_junk"}
    answers = [client.get(path, headers=forged).status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]
    real = client.get(path, headers={"Authorization": f"Bearer {secret}"})
    assert real.status_code == 200


def test_behind_a_trusted_proxy_each_client_has_its_own_login_allowance(
    app_factory, session
) -> None:
    app = _limited(app_factory, RATELIMIT_LOGIN="2 per minute", TRUSTED_PROXIES=1)
    client = app.test_client()
    first = {"X-Forwarded-For": "203.0.113.1"}
    assert [_login(client, f"a{n}@example.com", **first) for n in range(3)] == [422, 422, 429]
    assert _login(client, "b@example.com", **{"X-Forwarded-For": "203.0.113.2"}) == 422


def test_without_a_trusted_proxy_a_forwarded_header_changes_nothing(app_factory, session) -> None:
    app = _limited(app_factory, RATELIMIT_LOGIN="2 per minute")
    client = app.test_client()
    spoofed = [
        _login(client, f"a{n}@example.com", **{"X-Forwarded-For": f"198.51.100.{n}"})
        for n in range(3)
    ]
    assert spoofed == [422, 422, 429]


# Another process logs in three times with the settings given on its command line.
OTHER_PROCESS = """
import sys
from pathlib import Path
from tests.conftest import make_app, csrf_token
url, instance, redis_url = sys.argv[1:]
app = make_app(url, Path(instance), RATELIMIT_ENABLED=True, RATELIMIT_LOGIN="3 per minute",
               REDIS_URL=redis_url, RATELIMIT_STORAGE_URI=redis_url)
with app.app_context():
    client = app.test_client()
    for n in range(3):
        form = {"email": f"x{n}@example.com", "password": "wrong", "csrf_token": csrf_token(client)}
        print(client.post("/console/login", data=form).status_code)
"""


@needs_redis
def test_with_redis_every_process_counts_against_one_limit(
    app_factory, database_url, tmp_path
) -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            OTHER_PROCESS,
            database_url,
            str(tmp_path / "other"),
            REDIS_URL,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert other.stdout.split() == ["422", "422", "422"]
    app = app_factory(
        RATELIMIT_ENABLED=True,
        RATELIMIT_LOGIN="3 per minute",
        REDIS_URL=REDIS_URL,
        RATELIMIT_STORAGE_URI=REDIS_URL,
    )
    assert _login(app.test_client(), "x4@example.com") == 429


@needs_redis
def test_with_redis_the_job_queue_lives_in_redis(app_factory, session) -> None:
    app = app_factory(REDIS_URL=REDIS_URL)
    jobs = app.extensions[JOBS_KEY]
    jobs.huey.flush()
    with app.app_context():
        jobs.wake()
    assert jobs.huey.pending_count() == 1
    task = jobs.huey.dequeue()
    with app.app_context():
        jobs.huey.execute(task)
    assert jobs.huey.pending_count() == 0
