from datetime import timedelta

import pytest
from django.contrib.auth import backends
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.contrib.sessions.backends import db as db_store
from django.contrib.sessions.models import Session
from django.utils import timezone

from tickets.backends import ModelBackend
from tickets.sessions import SessionStore


def _fresh(user):
    return User.objects.get(pk=user.pk)  # no permission cache


@pytest.fixture
def user(db):
    user = User.objects.create_user("pat")
    user.user_permissions.add(Permission.objects.get(codename="edit_ticket"))
    group = Group.objects.create(name="Readers")
    group.permissions.add(Permission.objects.get(codename="view_auditentry"))
    # In both ways: counted once.
    group.permissions.add(Permission.objects.get(codename="edit_ticket"))
    user.groups.add(group)
    Group.objects.create(name="Other").permissions.add(Permission.objects.get(codename="bulk_edit"))
    return user


def test_the_same_permissions_as_djangos_backend_in_one_query(user, django_assert_num_queries):
    expected = backends.ModelBackend().get_all_permissions(_fresh(user))
    assert expected == {"tickets.edit_ticket", "tickets.view_auditentry"}
    fresh = _fresh(user)
    with django_assert_num_queries(1):
        assert ModelBackend().get_all_permissions(fresh) == expected
        assert fresh.has_perm("tickets.view_auditentry")  # memoised on the user
        assert not fresh.has_perm("tickets.bulk_edit")


def test_no_permissions_for_the_inactive_the_anonymous_or_an_object(user):
    backend = ModelBackend()
    assert backend.get_all_permissions(_fresh(user), obj=object()) == set()
    assert backend.get_all_permissions(AnonymousUser()) == set()
    user.is_active = False
    user.save()
    assert backend.get_all_permissions(_fresh(user)) == set()


def test_a_superuser_has_every_permission(db):
    admin = User.objects.create_superuser("root", password="x")
    assert ModelBackend().get_all_permissions(admin) == backends.ModelBackend().get_all_permissions(
        _fresh(admin)
    )
    assert "tickets.bulk_edit" in ModelBackend().get_all_permissions(_fresh(admin))


def test_the_signed_in_user_is_read_as_djangos_backend_reads_it(user, django_assert_num_queries):
    with django_assert_num_queries(1):
        found = ModelBackend().get_user(str(user.pk))  # as the session holds it
    expected = backends.ModelBackend().get_user(user.pk)
    assert found == expected
    assert [getattr(found, f.attname) for f in User._meta.concrete_fields] == [
        getattr(expected, f.attname) for f in User._meta.concrete_fields
    ]
    assert found.get_session_auth_hash() == expected.get_session_auth_hash()


@pytest.mark.parametrize("user_id", ["999999", "x", "", None, "1; DROP TABLE auth_user"])
def test_no_user_for_an_id_that_is_none(db, user_id):
    assert ModelBackend().get_user(user_id) is None


def test_no_user_once_inactive(user):
    user.is_active = False
    user.save()
    assert ModelBackend().get_user(user.pk) is None


# --- sessions (tickets.sessions) --------------------------------------------------------


def _stored_session(**data) -> str:
    store = SessionStore()
    store.update(data)
    store.create()
    return store.session_key


def test_a_session_loads_as_djangos_store_loads_it(db, django_assert_num_queries):
    key = _stored_session(_auth_user_id="7", note="ü ✓")
    mine = SessionStore(key)
    with django_assert_num_queries(1):
        loaded = mine.load()
    assert loaded == db_store.SessionStore(key).load() == {"_auth_user_id": "7", "note": "ü ✓"}
    assert mine.session_key == key


@pytest.mark.parametrize("kind", ["expired", "unknown", "tampered", "invalid"])
def test_no_data_from_a_session_djangos_store_would_not_load(
    db, kind, django_assert_max_num_queries
):
    key = _stored_session(_auth_user_id="7")
    if kind == "expired":
        Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    elif kind == "unknown":
        key = key[::-1]
    elif kind == "tampered":
        Session.objects.filter(pk=key).update(
            session_data="x" + Session.objects.get(pk=key).session_data
        )
    else:
        key = "short"  # under 8 characters: not a key at all
    mine, djangos = SessionStore(key), db_store.SessionStore(key)
    with django_assert_max_num_queries(1):
        loaded = mine.load()
    assert loaded == djangos.load() == {}
    assert (mine.session_key is None) == (djangos.session_key is None)


def test_requests_use_the_plain_statement_store(client, db):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("sam", password="pw-long-enough-1")
    client.force_login(user)
    assert isinstance(client.session, SessionStore)
    assert client.get("/tickets/views/").wsgi_request.user == user
