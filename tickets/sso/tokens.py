"""The ID token's checks (OpenID Connect Core §3.1.3.7): an RS256 signature by one of the
provider's keys, our client id in the audience (and as `azp` when there are several),
the issuer of the discovery document, a time window and our nonce.

The token comes from the provider's token endpoint over TLS, but it is checked as if it
had not: that is what stands between a provider misconfiguration, or a token meant for
another application, and a session here.
"""

import jwt

from .provider import SIGNING_ALGORITHM, Provider, signing_key

# Clock skew allowed between the provider and us.
LEEWAY_SECONDS = 60
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat"]


class TokenRejected(Exception):
    """The ID token fails a check; `reason` is a short code for the logs."""

    user_message = "The sign-in could not be verified. Try again, or ask your administrator."

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def id_token_verify(token: str, *, provider: Provider, client_id: str, nonce: str) -> dict:
    """The claims of `token`, or TokenRejected."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected("id_token_malformed") from None
    if header.get("alg") != SIGNING_ALGORITHM:
        raise TokenRejected("id_token_algorithm", str(header.get("alg"))[:20])
    key = signing_key(provider, header.get("kid"))
    if key is None:
        raise TokenRejected("id_token_unknown_key", str(header.get("kid"))[:80])
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[SIGNING_ALGORITHM],
            audience=client_id,
            issuer=provider.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.InvalidSignatureError:
        raise TokenRejected("id_token_signature") from None
    except jwt.ExpiredSignatureError:
        raise TokenRejected("id_token_expired") from None
    except jwt.InvalidAudienceError:
        raise TokenRejected("id_token_audience") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected("id_token_issuer") from None
    except jwt.PyJWTError as error:
        raise TokenRejected("id_token_invalid", type(error).__name__) from None
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
        raise TokenRejected("id_token_audience", "several audiences, azp is not us")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise TokenRejected("id_token_invalid", "sub")
    if not nonce or claims.get("nonce") != nonce:
        raise TokenRejected("id_token_nonce")
    return claims
