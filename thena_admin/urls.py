from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from tickets import metrics
from tickets import views as ticket_views
from tickets.auth_forms import AdminLoginForm, LoginForm
from tickets.sso import views as sso_views
from tickets.webhooks import thena_webhook

# The admin's own login page takes the same bounded username as ours.
admin.site.login_form = AdminLoginForm

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="tickets:list"), name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            authentication_form=LoginForm, redirect_authenticated_user=True
        ),
        name="login",
    ),
    # Django's logout, then the identity provider's for a user who signed in through it.
    path("accounts/logout/", sso_views.logout, name="logout"),
    # Single sign-on (tickets/sso/): the way to the provider and back.
    path("accounts/oidc/", include("tickets.sso.urls")),
    # Also served by tickets.middleware.HealthCheckMiddleware, whatever the Host header.
    path("healthz", ticket_views.healthz, name="healthz"),
    path("healthz/live", ticket_views.healthz_live, name="healthz_live"),
    path("metrics", metrics.metrics, name="metrics"),
    path("webhooks/thena/", thena_webhook, name="thena-webhook"),
    path("tickets/", include("tickets.urls")),
    path("audit/", include("tickets.audit_urls")),
    path("admin/", admin.site.urls),
]

# Styled error pages (templates/403.html, 404.html, 500.html).
handler403 = "tickets.views.permission_denied"
handler404 = "tickets.views.page_not_found"
handler500 = "tickets.views.server_error"
