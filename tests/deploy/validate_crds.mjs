// Validates custom resources against the JSON schemas bundled in the @kubernetes-models packages
// (KEDA, Gateway API, Traefik, External Secrets). Reads a JSON array of manifests on stdin,
// prints a JSON array of {kind, name, errors} and exits 1 if any manifest is invalid or of a
// group/version/kind no package here knows. Usage: node validate_crds.mjs <node_modules dir>
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const PACKAGES = {
  "keda.sh": "@kubernetes-models/keda/keda.sh",
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api/gateway.networking.k8s.io",
  "traefik.io": "@kubernetes-models/traefik/traefik.io",
  "external-secrets.io": "@kubernetes-models/external-secrets/external-secrets.io",
};

const nodeModules = process.argv[2];
const manifests = JSON.parse(readFileSync(0, "utf8"));
const results = [];
let failed = false;
for (const manifest of manifests) {
  const [group, version] = String(manifest.apiVersion ?? "").split("/");
  const name = manifest.metadata?.name ?? "?";
  const base = PACKAGES[group];
  const result = { apiVersion: manifest.apiVersion, kind: manifest.kind, name, errors: [] };
  results.push(result);
  if (!base || !version) {
    result.errors.push(`no schema package for ${manifest.apiVersion}`);
    failed = true;
    continue;
  }
  let model;
  try {
    // the kind's own module (importing the version's index would load every kind)
    const kind = String(manifest.kind ?? "").replace(/[^A-Za-z0-9]/g, "");
    const module = await import(pathToFileURL(join(nodeModules, base, version, `${kind}.js`)).href);
    model = module[manifest.kind];
  } catch (error) {
    result.errors.push(`no model for ${manifest.apiVersion} ${manifest.kind}: ${error.message}`);
    failed = true;
    continue;
  }
  if (typeof model !== "function") {
    result.errors.push(`unknown kind ${manifest.kind} in ${manifest.apiVersion}`);
    failed = true;
    continue;
  }
  try {
    new model(manifest).validate();
  } catch (error) {
    result.errors.push(error.message);
    failed = true;
  }
}
process.stdout.write(JSON.stringify(results));
process.exit(failed ? 1 : 0);
