import os

import pytest
from hypothesis import HealthCheck, settings

from tickets.thena.client import SANDBOX_BASE_URL, ThenaClient, sandbox_transport, set_client

# CI runs the same examples every time (a new one found there would fail a landing by
# chance); a developer's run explores new ones and keeps failures in .hypothesis/.
settings.register_profile(
    "default",
    deadline=None,
    max_examples=40,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("default")

# --- Thena client and sandbox (tickets/thena) -------------------------------------------


@pytest.fixture
def sandbox_config(request):
    """How the sandbox behaves: as Thena documents it, unless a test parametrizes this
    (indirect=True) with another SandboxConfig, e.g. from tests.util.SANDBOX_VARIANTS."""
    from tickets.thena.sandbox import SandboxConfig

    return getattr(request, "param", None) or SandboxConfig()


@pytest.fixture
def sandbox(sandbox_config):
    """A fresh fake Thena for this test only."""
    from tickets.thena.sandbox import SandboxApp

    return SandboxApp(sandbox_config)


@pytest.fixture
def sleeps() -> list[float]:
    """The pauses the `thena` client asked for; nothing really sleeps."""
    return []


@pytest.fixture
def thena(sandbox, sleeps):
    """A client on the `sandbox`, installed as the process-wide client for this test."""
    from tickets.thena.sandbox import DEMO_API_KEY

    client = ThenaClient(
        SANDBOX_BASE_URL, DEMO_API_KEY, transport=sandbox_transport(sandbox), sleep=sleeps.append
    )
    set_client(client)
    yield client
    set_client(None)
    client.close()


@pytest.fixture(autouse=True)
def _no_leftover_thena_client():
    """No test talks to a client another test installed or built."""
    set_client(None)
    yield
    set_client(None)


@pytest.fixture
def ticket(sandbox):
    """A ticket of the support team (SUP): what most tests edit. Modules override it."""
    return next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")


@pytest.fixture
def url(ticket):
    return f"/tickets/{ticket['id']}/"


# --- end of Thena fixtures ---------------------------------------------------------------


# --- personas and shared state -----------------------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Lookups are cached (services.LOOKUP_TTL); each test starts cold."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def _user(django_user_model, username: str, group: str | None = None):
    import importlib

    from django.apps import apps
    from django.contrib.auth.models import Group

    # A transactional test's flush removes what the data migration made; make it again.
    importlib.import_module("tickets.migrations.0003_groups").create_groups(apps, None)
    importlib.import_module("tickets.migrations.0011_bulk_edit").grant_bulk_edit(apps, None)

    user = django_user_model.objects.create_user(
        username=username, email=f"{username}@example.com", password=PASSWORD
    )
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def manager(django_user_model):
    """Edits tickets and reads the audit log."""
    return _user(django_user_model, "manager", "Support managers")


@pytest.fixture
def mia(django_user_model):
    """Someone with no group: an actor in the audit log."""
    return django_user_model.objects.create_user("mia", email="mia@example.com")


@pytest.fixture
def auditor(django_user_model):
    """Reads tickets and the audit log; edits nothing."""
    return _user(django_user_model, "auditor", "Auditors")


@pytest.fixture
def viewer(django_user_model):
    """Logged in, no role: views tickets only."""
    return _user(django_user_model, "viewer")


def _client_for(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def manager_client(manager):
    return _client_for(manager)


@pytest.fixture
def auditor_client(auditor):
    return _client_for(auditor)


@pytest.fixture
def viewer_client(viewer):
    return _client_for(viewer)


@pytest.fixture(autouse=True)
def _purge_audit_log_after_transactional_tests(request):
    """The triggers refuse DELETE on the audit tables, so Django's flush after a
    transactional test would fail: empty them first, behind the triggers' back."""
    yield
    marker = request.node.get_closest_marker("django_db")
    if not (marker and marker.kwargs.get("transaction")):
        return
    import importlib

    from django.db import connection, transaction

    triggers = importlib.import_module("tickets.migrations.0002_audit_insert_only_triggers")
    with transaction.atomic():
        triggers.drop_triggers(connection)
        with connection.cursor() as cursor:
            for table in triggers.AUDIT_TABLES:
                cursor.execute(f"DELETE FROM {table}")
        triggers.create_triggers(connection)
