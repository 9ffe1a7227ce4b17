-- Monthly partitions are PostgreSQL's (0009 there); SQLite keeps one
-- table each. Kept so both backends number their migrations alike.
SELECT 1;
