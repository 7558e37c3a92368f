"""Relative times read as people say them (issue 14)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tickets.templatetags.moments import ago


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "just now"),
        (59, "just now"),
        (-30, "just now"),  # a clock a little ahead
        # Django's timesince keeps a number with its unit (no break space).
        (60, "1\xa0minute ago"),
        (3 * 3600 + 120, "3\xa0hours, 2\xa0minutes ago"),
    ],
)
def test_ago_reads_as_people_say_it(seconds, words):
    assert ago(timezone.now() - timedelta(seconds=seconds)) == words


def test_ago_of_nothing_is_nothing():
    assert ago(None) == ""


@pytest.mark.django_db
def test_the_list_says_just_now_and_keeps_the_moment_on_hover(manager_client, sandbox, thena):
    ticket = sandbox.tickets()[0]
    sandbox.touch_ticket(ticket["id"], title="Changed a moment ago")
    html = manager_client.get(f"/tickets/?team={ticket['teamId']}").content.decode()
    row = html[html.index("Changed a moment ago") :].split("</tr>")[0]
    assert ">just now</time>" in row
    assert 'title="20' in row  # the absolute time, for the pointer and screen readers
    assert "0 minutes" not in html
