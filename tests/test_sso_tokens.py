"""The ID token's checks and the provider client's discovery, for the tokens and answers
a well-behaved provider never sends (tests/test_sso.py runs the flow against a real
one). The provider here is an httpx.MockTransport serving discovery and keys; the tokens
are signed with keys made for the test."""

import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tickets.sso import provider as provider_client
from tickets.sso.provider import ProviderError, provider_get, signing_key
from tickets.sso.tokens import TokenRejected, id_token_verify

ISSUER = "https://idp.example.com/tenant"
CLIENT_ID = "thena-admin"
NONCE = "n-0S6_WzA2Mj"


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY, OTHER_KEY = _key(), _key()


def _jwk(key, kid: str) -> dict:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


class FakeIdp:
    """Discovery and JWKS; counts what it was asked."""

    def __init__(self) -> None:
        self.discovery = {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/authorize",
            "token_endpoint": f"{ISSUER}/token",
            "jwks_uri": f"{ISSUER}/jwks",
            "end_session_endpoint": f"{ISSUER}/logout",
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }
        self.keys = [_jwk(KEY, "k1")]
        self.asked: list[str] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(request.url.path)
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json=self.discovery)
        if request.url.path.endswith("/jwks"):
            return httpx.Response(200, json={"keys": self.keys})
        pytest.fail(f"unexpected request {request.url}")


@pytest.fixture
def idp(settings):
    settings.OIDC_ISSUER = ISSUER
    settings.OIDC_CLIENT_ID = CLIENT_ID
    settings.OIDC_CLIENT_SECRET = "secret"
    fake = FakeIdp()
    provider_client.provider_reset(transport=httpx.MockTransport(fake))
    yield fake
    provider_client.provider_reset()


def _claims(**changes) -> dict:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
        "email": "ada@corp.example",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _token(key=KEY, kid: str | None = "k1", algorithm: str = "RS256", **changes) -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(_claims(**changes), key, algorithm=algorithm, headers=headers)


def _verify(token: str, nonce: str = NONCE) -> dict:
    return id_token_verify(token, provider=provider_get(), client_id=CLIENT_ID, nonce=nonce)


def _rejected(token: str, nonce: str = NONCE) -> str:
    with pytest.raises(TokenRejected) as caught:
        _verify(token, nonce)
    return caught.value.reason


def test_a_good_token_gives_its_claims(idp):
    assert _verify(_token())["email"] == "ada@corp.example"


def test_several_audiences_need_us_as_the_authorized_party(idp):
    assert _rejected(_token(aud=[CLIENT_ID, "other"])) == "id_token_audience"
    assert _verify(_token(aud=[CLIENT_ID, "other"], azp=CLIENT_ID))["sub"]
    assert _verify(_token(aud=[CLIENT_ID]))["sub"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": "another-client"}, "id_token_audience"),
        ({"iss": "https://evil.example.com"}, "id_token_issuer"),
        ({"exp": int(time.time()) - 120}, "id_token_expired"),
        ({"exp": None}, "id_token_invalid"),
        ({"iat": None}, "id_token_invalid"),
        ({"sub": None}, "id_token_invalid"),
        ({"iat": int(time.time()) + 3600}, "id_token_invalid"),  # issued in the future
        ({"nonce": "someone-elses"}, "id_token_nonce"),
        ({"nonce": None}, "id_token_nonce"),
    ],
)
def test_claims_that_fail(idp, changes, reason):
    assert _rejected(_token(**changes)) == reason


def test_an_expiry_within_the_clock_skew_passes(idp):
    assert _verify(_token(exp=int(time.time()) - 30))["sub"]


def test_a_signature_by_another_key_fails(idp):
    assert _rejected(_token(key=OTHER_KEY)) == "id_token_signature"


def test_an_altered_payload_fails(idp):
    header, _, signature = _token().split(".")
    forged_payload = _token(sub="admin").split(".")[1]
    assert _rejected(f"{header}.{forged_payload}.{signature}") == "id_token_signature"


def _hs256(secret: bytes) -> str:
    """An HS256 token made by hand: PyJWT refuses a PEM key as an HMAC secret."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'kid': 'k1'})}.{part(_claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_unsigned_and_symmetric_tokens_fail(idp):
    unsigned = jwt.encode(_claims(), None, algorithm="none")
    assert _rejected(unsigned) == "id_token_algorithm"
    # The provider's public key as an HMAC secret: the classic algorithm confusion.
    public_pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert _rejected(_hs256(public_pem)) == "id_token_algorithm"


def test_garbage_is_malformed(idp):
    assert _rejected("not-a-jwt") == "id_token_malformed"


def test_a_rotated_key_is_fetched_once(idp):
    assert _verify(_token())["sub"]
    idp.keys = [_jwk(KEY, "k1"), _jwk(OTHER_KEY, "k2")]
    assert _verify(_token(key=OTHER_KEY, kid="k2"))["sub"]
    assert idp.asked.count("/tenant/jwks") == 2
    assert _verify(_token(key=OTHER_KEY, kid="k2"))["sub"]
    assert idp.asked.count("/tenant/jwks") == 2


def test_an_unknown_key_fails_after_one_more_look(idp):
    assert _rejected(_token(kid="nobody")) == "id_token_unknown_key"
    assert idp.asked.count("/tenant/jwks") == 1


def test_a_token_without_kid_needs_a_single_key(idp):
    assert _verify(_token(kid=None))["sub"]
    idp.keys = [_jwk(KEY, "k1"), _jwk(OTHER_KEY, "k2")]
    provider_client.provider_reset(transport=httpx.MockTransport(idp))
    assert _rejected(_token(kid=None)) == "id_token_unknown_key"


def test_keys_for_other_uses_are_ignored(idp):
    idp.keys = [{**_jwk(KEY, "k1"), "use": "enc"}]
    assert _rejected(_token()) == "id_token_unknown_key"


# --- discovery -------------------------------------------------------------------------


def test_discovery_is_fetched_once_and_read(idp):
    provider = provider_get()
    assert provider_get() is provider
    assert idp.asked == ["/tenant/.well-known/openid-configuration"]
    assert provider.end_session_endpoint == f"{ISSUER}/logout"
    assert provider.token_auth_basic is True


def test_client_secret_post_when_the_provider_offers_only_that(idp):
    idp.discovery["token_endpoint_auth_methods_supported"] = ["client_secret_post"]
    assert provider_get().token_auth_basic is False


def test_a_failed_discovery_is_tried_again(idp):
    idp.down = True
    with pytest.raises(ProviderError):
        provider_get()
    idp.down = False
    assert provider_get().issuer == ISSUER


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"issuer": "https://idp.example.com/other"}, "names the issuer"),
        ({"jwks_uri": None}, "lacks jwks_uri"),
        ({"token_endpoint": "javascript:alert(1)"}, "lacks token_endpoint"),
        ({"id_token_signing_alg_values_supported": ["HS256"]}, "does not sign ID tokens"),
        ({"code_challenge_methods_supported": ["plain"]}, "PKCE with S256"),
    ],
)
def test_a_discovery_document_that_does_not_fit_is_refused(idp, changes, message):
    idp.discovery.update(changes)
    with pytest.raises(ProviderError, match=message):
        provider_get()


def test_signing_key_is_none_for_an_unknown_kid(idp):
    assert signing_key(provider_get(), "k1") is not None
    assert signing_key(provider_get(), "k9") is None
