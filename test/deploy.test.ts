// The deployment files (deploy/kubernetes/*.yaml, deploy/compose.yaml, deploy/nginx.conf, the
// Dockerfile) held to the server they deploy: probe paths answer on a real server, ports are the
// server's default port everywhere, every environment variable they set is one src/config.ts
// reads and their values load, Secret keys and references match, the grace periods outlast the
// server's own shutdown bound, and the objects refer to each other by the right names and labels.

import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse } from 'yaml';
import { ENV_NAMES, loadConfig, shutdownBoundMs } from '../dist/src/config.js';
import { REDIS_COMMAND_TIMEOUT_MS } from '../dist/src/redis/index.js';
import { startServer, type TestServer } from './helpers/server.js';

type Obj = Record<string, any>;

const K8S_DIR = new URL('../deploy/kubernetes/', import.meta.url);
const manifests: Obj[] = readdirSync(K8S_DIR)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) =>
    parseAllDocuments(readFileSync(new URL(f, K8S_DIR), 'utf8')).map((d) => {
      if (d.errors.length > 0) throw new Error(`${f}: ${d.errors[0]!.message}`);
      return { ...(d.toJS() as Obj), file: f };
    }),
  );
const compose = parse(readFileSync(new URL('../deploy/compose.yaml', import.meta.url), 'utf8')) as Obj;
const nginx = readFileSync(new URL('../deploy/nginx.conf', import.meta.url), 'utf8');
const dockerfile = readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8');
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

function only(kind: string): Obj {
  const found = manifests.filter((m) => m.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0]!;
}

const deployment = only('Deployment');
const pod = deployment.spec.template.spec as Obj;
const container = pod.containers[0] as Obj;
const configMap = only('ConfigMap');
const secret = only('Secret');
const DEFAULT_PORT = loadConfig({}).port;
const KNOWN = new Set(ENV_NAMES);

/** The container port a probe or Service names (by name or number). */
function containerPort(port: string | number): number | undefined {
  if (typeof port === 'number') return port;
  return (container.ports as Obj[]).find((p) => p.name === port)?.containerPort;
}

describe('the Kubernetes Deployment', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('probes liveness on /healthz and readiness on /readyz, paths the server answers 200 on, at the container port', async () => {
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
      const { path, port } = container[probe].httpGet as Obj;
      expect(containerPort(port), probe).toBe(DEFAULT_PORT);
      // (Readiness waits for the worker pool, which may still be starting.)
      const deadline = Date.now() + 15_000;
      let status = (await server.get(path)).status;
      while (status !== 200 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        status = (await server.get(path)).status;
      }
      expect(status, `${probe} ${path}`).toBe(200);
    }
  });

  it("gives readiness a timeout longer than the server's Redis check, so a slow Redis fails readiness instead of timing the probe out", () => {
    expect(container.readinessProbe.timeoutSeconds * 1000).toBeGreaterThan(REDIS_COMMAND_TIMEOUT_MS);
  });

  it("listens on the server's default port, which the ConfigMap's PORT and the Dockerfile's EXPOSE and ENV agree with", () => {
    expect(container.ports.map((p: Obj) => p.containerPort)).toEqual([DEFAULT_PORT]);
    expect(Number(configMap.data.PORT)).toBe(DEFAULT_PORT);
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${DEFAULT_PORT}$`, 'm'));
    expect(dockerfile).toMatch(new RegExp(`\\bPORT=${DEFAULT_PORT}\\b`));
  });

  it('sets only environment variables the server reads, from the ConfigMap and the Secret, and the values load', () => {
    const names = [...Object.keys(configMap.data), ...(container.env as Obj[]).map((e) => e.name)];
    expect(names.filter((n) => !KNOWN.has(n))).toEqual([]);
    expect(container.envFrom).toEqual([{ configMapRef: { name: configMap.metadata.name } }]);
    // The Secret's values are unusable on purpose (see secret.yaml); stand-ins of the right form.
    const env = { ...configMap.data, WASMBOX_API_KEYS: 'a-real-key-0123456789abcdef', REDIS_URL: secret.stringData.REDIS_URL };
    const config = loadConfig(env);
    expect(config.host).toBe('0.0.0.0');
    expect(config.redisUrl).toBe(secret.stringData.REDIS_URL);
  });

  it('ships a Secret whose shipped API keys and callback secret the server refuses at start, so it cannot be deployed unchanged', () => {
    expect(() => loadConfig({ ...configMap.data, ...secret.stringData })).toThrow(/WASMBOX_CALLBACK_SECRET/);
    expect(() => loadConfig({ ...configMap.data, ...secret.stringData, WASMBOX_CALLBACK_SECRET: 'a-real-secret-0123456789' })).toThrow(/WASMBOX_API_KEYS/);
  });

  it('takes every key of the Secret into the environment, and refers to no key the Secret lacks', () => {
    const refs = (container.env as Obj[]).filter((e) => e.valueFrom?.secretKeyRef).map((e) => e.valueFrom.secretKeyRef as Obj);
    for (const r of refs) expect(r.name).toBe(secret.metadata.name);
    expect(refs.map((r) => r.key).sort()).toEqual(Object.keys(secret.stringData).sort());
    // Each secret lands in the variable of its own name.
    for (const e of container.env as Obj[]) if (e.valueFrom?.secretKeyRef) expect(e.valueFrom.secretKeyRef.key).toBe(e.name);
    expect(Object.keys(secret.stringData)).toEqual(expect.arrayContaining(['WASMBOX_API_KEYS', 'REDIS_URL']));
  });

  it("allows longer for shutdown than the server's own bound with the ConfigMap's settings", () => {
    const config = loadConfig({ ...configMap.data, WASMBOX_API_KEYS: 'a-real-key-0123456789abcdef' });
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(shutdownBoundMs(config).totalMs);
    // The drain delay outlasts a readiness period, so the pod leaves the Service before work is refused.
    expect(config.drainDelayMs).toBeGreaterThan(container.readinessProbe.periodSeconds * container.readinessProbe.failureThreshold * 1000);
  });

  it('runs as non-root with a read-only root file system, no privilege escalation and no capabilities, with a CPU request for the autoscaler', () => {
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
    // Writable scratch where the read-only root would stop it.
    const mounts = (container.volumeMounts as Obj[]).map((m) => m.mountPath);
    expect(mounts).toEqual(expect.arrayContaining(['/tmp', '/var/lib/wasmbox']));
  });
});

describe('the Service, autoscaler and disruption budget', () => {
  const podLabels = deployment.spec.template.metadata.labels as Obj;
  const selects = (selector: Obj) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);

  it("routes the Service to the pods' container port", () => {
    const service = only('Service');
    expect(selects(service.spec.selector)).toBe(true);
    expect(service.spec.ports.map((p: Obj) => containerPort(p.targetPort))).toEqual([DEFAULT_PORT]);
    expect(selects(deployment.spec.selector.matchLabels)).toBe(true);
  });

  it('scales the Deployment on CPU, from at least as many replicas as it starts with', () => {
    const hpa = only('HorizontalPodAutoscaler');
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: deployment.metadata.name });
    expect(hpa.spec.metrics).toEqual([expect.objectContaining({ type: 'Resource', resource: expect.objectContaining({ name: 'cpu' }) })]);
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec.maxReplicas).toBeGreaterThan(hpa.spec.minReplicas);
  });

  it('keeps all but one replica through voluntary disruptions', () => {
    const pdb = only('PodDisruptionBudget');
    expect(selects(pdb.spec.selector.matchLabels)).toBe(true);
    expect(pdb.spec.maxUnavailable).toBe(1);
  });

  it('lists every manifest in the kustomization', () => {
    const kustomization = only('Kustomization');
    const files = [...new Set(manifests.filter((m) => m.kind !== 'Kustomization').map((m) => m.file))].sort();
    expect([...kustomization.resources].sort()).toEqual(files);
  });
});

describe('the configuration reference', () => {
  it("documents every environment variable the server reads in the README's configuration table", () => {
    const table = readme.slice(readme.indexOf('\n## Configuration\n'), readme.indexOf('\n## Operating it\n'));
    expect(table.length).toBeGreaterThan(1000);
    expect(ENV_NAMES.filter((n) => !table.includes(`\`${n}\``))).toEqual([]);
  });
});

describe('the compose fleet', () => {
  const app = compose.services.wasmbox as Obj;

  it('runs three replicas of the image built from the Dockerfile, sharing the Redis service, behind a load balancer', () => {
    expect(app.deploy.replicas).toBe(3);
    expect(app.build).toMatchObject({ context: '..', dockerfile: 'Dockerfile' });
    expect(compose.services.redis).toBeDefined();
    const redisUrl = new URL(app.environment.REDIS_URL);
    expect(redisUrl.hostname).toBe('redis');
    expect(app.depends_on.redis.condition).toBe('service_healthy');
    expect(compose.services.lb.ports).toEqual([`${DEFAULT_PORT}:${DEFAULT_PORT}`]);
  });

  it("sets only environment variables the server reads, with values that load, and a stop grace above the server's shutdown bound", () => {
    const env = app.environment as Obj;
    expect(Object.keys(env).filter((n) => !KNOWN.has(n))).toEqual([]);
    // ${VAR:-default} interpolations, resolved as compose would with the variable unset.
    const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1')]));
    const config = loadConfig(resolved);
    expect(config.port).toBe(DEFAULT_PORT);
    expect(app.read_only).toBe(true);
    expect(Number(/^(\d+)s$/.exec(app.stop_grace_period)![1]) * 1000).toBeGreaterThan(shutdownBoundMs(config).totalMs);
  });

  it("points nginx at the replicas' port and lets bodies up to the server's limit through", () => {
    expect(nginx).toMatch(new RegExp(`server wasmbox:${DEFAULT_PORT}\\b`));
    expect(nginx).toMatch(new RegExp(`listen ${DEFAULT_PORT};`));
    const maxBodyMb = Number(/client_max_body_size (\d+)m;/.exec(nginx)![1]);
    expect(maxBodyMb * 1024 * 1024).toBeGreaterThan(loadConfig({}).bodyLimitBytes);
    expect(compose.services.lb.volumes).toContain('./nginx.conf:/etc/nginx/nginx.conf:ro');
  });
});
