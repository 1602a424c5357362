// The callback allowlist (WASMBOX_CALLBACK_ALLOWLIST) and the address rule that keeps callbacks out
// of the operator's network.
//
// Entries are `host` (any port) or `host:port`; a host is a DNS name, an IPv4 address or an IPv6
// address in brackets (`[::1]:8080`). A callbackUrl is accepted only when its host (and port)
// match an entry. That is not enough on its own: the allowlist names hosts, and whoever controls
// an allowed name's DNS could point it at 10.0.0.1 or 169.254.169.254 after the check. So at
// delivery the name is resolved, and only public addresses are used: an internal address
// (loopback, private, link-local, carrier-grade NAT, unique-local, multicast, reserved, and IPv6
// forms that embed an IPv4 address) is reached only when the matching entry is that literal
// address (`127.0.0.1:9000`, `10.0.0.5`), which only the operator can write. The connection is
// pinned to the address that was checked (src/jobs/callbacks.ts), so no second resolution can
// swap it.

import net from 'node:net';

export interface AllowedHost {
  /** Lowercase DNS name or IP address (IPv6 without brackets). */
  host: string;
  /** null: any port. */
  port: number | null;
  /** 4 or 6 when `host` is a literal IP address, else 0. */
  ipVersion: 0 | 4 | 6;
}

export class AllowlistError extends Error {
  override readonly name = 'AllowlistError';
}

const NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** Parses the comma-separated allowlist; refuses a malformed entry naming it. */
export function parseCallbackAllowlist(raw: string): AllowedHost[] {
  const out: AllowedHost[] = [];
  for (const part of raw.split(',')) {
    const entry = part.trim().toLowerCase();
    if (entry === '') continue;
    out.push(parseEntry(entry));
  }
  return out;
}

function parseEntry(entry: string): AllowedHost {
  let host: string;
  let portText: string | null = null;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(entry);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2] ?? null;
    if (net.isIPv6(host) === false) throw new AllowlistError(`${JSON.stringify(entry)}: only an IPv6 address goes in brackets`);
  } else {
    const colons = entry.split(':').length - 1;
    if (colons > 1) throw new AllowlistError(`${JSON.stringify(entry)}: write an IPv6 address in brackets, as [::1] or [::1]:8080`);
    [host, portText = null] = entry.split(':') as [string, string?];
    host = host.replace(/\.$/, '');
  }
  let port: number | null = null;
  if (portText !== null) {
    if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw new AllowlistError(`${JSON.stringify(entry)}: the port must be a number from 1 to 65535`);
    }
    port = Number(portText);
  }
  const ipVersion = net.isIP(host) as 0 | 4 | 6;
  if (ipVersion === 0 && !NAME.test(host)) throw new AllowlistError(`${JSON.stringify(entry)}: not a host name, an IP address or host:port`);
  return { host, port, ipVersion };
}

/** The entry a URL's host and port match, or null. `hostname` as URL.hostname gives it. */
export function matchAllowed(allowlist: readonly AllowedHost[], hostname: string, port: number): AllowedHost | null {
  const host = hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  return allowlist.find((e) => e.host === host && (e.port === null || e.port === port)) ?? null;
}

/** Address ranges a callback never reaches through a DNS name. Two lists: a BlockList matches an
 *  IPv4 address against IPv6 rules covering ::ffff:0:0/96, which would make every IPv4 address
 *  internal. */
const INTERNAL_V4 = new net.BlockList();
const INTERNAL_V6 = new net.BlockList();
for (const [prefix, bits] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata services
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  INTERNAL_V4.addSubnet(prefix, bits, 'ipv4');
}
for (const [prefix, bits] of [
  ['::', 128],
  ['::1', 128],
  ['::ffff:0:0', 96], // IPv4-mapped: would reach the IPv4 address it embeds
  ['64:ff9b::', 96], // NAT64: likewise
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001::', 32], // Teredo
  ['2001:db8::', 32],
  ['2002::', 16], // 6to4: embeds an IPv4 address
  ['fc00::', 7], // unique-local
  ['fe80::', 10], // link-local
  ['fec0::', 10],
  ['ff00::', 8], // multicast
] as const) {
  INTERNAL_V6.addSubnet(prefix, bits, 'ipv6');
}

/** Whether `address` (a literal IPv4 or IPv6 address) is internal: see the file comment. */
export function isInternalAddress(address: string): boolean {
  const version = net.isIP(address);
  if (version === 0) return true;
  return version === 4 ? INTERNAL_V4.check(address, 'ipv4') : INTERNAL_V6.check(address, 'ipv6');
}
