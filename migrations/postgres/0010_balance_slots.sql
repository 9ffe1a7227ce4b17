-- Balance rows of platform accounts (a provider's clearing and fees, a
-- merchant's revenue) are touched by every payment, so one row per
-- account made PostgreSQL's group-commit writers wait on each other's row
-- locks. Each account now has up to BALANCE_SLOTS rows, one per writer
-- connection (chosen by the trigger below), summed on read. A
-- customer's wallet keeps a single row (slot 0): its conditional debit
-- must see the whole balance, and it is not a hot row.
ALTER TABLE ledger_balances ADD COLUMN slot SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE ledger_balances DROP CONSTRAINT ledger_balances_pkey;
ALTER TABLE ledger_balances ADD PRIMARY KEY (account, currency, slot);

-- The slot a new balance row goes to, chosen here so the statement that
-- writes it is the same on both backends: 0 for a wallet, else one of 8 by
-- the writer's backend (stable per connection, so two writers rarely share
-- a row). A BEFORE INSERT trigger runs before ON CONFLICT looks for the
-- row, so the upsert finds this connection's slot.
CREATE FUNCTION payments_balance_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.slot := CASE WHEN substr(NEW.account, 1, 16) = 'customer_wallet:' THEN 0
                     ELSE pg_backend_pid() % 8 END;
    RETURN NEW;
END;
$$;
CREATE TRIGGER ledger_balances_slot BEFORE INSERT ON ledger_balances
    FOR EACH ROW EXECUTE FUNCTION payments_balance_slot();
