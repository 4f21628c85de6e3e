#!/usr/bin/env python3
"""Outside judge of Herald's webhook requests.

Herald's own code must not be the only thing that says its requests are
right, so this script checks captured requests with the reference libraries
that receivers use: `standardwebhooks` for signatures and the CloudEvents
Python SDK for CloudEvents in structured and binary content mode, whose
requests must also name their origin (`WebHook-Request-Origin`, a DNS name).

Usage: judge.py REQUESTS.json

REQUESTS.json is a JSON list of captured requests:

    [{"headers": {"webhook-id": "...", ...},   # names in lower case
      "body": "<the body as UTF-8 text>",
      "secret": "whsec_...",                    # optional: must verify
      "secrets": ["whsec_...", ...],            # optional: each must verify on its own
      "mode": "webhook" | "cloudevents-structured" | "cloudevents-binary",
      "expect": {"id": ..., "type": ..., "source": ...},  # optional CloudEvent attributes
      "expectValid": true}]                     # optional: false = this request must be rejected

It prints a JSON summary and exits 0 when every request was judged as
expected, 1 otherwise, 2 on unusable input.
"""

import json
import re
import sys

from standardwebhooks import Webhook

MODES = ("webhook", "cloudevents-structured", "cloudevents-binary")
# CloudEvents webhook spec 4.1: WebHook-Request-Origin is a DNS name (RFC 1123 labels).
DNS_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


def legacy_from_http():
    """The SDK's long-standing `from_http`, wherever this SDK version keeps it."""
    try:
        from cloudevents.http import from_http  # SDK 1.x
    except ImportError:
        from cloudevents.v1.http import from_http  # SDK 2.x keeps 1.x here
    return from_http


def core_from_http_event():
    """The SDK 2.x binding, when present."""
    try:
        from cloudevents.core.bindings.http import HTTPMessage, from_http_event
    except ImportError:
        return None
    return lambda headers, body: from_http_event(HTTPMessage(headers=headers, body=body))


def check_signatures(request, headers, body):
    secrets = list(request.get("secrets") or [])
    if request.get("secret"):
        secrets.append(request["secret"])
    if request["mode"] == "webhook" and not secrets:
        raise ValueError("webhook mode needs a secret")
    for secret in secrets:
        # Raises WebhookVerificationError on a missing header, a stale
        # timestamp or no matching signature.
        Webhook(secret).verify(body, headers)
    signatures = headers.get("webhook-signature", "").split(" ")
    return {"secretsVerified": len(secrets), "signatures": len([s for s in signatures if s])}


def check_cloudevent(request, headers, body):
    mode = request["mode"]
    has_ce_headers = any(k.startswith("ce-") for k in headers)
    if mode == "cloudevents-binary" and not has_ce_headers:
        raise ValueError("binary mode but no ce- headers")
    if mode == "cloudevents-structured":
        if has_ce_headers:
            raise ValueError("structured mode but ce- headers present")
        content_type = headers.get("content-type", "")
        if not content_type.startswith("application/cloudevents+json"):
            raise ValueError(f"structured mode but content-type is {content_type!r}")

    origin = headers.get("webhook-request-origin", "")
    if not DNS_NAME.fullmatch(origin) or len(origin) > 253:
        raise ValueError(f"WebHook-Request-Origin {origin!r} is not a DNS name")

    event = legacy_from_http()(headers, body.encode("utf-8"))
    attrs = {
        "specversion": event["specversion"],
        "id": event["id"],
        "type": event["type"],
        "source": event["source"],
        "time": event.get("time"),
    }
    if attrs["specversion"] != "1.0":
        raise ValueError(f"specversion is {attrs['specversion']!r}, not 1.0")
    for name in ("id", "type", "source"):
        if not attrs[name]:
            raise ValueError(f"{name} is missing")

    core = core_from_http_event()
    if core is not None:
        second = core(headers, body.encode("utf-8"))
        for name, value in (("id", second.get_id()), ("type", second.get_type()), ("source", second.get_source())):
            if value != attrs[name]:
                raise ValueError(f"the two SDK parsers disagree on {name}: {attrs[name]!r} vs {value!r}")
        if second.get_specversion() != "1.0":
            raise ValueError("core SDK parser: specversion is not 1.0")

    for name, want in (request.get("expect") or {}).items():
        if attrs.get(name) != want:
            raise ValueError(f"{name} is {attrs.get(name)!r}, expected {want!r}")
    data = event.data
    return {"ce": {k: v for k, v in attrs.items() if k != "time"}, "dataIsObject": isinstance(data, dict)}


def judge(index, request):
    mode = request.get("mode", "webhook")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    request["mode"] = mode
    headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
    body = request.get("body", "")
    result = {"index": index, "mode": mode, "webhookId": headers.get("webhook-id")}
    result.update(check_signatures(request, headers, body))
    if mode.startswith("cloudevents"):
        result.update(check_cloudevent(request, headers, body))
    return result


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            requests = json.load(f)
        if not isinstance(requests, list):
            raise ValueError("expected a JSON list of requests")
    except (OSError, ValueError) as err:
        print(json.dumps({"ok": False, "error": f"unusable input: {err}"}))
        return 2

    results, failures = [], []
    for index, request in enumerate(requests):
        expect_valid = request.get("expectValid", True)
        try:
            outcome = judge(index, request)
            if expect_valid:
                results.append(outcome)
            else:
                failures.append({"index": index, "error": "accepted a request that must be rejected"})
        except Exception as err:  # every library error is a verdict here
            if expect_valid:
                failures.append({"index": index, "error": f"{type(err).__name__}: {err}"})
            else:
                results.append({"index": index, "rejected": f"{type(err).__name__}: {err}"})

    summary = {"ok": not failures, "checked": len(requests), "failures": failures, "results": results}
    print(json.dumps(summary, indent=2, default=str))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
