# shellcheck shell=bash
# The local SMTP sink `scripts/dev run` points the notification plugin at, so a newcomer
# sees its mails arrive: every mail lands as one file in .run/mail/new (a maildir; read
# it with `cat`, `mutt -f .run/mail` or Python's mailbox module). Nothing is relayed.
# Sourced by scripts/dev after common.sh and services.sh (services_init sets LOCAL_RUN).

SMTP_SINK_PORT=${PANTHERA_SMTP_PORT:-2525}

smtp_sink_pid() {
    local pid
    pid=$(cat "$LOCAL_RUN/smtp-sink.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" && echo "$pid"
}

smtp_sink_start() {
    if smtp_sink_pid >/dev/null; then
        log "SMTP sink already running (127.0.0.1:$SMTP_SINK_PORT, mails in $LOCAL_RUN/mail/new)"
        return 0
    fi
    log "starting the SMTP sink on 127.0.0.1:$SMTP_SINK_PORT (mails in $LOCAL_RUN/mail/new)"
    nohup "$REPO/scripts/smtp-sink" --listen "127.0.0.1:$SMTP_SINK_PORT" \
        --maildir "$LOCAL_RUN/mail" --pid-file "$LOCAL_RUN/smtp-sink.pid" \
        >"$LOCAL_RUN/smtp-sink.log" 2>&1 &
    local i
    for ((i = 0; i < 50; i++)); do
        smtp_sink_pid >/dev/null && return 0
        sleep 0.2
    done
    cat "$LOCAL_RUN/smtp-sink.log" >&2 || true
    die "the SMTP sink did not start (is python3-aiosmtpd installed?)"
}

smtp_sink_stop() {
    local pid
    pid=$(smtp_sink_pid) || return 0
    log "stopping the SMTP sink (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
}
