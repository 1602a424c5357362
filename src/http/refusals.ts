// Every refusal, whatever produced it, becomes `{ error: { code, message }, requestId }` with a
// code from the catalogue (src/errors.ts). Fastify's own errors and the multipart parser's are
// mapped in ONE table here; errors Node's HTTP parser raises before a request exists (headers too
// large, malformed request, body timeout) are answered on the raw socket by clientErrorHandler.

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { ERROR_CATALOGUE, type ErrorCode, ServiceError, errorBody, quote } from '../errors.js';

interface Mapping {
  code: ErrorCode;
  message: (config: Config, request: FastifyRequest) => string;
}

const tooLarge = (config: Config): string =>
  `the body is larger than this server's limit of ${config.bodyLimitBytes} bytes; send a smaller module, or store it once with POST /modules and run it by moduleId`;

/** Fastify's and @fastify/multipart's error codes, by what the caller should hear. */
const FASTIFY_ERRORS: Readonly<Record<string, Mapping>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'payload_too_large', message: tooLarge },
  FST_REQ_FILE_TOO_LARGE: { code: 'payload_too_large', message: (c) => `the module file is larger than this server's limit of ${c.bodyLimitBytes} bytes` },
  FST_PARTS_LIMIT: { code: 'payload_too_large', message: () => 'form: too many parts (at most 32)' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'unsupported_media_type',
    message: (_c, r) => `unsupported content type ${quote(String(r.headers['content-type'] ?? ''))}; send application/json, multipart/form-data or application/wasm`,
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'invalid_request', message: () => 'the body is not as long as its Content-Length header says' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'invalid_request', message: () => 'body: the JSON body is empty; send a JSON object' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'invalid_request', message: () => 'body: not valid JSON' },
  FST_ERR_CTP_EMPTY_TYPE: { code: 'unsupported_media_type', message: () => 'the request has a body but no content type; send application/json, multipart/form-data or application/wasm' },
  FST_ERR_CTP_INVALID_TYPE: { code: 'unsupported_media_type', message: () => 'the content type is not valid; send application/json, multipart/form-data or application/wasm' },
  FST_ERR_BAD_URL: { code: 'invalid_request', message: (_c, r) => `the URL ${quote(r.url)} is not valid (bad percent-encoding?)` },
  FST_ERR_ASYNC_CONSTRAINT: { code: 'invalid_request', message: () => 'the request could not be routed' },
  FST_ERR_MAX_PARAM_LENGTH: {
    code: 'invalid_request',
    message: () => 'path.moduleId: too long; a module id is "sha256:" followed by 64 lowercase hex digits',
  },
  FST_FILES_LIMIT: { code: 'invalid_request', message: () => 'form.module: give one file part, the module' },
  FST_FIELDS_LIMIT: { code: 'invalid_request', message: () => 'form: too many fields (at most 16)' },
  FST_PROTO_VIOLATION: { code: 'invalid_request', message: () => 'form: a field name is not allowed (__proto__ or constructor)' },
  FST_INVALID_MULTIPART_CONTENT_TYPE: { code: 'invalid_request', message: () => 'the multipart body is malformed (check the boundary)' },
  FST_ERR_CTP_INSTANCE_ALREADY_STARTED: { code: 'internal_error', message: () => 'internal error' },
};

/** The catalogue code a Fastify status maps to when no code is known. */
const BY_STATUS: Readonly<Record<number, ErrorCode>> = {
  400: 'invalid_request',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'invalid_request',
  415: 'unsupported_media_type',
  431: 'headers_too_large',
};

export interface Refusal {
  code: ErrorCode;
  message: string;
  headers: Readonly<Record<string, string>>;
}

/** What to answer for an error thrown while handling `request`; null for a bug (a 500). */
export function refusalFor(error: Error & { code?: string; statusCode?: number }, request: FastifyRequest, config: Config): Refusal | null {
  if (error instanceof ServiceError) return { code: error.code, message: error.message, headers: error.headers };
  const mapped = error.code ? FASTIFY_ERRORS[error.code] : undefined;
  if (mapped) return mapped.code === 'internal_error' ? null : { code: mapped.code, message: mapped.message(config, request), headers: {} };
  const status = error.statusCode;
  if (status && status >= 400 && status < 500) {
    const code = BY_STATUS[status] ?? 'invalid_request';
    return { code, message: `${ERROR_CATALOGUE[code].summary} (${quote(error.message, 200)})`, headers: {} };
  }
  return null;
}

/** Errors Node's HTTP parser raises on a connection, before or while a request is read. */
const CLIENT_ERRORS: Readonly<Record<string, { code: ErrorCode; message: (config: Config) => string }>> = {
  ERR_HTTP_REQUEST_TIMEOUT: {
    code: 'request_timeout',
    message: (c) => `the request did not arrive in full within this server's limit of ${c.bodyTimeoutMs} ms; the connection is closed`,
  },
  HPE_HEADER_OVERFLOW: {
    code: 'headers_too_large',
    message: (c) =>
      `the request line and headers are larger than this server's limit of ${c.maxHeaderBytes} bytes; send long inputs (arguments, module ids) in the body`,
  },
};

/**
 * Fastify's clientErrorHandler: answers on the raw socket (no request object exists yet) with a
 * catalogue body and a fresh request id, logs the refusal, then closes the connection.
 */
export function clientErrorHandler(config: Config, onRefusal: (code: ErrorCode) => void) {
  return function handle(this: FastifyInstance, err: Error & { code?: string }, socket: Socket): void {
    // A reset connection has nobody to answer.
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const known = err.code ? CLIENT_ERRORS[err.code] : undefined;
    const code: ErrorCode = known?.code ?? 'invalid_request';
    const message = known ? known.message(config) : 'the request is not valid HTTP/1.1';
    const requestId = randomUUID();
    const status = ERROR_CATALOGUE[code].status;
    this.log.info({ reqId: requestId, code, status, parserError: err.code }, 'refused');
    onRefusal(code);
    if (socket.writable) {
      const body = JSON.stringify(errorBody(code, message, requestId));
      socket.write(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
          `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroySoon();
  };
}
