"""Path converters."""

import re


class TicketIdConverter:
    """A Thena ticket id as a URL carries it: 1 to 64 characters (the audit log's column),
    no slash, no control character or lone surrogate. Any other id cannot exist, so its
    URL is a 404 (and reversing such an id fails, so no page links to it)."""

    regex = r"[^/\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,64}"
    pattern = re.compile(regex)

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
