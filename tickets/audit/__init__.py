"""The audit log, one module per reason to change:

- chain.py: the insert-only MAC chain: record_attempt, record_outcome, append_many (bulk,
  for seed_audit and imports), verify_chain, keys and checkpoints;
- queries.py: reading it (filters, keyset pages, counts, one entry);
- export.py: the CSV export, logged itself;
- reconcile.py: settling pending and unknown edits by reading their tickets back
  (audit_reconcile; the task worker and `manage.py reconcile_audit` call it);
- words.py, actors.py: entries in words, and the actor filter's names.

Nothing here imports tickets.services (services import this package). The names other
modules use are re-exported here."""

from .actors import actor_suggestions
from .chain import (
    GENESIS_HASH,
    RequestMeta,
    VerifyResult,
    append_many,
    client_ip,
    entry_row,
    record_attempt,
    record_outcome,
    row_hash,
    verify_chain,
)
from .export import EXPORT_COLUMNS, FORMULA_STARTS, audit_export, export_count, export_verify
from .queries import (
    AuditDetail,
    AuditFilter,
    AuditFilterForm,
    AuditPage,
    ChartSpan,
    Cursor,
    DayCount,
    audit_daily_counts,
    audit_entry_detail,
    audit_page,
    chart_span,
)
from .reconcile import IN_FLIGHT_SECONDS, audit_reconcile
from .words import revert_numbers

__all__ = [
    "EXPORT_COLUMNS",
    "FORMULA_STARTS",
    "GENESIS_HASH",
    "IN_FLIGHT_SECONDS",
    "AuditDetail",
    "AuditFilter",
    "AuditFilterForm",
    "AuditPage",
    "ChartSpan",
    "Cursor",
    "DayCount",
    "RequestMeta",
    "VerifyResult",
    "actor_suggestions",
    "append_many",
    "audit_daily_counts",
    "audit_entry_detail",
    "audit_export",
    "audit_page",
    "audit_reconcile",
    "chart_span",
    "client_ip",
    "entry_row",
    "export_count",
    "export_verify",
    "record_attempt",
    "record_outcome",
    "revert_numbers",
    "row_hash",
    "verify_chain",
]
