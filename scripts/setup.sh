#!/usr/bin/env bash
# Installs what wasmlink's build and tests need on a fresh Debian machine: clang-19/lld-19 and
# wabt for the C fixtures, and the Rust guest targets. Idempotent; safe to run every time.
set -euo pipefail

need_apt=()
for pkg in clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 libc++-19-dev-wasm32 libc++abi-19-dev-wasm32 wabt; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-unknown-unknown; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

# pyarrow (Arrow's own Python bindings, pyarrow.flight) in a private venv, target/py-venv, for the
# Arrow Flight tests (tests/all/serve.rs run tests/fixtures/py/*.py with it against `wasmlink
# serve`). One binary wheel, no build step: ~7 s once, 195 MB in target/py-venv.
PYARROW_VERSION=26.0.1
venv=target/py-venv
if ! "$venv/bin/python" -c "import pyarrow, pyarrow.flight, sys; sys.exit(pyarrow.__version__ != '$PYARROW_VERSION')" 2>/dev/null; then
  echo "setup: installing pyarrow $PYARROW_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "pyarrow==$PYARROW_VERSION"
fi

# Pipeline stages as components (docs/pipeline.md, "Stages as components"): the wasm32-wasip2
# Rust target, and componentize-py (tests/all/component_stage.rs builds the Python stage of
# tests/fixtures/py/stage/ with it) in the same private venv. One wheel, ~40 MB.
grep -qx wasm32-wasip2 <<<"$installed" || rustup target add wasm32-wasip2
COMPONENTIZE_PY_VERSION=0.25.1
if [ "$("$venv/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')" != "$COMPONENTIZE_PY_VERSION" ]; then
  echo "setup: installing componentize-py $COMPONENTIZE_PY_VERSION into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

# JavaScript stage components (tests/all/index_stage.rs builds tests/fixtures/js/stopwords/ with
# it): componentize-js from npm into target/js. Needs Node (>= 18; checked on 20). ~17 s once,
# 156 packages, 386 MB in target/js. `jco componentize` is not used: jco 1.35.0 cannot read the
# WIT directory (docs/components.md, "JavaScript").
COMPONENTIZE_JS_VERSION=0.23.0
js=target/js
if [ "$(node -p "require('./$js/node_modules/@bytecodealliance/componentize-js/package.json').version" 2>/dev/null)" != "$COMPONENTIZE_JS_VERSION" ]; then
  if ! command -v npm >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing nodejs and npm" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "setup: installing componentize-js $COMPONENTIZE_JS_VERSION into $js" >&2
  mkdir -p "$js"
  npm install --prefix "$js" --no-audit --no-fund --silent "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION"
fi
