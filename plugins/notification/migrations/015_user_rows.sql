-- A deleted user's rows are found by the user (user_deleted.c): without these, the
-- statements for mail-only notifications (the inbox indexes cover in_app rows only), the
-- mail ledger and task watches each read the whole table.
CREATE INDEX notification_user_mail_only ON notification (user_id) WHERE NOT in_app;
CREATE INDEX notification_mail_user_idx ON notification_mail (user_id);
CREATE INDEX notification_task_watch_user ON notification_task_watch (user_id);
