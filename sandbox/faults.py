"""Fault injection at the HTTP seam, reproducible from a seed.

Rule JSON (see docs/CONTRACTS.md)::

    {"method": "TransferMoneyToChildAccount" | "*", "kind": K, "rate": 1.0, "count": null,
     "latency_ms": 0, "code": 340}

Kinds: ``latency`` (adds latency only), ``http_500``, ``http_502``, ``http_429``, ``error_code``
(HTTP 200 JSON error with ``code``), ``html`` (HTTP 200 HTML page), ``empty`` (HTTP 200 empty body),
``reset`` (connection dropped before applying), ``apply_then_drop`` (applied, then the connection
dropped), ``apply_then_500`` (applied, then HTTP 500).

Evaluation per request: rules are tried in order; a rule matches when its ``method`` equals the
request's method (or is ``*``) and its ``count`` is not used up. A matching rule with ``rate < 1``
draws one number from ``random.Random(seed)``; ``rate >= 1`` draws nothing. Firing ``latency``
rules add their latency and evaluation goes on; the first firing rule of any other kind decides
the outcome and ends evaluation. Optional rule fields: ``retry_after`` (seconds, for http_429),
``latency_when`` (``before``/``after`` applying; default ``after`` for apply_then_* kinds,
``before`` otherwise), ``status`` and ``response_code`` (VoiceIt error_code: HTTP status and
responseCode, default 500/GERR).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "latency",
    "http_500",
    "http_502",
    "http_429",
    "error_code",
    "html",
    "empty",
    "reset",
    "apply_then_drop",
    "apply_then_500",
)
APPLYING_KINDS = ("latency", "apply_then_drop", "apply_then_500")


class DropConnection(Exception):
    """Raised by the WSGI app to make the server close the socket without a response."""

    def __init__(self, applied: bool) -> None:
        super().__init__("sandbox fault: connection dropped " + ("after applying" if applied else "before applying"))
        self.applied = applied


class FaultError(ValueError):
    pass


@dataclass
class Rule:
    method: str
    kind: str
    rate: float = 1.0
    count: int | None = None
    latency_ms: float = 0
    code: Any = None
    retry_after: int | None = None
    latency_when: str | None = None
    status: int | None = None
    response_code: str | None = None
    fired: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": self.kind,
            "rate": self.rate,
            "count": self.count,
            "latency_ms": self.latency_ms,
            "code": self.code,
            "retry_after": self.retry_after,
            "latency_when": self.latency_when,
            "status": self.status,
            "response_code": self.response_code,
            "fired": self.fired,
        }


@dataclass
class Decision:
    kind: str | None  # None: no outcome-changing fault (maybe latency only)
    latency_before: float = 0.0
    latency_after: float = 0.0
    rule: Rule | None = None
    fired: list[str] = field(default_factory=list)

    @property
    def applies(self) -> bool:
        return self.kind is None or self.kind in APPLYING_KINDS


def _rule_from_json(obj: Any) -> Rule:
    if not isinstance(obj, dict):
        raise FaultError("a rule must be an object")
    unknown = set(obj) - {
        "method",
        "kind",
        "rate",
        "count",
        "latency_ms",
        "code",
        "retry_after",
        "latency_when",
        "status",
        "response_code",
        "fired",
    }
    if unknown:
        raise FaultError(f"unknown rule fields: {sorted(unknown)}")
    method = obj.get("method", "*")
    kind = obj.get("kind")
    if not isinstance(method, str) or not method:
        raise FaultError("method must be a non-empty string")
    if kind not in KINDS:
        raise FaultError(f"kind must be one of {', '.join(KINDS)}")
    rate = obj.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise FaultError("rate must be a number in [0, 1]")
    count = obj.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise FaultError("count must be null or a non-negative integer")
    latency = obj.get("latency_ms", 0) or 0
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise FaultError("latency_ms must be a non-negative number")
    code = obj.get("code")
    if kind == "error_code" and code is None:
        code = 340
    when = obj.get("latency_when")
    if when not in (None, "before", "after"):
        raise FaultError("latency_when must be 'before' or 'after'")
    retry_after = obj.get("retry_after")
    if retry_after is not None and (isinstance(retry_after, bool) or not isinstance(retry_after, int)):
        raise FaultError("retry_after must be an integer")
    status = obj.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599):
        raise FaultError("status must be an HTTP status code")
    return Rule(
        method=method,
        kind=kind,
        rate=float(rate),
        count=count,
        latency_ms=latency,
        code=code,
        retry_after=retry_after,
        latency_when=when,
        status=status,
        response_code=obj.get("response_code"),
    )


class FaultInjector:
    """Holds the rule set and the seeded RNG; thread-safe."""

    LOG_SIZE = 200

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self.seed: int = 0
        self.rules: list[Rule] = []
        self._rng = random.Random(0)
        self.log: list[dict[str, Any]] = []
        self.requests_seen = 0
        if spec:
            self.set(spec)

    def set(self, spec: Any) -> None:
        if isinstance(spec, list):
            spec = {"rules": spec}
        if not isinstance(spec, dict):
            raise FaultError("expected {'seed': int, 'rules': [...]}")
        seed = spec.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise FaultError("seed must be an integer")
        rules_json = spec.get("rules", [])
        if not isinstance(rules_json, list):
            raise FaultError("rules must be a list")
        rules = [_rule_from_json(r) for r in rules_json]
        with self._lock:
            self.seed = seed
            self.rules = rules
            self._rng = random.Random(seed)
            self.log = []
            self.requests_seen = 0

    def clear(self) -> None:
        self.set({"seed": self.seed, "rules": []})

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self.seed,
                "rules": [r.to_json() for r in self.rules],
                "requests_seen": self.requests_seen,
                "log": list(self.log),
            }

    def decide(self, method: str) -> Decision:
        decision = Decision(kind=None)
        with self._lock:
            self.requests_seen += 1
            if not self.rules:
                return decision
            for rule in self.rules:
                if rule.method != "*" and rule.method != method:
                    continue
                if rule.count is not None and rule.count <= 0:
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                rule.fired += 1
                seconds = rule.latency_ms / 1000.0
                when = rule.latency_when or ("after" if rule.kind.startswith("apply_then") else "before")
                if when == "after":
                    decision.latency_after += seconds
                else:
                    decision.latency_before += seconds
                decision.fired.append(rule.kind)
                if rule.kind != "latency":
                    decision.kind = rule.kind
                    decision.rule = rule
                    break
            if decision.fired:
                self.log.append({"n": self.requests_seen, "method": method, "kinds": decision.fired})
                if len(self.log) > self.LOG_SIZE:
                    del self.log[: len(self.log) - self.LOG_SIZE]
        return decision


def parse_faults_arg(text: str | None) -> dict[str, Any] | None:
    """``--faults`` / SANDBOX_FAULTS: JSON (object or list of rules) or ``@path``."""
    import json

    if not text:
        return None
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as fh:
            text = fh.read()
    value = json.loads(text)
    if isinstance(value, list):
        value = {"rules": value}
    return value
