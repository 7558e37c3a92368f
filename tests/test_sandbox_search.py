"""The sandbox's Typesense subset, which the ticket list's filters and sorts rely on."""

import pytest

from tickets.thena.sandbox.typesense import matches, sort_key
from tickets.thena.sandbox.validation import ApiError

DOC = {
    "statusId": "S1",
    "priorityName": "High",
    "assignedAgentId": None,
    "tags": ["a", "b c"],
    "isPrivate": False,
    "storyPoints": 5,
    "updatedAt": "2026-11-20T10:00:00.000Z",
    "title": "In progress, (really)",
}


@pytest.mark.parametrize(
    "filter_by, expected",
    [
        ("", True),
        ("statusId:=S1", True),
        ("statusId:=s1", True),
        ("statusId:S1", True),
        ("statusId:=S2", False),
        ("statusId:!=S2", True),
        ("statusId:=[S2,S1]", True),
        ("statusId:=[`S2`, `S3`]", False),
        ("statusId:=S1 && priorityName:=high", True),
        ("statusId:=S2 || priorityName:=High", True),
        ("statusId:=S2 || priorityName:=Low && isPrivate:=false", False),
        ("(statusId:=S2 || priorityName:=High) && isPrivate:=false", True),
        ("assignedAgentId:=null", True),
        ("statusId:=null", False),
        ("tags:=`b c`", True),
        ("title:=`In progress, (really)`", True),
        ("storyPoints:>4 && storyPoints:<=5", True),
        ("storyPoints:>=6", False),
        ("updatedAt:>=2026-11-20T09:59:59Z", True),
        ("updatedAt:>=2026-11-20T10:00:01+00:00", False),
        ("updatedAt:<1800000000", True),
        ("missing:>1", False),
    ],
)
def test_filter_by(filter_by, expected):
    assert matches(DOC, filter_by) is expected


@pytest.mark.parametrize(
    "filter_by",
    [
        "statusId",
        "statusId:=",
        "statusId:=S1 &&",
        "&& statusId:=S1",
        "(statusId:=S1",
        "statusId:=[S1",
        "statusId:=`S1",
        "a:=x) || (b:=y",
        "statusId:=[S1,]",
        "storyPoints:>[1,2]",
    ],
)
def test_a_filter_that_does_not_parse_is_a_400(filter_by):
    with pytest.raises(ApiError) as raised:
        matches(DOC, filter_by)
    assert raised.value.status == 400


def test_sort_by_fields_and_eval():
    docs = [
        {"id": 1, "p": "Low", "at": "2026-01-02T00:00:00Z", "n": None},
        {"id": 2, "p": "Urgent", "at": "2026-01-01T00:00:00Z", "n": "b"},
        {"id": 3, "p": "High", "at": "2026-01-03T00:00:00Z", "n": "a"},
        {"id": 4, "p": "Urgent", "at": "2026-01-04T00:00:00Z", "n": "ab"},
    ]

    def order(sort_by):
        return [d["id"] for d in sorted(docs, key=sort_key(sort_by))]

    assert order("at:desc") == [4, 3, 1, 2]
    assert order("at:asc") == [2, 1, 3, 4]
    # Missing values last either way; text in its order, a prefix first when ascending.
    assert order("n:asc") == [3, 4, 2, 1]
    assert order("n:desc") == [2, 4, 3, 1]
    assert order("_eval([(p:=Urgent):3,(p:=High):2]):desc,at:desc") == [4, 2, 3, 1]
    with pytest.raises(ApiError):
        sort_key("at")
    with pytest.raises(ApiError):
        sort_key("a:asc,b:asc,c:asc,d:asc")
