"""One OCPP message of a station folded into its state: transaction facts first,
then the meter samples and signed meter values, then what closes or is forgotten as
the event time moves.

Transactions are keyed by ``transaction_id`` and live on ``evse_id`` (1.6: the
connector). 1.6 StartTransaction/StopTransaction and 2.0.1 Started/Updated/Ended
open, update and end them; a 2.0.1 Updated/Ended for an unknown transaction opens
it as ``start_unknown`` (a later Started fills the start in).

Duplicates: message ids (the last :data:`flows.sessions.state.RECENT_MESSAGES`,
checked by the caller), 2.0.1 TransactionEvents by what identifies them (seqNo,
event type, timestamp and content: :func:`fingerprint`; stations resend after a
lost answer), a second start or stop of a transaction, and the ids of the last
:data:`flows.sessions.state.RECENT_CLOSED` forgotten transactions. A distinct event
is never dropped for its seqNo alone: some stations send the same seqNo on every
event, so a seqNo carried by two different events is ``seq_no_reused``. A gap in a
transaction's ``seqNo`` range is ``seq_no_gap``; any event sent ``offline`` is
``offline``.

Signed meter values are written for their transaction (the one they name, else the
single running transaction on their EVSE, like samples); one without a transaction
to belong to is left out, and so are those of a repeated event.
"""

from __future__ import annotations

import hashlib

import msgspec

from bus.normalized import (
    MeterSample,
    SignedMeterValue,
    TransactionEnd,
    TransactionStart,
    TransactionUpdate,
)
from bus.sessions import ClosedBy
from flows.sessions.brackets import offer_all
from flows.sessions.events import StationMessage, TxFact
from flows.sessions.lifecycle import (
    claim_evse,
    close,
    close_idle,
    finalize_ready,
    forget_old,
    new_tx,
)
from flows.sessions.rows import Output, sample_rows, signed_row
from flows.sessions.rules import SessionRules
from flows.sessions.samples import absorb, context_register, rebuild_fold, running_tx
from flows.sessions.snapshot import session_row
from flows.sessions.state import ChargePointState, Tx

_fingerprint_encoder = msgspec.msgpack.Encoder()
_NO_SAMPLES: list[MeterSample] = []


def fingerprint(fact: TxFact, samples: list[MeterSample]) -> bytes:
    """What identifies one TransactionEvent: its seqNo, event type, timestamp and
    everything else the station sent in it (its transaction's samples included). The
    gateway's authorisation answer is left out: a resend may be answered differently.
    A digest, stable across processes (it lives in the pickled state)."""
    if fact.auth_status is not None:
        fact = msgspec.structs.replace(fact, auth_status=None)
    data = _fingerprint_encoder.encode((fact, samples))
    return hashlib.blake2b(data, digest_size=16).digest()


def _split(
    msg: StationMessage,
) -> tuple[dict[str | None, list[MeterSample]], list[TxFact], list[SignedMeterValue]]:
    """The message's samples by transaction id, its transaction facts and its signed
    meter values."""
    by_tx: dict[str | None, list[MeterSample]] = {}
    tx_facts: list[TxFact] = []
    signed: list[SignedMeterValue] = []
    for fact in msg.facts:
        if type(fact) is MeterSample:  # (exact: the fact structs are never subclassed)
            group = by_tx.get(fact.transaction_id)
            if group is None:
                by_tx[fact.transaction_id] = [fact]
            else:
                group.append(fact)
        elif isinstance(fact, TransactionStart | TransactionUpdate | TransactionEnd):
            tx_facts.append(fact)
        elif type(fact) is SignedMeterValue:
            signed.append(fact)
    return by_tx, tx_facts, signed


def _signed_rows(
    state: ChargePointState, cp: str, signed: list[SignedMeterValue], skip: set[str]
) -> list[Output]:
    """The rows of the signed values of known transactions (module docstring)."""
    rows: list[Output] = []
    for s in signed:
        tx_id: str | None = s.transaction_id
        if tx_id is not None:
            tx = state.txs.get(tx_id)
        elif s.evse_id in (None, 0):
            continue  # the station's main meter, or nowhere: no transaction's value
        else:
            running = [t for t in state.txs.values() if t.open and t.evse_id == s.evse_id]
            tx = running[0] if len(running) == 1 else None
            tx_id = None if tx is None else tx.transaction_id
        if tx_id is None or tx_id in skip:
            continue
        rows.append(signed_row(cp, tx_id, None if tx is None else tx.evse_id, s))
    return rows


def _open(
    state: ChargePointState, tx: Tx | None, fact: TxFact, msg: StationMessage, rules: SessionRules
) -> Tx:
    if tx is not None:
        return tx
    return new_tx(state, fact.transaction_id, fact.timestamp, msg.at, msg.ocpp_version, rules)


def _transition(
    state: ChargePointState,
    tx: Tx | None,
    fact: TxFact,
    msg: StationMessage,
    samples: list[MeterSample],
    rules: SessionRules,
) -> Tx | None:
    """Start, update or end the transaction by one fact; None when the fact repeats
    a start or a stop already seen."""
    if isinstance(fact, TransactionStart):
        if tx is not None and tx.has_start:
            return None
        tx = _open(state, tx, fact, msg, rules)
        tx.has_start = True
        tx.started_at = fact.timestamp
        tx.first_seen = min(tx.first_seen, fact.timestamp)
        start = fact.meter_start_wh
        if start is None:
            start = context_register(samples, "Transaction.Begin", False)
        tx.start_register = start
        rebuild_fold(tx, rules)
    elif isinstance(fact, TransactionEnd):
        if tx is not None and tx.closed_by == ClosedBy.STOP:
            return None  # the same stop again
        tx = _open(state, tx, fact, msg, rules)
        if tx.final:
            tx.stop_late = True
        stop = fact.meter_stop_wh
        if stop is None:
            stop = context_register(samples, "Transaction.End", True)
        close(state, tx, ClosedBy.STOP, fact.timestamp)
        tx.stop_register = stop
        tx.stop_reason = fact.stopped_reason
    else:
        tx = _open(state, tx, fact, msg, rules)
    return tx


def _note(tx: Tx, fact: TxFact, msg: StationMessage, print_: bytes | None) -> None:
    """What every transaction fact tells about its transaction."""
    tx.evse_id = tx.evse_id if fact.evse_id is None else fact.evse_id
    tx.id_tag = fact.id_tag or tx.id_tag
    tx.ocpp_version = tx.ocpp_version or msg.ocpp_version
    tx.last_activity = max(tx.last_activity, fact.timestamp)
    tx.last_received = max(tx.last_received, msg.at)
    tx.first_seen = min(tx.first_seen, fact.timestamp)
    if print_ is not None and fact.seq_no is not None:
        tx.fingerprints.add(print_)
        tx.seq_nos.add(fact.seq_no)
    tx.offline = tx.offline or fact.offline


def _apply_fact(
    state: ChargePointState,
    msg: StationMessage,
    fact: TxFact,
    samples: list[MeterSample],
    rules: SessionRules,
    touched: set[str],
) -> bool:
    """Fold one transaction fact; False when it was a repeat (its transaction's
    samples in the message are then skipped too)."""
    tx_id = fact.transaction_id
    if tx_id in state.recent_closed and tx_id not in state.txs:
        return False
    tx = state.txs.get(tx_id)
    print_ = None if fact.seq_no is None else fingerprint(fact, samples)
    if tx is not None and print_ is not None and fact.seq_no is not None:
        if print_ in tx.fingerprints:
            return False  # the same TransactionEvent again
        # A distinct event, even when its seqNo was seen (then: seq_no_reused).
        tx.fingerprints.add(print_)
        tx.seq_nos.add(fact.seq_no)
    tx = _transition(state, tx, fact, msg, samples, rules)
    if tx is None:
        return False
    _note(tx, fact, msg, print_)
    offer_all(tx, state.readings, rules)
    touched.add(tx_id)
    claim_evse(state, tx, rules, touched)
    return True


def _apply_samples(
    state: ChargePointState,
    msg: StationMessage,
    by_tx: dict[str | None, list[MeterSample]],
    skip: set[str],
    rules: SessionRules,
    touched: set[str],
) -> list[Output]:
    outputs: list[Output] = []
    cp = msg.charge_point_id
    for sample_tx, samples in by_tx.items():
        if sample_tx in skip:
            continue
        if sample_tx is not None:
            tx, billable = state.txs.get(sample_tx), samples
        else:
            tx, billable = running_tx(state, samples)
        outputs.extend(sample_rows(cp, tx.evse_id if tx is not None else None, samples))
        if tx is None:
            continue
        absorb(tx, billable, msg.at, rules)
        touched.add(tx.transaction_id)
    return outputs


def _emit(
    state: ChargePointState,
    cp: str,
    touched: set[str],
    rules: SessionRules,
    pending: dict[str, None] | None,
    outputs: list[Output],
) -> None:
    """The snapshots of the touched transactions, now (``pending`` None) or deferred
    to the end of the batch (their ids added to ``pending``)."""
    txs = state.txs
    if pending is None:
        outputs.extend(session_row(cp, txs[t], rules) for t in sorted(touched) if t in txs)
    elif len(touched) == 1:
        [t] = touched
        if t in txs:
            pending[t] = None
    else:
        pending.update((t, None) for t in sorted(touched) if t in txs)


def apply_station(
    state: ChargePointState,
    msg: StationMessage,
    rules: SessionRules,
    pending: dict[str, None] | None = None,
) -> list[Output]:
    """Fold one station message (not seen before) into the state; the rows to write."""
    if state.watermark is None or msg.at > state.watermark:
        state.watermark = msg.at
    touched: set[str] = set()
    by_tx, tx_facts, signed = _split(msg)
    skip: set[str] = set()
    for fact in tx_facts:
        if not _apply_fact(
            state, msg, fact, by_tx.get(fact.transaction_id, _NO_SAMPLES), rules, touched
        ):
            skip.add(fact.transaction_id)
    outputs = _apply_samples(state, msg, by_tx, skip, rules, touched)
    if signed:
        outputs.extend(_signed_rows(state, msg.charge_point_id, signed, skip))
    close_idle(state, rules, touched)
    finalize_ready(state, rules, touched)
    cp = msg.charge_point_id
    _emit(state, cp, touched, rules, pending, outputs)
    forget_old(state, rules, cp, pending, outputs)
    return outputs
