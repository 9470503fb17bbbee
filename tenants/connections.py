"""Provider clients for the portal's provider connections. The one place that builds them."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from providers import build_client  # noqa: F401  (import side effects register the matrices)
from providers.capabilities import VOICEIT_MATRIX, VOXIMPLANT_MATRIX, Capability, CapabilityMatrix, with_probe
from tenants.models import ProviderConnection


def client_for(connection: ProviderConnection, *, transport: Any = None) -> Any:
    """A provider client (providers.base.ProviderClient) for this connection; close it after use."""

    return build_client(
        connection.kind,
        base_url=connection.base_url,
        credentials_path=connection.credentials_path or None,
        parent_api_key_path=connection.parent_api_key_path or None,
        voiceit_credentials_path=connection.voiceit_credentials_path or None,
        timeout=(float(settings.PROVIDER_CONNECT_TIMEOUT), float(settings.PROVIDER_READ_TIMEOUT)),
        transport=transport,
    )


def capability_reasons(connection: ProviderConnection) -> dict[str, str | None]:
    """{capability value: None if supported, else the reason it is not}, for pages."""

    matrix = effective_matrix(connection)
    return {cap.value: matrix.reason(cap) for cap in Capability}


def capability_matrix(connection: ProviderConnection) -> Any:
    """The provider's capability matrix, without building a client (no file or network I/O)."""

    matrices: dict[str, Any] = {"voximplant": VOXIMPLANT_MATRIX, "voiceit": VOICEIT_MATRIX}
    return matrices[connection.kind]


def unavailable(connection: ProviderConnection, capability: Capability, *, probed: bool = False) -> str | None:
    """``"Unavailable: <the matrix's reason>"`` when the connection's provider lacks
    ``capability``, else None: the first line of every staff refusal that needs it.
    ``probed`` reads the effective matrix (the last capability probe) instead of the static one."""

    matrix = effective_matrix(connection) if probed else capability_matrix(connection)
    return None if matrix.supports(capability) else f"Unavailable: {matrix.reason(capability)}"


def effective_matrix(connection: ProviderConnection) -> CapabilityMatrix:
    """The static matrix as the last probe leaves it (tenants.capability_probe): a capability
    whose provider method was probed missing is unsupported, with the reason and the time of
    the check. No file or network I/O."""

    return with_probe(capability_matrix(connection), connection.capabilities, connection.capabilities_checked_at)
