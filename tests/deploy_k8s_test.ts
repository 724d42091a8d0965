/**
 * deploy/k8s: every YAML document validates against the Kubernetes OpenAPI schema of its apiVersion/kind
 * (kubernetes-models, and @kubernetes-models/prometheus-operator for the ServiceMonitor), the kustomizations
 * list exactly the files there are, and the cross-references no schema can see hold: selectors, probe
 * paths and ports, Secret names and keys, the termination budget, the HPA metric and the adapter rule, and
 * the gauges that rule queries against what src/server/app.ts exports.
 *
 * Offline and fast: reads files only. When `kubectl` is on PATH, its bundled kustomize also builds both
 * kustomizations (skipped otherwise).
 *
 * Limitation: the Kubernetes OpenAPI schemas allow unknown fields (the API server's strict field
 * validation is not in them), so a misspelt optional field passes the schema step. The cross-reference
 * checks below read the fields this deployment depends on most (probes, args, env, security context,
 * volumes, HPA target), which catches a typo in those; others (e.g. tolerations) only fail on a cluster.
 */

import assert from "node:assert/strict";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { Deployment } from "kubernetes-models/apps/v1";
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from "kubernetes-models/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { ClusterRole, ClusterRoleBinding, RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { APIService } from "kubernetes-models/apiregistration.k8s.io/v1";
// Not in deno.json's import map (owned elsewhere), so pinned inline; deno.lock records it.
// deno-lint-ignore no-import-prefix
import { ServiceMonitor } from "npm:@kubernetes-models/prometheus-operator@6.0.0/monitoring.coreos.com/v1";

const ROOT = new URL("../deploy/k8s/", import.meta.url);
const APP_TS = new URL("../src/server/app.ts", import.meta.url);

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

interface Doc {
  /** Path relative to deploy/k8s. */
  file: string;
  obj: Obj;
}

/** Kustomize's own file: no OpenAPI schema, so the fields this repo uses are checked by hand. */
function validateKustomization(o: Obj): void {
  const known = new Set(["apiVersion", "kind", "resources", "namespace", "labels", "commonLabels", "images"]);
  for (const k of Object.keys(o)) assert.ok(known.has(k), `unexpected Kustomization field ${k}`);
  assert.ok(Array.isArray(o.resources), "Kustomization needs a resources list");
  for (const r of o.resources) assert.equal(typeof r, "string", `resources entry ${JSON.stringify(r)}`);
}

/** Validation by a kubernetes-models class (its constructor's typing is per kind; the YAML is untyped). */
const model = (C: new (data: never) => { validate(): void }) => (o: Obj) => new C(o as never).validate();

/** apiVersion + kind -> validation. A kind not in this table fails the test. */
const VALIDATORS: Record<string, (o: Obj) => void> = {
  "apps/v1 Deployment": model(Deployment),
  "v1 Service": model(Service),
  "v1 Secret": model(Secret),
  "v1 ConfigMap": model(ConfigMap),
  "v1 Namespace": model(Namespace),
  "v1 ServiceAccount": model(ServiceAccount),
  "policy/v1 PodDisruptionBudget": model(PodDisruptionBudget),
  "autoscaling/v2 HorizontalPodAutoscaler": model(HorizontalPodAutoscaler),
  "rbac.authorization.k8s.io/v1 ClusterRole": model(ClusterRole),
  "rbac.authorization.k8s.io/v1 ClusterRoleBinding": model(ClusterRoleBinding),
  "rbac.authorization.k8s.io/v1 RoleBinding": model(RoleBinding),
  "apiregistration.k8s.io/v1 APIService": model(APIService),
  "monitoring.coreos.com/v1 ServiceMonitor": model(ServiceMonitor),
  "kustomize.config.k8s.io/v1beta1 Kustomization": validateKustomization,
};

function validateDoc(o: Obj): void {
  const key = `${o?.apiVersion} ${o?.kind}`;
  const v = VALIDATORS[key];
  if (!v) throw new Error(`no schema for ${key}: add it to VALIDATORS`);
  v(o);
}

function walk(dir: URL, rel = ""): string[] {
  const out: string[] = [];
  for (const e of [...Deno.readDirSync(dir)].sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.isDirectory) out.push(...walk(new URL(`${e.name}/`, dir), `${rel}${e.name}/`));
    else if (/\.ya?ml$/.test(e.name)) out.push(`${rel}${e.name}`);
  }
  return out;
}

const FILES = walk(ROOT);
const DOCS: Doc[] = FILES.flatMap((file) => {
  const text = Deno.readTextFileSync(new URL(file, ROOT));
  return parseAllDocuments(text).flatMap((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join("; ")}`);
    const obj = d.toJS();
    return obj == null ? [] : [{ file, obj }]; // a document of comments only
  });
});

/** The one document of `kind` that `where` accepts: fails unless there is exactly one. */
function one(kind: string, where: (d: Doc) => boolean = () => true): Obj {
  const hits = DOCS.filter((d) => d.obj.kind === kind && where(d));
  assert.equal(hits.length, 1, `expected one ${kind}, found ${hits.map((d) => d.file).join(", ") || "none"}`);
  return hits[0].obj;
}

const inApp = (d: Doc) => !d.file.includes("/");
const inAdapter = (d: Doc) => d.file.startsWith("prometheus-adapter/");

/** Every label of `selector` is on `labels` with the same value. */
function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return !!selector && Object.keys(selector).length > 0 &&
    Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** The value of `--flag V` or `--flag=V` in `args`. */
function flag(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i].startsWith(`${name}=`)) return args[i].slice(name.length + 1);
  }
  return undefined;
}

Deno.test("deploy/k8s: every YAML document validates against the schema of its apiVersion/kind", () => {
  assert.ok(FILES.length >= 10, `found only ${FILES.join(", ")}`);
  for (const { file, obj } of DOCS) {
    try {
      validateDoc(obj);
    } catch (e) {
      throw new Error(`${file} (${obj?.kind} ${obj?.metadata?.name ?? ""}): ${(e as Error).message}`);
    }
  }
  // Every API object carries a name (kustomize files aside).
  for (const { file, obj } of DOCS) {
    if (obj.kind !== "Kustomization") assert.ok(obj.metadata?.name, `${file}: ${obj.kind} without a name`);
  }
});

Deno.test("deploy/k8s: the validation rejects broken objects and unknown kinds", () => {
  const dep = structuredClone(one("Deployment", inApp));
  validateDoc(dep); // the real one passes...
  dep.spec.replicas = "2"; // ...a string where the schema wants an integer does not
  assert.throws(() => validateDoc(dep), /replicas must be integer/);
  const dep2 = structuredClone(one("Deployment", inApp));
  dep2.spec.template.spec.containers[0].image = 8000;
  assert.throws(() => validateDoc(dep2), /containers\/0\/image must be string/);
  const hpa = structuredClone(one("HorizontalPodAutoscaler"));
  delete hpa.spec.scaleTargetRef.name;
  assert.throws(() => validateDoc(hpa), /name/);
  const sm = structuredClone(one("ServiceMonitor"));
  sm.spec.endpoints[0].authorization.credentials = "specdec-api-key";
  assert.throws(() => validateDoc(sm), /credentials/);
  assert.throws(() => validateDoc({ apiVersion: "v1", kind: "Pod2" }), /no schema for v1 Pod2/);
  assert.throws(() => validateKustomization({ resources: "a.yaml" }), /resources/);
});

Deno.test("deploy/k8s: each kustomization lists exactly the YAML files of its folder, and they exist", () => {
  const dirs = new Set(FILES.map((f) => f.slice(0, f.lastIndexOf("/") + 1)));
  for (const dir of dirs) {
    const kFile = `${dir}kustomization.yaml`;
    assert.ok(FILES.includes(kFile), `${dir || "deploy/k8s/"} has YAML files but no kustomization.yaml`);
    const k = DOCS.find((d) => d.file === kFile)!.obj;
    const listed = new Set<string>();
    for (const r of k.resources as string[]) {
      const path = new URL(`${dir}${r}`, ROOT);
      const st = Deno.statSync(path); // throws NotFound for a missing resource
      if (st.isDirectory) {
        Deno.statSync(new URL(`${dir}${r.replace(/\/?$/, "/")}kustomization.yaml`, ROOT));
      } else {
        listed.add(`${dir}${r}`);
      }
    }
    const here = FILES.filter((f) => f.startsWith(dir) && !f.slice(dir.length).includes("/") && f !== kFile);
    for (const f of here) assert.ok(listed.has(f), `${f} is not listed in ${kFile}`);
    for (const f of listed) assert.ok(here.includes(f), `${kFile} lists ${f}, which is not a YAML file here`);
  }
});

Deno.test("deploy/k8s: the app's objects reference each other consistently", () => {
  const dep = one("Deployment", inApp);
  const svc = one("Service", inApp);
  const pdb = one("PodDisruptionBudget", inApp);
  const hpa = one("HorizontalPodAutoscaler", inApp);
  const sm = one("ServiceMonitor", inApp);
  const secret = one("Secret", inApp);

  // Namespace-less, so they all land in one namespace (the Secret must share the ServiceMonitor's).
  for (const d of DOCS.filter((d) => inApp(d) && d.obj.kind !== "Kustomization")) {
    assert.equal(d.obj.metadata.namespace, undefined, `${d.file}: the app's objects set no namespace`);
  }

  assert.equal(dep.metadata.name, "specdec");
  const podLabels = dep.spec.template.metadata.labels;
  assert.equal(podLabels["app.kubernetes.io/name"], "specdec");
  assert.ok(selects(dep.spec.selector.matchLabels, podLabels), "Deployment selector vs its pod labels");
  assert.equal(dep.spec.replicas, 2);
  assert.ok(selects(svc.spec.selector, podLabels), "Service selector vs the Deployment's pod labels");
  assert.ok(selects(pdb.spec.selector.matchLabels, podLabels), "PDB selector vs the pod labels");
  assert.ok(selects(sm.spec.selector.matchLabels, svc.metadata.labels), "ServiceMonitor selector vs Service");

  const spec = dep.spec.template.spec;
  assert.equal(spec.containers.length, 1);
  const c = spec.containers[0];
  assert.equal(c.image, "specdec:latest");
  const http = c.ports.find((p: Obj) => p.name === "http");
  assert.equal(http?.containerPort, 8000);
  assert.equal(flag(c.args, "--port"), String(http.containerPort), "--port vs the http container port");
  assert.equal(flag(c.args, "--host"), "0.0.0.0");
  assert.equal(c.args[0], "serve");

  // The Service exposes 80 -> the named container port, under the port name the ServiceMonitor scrapes.
  assert.equal(svc.spec.type ?? "ClusterIP", "ClusterIP");
  const sp = svc.spec.ports.find((p: Obj) => p.name === "http");
  assert.equal(sp?.port, 80);
  assert.equal(sp.targetPort, "http");
  assert.equal(sm.spec.endpoints.length, 1);
  const ep = sm.spec.endpoints[0];
  assert.equal(ep.port, sp.name);
  assert.equal(ep.path, "/metrics");
  assert.equal(ep.interval, "15s");

  // Probes: on the named port, /ready for readiness, /health for liveness and startup.
  const probe = (p: Obj | undefined, path: string, what: string) => {
    assert.ok(p?.httpGet, `${what} probe is an httpGet`);
    assert.equal(p.httpGet.path, path, `${what} probe path`);
    assert.equal(p.httpGet.port, "http", `${what} probe port`);
  };
  probe(c.readinessProbe, "/ready", "readiness");
  probe(c.livenessProbe, "/health", "liveness");
  probe(c.startupProbe, "/health", "startup");
  // The engine runs in a worker, so /health stays fast during long work; still, liveness must not restart
  // a server on one slow answer: at least 30 s of failures, with a timeout of a few seconds.
  const live = c.livenessProbe;
  assert.ok(live.timeoutSeconds >= 3 && live.periodSeconds * live.failureThreshold >= 30, "liveness slack");
  assert.ok(!c.args.includes("inline"), "the engine runs in its worker (serve --engine worker, the default)");
  const start = c.startupProbe;
  assert.ok(start.periodSeconds * start.failureThreshold >= 300, "startup allows several minutes");
  assert.ok(dep.spec.progressDeadlineSeconds > start.periodSeconds * start.failureThreshold);

  // Termination: grace >= preStop sleep + --drain-timeout.
  const sleepCmd = c.lifecycle.preStop.exec.command as string[];
  assert.equal(sleepCmd[0], "sleep");
  const sleepS = Number(sleepCmd[1]);
  const drainS = Number(flag(c.args, "--drain-timeout"));
  assert.ok(sleepS > 0 && drainS > 0, `preStop sleep ${sleepS}, --drain-timeout ${drainS}`);
  assert.ok(
    spec.terminationGracePeriodSeconds >= sleepS + drainS,
    `terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} < ${sleepS} + ${drainS}`,
  );

  // The API key: the Deployment and the ServiceMonitor read a key that secret.yaml defines.
  const secretKeys = new Set(Object.keys({ ...secret.data, ...secret.stringData }));
  const env = Object.fromEntries((c.env as Obj[]).map((e) => [e.name, e]));
  const ref = env.SPECDEC_API_KEY?.valueFrom?.secretKeyRef;
  assert.ok(ref, "SPECDEC_API_KEY comes from a secretKeyRef");
  assert.equal(ref.optional, undefined, "the API key is not optional");
  const cred = ep.authorization.credentials;
  assert.equal(ep.authorization.type ?? "Bearer", "Bearer");
  for (const [what, r] of [["Deployment", ref], ["ServiceMonitor", cred]] as const) {
    assert.equal(r.name, secret.metadata.name, `${what} Secret name`);
    assert.ok(secretKeys.has(r.key), `${what} reads key ${r.key}, not in secret.yaml`);
  }

  // GPU: one device, the Vulkan ICD mounted (graphics), the device plugin's own device list untouched.
  assert.equal(String(c.resources.limits["nvidia.com/gpu"]), "1");
  for (const r of ["cpu", "memory"]) {
    assert.ok(c.resources.requests[r] && c.resources.limits[r], `requests and limits of ${r}`);
  }
  assert.ok(env.NVIDIA_DRIVER_CAPABILITIES?.value.split(",").includes("graphics"));
  assert.notEqual(env.NVIDIA_VISIBLE_DEVICES?.value, "all", "see the comment in deployment.yaml");
  assert.equal(env.SPECDEC_CACHE_DIR?.value, "/var/cache/specdec");

  // Hardened, with the two writable paths on emptyDirs.
  assert.equal(spec.securityContext.runAsNonRoot, true);
  assert.equal(spec.securityContext.runAsUser, 10001);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
  const volumes = Object.fromEntries((spec.volumes as Obj[]).map((v) => [v.name, v]));
  const mounts: Record<string, string> = Object.fromEntries(
    (c.volumeMounts as Obj[]).map((m) => [m.mountPath, m.name]),
  );
  for (const m of Object.values(mounts)) assert.ok(volumes[m], `volumeMount of undefined volume ${m}`);
  for (const path of ["/tmp", "/var/cache/specdec"]) {
    assert.ok(volumes[mounts[path]]?.emptyDir, `${path} is an emptyDir`);
  }

  // HPA: the Deployment, 2..8, on the per-pod in-flight count.
  assert.deepEqual(hpa.spec.scaleTargetRef, {
    apiVersion: "apps/v1",
    kind: "Deployment",
    name: dep.metadata.name,
  });
  assert.equal(hpa.spec.minReplicas, 2);
  assert.equal(hpa.spec.maxReplicas, 8);
  assert.equal(hpa.spec.metrics.length, 1);
  const m = hpa.spec.metrics[0];
  assert.equal(m.type, "Pods");
  assert.equal(m.pods.metric.name, "specdec_inflight");
  assert.equal(m.pods.target.type, "AverageValue");
  assert.ok(Number(m.pods.target.averageValue) >= 1);
  assert.ok(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds > 0);
});

Deno.test("deploy/k8s: the HPA metric is served by the adapter, from gauges the server exports", () => {
  const hpa = one("HorizontalPodAutoscaler", inApp);
  const metric = hpa.spec.metrics[0].pods.metric.name as string;
  const cm = one("ConfigMap", inAdapter);
  const config = parseYaml(cm.data["config.yaml"]);
  const rules = (config.rules as Obj[]).filter((r) => r.name?.as === metric);
  assert.equal(rules.length, 1, `one adapter rule publishes ${metric}`);
  const rule = rules[0];
  assert.deepEqual(rule.resources.overrides, {
    namespace: { resource: "namespace" },
    pod: { resource: "pod" },
  });
  // The discovered series' name is what `matches` renames (the adapter's regexes are Go RE2; this one is
  // plain enough to mean the same in JS).
  const seriesName = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{/.exec(rule.seriesQuery)?.[1];
  assert.ok(
    seriesName && new RegExp(rule.name.matches).test(seriesName),
    `${rule.name.matches} vs ${seriesName}`,
  );
  const q = rule.metricsQuery as string;
  assert.equal(
    q.replace(/\s+/g, ""),
    "sum(specdec_queue_depth{<<.LabelMatchers>>}+specdec_queue_running{<<.LabelMatchers>>})by(<<.GroupBy>>)",
  );
  // Every series the rule reads is a gauge the server registers.
  const app = Deno.readTextFileSync(APP_TS);
  const queried = new Set([seriesName, ...q.matchAll(/\bspecdec_[a-z_]+/g).map((x) => x[0])]);
  assert.ok(queried.has("specdec_queue_depth") && queried.has("specdec_queue_running"));
  for (const name of queried) {
    assert.match(
      app,
      new RegExp(`metrics\\.gauge\\(\\s*"${name}"`),
      `src/server/app.ts exports gauge ${name}`,
    );
  }
});

Deno.test("deploy/k8s/prometheus-adapter: the objects reference each other consistently", () => {
  const ns = one("Namespace", inAdapter).metadata.name;
  const sa = one("ServiceAccount", inAdapter);
  const dep = one("Deployment", inAdapter);
  const svc = one("Service", inAdapter);
  const api = one("APIService", inAdapter);
  const cm = one("ConfigMap", inAdapter);

  for (const d of DOCS.filter(inAdapter)) {
    const o = d.obj;
    if (["Kustomization", "Namespace", "ClusterRole", "ClusterRoleBinding", "APIService"].includes(o.kind)) {
      assert.equal(o.metadata?.namespace, undefined, `${d.file}: ${o.kind} is cluster-scoped`);
    } else if (o.kind === "RoleBinding") {
      assert.equal(
        o.metadata.namespace,
        "kube-system",
        `${d.file}: the auth reader binding lives in kube-system`,
      );
    } else {
      assert.equal(o.metadata.namespace, ns, `${d.file}: ${o.kind} in ${ns}`);
    }
  }
  const kustomization = DOCS.find((d) => d.file === "prometheus-adapter/kustomization.yaml")!.obj;
  assert.equal(
    kustomization.namespace,
    undefined,
    "a kustomize namespace would move the kube-system binding",
  );

  // The APIService -> Service -> Deployment chain.
  assert.equal(api.metadata.name, "v1beta1.custom.metrics.k8s.io");
  assert.equal(api.metadata.name, `${api.spec.version}.${api.spec.group}`);
  assert.deepEqual([api.spec.service.name, api.spec.service.namespace], [svc.metadata.name, ns]);
  const svcPort = svc.spec.ports.find((p: Obj) => p.port === (api.spec.service.port ?? 443));
  assert.ok(svcPort, "the Service has the APIService's port");
  const tpl = dep.spec.template;
  assert.ok(selects(svc.spec.selector, tpl.metadata.labels), "adapter Service selector vs its pods");
  assert.ok(selects(dep.spec.selector.matchLabels, tpl.metadata.labels));
  const c = tpl.spec.containers[0];
  assert.equal(c.image, "registry.k8s.io/prometheus-adapter/prometheus-adapter:v0.12.0");
  const cport = c.ports.find((p: Obj) =>
    p.name === svcPort.targetPort || p.containerPort === svcPort.targetPort
  );
  assert.ok(cport, `targetPort ${svcPort.targetPort} is a container port`);
  assert.equal(flag(c.args, "--secure-port"), String(cport.containerPort));
  assert.match(flag(c.args, "--prometheus-url") ?? "", /^https?:\/\/[^/]+\//);
  assert.equal(tpl.spec.serviceAccountName, sa.metadata.name);

  // Config and cert dir mounted where the args say.
  const mountOf = (path: string) =>
    tpl.spec.volumes.find((v: Obj) =>
      v.name === c.volumeMounts.find((m: Obj) => path.startsWith(m.mountPath.replace(/\/?$/, "/")))?.name
    );
  const configPath = flag(c.args, "--config")!;
  assert.equal(mountOf(configPath)?.configMap?.name, cm.metadata.name);
  assert.ok(cm.data[configPath.split("/").pop()!], `${configPath} is a key of the ConfigMap`);
  assert.ok(mountOf(`${flag(c.args, "--cert-dir")}/x`)?.emptyDir, "the cert dir is a writable emptyDir");
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);

  // RBAC: everything bound to the adapter's service account, the two built-in roles included.
  const subjectIsSa = (b: Obj) =>
    b.subjects.some((s: Obj) =>
      s.kind === "ServiceAccount" && s.name === sa.metadata.name && s.namespace === ns
    );
  const delegator = one(
    "ClusterRoleBinding",
    (d) => inAdapter(d) && d.obj.roleRef.name === "system:auth-delegator",
  );
  assert.ok(subjectIsSa(delegator));
  const reader = one("RoleBinding", inAdapter);
  assert.deepEqual(reader.roleRef, {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "Role",
    name: "extension-apiserver-authentication-reader",
  });
  assert.ok(subjectIsSa(reader));
  const roles = new Set(
    DOCS.filter((d) => inAdapter(d) && d.obj.kind === "ClusterRole").map((d) => d.obj.metadata.name),
  );
  for (const d of DOCS.filter((d) => inAdapter(d) && d.obj.kind === "ClusterRoleBinding")) {
    const name = d.obj.roleRef.name;
    assert.ok(
      name.startsWith("system:") || roles.has(name),
      `${d.file}: binds undefined ClusterRole ${name}`,
    );
  }
  const resourceReader = one(
    "ClusterRoleBinding",
    (d) => inAdapter(d) && d.obj.roleRef.name !== "system:auth-delegator" && subjectIsSa(d.obj),
  );
  const rr = one("ClusterRole", (d) => d.obj.metadata.name === resourceReader.roleRef.name);
  assert.ok(rr.rules.some((r: Obj) => r.resources.includes("pods") && r.verbs.includes("list")));
});

const KUBECTL = await new Deno.Command("kubectl", {
  args: ["version", "--client"],
  stdout: "null",
  stderr: "null",
})
  .output().then((o) => o.success, () => false);

Deno.test({
  name: "deploy/k8s: kubectl's kustomize builds both kustomizations to the same objects",
  ignore: !KUBECTL,
  fn: async () => {
    for (const dir of ["", "prometheus-adapter/"]) {
      const out = await new Deno.Command("kubectl", { args: ["kustomize", new URL(dir, ROOT).pathname] })
        .output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.ok(out.success, `kubectl kustomize deploy/k8s/${dir}: ${stderr}`);
      const built = parseAllDocuments(new TextDecoder().decode(out.stdout)).map((d) => d.toJS() as Obj);
      const id = (o: Obj) => `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
      const expected = DOCS.filter((d) =>
        d.obj.kind !== "Kustomization" && d.file.startsWith(dir) && !d.file.slice(dir.length).includes("/")
      ).map((d) => id(d.obj));
      assert.deepEqual(built.map(id).sort(), expected.sort());
    }
  },
});
