"""Admission threads shared by turns (``TurnsByKey``): a company's sweep holds one thread at most, its work runs
in the order it came, and every work submitted runs, shutdown included. Real threads; events, not sleeps."""

from __future__ import annotations

import threading

import pytest

from operators.control_plane.turns import TurnsByKey


def test_one_keys_many_works_hold_one_thread_and_run_in_order_while_another_key_runs():
    turns = TurnsByKey(2, "test-turns")
    first_inside, release_first, other_ran = threading.Event(), threading.Event(), threading.Event()
    ran: list[str] = []

    def sweep(i: int) -> None:
        if i == 0:
            first_inside.set()
            assert release_first.wait(30)
        ran.append(f"sweep-{i}")

    try:
        for i in range(5):  # a sweep: five at once from one company
            turns.submit("company-a", lambda i=i: sweep(i))
        assert first_inside.wait(30)
        turns.submit("company-b", lambda: (ran.append("other"), other_ran.set()))
        # company-a's first holds a thread; its four others wait their turn, not the second thread
        assert other_ran.wait(30) and ran == ["other"]
    finally:
        release_first.set()
        turns.shutdown()
    assert ran == ["other", *[f"sweep-{i}" for i in range(5)]]


@pytest.mark.parametrize("error", [RuntimeError("boom"), SystemExit(1)])
def test_work_that_raises_does_not_stop_the_keys_next_work(error):
    turns = TurnsByKey(1, "test-turns")
    ran: list[int] = []

    def fails() -> None:
        raise error

    turns.submit("company-a", fails)
    turns.submit("company-a", lambda: ran.append(1))
    turns.shutdown()
    assert ran == [1]


def test_work_submitted_after_shutdown_is_refused_and_leaves_its_key_free():
    turns = TurnsByKey(1, "test-turns")
    turns.shutdown()
    with pytest.raises(RuntimeError):
        turns.submit("company-a", lambda: None)
    with pytest.raises(RuntimeError):  # refused again, not queued behind a key left busy
        turns.submit("company-a", lambda: None)


def test_work_for_a_key_whose_first_work_is_being_refused_is_refused_too_not_dropped():
    """A second submit for the key arriving while the pool refuses the first (shutting down) must not be queued
    behind it (nothing would ever run it, and its caller would wait forever): it is refused as well."""
    turns = TurnsByKey(1, "test-turns")
    second: dict[str, object] = {}
    refuse = turns._pool.submit

    def second_submit() -> None:
        try:
            turns.submit("company-a", lambda: None)
            second["outcome"] = "queued"
        except RuntimeError:
            second["outcome"] = "refused"

    def refusing_submit(*args, **kwargs):
        if "thread" in second:  # the second submit's own call: plainly refused
            return refuse(*args, **kwargs)
        late = threading.Thread(target=second_submit)
        late.start()
        late.join(0.5)  # it gets in now if the key's queue is open while this submit is refused
        second["thread"] = late
        turns._pool.shutdown(wait=True)
        return refuse(*args, **kwargs)

    turns._pool.submit = refusing_submit  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        turns.submit("company-a", lambda: None)
    second["thread"].join(30)  # type: ignore[attr-defined]
    assert second["outcome"] == "refused"
