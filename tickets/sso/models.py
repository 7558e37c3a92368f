from django.conf import settings
from django.db import models


class Identity(models.Model):
    """The provider's account behind a user: its issuer and subject (`sub`), which never
    change, unlike an email address. A sign-in finds its user through this row, so a
    provider account whose email happens to match a local account takes it over only
    through the rules of provisioning.py, once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_subject"),
            models.UniqueConstraint(fields=["issuer", "user"], name="sso_identity_user"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
