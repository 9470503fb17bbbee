"""VoiceIt sub-account client."""

from providers.voiceit.client import (
    DEFAULT_BASE_URL,
    SubAccount,
    UsersPage,
    VoiceItClient,
    VoiceItCredentials,
    VoiceItUser,
)

__all__ = ["DEFAULT_BASE_URL", "SubAccount", "UsersPage", "VoiceItClient", "VoiceItCredentials", "VoiceItUser"]
