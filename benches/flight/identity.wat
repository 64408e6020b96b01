;; An ABI v1 Arrow function `run` that returns its input (the Arrow IPC bytes) unchanged: the
;; identity stage of scripts/bench-flight.sh (the same module as tests/all/pipeline.rs's
;; `identity.wasm`). A bump allocator; freeing the last block gives it back.
(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "wasmlink_alloc") (param $size i32) (param $align i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (block $ok
      (loop $grow
        (br_if $ok (i32.le_u (i32.add (local.get $p) (local.get $size))
                             (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then (return (i32.const 0))))
        (br $grow)))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))
  (func (export "wasmlink_free") (param $ptr i32) (param $size i32) (param $align i32)
    (if (i32.eq (i32.add (local.get $ptr) (local.get $size)) (global.get $heap))
      (then (global.set $heap (local.get $ptr)))))
  (func (export "run") (param $ptr i32) (param $len i32) (result i32)
    (local $out i32)
    (local.set $out (call $alloc (local.get $len) (i32.const 1)))
    (memory.copy (local.get $out) (local.get $ptr) (local.get $len))
    (i32.store (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (local.get $out))
    (i32.store (i32.const 24) (local.get $len))
    (i32.store (i32.const 28) (local.get $len))
    (i32.const 16))
)
