"""The ledger's pure steps: postings netted per account in lock order and refused
unless they balance; statement months cut in the statement's zone; the receivable's
postings as what the customer owes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.payments.postpaid import month_bounds, statement_lines
from store.ledger import Entry, Reconciliation, net_postings


def test_postings_are_netted_per_account_in_account_order() -> None:
    # A capture of 1200 of a 2000 hold: held -2000, revenue +1200, available +800.
    assert net_postings([(9, -2000), (4, 1200), (2, 800)]) == [(2, 800), (4, 1200), (9, -2000)]
    assert net_postings([(5, 300), (6, -500), (5, 200)]) == [(5, 500), (6, -500)]
    assert net_postings([(1, 0), (2, 0)]) == []  # a capture of 0 with nothing released


@pytest.mark.parametrize("postings", [[(1, 100)], [(1, -100), (2, 101)], [(3, -1), (3, 2)]])
def test_unbalanced_postings_are_refused(postings: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError, match="postings sum to"):
        net_postings(postings)


def test_month_bounds_cross_years_and_follow_the_zone() -> None:
    start, end = month_bounds("2026-12")
    assert (start, end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    start, end = month_bounds("2028-02", "Europe/Berlin")
    assert (end - start).days == 29  # leap year
    # March in Berlin starts at +01:00 and ends at +02:00 (summer time from 29 March).
    march = month_bounds("2026-03", "Europe/Berlin")
    assert march[0].astimezone(UTC) == datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert march[1].astimezone(UTC) == datetime(2026, 3, 31, 22, tzinfo=UTC)


@pytest.mark.parametrize("month", ["2026-13", "2026", "26-01", "2026-1-1", ""])
def test_a_month_that_is_not_yyyy_mm_is_refused(month: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds(month)


def entry(kind: str, amount_minor: int) -> Entry:
    return Entry(
        1, kind, "bob", "S1", "postpaid_1", None, "postpaid_receivable", "bob", "EUR",
        amount_minor, None, datetime(2026, 11, 3, tzinfo=UTC),
    )  # fmt: skip


def test_statement_lines_show_what_is_owed() -> None:
    lines = statement_lines([entry("charge", -1850), entry("refund", 350)])
    assert [(line.kind, line.amount_minor) for line in lines] == [
        ("charge", 1850),
        ("refund", -350),
    ]
    assert {(line.session_id, line.payment_reference) for line in lines} == {("S1", "postpaid_1")}


def test_reconciliation_is_ok_only_when_nothing_was_found() -> None:
    assert Reconciliation({}, [], [], []).ok
    assert not Reconciliation({"EUR": 1}, [], [], []).ok
    assert not Reconciliation({}, [7], [], []).ok
    assert not Reconciliation({}, [], [(1, 401, 400)], []).ok
    assert not Reconciliation({}, [], [], [("alice", "EUR", 700, 0)]).ok
