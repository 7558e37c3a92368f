"""Single sign-on's pages: the start (to the provider), the callback (back from it) and
logout (ours, then the provider's). The first two are the library's views with our
provider client, records and messages; all three send everyone to the login page while
single sign-on is off."""

import re
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.generic import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from .backends import SESSION_ID_TOKEN, library_setting
from .provider import ProviderError, provider_get
from .provisioning import SignInRefused, sign_in_denied_record, sign_in_record
from .tokens import TokenRejected

SIGN_IN_FAILED = "The sign-in did not complete. Try again."
NOT_STARTED = "That sign-in was not started from this browser, or took too long. Sign in again."


class _Start(OIDCAuthenticationRequestView):
    """Sends the browser to the provider with a new state, nonce and PKCE challenge."""

    get_settings = staticmethod(library_setting)

    def __init__(self, **kwargs):
        # The library reads the authorization endpoint here; ours comes from discovery,
        # which may fail: get() asks for it and says so.
        View.__init__(self, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.OIDC_ISSUER:
            return redirect("login")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider_get().authorization_endpoint
        except ProviderError as error:
            sign_in_denied_record(error.reason, str(error))
            messages.error(request, error.user_message)
            return redirect("login")
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        return super().get(request)


class _Callback(OIDCAuthenticationCallbackView):
    """Checks the state, exchanges the code, verifies the ID token and signs the user in
    (the library's flow, through OidcBackend); every way it can fail is recorded."""

    get_settings = staticmethod(library_setting)
    failure: tuple[str, str, str] | None = None  # reason, detail, what the user is told

    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.OIDC_ISSUER:
            return redirect("login")
        if request.GET.get("error"):
            # An OAuth error code (RFC 6749 §4.1.2.1); anything else is not repeated.
            error = request.GET["error"]
            error = error if re.fullmatch(r"[a-z_]{1,40}", error) else "error"
            self.failure = (
                "provider_error",
                error,
                f"{settings.OIDC_PROVIDER_NAME} did not sign you in ({error}).",
            )
        try:
            return super().get(request)
        except SuspiciousOperation:  # the library: a state this session did not start
            self.failure = ("state_mismatch", "", NOT_STARTED)
        except (TokenRejected, SignInRefused) as error:
            self.failure = (error.reason, error.detail, error.user_message)
        except ProviderError as error:
            self.failure = (error.reason, str(error), error.user_message)
        return self.login_failure()

    def _unexplained(self) -> tuple[str, str, str]:
        """Why the library gave up without an exception."""
        user = getattr(self, "user", None)
        if getattr(self.request, "axes_locked_out", False):
            return ("locked_out", "", SIGN_IN_FAILED)  # AxesMiddleware shows its own page
        if user is not None and not user.is_active:
            return ("inactive", user.get_username(), SIGN_IN_FAILED)
        if "code" not in self.request.GET or "state" not in self.request.GET:
            return ("no_code", "", SIGN_IN_FAILED)
        return ("not_started", "", NOT_STARTED)

    def login_failure(self) -> HttpResponse:
        reason, detail, message = self.failure or self._unexplained()
        sign_in_denied_record(reason, detail)
        messages.error(self.request, message)
        return redirect("login")

    def login_success(self) -> HttpResponse:
        response = super().login_success()
        sign_in_record(self.user)
        return response


start = never_cache(login_not_required(_Start.as_view()))
callback = never_cache(login_not_required(_Callback.as_view()))


def provider_logout_url(request: HttpRequest) -> str:
    """The provider's end-session URL for the signed-in user (OpenID Connect RP-Initiated
    Logout), or "" when they did not sign in through it, or the provider has none."""
    id_token = request.session.get(SESSION_ID_TOKEN)
    if not id_token or not settings.OIDC_ISSUER:
        return ""
    try:
        endpoint = provider_get().end_session_endpoint
    except ProviderError:
        return ""  # logged out here all the same
    if not endpoint:
        return ""
    query = urlencode(
        {
            "id_token_hint": id_token,
            "client_id": settings.OIDC_CLIENT_ID,
            "post_logout_redirect_uri": request.build_absolute_uri(reverse("login")),
        }
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def _form_may_reach(url: str) -> bool:
    """Whether the Content-Security-Policy lets a form's redirect go to `url`: the
    issuer's origin is in form-action (settings.py); an end-session endpoint elsewhere
    is not."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" in settings.SECURE_CSP.get("form-action", [])


class LogoutView(auth_views.LogoutView):
    """Django's logout (POST), then, for a user who signed in through the provider, the
    provider's logout, which comes back to the login page."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        provider_logout = provider_logout_url(request)  # before the session is gone
        response = super().post(request, *args, **kwargs)
        if not provider_logout:
            return response
        if _form_may_reach(provider_logout):
            return redirect(provider_logout)
        # A redirect there would be blocked: the person follows a link instead.
        context = {"provider_logout": provider_logout, "name": settings.OIDC_PROVIDER_NAME}
        return render(request, "registration/sso_logged_out.html", context)


logout = LogoutView.as_view()
