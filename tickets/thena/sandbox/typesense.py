"""The part of Typesense's search syntax the dashboard uses (thena-api.md §4.3), so the
sandbox answers `filter_by` and `sort_by` as Thena's Typesense-backed search would.

filter_by: clauses `field:=value`, `field:value`, `field:!=value`, `field:>value` (also
>=, <, <=), a list `field:=[a,b]`, values in backticks when they hold spaces or commas,
joined with `&&` and `||` (`&&` binds tighter) and grouped with parentheses. `null`
matches a missing value (a guess: Thena's index is undocumented).

sort_by: up to three comma-separated `field:asc|desc`, and Typesense's
`_eval([(filter):weight, ...]):desc`, which ranks by the weight of the first filter a
document matches.
"""

import re
from datetime import datetime

from .validation import ApiError

_CLAUSE = re.compile(r"\s*([A-Za-z_][\w.]*)\s*:\s*(!=|>=|<=|=|>|<)?\s*(.*?)\s*$", re.S)


def matches(document: dict, filter_by: str) -> bool:
    if not filter_by.strip():
        return True
    tokens = _tokens(filter_by)
    position, result = _or(document, tokens, 0)
    if position != len(tokens):
        raise _bad(filter_by)
    return result


def sort_key(sort_by: str):
    """A key for list.sort(); the caller sorts ascending (descending parts are negated)."""
    parts = [part.strip() for part in _split_top(sort_by, ",") if part.strip()]
    if not parts or len(parts) > 3:
        raise ApiError(400, "Only upto 3 sort_by fields can be specified.")
    keys = [_sort_part(part) for part in parts]
    return lambda document: tuple(key(document) for key in keys)


def _tokens(text: str) -> list[str]:
    """Operators, parentheses and whole clauses (a clause runs to the next operator
    outside backticks and brackets)."""
    tokens, position = [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
        elif text.startswith(("&&", "||"), position):
            tokens.append(text[position : position + 2])
            position += 2
        elif text[position] in "()":
            tokens.append(text[position])
            position += 1
        else:
            end, depth, quoted = position, 0, False
            while end < len(text):
                char = text[end]
                if char == "`":
                    quoted = not quoted
                elif not quoted:
                    if char == "[":
                        depth += 1
                    elif char == "]":
                        depth -= 1
                    elif depth == 0 and (text.startswith(("&&", "||"), end) or char == ")"):
                        break
                end += 1
            if quoted or depth:
                raise _bad(text)
            tokens.append(text[position:end].strip())
            position = end
    return tokens


def _or(document, tokens, position):
    position, result = _and(document, tokens, position)
    while position < len(tokens) and tokens[position] == "||":
        position, other = _and(document, tokens, position + 1)
        result = result or other
    return position, result


def _and(document, tokens, position):
    position, result = _term(document, tokens, position)
    while position < len(tokens) and tokens[position] == "&&":
        position, other = _term(document, tokens, position + 1)
        result = result and other
    return position, result


def _term(document, tokens, position):
    if position >= len(tokens):
        raise _bad(" ".join(tokens))
    token = tokens[position]
    if token == "(":
        position, result = _or(document, tokens, position + 1)
        if position >= len(tokens) or tokens[position] != ")":
            raise _bad(" ".join(tokens))
        return position + 1, result
    if token in ("&&", "||", ")"):
        raise _bad(" ".join(tokens))
    return position + 1, _clause(document, token)


def _clause(document: dict, clause: str) -> bool:
    found = _CLAUSE.fullmatch(clause)
    if not found or not found.group(3):
        raise _bad(clause)
    name, operator, raw = found.group(1), found.group(2) or ":", found.group(3)
    values = _values(raw, clause)
    actual = document.get(name)
    if operator in (">", ">=", "<", "<="):
        if len(values) != 1:
            raise _bad(clause)
        left, right = _comparable(actual, values[0])
        if left is None or right is None:
            return False
        return {
            ">": left > right,
            ">=": left >= right,
            "<": left < right,
            "<=": left <= right,
        }[operator]
    equal = any(_equal(actual, value) for value in values)
    return not equal if operator == "!=" else equal


def _values(raw: str, clause: str) -> list[str]:
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise _bad(clause)
        items = _split_top(raw[1:-1], ",")
    else:
        items = [raw]
    values = []
    for item in items:
        item = item.strip()
        if item.startswith("`") and item.endswith("`") and len(item) >= 2:
            item = item[1:-1]
        elif "`" in item or not item:
            raise _bad(clause)
        values.append(item)
    return values


def _split_top(text: str, separator: str) -> list[str]:
    """`text` split at `separator` outside brackets, parentheses and backticks."""
    parts, current, depth, quoted = [], [], 0, False
    for char in text:
        if char == "`":
            quoted = not quoted
        elif not quoted and char in "[(":
            depth += 1
        elif not quoted and char in "])":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _equal(actual, value: str) -> bool:
    if value == "null":
        return actual is None or actual == ""
    if isinstance(actual, bool):
        return str(actual).lower() == value.lower()
    if isinstance(actual, list):
        return any(_equal(item, value) for item in actual)
    return actual is not None and str(actual).lower() == value.lower()


def _comparable(actual, value: str):
    """Numbers as numbers; a date-time string against an ISO date-time or epoch seconds."""
    if isinstance(actual, bool) or actual is None:
        return None, None
    if isinstance(actual, int | float):
        try:
            return actual, float(value)
        except ValueError:
            return None, None
    left = _moment(actual)
    right = _moment(value)
    if left is not None and right is not None:
        return left, right
    return str(actual), value


def _moment(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _sort_part(part: str):
    expression, _, direction = part.rpartition(":")
    direction = direction.strip().lower()
    if direction not in ("asc", "desc") or not expression.strip():
        raise ApiError(400, f"Could not parse the sort_by parameter: {part}")
    sign = -1 if direction == "desc" else 1
    expression = expression.strip()
    if expression.startswith("_eval(") and expression.endswith(")"):
        rules = _eval_rules(expression[len("_eval(") : -1], part)

        def rank(document):
            return sign * next((w for f, w in rules if matches(document, f)), 0)

        return rank

    def value(document):
        missing, text, key = _sortable(document.get(expression))
        return (missing, text, _negate(key) if sign < 0 else key)

    return value


def _eval_rules(text: str, part: str) -> list[tuple[str, int]]:
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return [(text, 1)]
    rules = []
    for rule in _split_top(text[1:-1], ","):
        filter_text, _, weight = rule.strip().rpartition(":")
        filter_text = filter_text.strip()
        if not (filter_text.startswith("(") and filter_text.endswith(")")):
            raise ApiError(400, f"Could not parse the sort_by parameter: {part}")
        try:
            rules.append((filter_text[1:-1], int(weight)))
        except ValueError:
            raise ApiError(400, f"Could not parse the sort_by parameter: {part}") from None
    return rules


def _sortable(value) -> tuple[int, int, object]:
    """Missing values last; numbers and date-times by value, then the rest as lower-case
    text (never compared with a number)."""
    if value is None or value == "":
        return (1, 0, 0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, 0, value)
    moment = _moment(value) if isinstance(value, str) and value[:1].isdigit() else None
    return (0, 0, moment) if moment is not None else (0, 1, str(value).lower())


def _negate(value):
    if isinstance(value, int | float):
        return -value
    return (*(-ord(char) for char in value), 1)


def _bad(text: str) -> ApiError:
    return ApiError(400, f"Could not parse the filter query: {text[:200]}")
