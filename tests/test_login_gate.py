import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

# The only pages anyone may see without logging in (/metrics has its own gate: a token,
# or loopback only; tests/test_observability.py).
PUBLIC = {"login", "healthz", "healthz_live", "admin:login", "metrics"}
# Open to the network but not to people: the receiver of Thena's events takes a POST with
# its shared secret, and nothing else (tests/test_thena_events.py).
BY_SECRET = {"thena-webhook"}


def _walk(patterns, prefix="", namespace=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            ns = pattern.namespace or ""
            yield from _walk(
                pattern.url_patterns,
                prefix + str(pattern.pattern),
                f"{namespace}{ns}:" if ns else namespace,
            )
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), f"{namespace}{pattern.name or ''}"


def _concrete(route: str) -> str:
    """Turn a route or regex into a path with plausible values for its parameters."""
    route = re.sub(r"<uuid:\w+>", "00000000-0000-4000-8000-000000000001", route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", "1", route)
    route = re.sub(r"\(\?P<\w+>([^|)]*)[^)]*\)", r"\1", route)  # first alternative
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route)
    route = route.replace("^", "").replace("$", "").replace("\\", "")
    return "/" + route.replace("?", "")


ALL_URLS = sorted(set(_walk(get_resolver().url_patterns)))


def test_the_urlconf_has_the_pages_we_expect():
    names = {name for _, name in ALL_URLS}
    assert {"login", "logout", "healthz", "tickets:list", "home"} <= names


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "name"), ALL_URLS)
def test_every_page_but_login_and_healthz_requires_login(client, route, name):
    path = _concrete(route)
    response = client.get(path)
    if name in PUBLIC:
        assert response.status_code in (200, 503), path
        return
    if name in BY_SECRET:
        assert response.status_code == 405, path
        assert client.post(path).status_code in (401, 404), path
        return
    if response.status_code == 405:  # e.g. logout: POST only; the POST must not be open either
        response = client.post(path)
    assert response.status_code == 302, f"{path} ({name}) answered {response.status_code}"
    assert re.match(r"^/(accounts|admin)/login/", response["Location"]), response["Location"]


def test_static_files_are_public(client, live_server):
    import httpx

    response = httpx.get(f"{live_server.url}/static/css/app.css")
    assert response.status_code == 200
    assert "thena-admin" in response.text
