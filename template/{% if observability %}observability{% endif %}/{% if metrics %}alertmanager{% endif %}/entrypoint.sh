#!/bin/sh
# Starts Alertmanager in the compose `observability` profile.
#
# alertmanager.yml reads the PagerDuty routing key from /run/secrets/pagerduty_routing_key
# (Alertmanager does not expand environment variables in its configuration). This script
# writes $PAGERDUTY_ROUTING_KEY there, on the tmpfs compose mounts at /run/secrets, so the
# key never lands in a volume or an image layer. Where a secret store mounts that file
# (a Kubernetes Secret, a Docker secret), run /bin/alertmanager directly instead.
set -eu

key_file=/run/secrets/pagerduty_routing_key
umask 077
printf '%s' "${PAGERDUTY_ROUTING_KEY:-}" >"$key_file"
if [ -z "${PAGERDUTY_ROUTING_KEY:-}" ]; then
    echo "entrypoint: PAGERDUTY_ROUTING_KEY is empty: PagerDuty notifications will fail;" \
        "alerts still show at http://127.0.0.1:9093 and in Grafana" >&2
fi
unset PAGERDUTY_ROUTING_KEY

exec /bin/alertmanager "$@"
