// A probe client in a thread of its own (so the bench's own work, such as sending a 16 MiB body,
// never delays it): GET `url` back to back on one connection until told to stop, then reports
// every probe as [start (epoch ms), latency ms].

import { parentPort, workerData } from 'node:worker_threads';
import { Agent, request } from 'undici';

const { url } = workerData as { url: string };
const agent = new Agent({ connections: 1, pipelining: 1 });
const samples: number[] = [];
let running = true;
parentPort!.on('message', (msg: 'stop') => {
  if (msg === 'stop') running = false;
});
const epoch = (): number => performance.timeOrigin + performance.now();
(async () => {
  while (running) {
    const t0 = epoch();
    const res = await request(url, { dispatcher: agent });
    await res.body.dump();
    samples.push(t0, epoch() - t0);
  }
  await agent.close();
  parentPort!.postMessage(samples);
})().catch((err: unknown) => {
  parentPort!.postMessage({ error: String(err) });
});
