"""The only door to the identity provider: discovery, signing keys, the token exchange and
userinfo, over one httpx client with fixed timeouts. Every failure is a ProviderError.

Discovery (`<issuer>/.well-known/openid-configuration`) is fetched once per process and
kept: a provider's endpoints do not move under a running deployment (restart after
changing providers). A failed fetch is not kept, so the next sign-in tries again. The
signing keys (JWKS) are kept too, and fetched again once when a token names a key they do
not hold: that is how a provider's key rotation arrives.
"""

import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import jwt
from django.conf import settings

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
SIGNING_ALGORITHM = "RS256"


class ProviderError(Exception):
    """The provider could not be asked, or answered something unusable."""

    reason = "provider_unavailable"
    user_message = "The sign-in service cannot be reached right now. Try again in a minute."


class ProviderRefused(ProviderError):
    """The provider answered a request with an error (e.g. the token exchange: a code
    that was used already, or a PKCE verifier that does not match)."""

    reason = "provider_refused"
    user_message = "The sign-in service refused the sign-in. Try again."


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""
    # client_secret_basic, the spec's default, unless the provider offers only _post.
    token_auth_basic: bool = True


_lock = threading.Lock()
_discovery_lock = threading.Lock()  # one discovery at a time: the others wait for it
_provider: Provider | None = None
_keys: dict[str, jwt.PyJWK] | None = None
_client: httpx.Client | None = None
_transport: httpx.BaseTransport | None = None


def provider_reset(*, transport: httpx.BaseTransport | None = None) -> None:
    """Forget the discovery document, the keys and the client (tests; a new provider).
    `transport` is the test seam for the next client."""
    global _provider, _keys, _client, _transport
    with _lock:
        if _client is not None:
            _client.close()
        _provider, _keys, _client, _transport = None, None, None, transport


def _http() -> httpx.Client:
    global _client
    with _lock:
        if _client is None:
            _client = httpx.Client(timeout=TIMEOUT, transport=_transport)
        return _client


def _json(response: httpx.Response, what: str) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise ProviderError(f"{what} is not JSON") from None
    if not isinstance(body, dict):
        raise ProviderError(f"{what} is not a JSON object")
    return body


def _get(url: str, what: str, **kwargs) -> dict:
    try:
        response = _http().get(url, **kwargs)
    except httpx.HTTPError as error:
        raise ProviderError(f"{what}: {type(error).__name__}") from None
    if response.status_code != 200:
        raise ProviderError(f"{what} answered {response.status_code}")
    return _json(response, what)


def _discover(issuer: str) -> Provider:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    doc = _get(url, "discovery")
    # OpenID Connect Discovery §4.3: the document must name exactly the issuer asked.
    if doc.get("issuer") != issuer:
        raise ProviderError(f"discovery names the issuer {doc.get('issuer')!r}, not {issuer!r}")
    missing = [
        key
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri")
        if not isinstance(doc.get(key), str) or urlsplit(doc[key]).scheme not in ("http", "https")
    ]
    if missing:
        raise ProviderError(f"discovery lacks {', '.join(missing)}")
    algorithms = doc.get("id_token_signing_alg_values_supported") or [SIGNING_ALGORITHM]
    if SIGNING_ALGORITHM not in algorithms:
        raise ProviderError(f"the provider does not sign ID tokens with {SIGNING_ALGORITHM}")
    challenges = doc.get("code_challenge_methods_supported")
    if challenges is not None and "S256" not in challenges:
        raise ProviderError("the provider does not offer PKCE with S256")
    auth_methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return Provider(
        issuer=issuer,
        authorization_endpoint=doc["authorization_endpoint"],
        token_endpoint=doc["token_endpoint"],
        jwks_uri=doc["jwks_uri"],
        userinfo_endpoint=doc.get("userinfo_endpoint") or "",
        end_session_endpoint=doc.get("end_session_endpoint") or "",
        token_auth_basic=(
            "client_secret_basic" in auth_methods or "client_secret_post" not in auth_methods
        ),
    )


def provider_get() -> Provider:
    """The configured provider, from its discovery document (fetched once per process)."""
    global _provider
    with _discovery_lock:
        provider = _provider
        if provider is None or provider.issuer != settings.OIDC_ISSUER:
            provider = _provider = _discover(settings.OIDC_ISSUER)
        return provider


def _fetch_keys(provider: Provider) -> dict[str, jwt.PyJWK]:
    doc = _get(provider.jwks_uri, "jwks")
    keys: dict[str, jwt.PyJWK] = {}
    for index, data in enumerate(doc.get("keys") or []):
        if not isinstance(data, dict) or data.get("kty") != "RSA":
            continue
        if data.get("use", "sig") != "sig" or data.get("alg", SIGNING_ALGORITHM) != "RS256":
            continue
        try:
            key = jwt.PyJWK(data, algorithm=SIGNING_ALGORITHM)
        except jwt.PyJWTError:
            continue
        keys[str(data.get("kid") or f"#{index}")] = key
    return keys


def signing_key(provider: Provider, kid: str | None) -> jwt.PyJWK | None:
    """The provider's RS256 key named `kid` (or its only key when the token names none);
    None when the provider does not have it, even after fetching its keys again."""
    global _keys

    def pick(keys: dict[str, jwt.PyJWK]) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    keys = _keys
    if keys is not None and (key := pick(keys)) is not None:
        return key
    keys = _fetch_keys(provider)
    with _lock:
        _keys = keys
    return pick(keys)


def token_exchange(provider: Provider, *, code: str, redirect_uri: str, code_verifier: str) -> dict:
    """The authorization code (and its PKCE verifier) for the tokens."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    auth = None
    if provider.token_auth_basic:
        auth = httpx.BasicAuth(settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET)
    else:
        data |= {"client_id": settings.OIDC_CLIENT_ID, "client_secret": settings.OIDC_CLIENT_SECRET}
    try:
        response = _http().post(provider.token_endpoint, data=data, auth=auth)
    except httpx.HTTPError as error:
        raise ProviderError(f"token: {type(error).__name__}") from None
    if response.status_code != 200:
        try:
            detail = str(response.json().get("error", ""))[:100]
        except (ValueError, AttributeError):
            detail = ""
        raise ProviderRefused(f"token answered {response.status_code} {detail}".strip())
    return _json(response, "token")


def userinfo(provider: Provider, access_token: str) -> dict:
    """The userinfo claims ({} when the provider has no userinfo endpoint)."""
    if not provider.userinfo_endpoint:
        return {}
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    return _get(provider.userinfo_endpoint, "userinfo", headers=headers)
