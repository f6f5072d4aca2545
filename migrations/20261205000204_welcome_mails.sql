-- Welcome mails sent (issue 14, item 6): one row per site.installed notice, written after the
-- relay accepted the mail, so that a redelivered notice sends nothing twice (at least once:
-- a crash between the relay's answer and this row sends it again).
CREATE TABLE welcome_mails (
    notice_id   uuid PRIMARY KEY,
    site        text NOT NULL,
    sent_to     text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now()
);
