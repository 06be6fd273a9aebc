"""The server over a store on s3:// (s3 mode): health and describe show where the store is,
never a credential."""

from __future__ import annotations

from featurelake.s3_server import LocalS3Server

from .conftest import LiveServer


def test_health_and_describe_never_show_a_credential(
    live_server: LiveServer, s3_server: LocalS3Server
) -> None:
    secret = s3_server.secret_key.reveal()
    with live_server.client(live_server.admin) as client:
        health = client.get("/v1/health")
        described = client.get("/v1/features/profile")
        catalog = client.get("/v1/features")
    assert health.status_code == 200, health.text
    store = health.json()["checks"]["store"]
    assert store["path"].startswith("s3://") and store["healthy"]
    assert store["storage"]["endpoint"] == s3_server.endpoint
    assert store["storage"]["credentials"] == "env"
    for response in (health, described, catalog):
        assert response.status_code == 200, response.text
        assert secret not in response.text and s3_server.access_key not in response.text
