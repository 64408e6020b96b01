;; A module with one honest and one hostile export, for trying policies.
(module
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "spin") (loop (br 0)))
  (func (export "hog") (loop (drop (memory.grow (i32.const 16))) (br 0))))
