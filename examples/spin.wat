;; spin() never returns: it ends in fuel_exhausted (or timeout with a huge budget).
(module
  (func (export "spin")
    (loop $forever
      br $forever)))
