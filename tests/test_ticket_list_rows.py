"""The list's rows are written in Python (tickets/views_list._row) for speed: they must
read exactly as the template they replaced, for any value Thena may send."""

from datetime import UTC, datetime, timedelta

import pytest
from django.template import engines
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from tickets.views import _ticket_urls
from tickets.views_list import _row

# The row as ticket_list.html had it, `{% if bulk and listing.filter.team %}` as `select`.
TEMPLATE = engines["django"].from_string(
    "{% load moments %}<tr>"
    '{% if select %}<td class="select">{% if ticket.url %}'
    '<input type="checkbox" name="ticket" value="{{ ticket.id }}" form="bulk-select" '
    'aria-label="Select {{ ticket.ticketIdentifier|default:ticket.id }}">'
    "{% endif %}</td>{% endif %}"
    '<td class="nowrap" data-label="Ticket">{% if ticket.url %}'
    '<a class="row-link" href="{{ ticket.url }}">{{ ticket.ticketIdentifier|default:"—" }}</a>'
    '{% else %}{{ ticket.ticketIdentifier|default:"—" }}{% endif %}</td>'
    '<td class="title" data-label="Title">'
    '{{ ticket.title|default_if_none:""|truncatechars:120 }}</td>'
    '<td data-label="Status"><span class="badge">{{ ticket.status|default:"—" }}</span></td>'
    '<td data-label="Priority">'
    "<span class=\"badge priority-{{ ticket.priority|default:''|slugify }}\">"
    '{{ ticket.priority|default:"—" }}</span></td>'
    '<td data-label="Assignee">{{ ticket.assignedAgent|default:"Unassigned" }}</td>'
    '<td data-label="Team">{{ ticket.teamName|default:"—" }}</td>'
    '<td class="nowrap" data-label="Updated">{% if ticket.updated %}'
    "<time datetime=\"{{ ticket.updated|date:'c' }}\" "
    "title=\"{{ ticket.updated|date:'Y-m-d H:i e' }}\">"
    "{{ ticket.updated|ago }}</time>{% else %}—{% endif %}</td>"
    "</tr>"
)

text = st.one_of(st.none(), st.text(max_size=150), st.integers(), st.just(""))
ids = st.one_of(
    st.text(min_size=1, max_size=70), st.sampled_from(["a/b", "T 1", "x%2F", "é", "-"]), st.none()
)
moments = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1), timezones=st.just(UTC)
    ),
    st.just(datetime.now(UTC) - timedelta(seconds=5)),
)


def _template_url(ticket_id) -> str:
    if not isinstance(ticket_id, str) or not ticket_id:
        return ""
    try:
        return reverse("tickets:detail", args=[ticket_id])
    except NoReverseMatch:
        return ""


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
@settings(max_examples=150, deadline=None)
@given(
    ticket_id=ids,
    ident=text,
    title=text,
    status=text,
    priority=text,
    assignee=text,
    team=text,
    updated=moments,
    select=st.booleans(),
)
def test_a_row_reads_as_the_template_wrote_it(
    zone, ticket_id, ident, title, status, priority, assignee, team, updated, select
):
    ticket = {
        "id": ticket_id,
        "ticketIdentifier": ident,
        "title": title,
        "status": status,
        "priority": priority,
        "assignedAgent": assignee,
        "teamName": team,
        "updated": updated,
    }
    url = _template_url(ticket_id)
    assert _ticket_urls()(ticket_id) == url
    with timezone.override(zone):
        expected = TEMPLATE.render({"ticket": {**ticket, "url": url}, "select": select})
        assert _row(ticket, select=select, url=url) == expected
