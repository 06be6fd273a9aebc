"""The feature catalog in a real browser (Debian's Chromium through Playwright).

Each test saves a screenshot of every page it visits under its own temp folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.spark, pytest.mark.browser]


class Visitor:
    """One browser context (its own cookies): visits pages, keeps URLs, saves screenshots."""

    def __init__(self, browser: Any, url: str, shots: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.url = url
        self.shots = shots
        self.urls: list[str] = []
        self.page.on("request", lambda request: self.urls.append(request.url))

    def goto(self, path: str) -> Any:
        return self.page.goto(self.url + path)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        return path

    def sign_in(self, key: str) -> None:
        self.goto("/ui")
        self.page.fill("input[name=api_key]", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()


@pytest.fixture
def visitor(browser: Any, catalog: Any, tmp_path: Path) -> Iterator[Visitor]:
    visiting = Visitor(browser, catalog.url, tmp_path)
    yield visiting
    visiting.context.close()


def test_sign_in_search_by_tag_group_page_and_lineage(visitor: Visitor, catalog: Any) -> None:
    page = visitor.page
    first = visitor.goto("/ui")
    assert first.status == 401
    assert page.locator("#sign-in").is_visible()
    assert page.locator("#groups").count() == 0  # no data before signing in
    visitor.shot("sign_in")

    visitor.sign_in(catalog.admin)
    assert page.url == f"{catalog.url}/ui"
    names = page.locator("tr.group-row").evaluate_all("rows => rows.map(r => r.dataset.group)")
    assert names == ["payment_totals", "payments", "profile"]
    cookie = next(c for c in visitor.context.cookies() if c["name"] == "featurelake_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] == -1
    assert catalog.admin not in cookie["value"]
    visitor.shot("home")

    page.fill("input[name=q]", "domain=customer")  # a tag
    page.click("form.search button[type=submit]")
    page.wait_for_load_state()
    rows = page.locator("tr.group-row")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.group)") == ["profile"]
    assert "fresh" in rows.first.inner_text()
    visitor.shot("search_by_tag")

    page.click("tr.group-row a")
    page.wait_for_load_state()
    assert page.url.endswith("/ui/groups/profile")
    statistics = page.locator("#statistics table").inner_text()
    for feature in ("age", "segment", "spend"):
        assert feature in statistics
    assert "60" in statistics  # the rows counted
    charts = page.locator("#distributions .distribution svg")
    assert charts.count() == 3 and charts.first.is_visible()
    assert page.locator("#delta-history").inner_text().count("WRITE") >= 1
    assert "featurelake.FeatureStore(" in page.locator("#python-snippet").inner_text()
    assert "silver.customers" in page.locator("#lineage").inner_text()
    visitor.shot("group_profile")

    visitor.goto("/ui/groups/payment_totals")
    page.click("#lineage a.upstream")  # the aggregation's source group
    page.wait_for_load_state()
    assert page.url.endswith("/ui/groups/payments")
    assert page.locator("#group-name").inner_text().startswith("payments")
    visitor.shot("group_payments")

    visitor.goto("/ui/lineage")
    visitor.shot("lineage")
    page.click("#lineage-graph a[data-node='group:payments']")
    page.wait_for_load_state()
    assert page.url.endswith("/ui/groups/payments")

    visitor.goto("/ui/training-sets")
    manifest = page.locator("#ts-churn_v1").inner_text()
    assert "profile.age" in manifest and 'store.rebuild("churn_v1")' in manifest
    assert page.locator("#ts-churn_v1 td").nth(2).inner_text().isdigit()  # pinned Delta version
    visitor.shot("training_sets")
    assert not any(catalog.admin in url for url in visitor.urls)  # the key is never in a URL


HIDDEN = (
    "segment",
    "spend",
    "bronze",
    "payments",
    "payment_totals",
    "merchant",
    "amount",
    "silver.customers",
    "nightly_profile",
    "churn_v1",
)


def test_a_key_limited_to_one_feature_sees_nothing_else(visitor: Visitor, catalog: Any) -> None:
    page = visitor.page
    visitor.sign_in(catalog.age_only)
    pages = {
        "home": "/ui",
        "search_spend": "/ui?q=spend",
        "search_payments": "/ui?q=payments",
        "group_profile": "/ui/groups/profile",
        "group_payments": "/ui/groups/payments",
        "group_payment_totals": "/ui/groups/payment_totals",
        "lineage": "/ui/lineage",
        "training_sets": "/ui/training-sets",
    }
    visitor.goto("/ui/groups/no_such_group")
    unknown = page.content().replace("no_such_group", "GROUP")
    for name, path in pages.items():
        response = visitor.goto(path)
        visitor.shot(name)
        if name.startswith("group_pay"):  # answered exactly like a group that does not exist
            assert response.status == 404
            assert page.content().replace(path.rpartition("/")[2], "GROUP") == unknown
            continue
        query = path.partition("?q=")[2]
        text = page.content().replace(f'value="{query}"', "")  # the search box echoes the query
        shown = [word for word in HIDDEN if word in text]
        assert shown == [], f"{path} shows {shown}"
    visitor.goto("/ui")
    assert page.locator("tr.group-row").evaluate_all("r => r.map(x => x.dataset.group)") == [
        "profile"
    ]
    visitor.goto("/ui/groups/profile")
    assert page.locator("#statistics table tr").count() == 2  # the header and age
    assert page.locator("#distributions .distribution").evaluate_all(
        "d => d.map(x => x.dataset.feature)"
    ) == ["age"]
    assert "profile.age" in page.locator("#python-snippet").inner_text()


def test_a_wrong_key_sees_the_sign_in_page(visitor: Visitor, catalog: Any) -> None:
    page = visitor.page
    visitor.sign_in(catalog.admin[:-4] + "abcd")
    assert page.locator("#sign-in").is_visible()
    assert "not valid" in page.locator("#sign-in .error").inner_text()
    assert page.locator("#groups").count() == 0 and "profile" not in page.content()
    visitor.shot("wrong_key")
    response = visitor.goto("/ui/groups/profile")
    assert response.status == 401 and page.locator("#sign-in").is_visible()
    assert "age" not in page.locator("body").inner_text()
    visitor.shot("group_without_session")
    # A key sent as an API header does not open the pages either: only the sign-in does.
    answer = httpx.get(f"{catalog.url}/ui", headers={"X-API-Key": catalog.admin}, timeout=30)
    assert answer.status_code == 401 and 'tr class="group-row"' not in answer.text


def test_opening_the_catalog_starts_no_spark_session(catalog: Any) -> None:
    with httpx.Client(base_url=catalog.url, timeout=60, follow_redirects=True) as client:
        signed = client.post("/ui/sign-in", data={"api_key": catalog.admin, "next": "/ui"})
        assert signed.status_code == 200 and "payment_totals" in signed.text
        for path in (
            "/ui?q=customer",
            "/ui/groups/profile",
            "/ui/groups/payment_totals",
            "/ui/lineage",
            "/ui/training-sets",
        ):
            assert client.get(path).status_code == 200, path
        health = client.get("/v1/health", headers={"X-API-Key": catalog.admin}).json()
    assert catalog.state.store.spark_session is None
    assert health["checks"]["spark"]["started"] is False
