#!/usr/bin/env bash
# Checks Herald's alert rules: promtool validates alerts.yml and runs the
# unit test of every alert (tests.yml), and prometheusrule.yaml must carry
# exactly the groups of alerts.yml. Installs Debian's prometheus package
# (for promtool) when promtool is missing.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$herald_root/deploy/observability"
ensure_packages promtool prometheus
promtool check rules alerts.yml
promtool test rules tests.yml

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The operator object's spec, de-indented, is the rules file from `groups:` on.
awk 'found { print substr($0, 3) } /^spec:/ { found = 1 }' prometheusrule.yaml >"$tmp/spec.yml"
sed -n '/^groups:/,$p' alerts.yml >"$tmp/groups.yml"
if ! diff -u "$tmp/groups.yml" "$tmp/spec.yml"; then
  echo "prometheusrule.yaml differs from alerts.yml (above); copy the groups across" >&2
  exit 1
fi
promtool check rules "$tmp/spec.yml"
echo "alert rules: checked, unit-tested, and the PrometheusRule matches"
