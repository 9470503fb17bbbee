"""Voximplant Management API (platform_api) client."""

from providers.voximplant.auth import JwtSigner, ServiceAccountCredentials, load_parent_api_key
from providers.voximplant.client import DEFAULT_BASE_URL, VoximplantClient
from providers.voximplant.types import (
    AccountInfo,
    AccountInfoResponse,
    AddedAccount,
    ChildrenPage,
    ClonedAccount,
    ClonedItem,
    CurrencyRates,
    MoneyAmountToCharge,
    SubscriptionCharge,
    Transaction,
    TransactionHistoryPage,
    TransferMoneyResult,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "AccountInfo",
    "AccountInfoResponse",
    "AddedAccount",
    "ChildrenPage",
    "ClonedAccount",
    "ClonedItem",
    "CurrencyRates",
    "JwtSigner",
    "MoneyAmountToCharge",
    "ServiceAccountCredentials",
    "SubscriptionCharge",
    "Transaction",
    "TransactionHistoryPage",
    "TransferMoneyResult",
    "VoximplantClient",
    "load_parent_api_key",
]
