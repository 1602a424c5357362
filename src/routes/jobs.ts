// POST /jobs, GET /jobs/{jobId}, DELETE /jobs/{jobId}: asynchronous runs. A job is validated like
// POST /execute (the same body forms, the same refusals) before it is queued; src/jobs runs it.

import type { FastifyInstance } from 'fastify';
import { ServiceError, clip } from '../errors.js';
import type { JobOwner } from '../jobs/types.js';
import { readRunBody, toExecuteRequest } from './body.js';
import { callContext } from './context.js';

export default async function jobRoutes(app: FastifyInstance): Promise<void> {
  app.post('/jobs', async (request, reply) => {
    const { extra, ...body } = await readRunBody(request, { extraFields: ['callbackUrl'] });
    const callbackUrl = extra?.callbackUrl === undefined ? null : await app.jobCallbacks.validate(extra.callbackUrl);
    const ctx = callContext(request, reply);
    await app.executor.check(toExecuteRequest(body), ctx, app.config.jobs.limits);
    const { jobId } = await app.jobs.submit({ body, owner: { caller: ctx.caller, keyId: ctx.keyId }, callbackUrl });
    request.log.info({ jobId, function: body.fields.function ?? '_start', callback: callbackUrl !== null }, 'job queued');
    return reply.status(202).header('location', `/jobs/${jobId}`).send({ jobId, status: 'queued' });
  });

  app.get<{ Params: { jobId: string } }>('/jobs/:jobId', async (request) => {
    const job = await app.jobs.get(request.params.jobId, ownerOf(request.caller));
    if (!job) throw notFound(request.params.jobId);
    return job;
  });

  app.delete<{ Params: { jobId: string } }>('/jobs/:jobId', async (request) => {
    const job = await app.jobs.cancel(request.params.jobId, ownerOf(request.caller));
    if (!job) throw notFound(request.params.jobId);
    request.log.info({ jobId: job.jobId, status: job.status, cancelled: job.cancelled ?? false }, 'job cancel requested');
    return job;
  });
}

function ownerOf(caller: { id: string; keyId: string | null }): JobOwner {
  return { caller: caller.id, keyId: caller.keyId };
}

function notFound(jobId: string): ServiceError {
  return new ServiceError(
    'job_not_found',
    `no job ${JSON.stringify(clip(jobId, 80))}: unknown, expired (finished jobs are kept for WASMBOX_JOB_TTL_S), or submitted with another API key`,
  );
}
