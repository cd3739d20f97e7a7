"""The payments ledger: prepaid wallets and postpaid accounts as a double-entry ledger.

- ``ledger_accounts``: one row per (customer, kind, currency); the house accounts
  (``revenue``, ``external_funding``) have no customer. ``balance_minor`` is the sum of
  the account's postings, kept with them in the same transaction (credits positive: a
  wallet's balance is what the house owes its holder, a receivable's is negative by what
  the customer owes). Wallet accounts can never go below 0 (CHECK), whatever the code
  does. ``credit_limit_minor``: the postpaid receivable's optional limit.
- ``ledger_holds``: one row per authorisation (the provider's payment reference): what
  was authorised, captured and refunded, and its status.
- ``ledger_transactions``: one row per operation (top-up, hold, capture, release, refund,
  charge) with its idempotency key (UNIQUE: a replay finds the first outcome in
  ``outcome``) and the session it belongs to (every operation but a top-up has one).
- ``ledger_postings``: the amounts a transaction moves between accounts. Append-only
  (a trigger refuses UPDATE and DELETE), and the postings of a transaction sum to 0 per
  currency, checked at commit by a deferred constraint trigger.

Plain tables in both storage modes (no hypertable: rows are updated under row locks and
referenced by foreign keys).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ledger_accounts (
            account_id bigserial PRIMARY KEY,
            customer text,
            kind text NOT NULL CHECK (kind IN ('wallet_available', 'wallet_held',
                'postpaid_receivable', 'revenue', 'external_funding')),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            balance_minor bigint NOT NULL DEFAULT 0,
            credit_limit_minor bigint CHECK (credit_limit_minor >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ledger_wallet_never_negative
                CHECK (kind NOT IN ('wallet_available', 'wallet_held') OR balance_minor >= 0),
            CONSTRAINT ledger_house_accounts_have_no_customer
                CHECK ((customer IS NULL) = (kind IN ('revenue', 'external_funding')))
        );
        CREATE UNIQUE INDEX ledger_accounts_key
            ON ledger_accounts ((coalesce(customer, '')), kind, currency);

        CREATE TABLE ledger_holds (
            hold_id text PRIMARY KEY,
            provider text NOT NULL CHECK (provider IN ('wallet', 'postpaid')),
            customer text NOT NULL,
            session_id text NOT NULL,
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            authorized_minor bigint NOT NULL CHECK (authorized_minor > 0),
            captured_minor bigint NOT NULL DEFAULT 0,
            refunded_minor bigint NOT NULL DEFAULT 0,
            status text NOT NULL DEFAULT 'authorized'
                CHECK (status IN ('authorized', 'captured', 'canceled')),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CHECK (captured_minor BETWEEN 0 AND authorized_minor),
            CHECK (refunded_minor BETWEEN 0 AND captured_minor)
        );
        CREATE INDEX ledger_holds_open_idx ON ledger_holds (customer, currency)
            WHERE status = 'authorized';
        CREATE INDEX ledger_holds_session_idx ON ledger_holds (session_id);

        CREATE TABLE ledger_transactions (
            transaction_id bigserial PRIMARY KEY,
            kind text NOT NULL
                CHECK (kind IN ('top_up', 'hold', 'capture', 'release', 'refund', 'charge')),
            customer text NOT NULL,
            session_id text,
            hold_id text REFERENCES ledger_holds (hold_id),
            reference text,
            idempotency_key text NOT NULL UNIQUE,
            requested_minor bigint NOT NULL,
            reason text,
            outcome jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ledger_transactions_traceable CHECK (
                (kind = 'top_up' AND reference IS NOT NULL)
                OR (kind <> 'top_up' AND session_id IS NOT NULL AND hold_id IS NOT NULL))
        );
        CREATE INDEX ledger_transactions_session_idx ON ledger_transactions (session_id);
        CREATE INDEX ledger_transactions_hold_idx ON ledger_transactions (hold_id);

        CREATE TABLE ledger_postings (
            posting_id bigserial PRIMARY KEY,
            transaction_id bigint NOT NULL REFERENCES ledger_transactions (transaction_id),
            account_id bigint NOT NULL REFERENCES ledger_accounts (account_id),
            amount_minor bigint NOT NULL CHECK (amount_minor <> 0)
        );
        CREATE INDEX ledger_postings_transaction_idx ON ledger_postings (transaction_id);
        CREATE INDEX ledger_postings_account_idx ON ledger_postings (account_id, transaction_id);

        CREATE FUNCTION ledger_transaction_balances() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (
                SELECT 1 FROM ledger_postings p
                JOIN ledger_accounts a ON a.account_id = p.account_id
                WHERE p.transaction_id = NEW.transaction_id
                GROUP BY a.currency
                HAVING sum(p.amount_minor) <> 0
            ) THEN
                RAISE EXCEPTION 'ledger transaction % does not balance', NEW.transaction_id
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END
        $$;
        CREATE CONSTRAINT TRIGGER ledger_postings_balance
            AFTER INSERT ON ledger_postings
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balances();

        CREATE FUNCTION ledger_postings_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger postings are append-only: post a correcting transaction'
                USING ERRCODE = 'restrict_violation';
        END
        $$;
        CREATE TRIGGER ledger_postings_immutable
            BEFORE UPDATE OR DELETE ON ledger_postings
            FOR EACH ROW EXECUTE FUNCTION ledger_postings_append_only();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE ledger_postings;
        DROP TABLE ledger_transactions;
        DROP TABLE ledger_holds;
        DROP TABLE ledger_accounts;
        DROP FUNCTION ledger_postings_append_only();
        DROP FUNCTION ledger_transaction_balances();
        """
    )
