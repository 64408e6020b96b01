#!/usr/bin/env bash
# The search engine against Tantivy, side by side (issue 17): indexes one corpus with
# `wasmlink index --workers 2` and with Tantivy 0.27 (bench/search-anchor: en_stem, BM25,
# title + body, 2 indexing threads, the same files and the same title/text extraction), answers
# the judged queries of bench/queries/rust-docs.tsv with both, and prints docs, docs/s, MB/s,
# index size, peak RSS, query p50/p99, MRR@10, recall@3, nDCG@10 and the ratios
# wasmlink/Tantivy; then the queries where an engine ranks the expected page below 3.
#
# Two Tantivy runs are timed in every round. "tantivy" is Tantivy as a user would run it: every
# page but redirect stubs indexed (print pages, old editions and translations too), no body
# stored. "same work" (--same-docs --store-body) indexes exactly the pages wasmlink indexes
# (the same skip rules: print pages and the like are read but not parsed) and stores each
# page's text as wasmlink does: the like-for-like anchor of the speed and memory ratios.
#
#   bash scripts/bench-search.sh [CORPUS]                    # default: the Rust book (fast)
#   CORPUS="$(rustc --print sysroot)/share/doc/rust/html" bash scripts/bench-search.sh
#   ROUNDS=3 REPEAT=20 KEEP=target/bench-search bash scripts/bench-search.sh
#
# Indexing runs ROUNDS times (default 3), the two engines in turn, and the table shows the
# median time and the peak RSS of the median run. A query's latency is the median of REPEAT
# runs (default 20) after one warm-up; p50/p99 are over the queries (wasmlink: the sandboxed
# query module, timed inside `wasmlink search --repeat`, no process start-up; Tantivy: in
# process, the top 10 with their stored paths). Latency is measured like for like twice:
# without snippets (`wasmlink search --no-snippets`; Tantivy as before) and with a snippet for
# each of the 10 hits (wasmlink's default; Tantivy's SnippetGenerator over the stored body, in
# an index built once more with the body stored, whose time and size are printed too).
# When CORPUS is a directory under the docs' html root (e.g. .../html/book), only the judged
# queries with an expected page under it count, their paths taken relative to CORPUS.
# Needs the release binary (built here; the search modules are embedded in it) and builds the
# anchor into target/search-anchor (Tantivy; the first build takes about 5 minutes).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
html="$(rustc --print sysroot)/share/doc/rust/html"
corpus="${1:-${CORPUS:-$html/book}}"
rounds="${ROUNDS:-3}"
repeat="${REPEAT:-20}"
queries="$root/bench/queries/rust-docs.tsv"
if [ ! -d "$corpus" ]; then
  echo "bench-search: $corpus: no such directory (rustup component add rust-docs, or pass one)" >&2
  exit 2
fi
corpus="$(cd "$corpus" && pwd -P)"
html_real="$(cd "$html" 2>/dev/null && pwd -P || echo "$html")"
prefix=""
case "$corpus/" in
  "$html_real"/*) rel="${corpus#"$html_real"}"; rel="${rel#/}"; prefix="${rel:+$rel/}" ;;
  *) echo "bench-search: $corpus is not under $html: the judged queries' paths may not match" >&2 ;;
esac

cargo build --quiet --release --bin wasmlink
CARGO_TARGET_DIR="$root/target/search-anchor" cargo build --quiet --release \
  --manifest-path bench/search-anchor/Cargo.toml
wasmlink="$root/target/release/wasmlink"
anchor="$root/target/search-anchor/release/search-anchor"

# KEEP=DIR keeps the rankings (w.ranking, t.ranking: query TAB rank TAB path), each query's
# latency (*.ranking.ms), scores and misses in DIR; otherwise they go with a temporary directory.
if [ -n "${KEEP:-}" ]; then
  out="$KEEP"
  mkdir -p "$out"
else
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi

# Runs "$@" under /usr/bin/time; prints "seconds peak_rss_kib" and leaves stdout in $out/stdout.
timed() {
  local t0 t1
  t0="$EPOCHREALTIME"
  /usr/bin/time -f "%M" -o "$out/rss" "$@" >"$out/stdout" 2>"$out/stderr" \
    || { cat "$out/stderr" >&2; exit 1; }
  t1="$EPOCHREALTIME"
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $(tail -1 "$out/rss")"
}

# The number after "NAME": in some JSON (pretty-printed or not).
json() { grep -o "\"$1\": *[0-9.e+-]*" | head -1 | sed 's/.*: *//'; }

: >"$out/w.runs"
: >"$out/t.runs"
: >"$out/ts.runs"
for round in $(seq 1 "$rounds"); do
  read -r secs rss < <(timed "$wasmlink" index --corpus "$corpus" --out "$out/w-index" \
    --workers 2 --no-progress --json)
  docs="$(json documents <"$out/stdout")"
  bytes="$(json bytes_read <"$out/stdout")"
  echo "$secs $rss $docs $bytes" >>"$out/w.runs"
  read -r secs rss < <(timed "$anchor" index "$corpus" "$out/t-index" --threads 2)
  docs="$(json documents <"$out/stdout")"
  bytes="$(json bytes <"$out/stdout")"
  echo "$secs $rss $docs $bytes" >>"$out/t.runs"
  read -r secs rss < <(timed "$anchor" index "$corpus" "$out/ts-index" --threads 2 --same-docs --store-body)
  docs="$(json documents <"$out/stdout")"
  bytes="$(json bytes <"$out/stdout")"
  echo "$secs $rss $docs $bytes" >>"$out/ts.runs"
  echo "round $round: wasmlink $(cut -d' ' -f1 <"$out/w.runs" | tail -1) s, tantivy $(cut -d' ' -f1 <"$out/t.runs" | tail -1) s, same work $(cut -d' ' -f1 <"$out/ts.runs" | tail -1) s" >&2
done
# The median run (by time) of a runs file.
median_run() { sort -g "$1" | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
read -r w_secs w_rss w_docs w_bytes < <(median_run "$out/w.runs")
read -r t_secs t_rss t_docs t_bytes < <(median_run "$out/t.runs")
read -r ts_secs ts_rss ts_docs _ < <(median_run "$out/ts.runs")
w_size="$(du -sb "$out/w-index" | cut -f1)"
t_size="$(du -sb "$out/t-index" | cut -f1)"
# Tantivy once more with the body stored, for its snippets (not in the medians above).
read -r tb_secs tb_rss < <(timed "$anchor" index "$corpus" "$out/t-index-body" --threads 2 --store-body)
tb_size="$(du -sb "$out/t-index-body" | cut -f1)"

"$anchor" wasmlink-query "$wasmlink" "$out/w-index" "$queries" "$out/w.ranking" \
  --prefix "$prefix" --repeat "$repeat" >"$out/w.lat"
"$anchor" query "$out/t-index" "$queries" "$out/t.ranking" \
  --prefix "$prefix" --repeat "$repeat" >"$out/t.lat"
"$anchor" wasmlink-query "$wasmlink" "$out/w-index" "$queries" "$out/w-nosnip.ranking" \
  --prefix "$prefix" --repeat "$repeat" --no-snippets >"$out/w-nosnip.lat"
"$anchor" query "$out/t-index-body" "$queries" "$out/t-snip.ranking" \
  --prefix "$prefix" --repeat "$repeat" --snippets >"$out/t-snip.lat"
"$anchor" score "$queries" "$out/w.ranking" --prefix "$prefix" --misses >"$out/w.score" 2>"$out/w.misses"
"$anchor" score "$queries" "$out/t.ranking" --prefix "$prefix" --misses >"$out/t.score" 2>"$out/t.misses"
"$anchor" query "$out/ts-index" "$queries" "$out/ts.ranking" --prefix "$prefix" --repeat 1 >/dev/null
"$anchor" score "$queries" "$out/ts.ranking" --prefix "$prefix" >"$out/ts.score"

row() { # label wasmlink tantivy format
  awk -v l="$1" -v w="$2" -v t="$3" -v f="$4" 'BEGIN {
    printf "%-16s " f " " f "   ", l, w, t
    if (t + 0 != 0) printf "%8.2fx\n", w / t; else print "       -"
  }'
}
per() { awk -v a="$1" -v b="$2" -v s="${3:-1}" 'BEGIN { printf "%.6f", a / b / s }'; }
echo
echo "corpus: $corpus"
echo "$(wc -l <"$out/w.runs") round(s) of indexing, medians; $(json queries <"$out/w.score") judged queries (prefix '${prefix}'), latency: median of $repeat runs per query"
printf "%-16s %12s %12s   %9s\n" "" wasmlink tantivy "w/t"
row "documents" "$w_docs" "$t_docs" "%12d"
row "index (s)" "$w_secs" "$t_secs" "%12.3f"
row "docs/s" "$(per "$w_docs" "$w_secs")" "$(per "$t_docs" "$t_secs")" "%12.0f"
row "MB/s" "$(per "$w_bytes" "$w_secs" 1e6)" "$(per "$t_bytes" "$t_secs" 1e6)" "%12.1f"
row "index size (MB)" "$(per "$w_size" 1e6)" "$(per "$t_size" 1e6)" "%12.1f"
row "peak RSS (MiB)" "$(per "$w_rss" 1024)" "$(per "$t_rss" 1024)" "%12.1f"
row "index+body (s)" "$w_secs" "$tb_secs" "%12.3f"
row "size+body (MB)" "$(per "$w_size" 1e6)" "$(per "$tb_size" 1e6)" "%12.1f"
row "RSS+body (MiB)" "$(per "$w_rss" 1024)" "$(per "$tb_rss" 1024)" "%12.1f"
row "same: documents" "$w_docs" "$ts_docs" "%12d"
row "same: index (s)" "$w_secs" "$ts_secs" "%12.3f"
row "same: docs/s" "$(per "$w_docs" "$w_secs")" "$(per "$ts_docs" "$ts_secs")" "%12.0f"
row "same: RSS (MiB)" "$(per "$w_rss" 1024)" "$(per "$ts_rss" 1024)" "%12.1f"
row "q p50 no snip" "$(json p50_ms <"$out/w-nosnip.lat")" "$(json p50_ms <"$out/t.lat")" "%12.3f"
row "q p99 no snip" "$(json p99_ms <"$out/w-nosnip.lat")" "$(json p99_ms <"$out/t.lat")" "%12.3f"
row "q p50 snippets" "$(json p50_ms <"$out/w.lat")" "$(json p50_ms <"$out/t-snip.lat")" "%12.3f"
row "q p99 snippets" "$(json p99_ms <"$out/w.lat")" "$(json p99_ms <"$out/t-snip.lat")" "%12.3f"
row "MRR@10" "$(json mrr10 <"$out/w.score")" "$(json mrr10 <"$out/t.score")" "%12.3f"
row "recall@3" "$(json recall3 <"$out/w.score")" "$(json recall3 <"$out/t.score")" "%12.3f"
row "nDCG@10" "$(json ndcg10 <"$out/w.score")" "$(json ndcg10 <"$out/t.score")" "%12.3f"
row "same: MRR@10" "$(json mrr10 <"$out/w.score")" "$(json mrr10 <"$out/ts.score")" "%12.3f"
row "same: nDCG@10" "$(json ndcg10 <"$out/w.score")" "$(json ndcg10 <"$out/ts.score")" "%12.3f"
echo
echo "wasmlink: expected page below rank 3 ($(wc -l <"$out/w.misses")):"
sed 's/^/  /' "$out/w.misses"
echo "tantivy: expected page below rank 3 ($(wc -l <"$out/t.misses")):"
sed 's/^/  /' "$out/t.misses"
