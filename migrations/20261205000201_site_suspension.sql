-- A suspended site serves the "site suspended" page whatever its status (its client is
-- suspended or cancelled); unsuspended, it serves as its status says again (issue 14).
ALTER TABLE sites ADD COLUMN suspended boolean NOT NULL DEFAULT false;
