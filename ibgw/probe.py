"""``ibgw probe``: which reads this gateway build serves, and through which variant.

Each read that declares ``probe`` parameters is run once with them (within the
pacing limits, audited like any read). A read answers ``works`` (its preferred
variant), ``fallback`` (preferred variants not served, a later one answered: the
detail lists those not served), ``not served`` or ``not entitled``. The table is kept
per gateway and build in the state directory (:mod:`ibgw.probe_table`); reads consult
it to try the working variant first.
"""

from __future__ import annotations

from .errors import AuditUnavailable, IbgwError, NotServed, SessionError
from .probe_table import last_probe, probe_result_for, save_probe

__all__ = ["last_probe", "probe_result_for", "run_probe"]


def run_probe(app, categories=()) -> tuple[dict, list[dict]]:
    """Probe every read (of ``categories`` if given). Returns the session status as
    a dict and one row per read."""
    from .runner import run_read
    from .status import check_status

    status = check_status(app, actor="probe")
    rows: list[dict] = []
    wanted = set(categories)
    for read in sorted(app.reads, key=lambda r: r.key):
        if wanted and read.category not in wanted:
            continue
        row = {"read": read.key, "result": "", "variant": None, "provenance": None, "detail": ""}
        if read.probe is None:
            row.update(result="skipped", detail="no probe declared")
        elif not status.usable:
            row.update(result=status.state, detail=status.reason)
        else:
            try:
                outcome = run_read(app, read, dict(read.probe), actor="probe")
                # "fallback": the preferred variants are not served here; a later one
                # (often the documented snapshot) answered instead
                row.update(
                    result="fallback" if outcome.tried else "works",
                    variant=outcome.variant,
                    provenance=outcome.provenance,
                    detail=f"{len(outcome.records)} rows"
                    + (f"; not served: {'; '.join(outcome.tried)}" if outcome.tried else ""),
                )
            except NotServed as exc:
                row.update(
                    result="not entitled" if exc.reason == "not-entitled" else "not served",
                    detail="; ".join(exc.tried) or exc.reason,
                )
            except AuditUnavailable:
                raise
            except SessionError as exc:
                row.update(result=exc.state, detail=exc.reason)
            except IbgwError as exc:
                row.update(result="error", detail=exc.reason)
        rows.append(row)
    if status.usable:
        from . import redact

        save_probe(app, redact.text(status.build) if status.build else status.build, rows)
    return status.as_dict(), rows
