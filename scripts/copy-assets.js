// Node-RED loads each node's .html (and its icons/) from beside the compiled .js.
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const nodesSrc = path.join(root, 'nodes');
const nodesOut = path.join(root, 'dist', 'nodes');
const icons = path.join(root, 'icons');

for (const type of fs.readdirSync(nodesSrc)) {
  const src = path.join(nodesSrc, type);
  const html = fs.statSync(src).isDirectory() ? fs.readdirSync(src).filter((f) => f.endsWith('.html')) : [];
  if (html.length === 0) continue; // shared code, not a node
  const out = path.join(nodesOut, type);
  fs.mkdirSync(out, { recursive: true });
  for (const file of html) fs.copyFileSync(path.join(src, file), path.join(out, file));
  if (fs.existsSync(icons)) fs.cpSync(icons, path.join(out, 'icons'), { recursive: true });
}

// The editor's domain lists, generated from the compiled lib/ (scripts/editor-domain.ts).
require(path.join(root, 'dist', 'scripts', 'editor-domain.js')).writeDomainFile(root);
