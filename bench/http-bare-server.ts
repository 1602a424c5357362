// The baseline of the http section: a bare Fastify server (same Fastify version as the service, no
// logger, no hooks) with one route returning fixed JSON. Run as a child process, like the service.

import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.get('/hello', async () => ({ hello: 'world' }));
process.on('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
