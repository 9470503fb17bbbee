"""The sandbox posts account callbacks to the callback_url set with SetAccountInfo /
SetChildAccountInfo: the body shape, the hash, per-account ids, batching, retries, lost
callbacks. A small HTTP receiver in the test stands for the portal."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sandbox.callbacks import outbox

from .conftest import Env


class Receiver:
    """Records every POST body; answers the statuses in ``replies`` first, then 200."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.replies: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver.lock:
                    status = receiver.replies.pop(0) if receiver.replies else 200
                    receiver.posts.append({"path": self.path, "status": status, "body": body})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook/") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def callbacks(self, path: str | None = None, *, delivered: bool = True) -> list[dict[str, Any]]:
        with self.lock:
            posts = list(self.posts)
        return [
            cb
            for post in posts
            if (path is None or post["path"] == path) and (not delivered or post["status"] == 200)
            for cb in post["body"]["callbacks"]
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def wait_for(what: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll until ``what()`` is truthy (bounded); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def set_parent_callback(env: Env, url: str, salt: str = "pepper-salt") -> None:
    env.ok("SetAccountInfo", {"callback_url": url, "callback_salt": salt})


def freeze(env: Env, account_id: int, frozen: bool = True) -> None:
    response = env.admin("POST", "freeze", {"account_id": account_id, "frozen": frozen})
    assert response.status_code == 200, response.text


def test_set_account_info_stores_the_url_and_checks_it(env: Env, receiver: Receiver) -> None:
    assert env.error_code("SetAccountInfo", {"callback_url": "not a url"}) == 398
    assert env.error_code("SetAccountInfo", {"callback_salt": "s" * 40}) == 399
    set_parent_callback(env, receiver.url(), "s" * 39)
    info = env.ok("GetAccountInfo")["result"]
    assert info["callback_url"] == receiver.url()
    assert info["callback_salt"] == "s" * 39
    child = env.add_child()
    assert (
        env.error_code("SetChildAccountInfo", {"child_account_id": child["account_id"], "callback_url": "ftp:x"}) == 398
    )


def test_a_frozen_child_is_posted_to_the_parent_with_the_parents_hash(env: Env, receiver: Receiver) -> None:
    set_parent_callback(env, receiver.url())
    child = env.add_child()
    cid = child["account_id"]
    freeze(env, cid)
    freeze(env, cid)  # no change: no callback
    freeze(env, cid, False)
    got = wait_for(lambda: len(receiver.callbacks()) >= 2 and receiver.callbacks())
    assert [(c["type"], c["callback_id"], c["account_id"]) for c in got] == [
        ("account_is_frozen", 1, cid),
        ("account_is_unfrozen", 2, cid),
    ]
    first = got[0]
    assert first["hash"] == md5(f"pepper-salt{cid}{env.api_key}1")
    assert first["account_name"] == child["account_name"]
    assert first["account_email"] == f"{child['account_name']}@example.com"
    assert first["account_is_frozen"] == {}
    assert first["currency"] == "USD" and first["balance"] == 0


def test_transfers_and_a_threshold_crossing_are_posted(env: Env, receiver: Receiver) -> None:
    set_parent_callback(env, receiver.url())
    child = env.add_child(min_balance_to_notify="5")
    cid = child["account_id"]
    env.transfer(cid, "10.00")
    env.transfer(cid, "-6.00")
    got = wait_for(lambda: len(receiver.callbacks()) >= 3 and receiver.callbacks())
    assert [c["type"] for c in got] == ["balance_is_changed", "balance_is_changed", "min_balance"]
    assert [c["callback_id"] for c in got] == [1, 2, 3]
    assert got[1]["balance"] == 4 and got[0]["balance"] == 10
    assert got[2]["min_balance"] == {"is_min_credit": False, "is_repeated": False}


def test_one_transfer_to_several_children_is_one_post_with_several_callbacks(env: Env, receiver: Receiver) -> None:
    set_parent_callback(env, receiver.url())
    a, b = env.add_child(), env.add_child()
    env.transfer(f"{a['account_id']};{b['account_id']}", "1.00")
    wait_for(lambda: len(receiver.callbacks()) >= 2)
    assert len(receiver.posts) == 1
    assert {c["account_id"] for c in receiver.posts[0]["body"]["callbacks"]} == {a["account_id"], b["account_id"]}


def test_a_failed_post_is_retried_until_it_is_accepted(env: Env, receiver: Receiver) -> None:
    set_parent_callback(env, receiver.url())
    child = env.add_child()
    receiver.replies = [500, 503]
    freeze(env, child["account_id"])
    got = wait_for(receiver.callbacks)
    assert [p["status"] for p in receiver.posts] == [500, 503, 200]
    assert got[0]["type"] == "account_is_frozen"
    assert [r["state"] for r in outbox(env.store, child["account_id"])] == ["delivered"]


def test_a_refused_post_is_not_retried(env: Env, receiver: Receiver) -> None:
    set_parent_callback(env, receiver.url())
    child = env.add_child()
    receiver.replies = [403]
    freeze(env, child["account_id"])
    wait_for(lambda: [r["state"] for r in outbox(env.store, child["account_id"])] == ["rejected"])
    assert [p["status"] for p in receiver.posts] == [403]


@pytest.mark.parametrize(
    ("options", "state"), [({"callbacks_drop_rate": "1"}, "dropped"), ({"callbacks_enabled": False}, "disabled")]
)
def test_lost_or_disabled_callbacks_never_arrive(
    env: Env, receiver: Receiver, options: dict[str, Any], state: str
) -> None:
    set_parent_callback(env, receiver.url())
    env.set_options(**options)
    child = env.add_child()
    freeze(env, child["account_id"])
    wait_for(lambda: [r["state"] for r in outbox(env.store, child["account_id"])] == [state])
    assert receiver.posts == []


def test_a_bad_drop_rate_is_refused(env: Env) -> None:
    assert env.admin("PUT", "options", {"callbacks_drop_rate": "1.5"}).status_code == 400


def test_a_child_with_its_own_url_gets_its_own_hash(env: Env, receiver: Receiver) -> None:
    set_parent_callback(env, receiver.url("/parent/"))
    child = env.add_child()
    cid = child["account_id"]
    env.ok(
        "SetChildAccountInfo", {"child_account_id": cid, "callback_url": receiver.url("/child/"), "callback_salt": "c"}
    )
    env.set_options(callbacks_child_events_to_parent=False)
    freeze(env, cid)
    got = wait_for(lambda: receiver.callbacks("/child/"))
    assert got[0]["hash"] == md5(f"c{cid}{child['api_key']}1")
    wait_for(lambda: {r["state"] for r in outbox(env.store, cid)} == {"delivered", "skipped"})
    assert receiver.callbacks("/parent/") == []


def test_no_url_means_nothing_is_queued(env: Env) -> None:
    child = env.add_child()
    freeze(env, child["account_id"])
    assert outbox(env.store, child["account_id"]) == []
