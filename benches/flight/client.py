"""Benchmark client for `wasmlink serve` (scripts/bench-flight.sh runs it; pyarrow.flight).

    client.py gen OUT.arrow --batches N --rows R
        writes N batches of R rows (id: int64 = running row number, text: utf8 of 8 to 40
        bytes) as an Arrow IPC file, prints {"batches", "rows", "bytes"} (bytes: the batches'
        buffer sizes, the payload measured everywhere in this benchmark)
    client.py check IN.arrow OUT.arrow
        the pipeline's output must equal its input batch for batch (exit 1 otherwise)
    client.py exchange URI PATH IN.arrow --clients C
        C concurrent exchanges (threads, each its own DoExchange) on flight PATH; client k sends
        the batches k, k+C, k+2C, ... of IN.arrow and checks that every result equals the batch
        it sent, in order (exit 1 otherwise). Prints {"seconds", "bytes", "rows", "batches"}.
    client.py docs URI PATH CORPUS_DIR --clients C --batch-rows R
        reads the corpus's html/htm/md/markdown/txt files (sorted, as `wasmlink index` does) into
        batches (path: utf8, content: binary, size: uint64) of R documents, C concurrent
        exchanges each sending every C-th batch; checks one result (no dead letter) per batch,
        in order. Prints {"seconds", "read_seconds", "docs", "bytes_in", "rows_out", ...}.

The timed part of `exchange`/`docs` is from the first exchange's start to the last result
received; reading the input (memory-mapped for IN.arrow) happens before it.
"""

import argparse
import json
import os
import sys
import threading
import time

import pyarrow as pa
import pyarrow.flight as flight


def fail(message):
    print(f"bench-flight client: {message}", file=sys.stderr)
    sys.exit(1)


def gen(args):
    total_rows = 0
    total_bytes = 0
    words = ["alpha", "borrow", "checker", "lifetime", "trait", "closure", "iterator", "x"]
    schema = pa.schema([("id", pa.int64()), ("text", pa.utf8())])
    with pa.OSFile(args.out, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for b in range(args.batches):
            start = b * args.rows
            ids = pa.array(range(start, start + args.rows), pa.int64())
            # Varied lengths (8..40 bytes), cheap to build: "row <id> <word> <word>".
            texts = pa.array(
                [f"row {i} {words[i % 8]} {words[(i // 8) % 8]}" for i in range(start, start + args.rows)],
                pa.utf8(),
            )
            batch = pa.RecordBatch.from_arrays([ids, texts], schema=schema)
            writer.write_batch(batch)
            total_rows += batch.num_rows
            total_bytes += batch.nbytes
    print(json.dumps({"batches": args.batches, "rows": total_rows, "bytes": total_bytes}))


def read_batches(path):
    """The batches of an Arrow IPC file or stream (memory-mapped)."""
    source = pa.memory_map(path, "r")
    try:
        reader = pa.ipc.open_file(source)
        return [reader.get_batch(i) for i in range(reader.num_record_batches)]
    except pa.ArrowInvalid:
        source.seek(0)
        return list(pa.ipc.open_stream(source))


def check(args):
    sent = read_batches(args.input)
    got = read_batches(args.output)
    sent_table = pa.Table.from_batches(sent)
    got_table = pa.Table.from_batches(got, schema=sent_table.schema)
    if got_table.num_rows != sent_table.num_rows:
        fail(f"{args.output}: {got_table.num_rows} rows, sent {sent_table.num_rows}")
    if not got_table.equals(sent_table):
        fail(f"{args.output}: the rows differ from {args.input} (order or content)")
    print(json.dumps({"rows": got_table.num_rows, "ok": True}))


def run_exchange(client, path, schema, batches, on_result, errors):
    """One DoExchange: writes `batches` from a thread, hands each result to `on_result`."""
    descriptor = flight.FlightDescriptor.for_path(*path.split("/"))
    try:
        writer, reader = client.do_exchange(descriptor)
    except Exception as e:  # noqa: BLE001 - reported below
        errors.append(f"do_exchange: {e}")
        return

    def write():
        try:
            writer.begin(schema)
            for b in batches:
                writer.write_batch(b)
            writer.done_writing()
        except Exception as e:  # noqa: BLE001 - the read side reports the status
            errors.append(f"write: {e}")

    t = threading.Thread(target=write)
    t.start()
    try:
        n = 0
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            on_result(n, chunk)
            n += 1
    except Exception as e:  # noqa: BLE001
        errors.append(f"read: {e}")
        reader.cancel()  # so the writer thread, maybe blocked on a full window, ends
    finally:
        t.join()
        writer.close()


def exchange(args):
    batches = read_batches(args.input)
    if not batches:
        fail(f"{args.input}: no batches")
    schema = batches[0].schema
    c = args.clients
    parts = [batches[k::c] for k in range(c)]
    errors = []
    counts = [0] * c
    rows = [0] * c

    def make_check(k):
        part = parts[k]

        def on_result(n, chunk):
            if chunk.data is None:
                meta = chunk.app_metadata.to_pybytes() if chunk.app_metadata is not None else b""
                raise RuntimeError(f"client {k}: result {n} is a dead letter: {meta[:300]!r}")
            if n >= len(part):
                raise RuntimeError(f"client {k}: result {n} is one more than the {len(part)} sent")
            if chunk.data.num_rows != part[n].num_rows or not chunk.data.equals(part[n]):
                raise RuntimeError(
                    f"client {k}: result {n} ({chunk.data.num_rows} rows) differs from the batch "
                    f"sent ({part[n].num_rows} rows, first id {part[n].column(0)[0]})"
                )
            counts[k] += 1
            rows[k] += chunk.data.num_rows

        return on_result

    threads = []
    clients = [flight.FlightClient(args.uri) for _ in range(c)]
    start = time.perf_counter()
    for k in range(c):
        t = threading.Thread(
            target=run_exchange, args=(clients[k], args.path, schema, parts[k], make_check(k), errors)
        )
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if errors:
        fail("; ".join(errors))
    for k in range(c):
        if counts[k] != len(parts[k]):
            fail(f"client {k}: {counts[k]} results for {len(parts[k])} batches sent")
    total_rows = sum(b.num_rows for b in batches)
    if sum(rows) != total_rows:
        fail(f"{sum(rows)} rows came back, {total_rows} sent")
    print(json.dumps({
        "seconds": seconds,
        "bytes": sum(b.nbytes for b in batches),
        "rows": total_rows,
        "batches": len(batches),
        "clients": c,
    }))


EXTENSIONS = {"html", "htm", "md", "markdown", "txt"}


def docs(args):
    t0 = time.perf_counter()
    files = []
    for dirpath, _dirs, names in os.walk(args.corpus):
        for name in names:
            if name.rsplit(".", 1)[-1].lower() in EXTENSIONS:
                full = os.path.join(dirpath, name)
                files.append(os.path.relpath(full, args.corpus).replace(os.sep, "/"))
    files.sort()
    schema = pa.schema([("path", pa.utf8(), False), ("content", pa.binary(), False), ("size", pa.uint64(), False)])
    batches = []
    bytes_in = 0
    for i in range(0, len(files), args.batch_rows):
        paths = files[i : i + args.batch_rows]
        contents = []
        for p in paths:
            with open(os.path.join(args.corpus, p), "rb") as f:
                contents.append(f.read())
        bytes_in += sum(len(x) for x in contents)
        batches.append(pa.RecordBatch.from_arrays(
            [pa.array(paths, pa.utf8()), pa.array(contents, pa.binary()),
             pa.array([len(x) for x in contents], pa.uint64())],
            schema=schema,
        ))
    read_seconds = time.perf_counter() - t0
    if not batches:
        fail(f"{args.corpus}: no documents")
    c = args.clients
    parts = [batches[k::c] for k in range(c)]
    errors = []
    counts = [0] * c
    rows_out = [0] * c

    def make_check(k):
        def on_result(n, chunk):
            if chunk.data is None:
                meta = chunk.app_metadata.to_pybytes() if chunk.app_metadata is not None else b""
                raise RuntimeError(f"client {k}: result {n} is a dead letter: {meta[:300]!r}")
            if n >= len(parts[k]):
                raise RuntimeError(f"client {k}: result {n} is one more than the {len(parts[k])} sent")
            # A stage may change the rows (extract drops nothing, tokenize keeps one row per
            # document): check the documents came back in the order sent when a path is kept.
            if "path" in chunk.data.schema.names:
                got = chunk.data.column("path").to_pylist()
                want = parts[k][n].column("path").to_pylist()
                if got != want:
                    raise RuntimeError(f"client {k}: result {n} holds documents {got[:2]}..., sent {want[:2]}...")
            counts[k] += 1
            rows_out[k] += chunk.data.num_rows

        return on_result

    clients = [flight.FlightClient(args.uri) for _ in range(c)]
    threads = []
    start = time.perf_counter()
    for k in range(c):
        t = threading.Thread(
            target=run_exchange, args=(clients[k], args.path, schema, parts[k], make_check(k), errors)
        )
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if errors:
        fail("; ".join(errors))
    for k in range(c):
        if counts[k] != len(parts[k]):
            fail(f"client {k}: {counts[k]} results for {len(parts[k])} batches sent")
    print(json.dumps({
        "seconds": seconds,
        "read_seconds": read_seconds,
        "docs": len(files),
        "batches": len(batches),
        "bytes_in": bytes_in,
        "rows_out": sum(rows_out),
        "clients": c,
    }))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gen")
    g.add_argument("out")
    g.add_argument("--batches", type=int, required=True)
    g.add_argument("--rows", type=int, required=True)
    k = sub.add_parser("check")
    k.add_argument("input")
    k.add_argument("output")
    e = sub.add_parser("exchange")
    e.add_argument("uri")
    e.add_argument("path")
    e.add_argument("input")
    e.add_argument("--clients", type=int, default=1)
    d = sub.add_parser("docs")
    d.add_argument("uri")
    d.add_argument("path")
    d.add_argument("corpus")
    d.add_argument("--clients", type=int, default=2)
    d.add_argument("--batch-rows", type=int, default=64)
    args = p.parse_args()
    {"gen": gen, "check": check, "exchange": exchange, "docs": docs}[args.command](args)


if __name__ == "__main__":
    main()
