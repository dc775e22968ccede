// Node-RED loads each node's .html (and its icons/) from beside the compiled .js.
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const nodesSrc = path.join(root, 'nodes');
const nodesOut = path.join(root, 'dist', 'nodes');

for (const type of fs.readdirSync(nodesSrc)) {
  const src = path.join(nodesSrc, type);
  if (!fs.statSync(src).isDirectory()) continue;
  const out = path.join(nodesOut, type);
  fs.mkdirSync(out, { recursive: true });
  for (const file of fs.readdirSync(src)) {
    if (file.endsWith('.html')) fs.copyFileSync(path.join(src, file), path.join(out, file));
  }
  fs.cpSync(path.join(root, 'icons'), path.join(out, 'icons'), { recursive: true });
}
