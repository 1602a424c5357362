// The error catalogue: every refusal the service can give, each with a stable code and its HTTP
// status. Routes, the service layer and openapi.yaml all use it; test/openapi.test.ts holds the
// catalogue and openapi.yaml together. Codes are public contract: never rename one.

export const ERROR_CATALOGUE = {
  invalid_request: { status: 400, summary: 'The request does not match the schema; the message names the field.' },
  invalid_module: { status: 400, summary: 'The body is not a valid WebAssembly module, or uses a feature this service does not run.' },
  function_not_found: { status: 400, summary: 'The module exports no function of that name; the message lists the exported functions.' },
  invalid_arguments: { status: 400, summary: 'Wrong argument count or type for the signature; the message shows the signature.' },
  unsupported_import: { status: 400, summary: 'The module imports something the service does not provide; the message names it.' },
  limit_out_of_range: { status: 400, summary: 'A requested limit is below 1 or above the server maximum; the message gives the maximum.' },
  unauthorized: { status: 401, summary: 'API keys are configured and the request has no valid one.' },
  module_not_found: { status: 404, summary: 'No stored module has that moduleId.' },
  job_not_found: { status: 404, summary: 'No job has that jobId, it has expired, or it belongs to another API key.' },
  route_not_found: { status: 404, summary: 'No route matches the method and path.' },
  store_full: { status: 409, summary: 'The module store is at its configured maximum size or module count; the message names which. Delete modules first.' },
  request_timeout: { status: 408, summary: "The body did not arrive in full within the server's body timeout; the connection is closed." },
  payload_too_large: { status: 413, summary: 'The body is larger than the configured maximum.' },
  unsupported_media_type: { status: 415, summary: 'The content type is not one the route accepts.' },
  headers_too_large: { status: 431, summary: "The request line and headers are larger than the server's limit; send long inputs in the body." },
  module_too_complex: { status: 422, summary: 'The module could not be prepared (validated, instrumented, compiled) within the server limits; the message gives the limit.' },
  rate_limited: { status: 429, summary: "Over the caller's rate limit or concurrency quota; Retry-After is set." },
  overloaded: { status: 503, summary: 'The queue is full or the server is shutting down; Retry-After is set.' },
  backend_unavailable: {
    status: 503,
    summary: 'The shared state this server keeps in Redis (REDIS_URL: module store, rate limits, concurrency quotas, jobs) cannot be reached right now; Retry-After is set.',
  },
  internal_error: { status: 500, summary: 'A bug in the service, never something a guest did.' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export class ServiceError extends Error {
  override readonly name = 'ServiceError';
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.status = ERROR_CATALOGUE[code].status;
  }
}

export interface ErrorBody {
  error: { code: ErrorCode; message: string };
  requestId: string;
}

/** The body of every refusal. */
export function errorBody(code: ErrorCode, message: string, requestId: string): ErrorBody {
  return { error: { code, message }, requestId };
}

/** Longest quotation of client input in a message, in characters. */
export const QUOTE_MAX_CHARS = 120;

/**
 * Client input quoted in a message: JSON-quoted, and clipped (with the original length) so that
 * no refusal echoes a megabyte back. Every message that quotes client input goes through here.
 */
export function quote(value: string, maxChars = QUOTE_MAX_CHARS): string {
  if (value.length <= maxChars) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, maxChars))}… (${value.length.toLocaleString('en-US')} characters)`;
}

/** The same clipping without the quotes, for input that reads as itself (a path). */
export function clip(value: string, maxChars = QUOTE_MAX_CHARS): string {
  if (value.length <= maxChars) return value;
  return `${value.slice(0, maxChars)}… (${value.length.toLocaleString('en-US')} characters)`;
}

/** A list for a message, at most `max` items, saying how many more there were. */
export function listForMessage(items: readonly string[], max = 10): string {
  const shown = items.slice(0, max).join(', ');
  return items.length > max ? `${shown} and ${(items.length - max).toLocaleString('en-US')} more` : shown;
}
