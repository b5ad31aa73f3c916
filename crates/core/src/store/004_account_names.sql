-- Several accounts: each gets a name the user picks it by (`--account work`, the switcher, the
-- notifications that say whose they are). Accounts cached before this get their email, or,
-- where two share an email, the email and the server's host, so every name is unique.
ALTER TABLE accounts ADD COLUMN name TEXT NOT NULL DEFAULT '';
UPDATE accounts SET name = email;
UPDATE accounts
   SET name = email || ' (' || substr(origin, instr(origin, '://') + 3) || ')'
 WHERE email IN (SELECT email FROM accounts GROUP BY email HAVING COUNT(*) > 1);
CREATE UNIQUE INDEX accounts_by_name ON accounts (name);
