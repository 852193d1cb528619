"""Built-in: account discovery (``ibgw accounts``, ``summary``, ``ledger``, ``positions``)."""

from ibgw import Category, Param, Read, hookimpl
from ibgw.endpoints import (
    PORTFOLIO_ACCOUNTS,
    PORTFOLIO_LEDGER,
    PORTFOLIO_POSITIONS,
    PORTFOLIO_SUMMARY,
)

ACCOUNT = Param(
    "account",
    help="Account id (default: --account, then the first account).",
    pattern=r"[A-Za-z0-9]{1,32}",
)
F = "ibgw.default_plugins.accounts_reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("accounts", "Accounts, balances, cash ledger and positions."))
    register(
        Read(
            category="accounts",
            name="list",
            default=True,
            session=True,
            summary="Accounts visible to this login.",
            fetch=f"{F}:fetch_accounts",
            schema=f"{F}:AccountSchema",
            endpoints=[PORTFOLIO_ACCOUNTS],
            columns=["account", "alias", "type", "currency", "trading_type", "business_type"],
            probe={},
        )
    )
    register(
        Read(
            category="accounts",
            name="summary",
            summary="Account balances and margin summary.",
            params=[
                ACCOUNT,
                Param("all", type="bool", help="Show every metric, not only the main ones."),
            ],
            fetch=f"{F}:fetch_summary",
            schema=f"{F}:SummarySchema",
            endpoints=[PORTFOLIO_SUMMARY],
            columns=["metric", "amount", "currency", "value"],
            probe={},
        )
    )
    register(
        Read(
            category="accounts",
            name="ledger",
            summary="Cash ledger per currency.",
            params=[ACCOUNT],
            fetch=f"{F}:fetch_ledger",
            schema=f"{F}:LedgerSchema",
            endpoints=[PORTFOLIO_LEDGER],
            columns=[
                "currency",
                "cash_balance",
                "settled_cash",
                "net_liquidation",
                "stock_market_value",
                "unrealized_pnl",
                "realized_pnl",
                "exchange_rate",
            ],
            probe={},
        )
    )
    register(
        Read(
            category="accounts",
            name="positions",
            summary="Positions, every page.",
            params=[ACCOUNT],
            fetch=f"{F}:fetch_positions",
            schema=f"{F}:PositionSchema",
            endpoints=[PORTFOLIO_POSITIONS],
            columns=[
                "conid",
                "description",
                "asset_class",
                "position",
                "mkt_price",
                "mkt_value",
                "currency",
                "avg_cost",
                "unrealized_pnl",
            ],
            probe={},
        )
    )
