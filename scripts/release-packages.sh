#!/usr/bin/env bash
# Prepares the npm packages for a release from the built native artifacts:
#   scripts/release-packages.sh ARTIFACTS_DIR [VERSION]
# ARTIFACTS_DIR holds one folder per platform (linux-x64-gnu, ...) with coresnap.<platform>.node,
# ptrace and bt (what .github/workflows/release.yml uploads). VERSION defaults to package.json's.
# Copies each platform's files into npm/<platform>/, sets every package's version, and adds the
# per-platform packages to package.json's optionalDependencies (the napi-rs way: they are only
# added at release time, because `npm ci` cannot lock packages that are not published yet).
set -euo pipefail
cd "$(dirname "$0")/.."
artifacts=${1:?usage: scripts/release-packages.sh ARTIFACTS_DIR [VERSION]}
version=${2:-$(node -p 'require("./package.json").version')}
version=${version#v}

platforms=()
for dir in npm/linux-*/; do
  platform=$(basename "$dir")
  src=$artifacts/$platform
  for file in "coresnap.$platform.node" ptrace bt; do
    [[ -f $src/$file ]] || { echo "release-packages: $src/$file is missing" >&2; exit 1; }
    install -m 0755 "$src/$file" "$dir/$file"
  done
  platforms+=("@coresnap/$platform")
done

node - "$version" "${platforms[@]}" <<'JS'
const fs = require('node:fs');
const [version, ...platforms] = process.argv.slice(2);
const write = (file, edit) => {
  const pkg = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(pkg);
  fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + '\n');
};
for (const name of platforms) write(`npm/${name.split('/')[1]}/package.json`, (pkg) => { pkg.version = version; });
write('package.json', (pkg) => {
  pkg.version = version;
  pkg.optionalDependencies = Object.fromEntries(platforms.map((name) => [name, version]));
});
JS
echo "release-packages: ${#platforms[@]} platform packages at $version: ${platforms[*]}"
