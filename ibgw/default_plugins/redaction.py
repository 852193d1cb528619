"""Built-in redaction rules: the core's secret keys and patterns.

The list itself lives in :mod:`ibgw.redact` (``BUILTIN_KEYS``, ``BUILTIN_PATTERNS``), which
also applies it without any plugin manager; this plugin declares the same list through
the hook, so ``ibgw plugins`` shows where the rules come from. Registering twice is
harmless: the redactor ignores duplicates.
"""

from ibgw.hookspecs import hookimpl


@hookimpl
def ibgw_redaction_rules(register):
    from ibgw.redact import BUILTIN_KEYS, BUILTIN_PATTERNS

    register(keys=BUILTIN_KEYS, patterns=BUILTIN_PATTERNS)
