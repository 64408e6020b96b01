#!/usr/bin/env bash
# Issue 18 item 1: N distinct small C libraries (benches/distinct/gen.sh), each dlopen'ed, its
# f_I dlsym'ed and called (result checked) by one main per toolchain, timed inside the program:
#   native      gcc -shared -fPIC .so, gcc main (clock_gettime)
#   emscripten  emcc -sSIDE_MODULE=1, emcc -sMAIN_MODULE=2 -sNODERAWFS=1 main on Node (clock_gettime
#               = performance.now)
#   wasmlink    clang-19 dylink.0 side modules and PIE main (WASI clock_time_get), `wasmlink run -L`:
#               COLD  a fresh, empty --cache-dir (every library compiled)
#               WARM  a fresh process on the cache the COLD run of the same round filled
# No dlclose: every library stays loaded. One table with per-library means (median of RUNS rounds,
# modes interleaved per round) and ratios to native and to Emscripten; "process ms" is the whole
# process, start-up included (wall clock around it).
#
# With CALLS (default 2000000) each main then calls f_(k % N)(k) CALLS times through the dlsym'ed
# pointers (hot code; "call ns"), checked against the sum computed in the main.
#
# Env: N (200), RUNS (3), CALLS, WASMLINK (target/release/wasmlink; built if missing, with the
#      `winch` feature when COMPILERS names winch),
#      COMPILERS ("cranelift winch": values of WASMLINK_COMPILER, each a COLD and a WARM row;
#      "default" leaves it unset, for a binary from before the choice),
#      FLOORS ("cranelift cranelift-serial": raw wasmtime with that engine setting, no wasmlink:
#      benches/distinct/floor.rs compiling or mapping and instantiating the same libraries; a
#      floor-cold and a floor-warm row each; "" skips them).
# The libraries are kept in target/bench-distinct/N<N>-<hash of the generator> and reused; the
# three mains are rebuilt every run (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
N=${N:-200}
RUNS=${RUNS:-3}
WASMLINK=${WASMLINK:-$root/target/release/wasmlink}
COMPILERS=${COMPILERS:-"cranelift winch"}
CALLS=${CALLS:-2000000}

need_apt=()
for pkg in clang-19 lld-19 gcc emscripten; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "bench-distinct: installing ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v node >/dev/null || { echo "bench-distinct: node not found (scripts/setup.sh installs it)" >&2; exit 2; }
# Debian's emcc runs its JS optimizer with the system's acorn (node-acorn), which a Node
# installed elsewhere does not look for.
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs}
case " $COMPILERS " in
  *" winch "*)
    # Winch is a cargo feature (off by default); a binary without it says so at the first row.
    [ -x "$WASMLINK" ] || cargo build --release --bin wasmlink --features winch ;;
  *) [ -x "$WASMLINK" ] || cargo build --release --bin wasmlink ;;
esac

hash=$(sha256sum benches/distinct/gen.sh | cut -c1-12)
work=$root/target/bench-distinct/N$N-$hash
CF="--target=wasm32-wasi -fPIC -fvisibility=default -O2 -nostdlib"
export CF work
if [ ! -f "$work/done" ]; then
  echo "bench-distinct: building $N libraries three ways in $work" >&2
  rm -rf "$work"
  mkdir -p "$work"/{src,wl,native,em}
  benches/distinct/gen.sh "$N" "$work/src"
  seq 0 $((N - 1)) | xargs -P "$(nproc)" -I{} sh -c '
    clang-19 $CF -shared -Wl,--no-entry -Wl,--export-if-defined=__wasm_call_ctors \
      -Wl,--unresolved-symbols=import-dynamic -o "$work/wl/lib_{}.so" "$work/src/lib_{}.c" 2>/dev/null
    gcc -O2 -shared -fPIC -o "$work/native/lib_{}.so" "$work/src/lib_{}.c"
    emcc -O2 -sSIDE_MODULE=1 -o "$work/em/lib_{}.so" "$work/src/lib_{}.c"'
  touch "$work/done"
fi
clang-19 $CF -DDISTINCT_FREESTANDING -Wl,-pie -Wl,--experimental-pic -Wl,--no-entry \
  -Wl,--export-dynamic -Wl,--export=main -Wl,--unresolved-symbols=import-dynamic \
  -o "$work/wl/main.wasm" benches/distinct/main.c 2>/dev/null
gcc -O2 -o "$work/native/main" benches/distinct/main.c -ldl
emcc -O2 -sMAIN_MODULE=2 -sNODERAWFS=1 -sENVIRONMENT=node -sSINGLE_FILE=1 \
  -o "$work/em/main.js" benches/distinct/main.c

# The compilers to compare (WASMLINK_COMPILER; "default": the variable unset).
compilers=($COMPILERS)
# Raw wasmtime's floor (benches/distinct/floor.rs), per engine setting; FLOORS="" skips it.
floors=(${FLOORS-cranelift cranelift-serial})
floor_bin=$root/target/release/examples/load-floor
if [ ${#floors[@]} -gt 0 ]; then cargo build --quiet --release --example load-floor; fi

res=$(mktemp -d)
trap 'rm -rf "$res"' EXIT
# run MODE CMD...: runs CMD, checks "ok N", appends "per_library_us first_us process_ms call_ns"
# to $res/MODE.
run() {
  local mode=$1
  shift
  local t0 t1 out
  t0=$EPOCHREALTIME
  out=$("$@" 2>&1) || { echo "bench-distinct: $mode failed:" >&2; echo "$out" >&2; exit 1; }
  t1=$EPOCHREALTIME
  grep -qx "ok $N" <<<"$out" || { echo "bench-distinct: $mode: no 'ok $N':" >&2; echo "$out" >&2; exit 1; }
  local per first calls
  per=$(awk '$1 == "per_library_us" {print $2}' <<<"$out")
  first=$(awk '$1 == "first_us" {print $2}' <<<"$out")
  calls=$(awk '$1 == "call_ns" {print $2}' <<<"$out")
  echo "$per $first $(echo "($t1 - $t0) * 1000" | bc -l) ${calls:-0}" >>"$res/$mode"
}

echo "bench-distinct: N=$N, RUNS=$RUNS, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load:$(uptime | sed 's/.*load average://')" >&2
modes=(native emscripten)
for c in "${compilers[@]}"; do modes+=("cold-$c" "warm-$c"); done
for f in "${floors[@]}"; do modes+=("floor-cold-$f" "floor-warm-$f"); done
for ((r = 1; r <= RUNS; r++)); do
  run native "$work/native/main" "$N" "$work/native" .so "$CALLS"
  run emscripten node "$work/em/main.js" "$N" "$work/em" .so "$CALLS"
  for c in "${compilers[@]}"; do
    cache=$(mktemp -d "$res/cache.XXXX")
    sel=()
    [ "$c" = default ] || sel=(env "WASMLINK_COMPILER=$c")
    run "cold-$c" "${sel[@]}" "$WASMLINK" run --cache-dir "$cache" -L "$work/wl" "$work/wl/main.wasm" -- "$N" "" .so "$CALLS"
    run "warm-$c" "${sel[@]}" "$WASMLINK" run --cache-dir "$cache" -L "$work/wl" "$work/wl/main.wasm" -- "$N" "" .so "$CALLS"
    rm -rf "$cache"
  done
  # The floor: raw wasmtime compiling (cold) or mapping (warm) and instantiating the same
  # libraries, nothing else (benches/distinct/floor.rs).
  for f in "${floors[@]}"; do
    scratch=$(mktemp -d "$res/floor.XXXX")
    out=$("$floor_bin" "$work/wl" "$N" "$scratch" "$f" 2>&1) || { echo "bench-distinct: floor $f failed:" >&2; echo "$out" >&2; exit 1; }
    echo "$(awk '$1 == "cold_us" {print $2}' <<<"$out") 0 0 0" >>"$res/floor-cold-$f"
    echo "$(awk '$1 == "warm_us" {print $2}' <<<"$out") 0 0 0" >>"$res/floor-warm-$f"
    rm -rf "$scratch"
  done
done

median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
col() { awk -v c="$2" '{print $c}' "$res/$1" | median; }
nat=$(col native 1)
em=$(col emscripten 1)
printf '%-18s %12s %9s %9s %13s %11s %9s\n' mode per-lib-us x-native x-emscr first-lib-us process-ms call-ns
for m in "${modes[@]}"; do
  per=$(col "$m" 1)
  printf '%-18s %12.1f %9.2f %9.2f %13.1f %11.1f %9.2f\n' "$m" "$per" \
    "$(echo "$per / $nat" | bc -l)" "$(echo "$per / $em" | bc -l)" "$(col "$m" 2)" "$(col "$m" 3)" "$(col "$m" 4)"
done
echo "(median of $RUNS rounds; each round: native, emscripten, then per compiler a cold run on an empty cache and a warm run on the cache it filled,"
echo " then raw wasmtime's floor: compile or map + instantiate only, in one process; its other columns are 0)"
