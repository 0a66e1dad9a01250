#!/usr/bin/env bash
# Refresh the vendored front-end libraries from the npm registry (package.json, package-lock.json):
# the pages load them from static/vendor, never from a CDN.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --ignore-scripts --no-audit --no-fund
mkdir -p static/vendor/niivue
cp node_modules/@niivue/niivue/dist/niivue.umd.js static/vendor/niivue/niivue.umd.js
version=$(node -p 'require("./node_modules/@niivue/niivue/package.json").version')
sha=$(sha256sum static/vendor/niivue/niivue.umd.js | cut -d" " -f1)
cat > static/vendor/niivue/VENDORED.md <<MD
# @niivue/niivue ${version}

From the npm registry (\`scripts/vendor-static.sh\`): \`dist/niivue.umd.js\` (global \`niivue\`).
License: BSD-2-Clause (https://github.com/niivue/niivue). sha256 ${sha}.
MD
echo "vendored @niivue/niivue ${version}"
