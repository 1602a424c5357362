// The application/json and application/wasm body parsers. A body is read as Fastify reads one
// (capped by the body limit as it streams in, its length checked against Content-Length); then:
//
// - Small bodies (up to INLINE_BODY_MAX_BYTES) are handled here, on the event loop: JSON after a
//   UTF-8 check (decoding would silently turn invalid bytes into U+FFFD and run the guest with
//   input it was not sent) by Fastify's own parser, proto-poisoning checks included.
// - Larger ones go to the decoding thread (src/worker/decode.ts), their chunks moved there (or
//   copied into its reused staging buffer when they cannot be moved: src/worker/pool.ts):
//   a 16 MiB JSON body costs the event loop a few milliseconds there instead of about 300 (parse,
//   base64 check, decode, hash, and the page faults of fresh 16 MiB buffers). A JSON body's heavy
//   fields (the base64 module, WASI stdin) come back decoded, with stand-ins in the body that the
//   schemas judge as they would the originals; a raw module comes back copied and hashed.
//   `decodedFields` gives the routes (src/routes/body.ts) the decoded bytes and the module's
//   content address.

import { isUtf8 } from 'node:buffer';
import type { Readable } from 'node:stream';
import { type FastifyInstance, type FastifyRequest, errorCodes } from 'fastify';
import { ServiceError } from '../errors.js';
import type { DecodedFields } from '../worker/decode.js';
import type { WorkerPools } from '../worker/pool.js';

/** Bodies up to this size are parsed on the event loop (a few milliseconds at most: the round trip
 *  to the decoding thread costs more than it saves below it, and that thread is one for all). */
export const INLINE_BODY_MAX_BYTES = 256 * 1024;

const decodedByBody = new WeakMap<object, DecodedFields>();

/** The fields of this parsed body that were decoded off the event loop. */
export function decodedFields(body: unknown): DecodedFields | undefined {
  return body !== null && typeof body === 'object' ? decodedByBody.get(body) : undefined;
}

const notUtf8 = (): ServiceError =>
  new ServiceError('invalid_request', 'body: the JSON body is not valid UTF-8; send text encoded as UTF-8 (binary data goes in base64 fields)');

type Done = (err: Error | null, body?: unknown) => void;

export function registerBodyParsers(app: FastifyInstance, pools: WorkerPools, bodyLimitBytes: number): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');

  app.addContentTypeParser('application/json', { bodyLimit: bodyLimitBytes }, (request: FastifyRequest, payload: Readable, done: Done) => {
    readBody(request, payload, bodyLimitBytes, (err, chunks, length) => {
      if (err) return done(err, undefined);
      if (length <= INLINE_BODY_MAX_BYTES) {
        const body = Buffer.concat(chunks, length);
        if (!isUtf8(body)) return done(notUtf8(), undefined);
        parseJson(request, body.toString('utf8'), done);
        return;
      }
      pools.decodeJson(chunks, length).then((result) => {
        if (!result.ok) {
          if (result.reason === 'not_utf8') done(notUtf8(), undefined);
          else if (result.reason === 'empty') done(new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), undefined);
          else done(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), undefined);
          return;
        }
        const parsed = result.body;
        if (parsed !== null && typeof parsed === 'object' && (result.decoded.module || result.decoded.stdin)) decodedByBody.set(parsed, result.decoded);
        done(null, parsed);
      }, done);
    });
  });

  // The raw module: a Buffer (over the decoding thread's copy when it was large).
  app.addContentTypeParser('application/wasm', { bodyLimit: bodyLimitBytes }, (request: FastifyRequest, payload: Readable, done: Done) => {
    readBody(request, payload, bodyLimitBytes, (err, chunks, length) => {
      if (err) return done(err, undefined);
      if (length <= INLINE_BODY_MAX_BYTES) return done(null, Buffer.concat(chunks, length));
      pools.adoptBytes(chunks, length).then(({ bytes, moduleId }) => {
        const body = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        decodedByBody.set(body, { module: { bytes, moduleId } });
        done(null, body);
      }, done);
    });
  });
}

/**
 * Reads a body as Fastify's own parsers do (lib/content-type-parser.js rawBody): refused as soon
 * as it passes the limit (announced or streamed), and its length checked against Content-Length.
 * The chunks are kept as received: a small body's are concatenated, a large one's go to the
 * decoding thread (WorkerPools.decodeJson, adoptBytes).
 */
function readBody(
  request: FastifyRequest,
  payload: Readable & { receivedEncodedLength?: number },
  limit: number,
  then: (err: Error | null, chunks: Buffer[], length: number) => void,
): void {
  const contentLength = Number(request.headers['content-length']);
  if (contentLength > limit) return then(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), [], 0);
  let received = 0;
  const chunks: Buffer[] = [];
  const cleanup = (): void => {
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onEnd);
  };
  function onData(chunk: Buffer | string): void {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    received += b.length;
    if (received > limit || (payload.receivedEncodedLength ?? 0) > limit) {
      cleanup();
      then(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), [], 0);
      return;
    }
    chunks.push(b);
  }
  function onEnd(err?: Error & { statusCode?: number }): void {
    cleanup();
    if (err != null) {
      if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400;
      return then(err, [], 0);
    }
    if (!Number.isNaN(contentLength) && (payload.receivedEncodedLength || received) !== contentLength) {
      return then(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH(), [], 0);
    }
    then(null, chunks, received);
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onEnd);
  payload.resume();
}
