"""The provider's people (a JSON file the tests write), its sign-in and its claims."""

import base64
import json
import os
import time

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from oauth2_provider.oauth2_validators import OAuth2Validator


def people() -> dict:
    with open(os.environ["OIDC_PROVIDER_PEOPLE"]) as file:
        return json.load(file)


def person_of(request) -> dict:
    return people().get(request.user.username, {})


class PeopleBackend(ModelBackend):
    """Signs in whoever the people file lists, with their password there."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        person = people().get(username or "")
        if not person or person.get("password") != password:
            return None
        user, _ = get_user_model().objects.get_or_create(username=username)
        return user


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Validator(OAuth2Validator):
    oidc_claim_scope = None  # every claim, whatever the scopes

    def get_additional_claims(self, request):
        person = person_of(request)
        return {
            "email": person.get("email"),
            "email_verified": person.get("email_verified", True),
            "name": person.get("name", ""),
            "given_name": person.get("given_name", ""),
            "family_name": person.get("family_name", ""),
            "groups": person.get("groups", []),
            "thena_teams": person.get("teams", []),
        }

    def get_id_token_dictionary(self, token, token_handler, request):
        claims, expiration = super().get_id_token_dictionary(token, token_handler, request)
        quirk = person_of(request).get("quirk")
        if quirk == "wrong_audience":
            claims["aud"] = "another-application"
        elif quirk == "expired":
            now = int(time.time())
            claims["iat"], claims["exp"] = now - 1200, now - 600
        return claims, expiration

    def finalize_id_token(self, id_token, token, token_handler, request):
        signed = super().finalize_id_token(id_token, token, token_handler, request)
        if person_of(request).get("quirk") != "tampered":
            return signed
        # A payload altered after signing: more groups than the person has.
        header, payload, signature = signed.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["groups"] = ["support-leads", "audit"]
        return ".".join([header, _b64(json.dumps(claims).encode()), signature])
