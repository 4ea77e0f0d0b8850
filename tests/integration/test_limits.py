"""Rate limits shared by API replicas through Redis (a real ``redis-server``): two apps
on one Redis count one key's requests and one address's failed sign-ins together."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from backends.container import Container, build_container
from backends.sql.app import AppDatabase
from core.protocols import Embedder
from core.settings import ApiSettings, LLMSettings, ModelSettings, QueueSettings, Settings
from serving.api import create_app

pytestmark = [pytest.mark.integration]


@pytest.fixture
def replicas(
    tmp_path: Path, embedder: Embedder, redis_url: str
) -> Iterator[tuple[TestClient, TestClient, str, Container]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        api=ApiSettings(rate_limit_per_minute=4, auth_failures_per_minute=3),
        queue=QueueSettings(url=SecretStr(redis_url), name=f"limits-{tmp_path.name}"),
        # an LLM that is not there: these tests ask for nothing that needs one
        llm=LLMSettings(
            models=[ModelSettings(name="none", base_url="http://127.0.0.1:9/v1")], retries=0
        ),
    )
    db = AppDatabase(settings.database_url)
    key = db.create_key("user", ["staff"])[1]
    db.close()
    container = build_container(settings, embedder=embedder)
    try:
        with (
            TestClient(create_app(settings, container)) as one,
            TestClient(create_app(settings, container)) as two,
        ):
            yield one, two, key, container
    finally:
        container.close()


def test_replicas_share_a_keys_rate_limit_and_an_addresss_failed_sign_ins(
    replicas: tuple[TestClient, TestClient, str, Container],
) -> None:
    one, two, key, _ = replicas
    headers = {"Authorization": f"Bearer {key}"}
    statuses = [
        (one if i % 2 else two).get("/v1/me", headers=headers).status_code for i in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]  # 4 a minute across both replicas
    limited = one.get("/v1/me", headers=headers)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60

    bad = {"Authorization": "Bearer enc_000000000000_notarealkeynotarealkey"}
    failures = [(two if i % 2 else one).get("/v1/me", headers=bad).status_code for i in range(4)]
    assert failures == [401, 401, 401, 429]
    assert "failed sign-ins" in two.get("/v1/me", headers=bad).json()["error"]["message"]
