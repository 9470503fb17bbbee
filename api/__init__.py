"""The REST API (/api/v1/), all DRF code in one place.

- auth.py: bearer tokens (``rp_<prefix>_<secret>``, sha256-hashed, tokens.py) and the browser
  session (CSRF enforced). A token acts with its own role, never more than its owner's.
- permissions.py: views ask for a portal permission (portal.roles.PERMISSIONS).
- errors.py + middleware.py: one error shape, ``{"error": {"code", "message", "fields"?}}``,
  for every error including 401/403/404/405/413/415/429/500 and Django's own.
- pagination.py: cursor pagination, ``{"results": [...], "next": url | null}``.
- throttles.py: one budget per token (API_THROTTLE_RATE).
- idempotency.py: Idempotency-Key replay (per key per token owner), 409 on a different body.
- parsers.py: JSON only; deep nesting is a 400, NaN/Infinity are refused.
- base.py: strict input (unknown fields, and tenant/child_account_id/role, are refused; money
  as a decimal string with at most two places).
- One module per resource: tenants, transfers, sync, audit, customer, misc (me, jobs).
- console_views.py: the console pages where staff create and revoke tokens.
"""
