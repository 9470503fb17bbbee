"""Voximplant platform_api emulation: the ``Voximplant`` class and the routing of a request to its method.

The methods live in mixins: child accounts in ``vox_accounts``, money in ``vox_money``, transaction
history in ``vox_history``, applications and app users in ``vox_users``; authentication of the
caller in ``vox_base`` and parameter parsing in ``vox_params``.
"""

from __future__ import annotations

from typing import Any

from .options import Options
from .store import Store
from .vox_accounts import AccountsMixin, render_account
from .vox_auth import KeyCache, VoxError
from .vox_history import HistoryMixin
from .vox_money import MoneyMixin
from .vox_params import Params
from .vox_plans import SCHEMA as PLANS_SCHEMA
from .vox_plans import PlansMixin
from .vox_users import UsersMixin
from .wsgiutil import Request


class Voximplant(AccountsMixin, MoneyMixin, HistoryMixin, PlansMixin, UsersMixin):
    """The emulated platform_api: ``handle`` answers a method listed in ``METHODS`` with its ``m_<Name>``."""

    METHODS = (
        "AddAccount",
        "CloneAccount",
        "GetAccountInfo",
        "SetAccountInfo",
        "GetChildrenAccounts",
        "SetChildAccountInfo",
        "TransferMoneyToChildAccount",
        "GetTransactionHistory",
        "GetCurrencyRate",
        "GetMoneyAmountToCharge",
        "GetAccountPlans",
        "GetAvailablePlans",
        "ChangeAccountPlan",
        "GetAccountDocuments",
        "AddApplication",
        "GetApplications",
        "AddUser",
        "SetUserInfo",
        "GetUsers",
        "DelUser",
        "TransferMoneyToUser",
    )

    def __init__(self, store: Store, opts: Options) -> None:
        self.store = store
        self.opts = opts
        self.keys = KeyCache()
        self._anchors: dict[Any, tuple[str, list[tuple[Any, ...]]]] = {}
        with store.connection() as conn:
            conn.executescript(PLANS_SCHEMA)

    # --- routing -----------------------------------------------------------------------------

    def disabled_methods(self) -> frozenset[str]:
        """The methods the ``disabled_methods`` option withdraws (answered as unknown commands)."""
        return frozenset(name.strip() for name in self.opts["disabled_methods"].split(";") if name.strip())

    @staticmethod
    def method_name(req: Request) -> str | None:
        """The method addressed by the path (``/platform_api/<Method>``) or the ``cmd`` field."""
        rest = req.path[len("/platform_api") :].strip("/")
        if rest:
            return rest.split("/", 1)[0]
        cmd = req.params.get("cmd")
        return cmd.strip() if cmd and cmd.strip() else None

    def handle(self, req: Request, method: str | None) -> dict[str, Any]:
        try:
            if method is None:
                raise VoxError(102)
            handler = getattr(self, "m_" + method, None) if method in self.METHODS else None
            if handler is None or method in self.disabled_methods():
                raise VoxError(103)
            if method == "TransferMoneyToChildAccount":
                mode = self.opts["transfer_method"]
                if mode == "unknown_command":
                    raise VoxError(103)
                if mode == "forbidden":
                    raise VoxError(104)
            p = Params(req.params, self.opts)
            return handler(req, p)
        except VoxError as exc:
            return {"error": {"msg": exc.msg, "code": exc.code}}


__all__ = ["Voximplant", "VoxError", "Params", "render_account"]
