// A piscina task for test/piscina-interface.test.ts: waits `ms` milliseconds, then answers its
// thread's id.
const { threadId } = require('node:worker_threads');

module.exports = ({ ms }) => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  return threadId;
};
