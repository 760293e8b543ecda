#!/usr/bin/env python3
"""A local OTLP/HTTP trace receiver for tests/it/traces.rs.

    python3 tests/otlp/receiver.py SPANS.jsonl

Listens on a free loopback port and prints it as the first line of stdout.
Every POST to /v1/traces is decoded as a protobuf ExportTraceServiceRequest
with the `opentelemetry-proto` package (the OpenTelemetry project's own
generated classes, independent of hookyard's Rust exporter) and each span is
appended to SPANS.jsonl as one JSON object:

    {"service": ..., "name": ..., "kind": ..., "trace_id": hex,
     "span_id": hex, "parent_span_id": hex or "", "attributes": {...},
     "status": code}

Anything else is answered 404; a body that does not decode is answered 400
and written to stderr, so a malformed export fails the test visibly.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def value(any_value):
    """An AnyValue as plain JSON."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind is None:
        return None
    return getattr(any_value, kind)


def attributes(pairs):
    return {kv.key: value(kv.value) for kv in pairs}


class Handler(BaseHTTPRequestHandler):
    out = None

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception as e:  # noqa: BLE001 - any decode failure is a 400
            print(f"undecodable export ({self.headers.get('Content-Type')}): {e}", file=sys.stderr)
            self.send_response(400)
            self.end_headers()
            return
        with open(Handler.out, "a", encoding="utf-8") as f:
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        f.write(json.dumps({
                            "service": resource.get("service.name"),
                            "scope": ss.scope.name,
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "attributes": attributes(span.attributes),
                            "status": span.status.code,
                        }) + "\n")
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def main():
    Handler.out = sys.argv[1]
    open(Handler.out, "w", encoding="utf-8").close()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
