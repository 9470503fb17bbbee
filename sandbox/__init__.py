"""Local, stateful emulator of the Voximplant platform_api and VoiceIt sub-account APIs.

Standalone: stdlib + cryptography + PyJWT (httpx only for :mod:`sandbox.transport`).
Never imports Django or the portal's ``providers`` package. See ``sandbox/README.md``.
"""

__version__ = "1.0.0"
