"""Authentication backends: single sign-on (OidcBackend) and, with LOCAL_LOGIN=false,
password sign-in for superusers only (BreakGlassBackend)."""

from django.conf import settings
from django.contrib.auth import get_user_model
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings

from ..backends import ModelBackend
from .provider import Provider, provider_get, token_exchange, userinfo
from .provisioning import user_provision
from .tokens import TokenRejected, id_token_verify

SESSION_ID_TOKEN = "sso_id_token"  # kept for RP-initiated logout (id_token_hint)

# mozilla-django-oidc's settings, fixed here rather than in settings.py: what is not a
# choice (PKCE with S256, a nonce, our callback's URL name) or comes from ours.
_FIXED = {
    "OIDC_USE_PKCE": True,
    "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
    "OIDC_USE_NONCE": True,
    "OIDC_RP_SIGN_ALGO": "RS256",
    "OIDC_AUTHENTICATION_CALLBACK_URL": "sso:callback",
    "OIDC_REDIRECT_FIELD_NAME": "next",
}


def library_setting(name: str, *default):
    """The value mozilla-django-oidc asks for under `name`."""
    if name in _FIXED:
        return _FIXED[name]
    if name == "OIDC_RP_CLIENT_ID":
        return settings.OIDC_CLIENT_ID
    if name == "OIDC_RP_SCOPES":
        return " ".join(settings.OIDC_SCOPES)
    if name == "OIDC_OP_AUTHORIZATION_ENDPOINT":
        return provider_get().authorization_endpoint
    return import_from_settings(name, *default)


class OidcBackend(OIDCAuthenticationBackend):
    """The library's authorization-code backend with our provider client, token checks
    and provisioning. Raises TokenRejected, SignInRefused or ProviderError (not
    PermissionDenied, which Django's authenticate() would swallow) so that the callback
    can record why a sign-in failed."""

    get_settings = staticmethod(library_setting)
    provider: Provider

    def __init__(self, *args, **kwargs):
        # The library reads the provider's endpoints here, and Django makes a backend for
        # every authenticate() call, password logins included: ours are read from
        # discovery by the sign-in that needs them, so a provider outage never stops
        # password sign-in.
        self.UserModel = get_user_model()

    def authenticate(self, request, nonce=None, code_verifier=None, **kwargs):
        if request is None or not nonce or not code_verifier or not settings.OIDC_ISSUER:
            return None  # a password sign-in, or not a callback of ours
        self.provider = provider_get()
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_CLIENT_SECRET
        return super().authenticate(request, nonce=nonce, code_verifier=code_verifier)

    def get_token(self, payload):
        return token_exchange(
            self.provider,
            code=payload["code"],
            redirect_uri=payload["redirect_uri"],
            code_verifier=payload["code_verifier"],
        )

    def verify_token(self, token, **kwargs):
        if not isinstance(token, str) or not token:
            raise TokenRejected("id_token_missing")
        return id_token_verify(
            token,
            provider=self.provider,
            client_id=settings.OIDC_CLIENT_ID,
            nonce=kwargs.get("nonce") or "",
        )

    def store_tokens(self, access_token, id_token):
        if self.provider.end_session_endpoint:
            self.request.session[SESSION_ID_TOKEN] = id_token

    def get_or_create_user(self, access_token, id_token, payload):
        claims = dict(payload)
        info = userinfo(self.provider, access_token) if access_token else {}
        if info:
            # Core §5.3.2: userinfo about another subject must not be used.
            if info.get("sub") != payload["sub"]:
                raise TokenRejected("userinfo_subject")
            protocol = ("iss", "sub", "aud", "exp", "iat", "nonce", "azp")
            claims = {**info, **{key: payload[key] for key in protocol if key in payload}}
        return user_provision(claims=claims, issuer=self.provider.issuer)


class BreakGlassBackend(ModelBackend):
    """LOCAL_LOGIN=false: passwords sign in superusers only, so that an administrator can
    still get in while the provider is down. Everyone else signs in through the provider."""

    def user_can_authenticate(self, user):
        return super().user_can_authenticate(user) and user.is_superuser
