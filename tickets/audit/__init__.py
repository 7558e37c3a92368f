"""The audit log: chain.py writes and verifies the hash chain, queries.py reads it
(filters, keyset pages, counts, one entry), export.py streams it as CSV. The names other
modules use are re-exported here."""

from .chain import (
    GENESIS_HASH,
    RequestMeta,
    VerifyResult,
    client_ip,
    record_attempt,
    record_outcome,
    row_hash,
    verify_chain,
)
from .export import EXPORT_COLUMNS, FORMULA_STARTS, audit_export
from .queries import (
    AuditDetail,
    AuditFilter,
    AuditFilterForm,
    AuditPage,
    Cursor,
    DayCount,
    audit_daily_counts,
    audit_entry_detail,
    audit_page,
)

__all__ = [
    "EXPORT_COLUMNS",
    "FORMULA_STARTS",
    "GENESIS_HASH",
    "AuditDetail",
    "AuditFilter",
    "AuditFilterForm",
    "AuditPage",
    "Cursor",
    "DayCount",
    "RequestMeta",
    "VerifyResult",
    "audit_daily_counts",
    "audit_entry_detail",
    "audit_export",
    "audit_page",
    "client_ip",
    "record_attempt",
    "record_outcome",
    "row_hash",
    "verify_chain",
]
