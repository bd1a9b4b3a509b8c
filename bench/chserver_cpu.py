"""Where the ClickHouse server's CPU per stored span goes (issue 15).

Stores the same bench spans the way the drain does (per batch: the span_keys lookup, then
span_content, spans and span_keys inserts), and reads the chserver process tree's CPU time
per span, background merges included (the window ends when no merge runs), with each
materialized view on `spans` detached in turn, then the lookup and the HTTP layer alone.

    .venv/bin/python -m bench.chserver_cpu [spans] [batch]
"""

import sys
import time
import uuid

from bench import env

VIEWS = ["trace_index_mv", "cost_hourly_mv", "span_metrics_hourly_mv"]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    configs = sys.argv[3].split(",") if len(sys.argv) > 3 else [
        "all", "-trace_index_mv", "-cost_hourly_mv", "-span_metrics_hourly_mv", "none",
        "lookup", "http"]
    env.setup()
    import msgspec

    from bench import measure
    from bench.ingest import encoded_messages
    from ingestion.schema import SpanMessage, SpansMessage
    from ingestion.services.drain import SPAN_INSERT_COLUMNS, PartitionDrainer
    from ingestion.services.rows import CONTENT_COLUMNS, KEY_COLUMNS, RowBuilder, content_rows
    from llmops.clickhouse import get_client

    client = get_client()
    pid = measure.service_pids(env.ROOT / "var" / "run", "clickhouse", "llmops.chserver")[0]

    def cpu() -> float:
        return measure.tree_cpu_seconds(pid)

    def settle() -> None:
        """Until no merge or mutation has run for a second."""
        quiet = 0
        while quiet < 5:
            time.sleep(0.2)
            busy = client.query("SELECT (SELECT count() FROM system.merges)"
                                " + (SELECT count() FROM system.mutations WHERE NOT is_done)"
                                ).result_rows[0][0]
            quiet = 0 if busy else quiet + 1

    def idle_rate() -> float:
        settle()
        c0, t0 = cpu(), time.monotonic()
        time.sleep(3)
        return (cpu() - c0) / (time.monotonic() - t0)

    decode = msgspec.json.Decoder(SpansMessage).decode

    def entries_of(run: str) -> list:
        rows = RowBuilder()
        for _, value in encoded_messages(run, count):
            message = decode(value)
            for span in message.spans:
                rows.add(SpanMessage(1, message.org_id, message.received_at_us, span))
        return rows.entries

    def parts() -> int:
        return client.query("SELECT count() FROM system.parts WHERE active AND database ="
                            " currentDatabase()").result_rows[0][0]

    drainer = PartitionDrainer(0)
    idle = idle_rate()
    print(f"chserver pid {pid}, idle {idle * 1e3:.1f} ms CPU/s; {count} spans, batches of "
          f"{batch}")
    for config in configs:
        entries = entries_of(f"cpu-{uuid.uuid4().hex[:6]}")
        detached = (VIEWS if config in ("none", "content", "spans", "keys")
                    else [config[1:]] if config.startswith("-") else [])
        for view in detached:
            client.command(f"DETACH TABLE {view}")
        try:
            settle()
            parts_before = parts()
            c0, t0 = cpu(), time.monotonic()
            for start in range(0, len(entries), batch):
                chunk = entries[start:start + batch]
                token = uuid.uuid4().hex
                if config == "http":
                    client.query("SELECT 1")
                    continue
                stored = drainer._versions_to_store(chunk)
                if config == "lookup":
                    continue
                if config in ("content", "spans", "keys"):
                    if config == "content":
                        drainer._insert("span_content", CONTENT_COLUMNS, content_rows(stored),
                                        token)
                    elif config == "spans":
                        drainer._insert("spans", SPAN_INSERT_COLUMNS,
                                        [r for e in stored for r in e.span_rows()], token)
                    else:
                        drainer._insert("span_keys", KEY_COLUMNS,
                                        [e.key_row() for e in stored], token)
                    continue
                drainer._insert_entries(stored, token, [], isolate=False)
                drainer._insert("span_keys", KEY_COLUMNS, [e.key_row() for e in stored],
                                token + ":keys")
            insert_cpu, insert_s = cpu() - c0, time.monotonic() - t0
            settle()
            total_cpu, total_s = cpu() - c0, time.monotonic() - t0
        finally:
            for view in detached:
                client.command(f"ATTACH TABLE {view}")
        net = total_cpu - idle * total_s
        print(f"{config:26s} us/span: {1e6 * net / count:7.1f} (during inserts "
              f"{1e6 * (insert_cpu - idle * insert_s) / count:6.1f}, merges after "
              f"{1e6 * (net - insert_cpu + idle * insert_s) / count:5.1f}); "
              f"{total_s:5.1f}s; parts {parts_before} -> {parts()}", flush=True)


if __name__ == "__main__":
    main()
