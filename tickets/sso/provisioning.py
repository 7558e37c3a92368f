"""Users from the provider's claims, and the records of what single sign-on did.

At every sign-in the user is found by the provider's subject (an Identity row), or the
first time linked by email or created; their email and name follow the claims; the
groups named in OIDC_GROUP_MAP follow the groups claim and their team scope follows
OIDC_TEAM_SCOPE_CLAIM, so a group or a team taken away at the provider is gone here at
the next sign-in. Groups that OIDC_GROUP_MAP does not name are managed by hand and left
alone.

Records (README "Single sign-on"): every sign-in, role change and refusal is a JSON log
line of the logger `tickets.sso` (`sso_sign_in`, `sso_roles_changed`,
`sso_sign_in_denied`); a user's creation and each change of their groups or teams is also
an entry of Django's admin log, shown in the user's History in /admin/.
"""

import re
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from ..models import TeamScope
from .models import Identity

sso_log = structlog.stdlib.get_logger("tickets.sso")

ALL_TEAMS = "*"  # in the team scope claim: every team (no TeamScope row)
MAX_CLAIM_VALUES = 500
MAX_VALUE_LENGTH = 255


class SignInRefused(Exception):
    """A sign-in that authenticated at the provider but may not proceed here."""

    def __init__(self, reason: str, detail: str = "", *, user_message: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.user_message = user_message or (
            "You cannot sign in to thena-admin with this account. Ask your administrator."
        )


@dataclass
class RoleChange:
    groups_before: list[str] | None = None  # None: groups are not managed by sign-in
    groups_after: list[str] | None = None
    teams_before: list[str] | None = None  # None: every team
    teams_after: list[str] | None = None
    teams_managed: bool = False

    @property
    def groups_changed(self) -> bool:
        return self.groups_before != self.groups_after

    @property
    def teams_changed(self) -> bool:
        return self.teams_managed and self.teams_before != self.teams_after


def _values(value, *, split: bool) -> list[str]:
    """A claim as a list of strings: a JSON list, or one string (`split`: on commas and
    white space). Anything else, and absurd sizes, count as nothing."""
    if isinstance(value, str):
        items = re.split(r"[,\s]+", value) if split else [value]
    elif isinstance(value, list):
        items = [str(item) for item in value if isinstance(item, str | int)]
    else:
        items = []
    items = [item.strip() for item in items[:MAX_CLAIM_VALUES]]
    return [item for item in items if item and len(item) <= MAX_VALUE_LENGTH]


def _email(claims: dict) -> str:
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or len(email) > 254:
        raise SignInRefused(
            "no_email",
            user_message="Your account has no email address at the sign-in service, which "
            "thena-admin needs. Ask your administrator.",
        )
    return email.strip().lower()


def _free_username(email: str) -> str:
    """The email as the username (it is what the audit log shows), or with ~2, ~3... when
    a local account already has that username."""
    User = get_user_model()
    base = email[:140]
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}~{n}"
    return candidate


def _user_for(*, issuer: str, subject: str, email: str, claims: dict):
    """(user, created) for the provider account: its identity's user, else the one local
    account with its email (never a superuser: break-glass accounts stay local), else a
    new user without a password."""
    identity = Identity.objects.select_related("user").filter(issuer=issuer, subject=subject)
    identity = identity.first()
    if identity is not None:
        return identity.user, False
    User = get_user_model()
    linked = Identity.objects.filter(issuer=issuer).values("user_id")
    candidates = list(User.objects.filter(email__iexact=email).exclude(pk__in=linked)[:2])
    if len(candidates) > 1:
        raise SignInRefused("email_ambiguous", email)
    if candidates:
        user = candidates[0]
        if user.is_superuser:
            raise SignInRefused("email_of_superuser", email)
        if claims.get("email_verified") is False:
            raise SignInRefused("email_unverified", email)
        Identity.objects.create(user=user, issuer=issuer, subject=subject)
        sso_log.info("sso_account_linked", user_id=user.pk, username=user.get_username())
        return user, False
    user = User.objects.create_user(username=_free_username(email), email=email)
    Identity.objects.create(user=user, issuer=issuer, subject=subject)
    return user, True


def _profile_update(user, *, email: str, claims: dict) -> None:
    first = claims.get("given_name") or claims.get("name") or ""
    last = claims.get("family_name") or ""
    updates = {
        "email": email,
        "first_name": str(first)[:150] if isinstance(first, str) else user.first_name,
        "last_name": str(last)[:150] if isinstance(last, str) else user.last_name,
    }
    changed = [name for name, value in updates.items() if getattr(user, name) != value]
    for name in changed:
        setattr(user, name, updates[name])
    if changed:
        user.save(update_fields=changed)


def _groups_wanted(claims: dict) -> set[str]:
    """The names of the groups OIDC_GROUP_MAP grants for the groups claim."""
    mapping: dict[str, list[str]] = settings.OIDC_GROUP_MAP
    provider_groups = _values(claims.get(settings.OIDC_GROUPS_CLAIM), split=False)
    return {name for value in provider_groups for name in mapping.get(value, [])}


def _groups_sync(user, wanted: set[str], change: RoleChange) -> None:
    mapping: dict[str, list[str]] = settings.OIDC_GROUP_MAP
    if not mapping:
        return
    managed_names = {name for names in mapping.values() for name in names}
    managed = {group.name: group for group in Group.objects.filter(name__in=managed_names)}
    if missing := managed_names - managed.keys():
        sso_log.error("sso_group_missing", groups=sorted(missing))
    wanted = wanted & managed.keys()
    current = set(user.groups.filter(name__in=managed_names).values_list("name", flat=True))
    if add := wanted - current:
        user.groups.add(*(managed[name] for name in add))
    if remove := current - wanted:
        user.groups.remove(*(managed[name] for name in remove))
    change.groups_before, change.groups_after = sorted(current), sorted(wanted)


def _scope_sync(user, claims: dict, change: RoleChange) -> None:
    claim = settings.OIDC_TEAM_SCOPE_CLAIM
    row = TeamScope.objects.filter(user=user).first()
    change.teams_before = None if row is None else sorted(map(str, row.team_ids))
    change.teams_after = change.teams_before
    if not claim:
        return
    change.teams_managed = True
    # No claim or an empty one: no team at all. Failing closed, a provider that stops
    # sending the claim takes teams away rather than granting all of them.
    teams = sorted(set(_values(claims.get(claim), split=True)))
    if ALL_TEAMS in teams:
        if row is not None:
            row.delete()
        change.teams_after = None
        return
    if row is None:
        TeamScope.objects.create(user=user, team_ids=teams)
    elif sorted(map(str, row.team_ids)) != teams:
        row.team_ids = teams
        row.save(update_fields=["team_ids"])
    change.teams_after = teams


def _teams_text(teams: list[str] | None) -> str:
    if teams is None:
        return "every team"
    return ", ".join(teams) or "no team"


def _record_roles(user, change: RoleChange, *, created: bool) -> None:
    parts = []
    if change.groups_changed:
        parts.append(
            f"groups {', '.join(change.groups_before or []) or 'none'} → "
            f"{', '.join(change.groups_after or []) or 'none'}"
        )
    if change.teams_changed:
        parts.append(
            f"teams {_teams_text(change.teams_before)} → {_teams_text(change.teams_after)}"
        )
    if not parts and not created:
        return
    name = settings.OIDC_PROVIDER_NAME
    what = "Created by single sign-on" if created else "Changed by single sign-on"
    message = f"{what} ({name})" + (": " + "; ".join(parts) if parts else ".")
    LogEntry.objects.log_actions(
        user_id=user.pk,
        queryset=[user],
        action_flag=ADDITION if created else CHANGE,
        change_message=message[:2000],
        single_object=True,
    )
    if parts:
        sso_log.info(
            "sso_roles_changed",
            user_id=user.pk,
            username=user.get_username(),
            groups_before=change.groups_before,
            groups_after=change.groups_after,
            teams_before=change.teams_before,
            teams_after=change.teams_after,
        )


def user_provision(*, claims: dict, issuer: str):
    """The user signing in with the verified `claims`, created or brought up to date, or
    SignInRefused. A user who lost their last mapped group is refused after their groups
    were brought up to date, so that the loss takes effect; a newcomer without one is
    refused before any account is made."""
    email = _email(claims)
    wanted = _groups_wanted(claims)
    no_group = SignInRefused(
        "no_group",
        email,
        user_message="Your account is in none of the groups that may use thena-admin. "
        "Ask your administrator.",
    )
    known = Identity.objects.filter(issuer=issuer, subject=claims["sub"]).exists()
    if settings.OIDC_GROUP_MAP and not wanted and not known:
        raise no_group
    change = RoleChange()
    with transaction.atomic():
        user, created = _user_for(issuer=issuer, subject=claims["sub"], email=email, claims=claims)
        if not user.is_active:
            raise SignInRefused("inactive", user.get_username())
        _profile_update(user, email=email, claims=claims)
        _groups_sync(user, wanted, change)
        _scope_sync(user, claims, change)
        Identity.objects.filter(issuer=issuer, subject=claims["sub"]).update(
            last_sign_in_at=timezone.now()
        )
        _record_roles(user, change, created=created)
    if settings.OIDC_GROUP_MAP and not change.groups_after:
        raise no_group
    user.sso_created = created
    return user


def sign_in_record(user) -> None:
    sso_log.info(
        "sso_sign_in",
        user_id=user.pk,
        username=user.get_username(),
        created=getattr(user, "sso_created", False),
    )


def sign_in_denied_record(reason: str, detail: str = "", **context) -> None:
    sso_log.warning("sso_sign_in_denied", reason=reason, detail=detail or None, **context)
