#!/usr/bin/env bash
# Checks Herald's alert rules and dashboard: promtool validates alerts.yml
# and runs the unit test of every alert (tests.yml), prometheusrule.yaml
# must carry exactly the groups of alerts.yml, and every query of the
# Grafana dashboard must parse. Installs Debian's prometheus package
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

# Every dashboard query must parse: each becomes a recording rule, with
# Grafana's variables replaced by what they stand for.
ensure_packages python3 python3
python3 - grafana-dashboard.json "$tmp/dashboard-rules.yml" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
with open(sys.argv[2], "w") as out:
    out.write("groups:\n- name: dashboard\n  rules:\n")
    for i, expr in enumerate(exprs):
        expr = expr.replace("$__rate_interval", "5m").replace("$namespace", ".*")
        out.write(f"  - record: dashboard_query_{i}\n    expr: {json.dumps(expr)}\n")
print(f"{len(exprs)} dashboard queries")
PY
promtool check rules "$tmp/dashboard-rules.yml"
echo "alert rules checked and unit-tested, the PrometheusRule matches, the dashboard's queries parse"
