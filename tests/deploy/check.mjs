// Validates YAML from `sluice manifest` against the Kubernetes API schemas
// (kubernetes-models, generated from the Kubernetes OpenAPI documents).
//
//   node check.mjs FILE...      exit 0 when every document of every file is
//                               a valid object; 1 with one line per problem
//
// Each document must parse the same under YAML 1.2 and 1.1 (podman's and
// kubectl's go-yaml reads 1.1), without warnings, and be either an object
// with apiVersion and kind, validated by that kind's model, or a
// strategic-merge patch {spec: {template: ...}}, validated as the pod
// template of a Deployment.
import { readFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import { parseAllDocuments } from "yaml";

const GROUPS = {
  v1: "kubernetes-models/v1",
  "apps/v1": "kubernetes-models/apps/v1",
  "networking.k8s.io/v1": "kubernetes-models/networking.k8s.io/v1",
};

function parse(text, version) {
  const docs = parseAllDocuments(text, { version, prettyErrors: true });
  const problems = [];
  for (const d of docs) {
    for (const e of [...d.errors, ...d.warnings]) problems.push(`YAML ${version}: ${e.message}`);
  }
  return { values: docs.map((d) => d.toJS()), problems };
}

async function model(apiVersion, kind) {
  const path = GROUPS[apiVersion];
  if (!path) throw new Error(`apiVersion ${apiVersion} is not one sluice writes`);
  const mod = await import(path);
  if (typeof mod[kind] !== "function") throw new Error(`no kind ${kind} in ${apiVersion}`);
  return mod[kind];
}

async function validate(doc) {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc))
    throw new Error("not a mapping");
  if (doc.apiVersion && doc.kind) {
    const Cls = await model(doc.apiVersion, doc.kind);
    new Cls(doc).validate();
    return `${doc.kind}/${doc.metadata && doc.metadata.name}`;
  }
  if (doc.spec && doc.spec.template && Object.keys(doc).length === 1) {
    const Deployment = await model("apps/v1", "Deployment");
    new Deployment({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "patch-check" },
      spec: { selector: { matchLabels: { app: "x" } }, template: doc.spec.template },
    }).validate();
    return "patch";
  }
  throw new Error("neither an object (apiVersion, kind) nor a pod-template patch");
}

let failed = 0;
for (const file of process.argv.slice(2)) {
  const text = readFileSync(file, "utf8");
  const a = parse(text, "1.2");
  const b = parse(text, "1.1");
  for (const p of [...a.problems, ...b.problems]) {
    console.log(`${file}: ${p}`);
    failed++;
  }
  if (!isDeepStrictEqual(a.values, b.values)) {
    console.log(`${file}: reads differently as YAML 1.1 and 1.2`);
    failed++;
  }
  for (let i = 0; i < a.values.length; i++) {
    try {
      const what = await validate(a.values[i]);
      console.log(`${file}: document ${i + 1}: ${what}: valid`);
    } catch (e) {
      console.log(`${file}: document ${i + 1}: ${e.message.split("\n")[0]}`);
      failed++;
    }
  }
  if (a.values.length === 0) {
    console.log(`${file}: no documents`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
