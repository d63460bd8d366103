"""An app whose processes export their spans to a file, for tracing across processes.

Imported by module path (``traced_app:app``) by the test and by the runner processes it starts;
the backend URL and app id come from ``TASKGATE_TEST_BACKEND`` and ``TASKGATE_TEST_APP_ID``.
Only a process started with ``TASKGATE_TEST_SPANS`` (a file path) sets up OpenTelemetry: it
sets the global tracer provider, whose spans are appended to that file as JSON lines when they
end. The test process never has that variable, so its own global provider stays unset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from taskgate import App

SPANS_ENV = "TASKGATE_TEST_SPANS"

app = App(
    os.environ.get("TASKGATE_TEST_APP_ID", "traced-app"),
    backend=os.environ.get("TASKGATE_TEST_BACKEND", "memory://"),
)


@app.task
def add(a: int, b: int) -> int:
    return a + b


class FileSpanExporter(SpanExporter):
    """Appends one JSON line per ended span: name, ids (hex), parent id, attributes."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._path.open("a") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                line = {
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": format(context.trace_id, "032x"),
                    "span_id": format(context.span_id, "016x"),
                    "parent_id": None
                    if span.parent is None
                    else format(span.parent.span_id, "016x"),
                    "attributes": dict(span.attributes or {}),
                    "pid": os.getpid(),
                }
                out.write(json.dumps(line) + "\n")
        return SpanExportResult.SUCCESS


if os.environ.get(SPANS_ENV):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(Path(os.environ[SPANS_ENV]))))
    trace.set_tracer_provider(provider)
