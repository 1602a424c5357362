// The baseline of the http section: a bare Fastify server (same Fastify version as the service, no
// logger, no hooks) with one route returning fixed JSON. Run as a child process, like the service.
// POST /sink is the bodies section's baseline: it receives a body of any size and discards it as it
// streams in (what merely receiving it costs the event loop).

import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.get('/hello', async () => ({ hello: 'world' }));
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { bodyLimit: 1024 * 1024 * 1024 }, (_request, payload, done) => {
  let bytes = 0;
  payload.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  payload.on('end', () => done(null, bytes));
  payload.on('error', (err: Error) => done(err, undefined));
});
app.post('/sink', async (request) => ({ received: request.body }));
process.on('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
