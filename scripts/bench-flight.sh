#!/usr/bin/env bash
# Benchmarks `wasmlink serve` (Arrow Flight, issue 19) against the same pipelines run in-process,
# in one run, with pyarrow.flight as the client (benches/flight/client.py, in the venv
# scripts/setup.sh makes):
#
# 1. DoExchange through an identity stage (benches/flight/identity.wat, an ABI v1 function that
#    returns its input): MB batches of 64 Ki rows (id int64, text utf8), 1 client, then 4
#    clients at once (threads, each its own exchange, each sending every 4th batch). Anchor:
#    `wasmlink pipeline run` of the same pipeline file (Arrow IPC file source and sink,
#    chain schedule with 2 workers, queue-depth 4) on the same file. Payload = the batches'
#    Arrow buffer sizes (pyarrow's nbytes), the same figure for both sides. Every result is
#    compared with the batch sent (rows, order, content); the in-process output file with the
#    input. The server's peak RSS (VmHWM) is read after each configuration (a fresh server each).
# 2. The search engine's extract/tokenize/normalize stages (examples/search) served, a client
#    streaming CORPUS's documents through them in batches of 64 with 2 concurrent exchanges;
#    against the same three stages in-process (`wasmlink pipeline run`, 2 workers, sink none) and
#    `wasmlink index --workers 2` (which also runs the index stage and merges the segments).
#
#   bash scripts/bench-flight.sh [ROUNDS]          # ROUNDS (default 3) runs of each, medians
#   MB=64 bash scripts/bench-flight.sh 1            # a smaller data set
#   CORPUS=path/to/html bash scripts/bench-flight.sh
#   NO_BUILD=1 bash scripts/bench-flight.sh         # the release binary and guest modules as they are
#
# CORPUS defaults to the std docs of the local toolchain ($(rustc --print sysroot)/share/doc/rust/html/std).
# Any check that fails stops the script with exit 1 and a line saying what differed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
mb="${MB:-256}"
rows=65536
corpus="${CORPUS:-$(rustc --print sysroot)/share/doc/rust/html/std}"
py="$root/target/py-venv/bin/python"
client="$root/benches/flight/client.py"
bin="$root/target/release/wasmlink"
die() { echo "bench-flight: $*" >&2; exit 1; }

[ -x "$py" ] || die "$py is missing: run bash scripts/setup.sh (it installs pyarrow there)"
[ -d "$corpus" ] || die "$corpus: no such directory (rustup component add rust-docs, or set CORPUS)"
if [ -z "${NO_BUILD:-}" ]; then   # NO_BUILD=1: use the binary and modules already built
  cargo build --quiet --release --bin wasmlink
  bash scripts/build-guests.sh >/dev/null
fi

out="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$out"
}
trap cleanup EXIT

# The data: about MB MiB of payload in 64 Ki-row batches (one batch is about 2.3 MB).
batches=$(( (mb * 1048576 + 2400000 - 1) / 2400000 ))
"$py" "$client" gen "$out/data.arrow" --batches "$batches" --rows "$rows" >"$out/gen.json"
payload="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes"])' "$out/gen.json")"
total_rows=$(( batches * rows ))

cat >"$out/identity.toml" <<EOF
queue-depth = 4
workers = 2
[source]
kind = "arrow"
path = "data.arrow"
batch-rows = $rows
[[stage]]
name = "identity"
module = "$root/benches/flight/identity.wat"
function = "run"
[sink]
kind = "arrow"
path = "out.arrow"
EOF

cat >"$out/stages.toml" <<EOF
queue-depth = 4
workers = 2
[source]
kind = "dir"
path = "$corpus"
content = "binary"
batch-rows = 64
[[stage]]
name = "extract"
module = "$root/target/guest-modules/extract.wasm"
function = "extract"
policy = "$root/examples/search/extract.toml"
[[stage]]
name = "tokenize"
module = "$root/target/guest-modules/tokenize.wasm"
function = "tokenize"
policy = "$root/examples/search/tokenize.toml"
[[stage]]
name = "normalize"
module = "$root/target/guest-modules/normalize.wasm"
function = "normalize"
policy = "$root/examples/search/normalize.toml"
[sink]
kind = "none"
EOF

json() { "$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }
now() { date +%s.%N; }

# Starts `wasmlink serve FILE` on a free loopback port; sets server_pid and port.
start_server() {
  local log="$out/serve.err"
  : >"$log"
  (cd "$out" && exec "$bin" serve --listen 127.0.0.1:0 "$1" 2>"$log") &
  server_pid=$!
  for _ in $(seq 1 600); do
    if grep -q '^listening on' "$log"; then break; fi
    kill -0 "$server_pid" 2>/dev/null || die "wasmlink serve $1 exited: $(cat "$log")"
    sleep 0.1
  done
  port="$(grep -o '^listening on 127.0.0.1:[0-9]*' "$log" | awk -F: '{print $2}')"
  [ -n "$port" ] || die "wasmlink serve $1 did not start within 60 s: $(cat "$log")"
}
# Stops the server after checking it is still alive; sets rss to its peak RSS in MiB (VmHWM).
stop_server() {
  kill -0 "$server_pid" 2>/dev/null || die "the server died during the run: $(cat "$out/serve.err")"
  local hwm
  hwm="$(awk '/^VmHWM/ { print $2 }' "/proc/$server_pid/status")"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  rss=$(( hwm / 1024 ))
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "bench-flight: $batches batches x $rows rows, payload $payload bytes; corpus $corpus; $rounds round(s)" >&2
date -u
uptime
: >"$out/results"
for round in $(seq 1 "$rounds"); do
  # 1a. In-process anchor.
  rm -f "$out/out.arrow"
  t0="$(now)"
  /usr/bin/time -f "%M" -o "$out/inproc.rss" "$bin" pipeline run --json --no-progress "$out/identity.toml" \
    >"$out/inproc.json" 2>"$out/inproc.err" || die "pipeline run identity.toml failed: $(cat "$out/inproc.err")"
  t1="$(now)"
  [ "$(json "$out/inproc.json" 'd["outcome"]')" = completed ] || die "pipeline run: $(cat "$out/inproc.json")"
  [ "$(json "$out/inproc.json" 'd["rows_written"]')" = "$total_rows" ] || die "pipeline run wrote $(json "$out/inproc.json" 'd["rows_written"]') rows, sent $total_rows"
  "$py" "$client" check "$out/data.arrow" "$out/out.arrow" >/dev/null
  in_s="$(json "$out/inproc.json" 'd["elapsed_secs"]')"
  in_wall="$(echo "$t1 - $t0" | bc -l)"
  in_rss=$(( $(tail -1 "$out/inproc.rss") / 1024 ))
  echo "inproc $in_s $in_wall $in_rss" >>"$out/results"
  echo "round $round: in-process identity ${in_s}s (process ${in_wall}s), peak RSS ${in_rss} MiB" >&2

  # 1b. Flight, 1 and 4 clients, a fresh server each.
  for c in 1 4; do
    start_server identity.toml
    "$py" "$client" exchange "grpc+tcp://127.0.0.1:$port" identity "$out/data.arrow" --clients "$c" \
      >"$out/flight$c.json" || die "the Flight exchange with $c client(s) failed its checks"
    stop_server
    s="$(json "$out/flight$c.json" 'd["seconds"]')"
    echo "flight$c $s $rss" >>"$out/results"
    echo "round $round: Flight identity, $c client(s) ${s}s, server peak RSS ${rss} MiB" >&2
  done

  # 2. The search stages: Flight with 2 exchanges, in-process, `wasmlink index --workers 2`.
  start_server stages.toml
  "$py" "$client" docs "grpc+tcp://127.0.0.1:$port" stages "$corpus" --clients 2 --batch-rows 64 \
    >"$out/docs.json" || die "the Flight exchange of the corpus failed its checks"
  stop_server
  docs="$(json "$out/docs.json" 'd["docs"]')"
  s="$(json "$out/docs.json" 'd["seconds"]')"
  echo "sflight $s $rss $(json "$out/docs.json" 'd["read_seconds"]')" >>"$out/results"
  echo "round $round: Flight search stages, 2 exchanges ${s}s ($docs documents), server peak RSS ${rss} MiB" >&2

  t0="$(now)"
  "$bin" pipeline run --json --no-progress "$out/stages.toml" >"$out/sin.json" 2>"$out/sin.err" \
    || die "pipeline run stages.toml failed: $(cat "$out/sin.err")"
  t1="$(now)"
  [ "$(json "$out/sin.json" 'd["rows_written"]')" = "$docs" ] \
    || die "pipeline run: $(json "$out/sin.json" 'd["rows_written"]') documents through the stages, the Flight client sent $docs"
  echo "sin $(json "$out/sin.json" 'd["elapsed_secs"]') $(echo "$t1 - $t0" | bc -l)" >>"$out/results"

  rm -rf "$out/index"
  t0="$(now)"
  "$bin" index --corpus "$corpus" --out "$out/index" --workers 2 --no-progress >"$out/index.log" 2>&1 \
    || die "wasmlink index failed: $(cat "$out/index.log")"
  t1="$(now)"
  grep -q "($docs files read" "$out/index.log" || die "wasmlink index read another number of files than the $docs the client sent: $(grep '^indexed' "$out/index.log")"
  idx_s="$(grep '^indexed' "$out/index.log" | grep -o 'in [0-9.]*s' | tr -dc '0-9.')"
  echo "index $idx_s $(echo "$t1 - $t0" | bc -l)" >>"$out/results"
  echo "round $round: wasmlink index --workers 2: streaming ${idx_s}s, process $(echo "$t1 - $t0" | bc -l)s" >&2
done

col() { awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$out/results" | median; }
mbs() { echo "scale=1; $payload / 1048576 / $1" | bc -l; }
in_s="$(col inproc 2)"; in_wall="$(col inproc 3)"
f1="$(col flight1 2)"; f4="$(col flight4 2)"
echo
echo "## identity stage, $batches batches x $rows rows = $(echo "scale=1; $payload / 1048576" | bc) MiB payload, medians of $rounds"
printf "%-40s %10s %10s %14s %16s\n" "" "time (s)" "MiB/s" "Flight/in-proc" "peak RSS (MiB)"
printf "%-40s %10.3f %10s %14s %16s\n" "in-process (pipeline run, 2 workers)" "$in_s" "$(mbs "$in_s")" "1" "$(col inproc 4)"
printf "%-40s %10.3f %10s %14s %16s\n" "  same, whole process (load+write)" "$in_wall" "$(mbs "$in_wall")" "" ""
printf "%-40s %10.3f %10s %14.2f %16s\n" "Flight, 1 client" "$f1" "$(mbs "$f1")" "$(echo "$in_s / $f1" | bc -l)" "$(col flight1 3)"
printf "%-40s %10.3f %10s %14.2f %16s\n" "Flight, 4 clients at once" "$f4" "$(mbs "$f4")" "$(echo "$in_s / $f4" | bc -l)" "$(col flight4 3)"
echo
echo "## search stages (extract, tokenize, normalize) on $corpus: $docs documents, medians of $rounds"
printf "%-52s %10s %16s\n" "" "time (s)" "peak RSS (MiB)"
printf "%-52s %10.3f %16s\n" "Flight, 2 exchanges (stages only)" "$(col sflight 2)" "$(col sflight 3)"
printf "%-52s %10.3f\n" "  client reading the files first (not in the time)" "$(col sflight 4)"
printf "%-52s %10.3f\n" "in-process pipeline run, 2 workers (stages only)" "$(col sin 2)"
printf "%-52s %10.3f\n" "  same, whole process" "$(col sin 3)"
printf "%-52s %10.3f\n" "wasmlink index --workers 2 (+index stage, merge)" "$(col index 2)"
printf "%-52s %10.3f\n" "  same, whole process" "$(col index 3)"
echo "Flight / in-process stages: $(echo "scale=2; $(col sflight 2) / $(col sin 2)" | bc -l)x the time; Flight / wasmlink index: $(echo "scale=2; $(col sflight 2) / $(col index 2)" | bc -l)x"
uptime
