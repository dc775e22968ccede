#!/usr/bin/env node
// `npm start`: Node-RED with this package installed into a user directory inside the repo
// (.demo/, ignored by git) and the example flow deployed. A second start reuses the same CA.
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const userDir = path.join(root, '.demo');
const port = Number(process.env.PORT || 1880);

fs.mkdirSync(path.join(userDir, 'node_modules'), { recursive: true });
// Installed the way a user's `npm install` would: Node-RED reads our package.json `node-red` section.
const link = path.join(userDir, 'node_modules', 'node-red-contrib-esp-fleet');
if (!fs.existsSync(link)) fs.symlinkSync(root, link, 'dir');
const flowFile = path.join(userDir, 'flows.json');
if (!fs.existsSync(flowFile)) fs.copyFileSync(path.join(root, 'examples', 'certificate-authority.json'), flowFile);

const settings = path.join(userDir, 'settings.js');
fs.writeFileSync(
  settings,
  `module.exports = { uiPort: ${port}, uiHost: '127.0.0.1', flowFile: 'flows.json',\n` +
    `  editorTheme: { tours: false }, logging: { console: { level: 'info' } } };\n`,
);

console.log(`\nESP fleet demo: Node-RED editor at http://127.0.0.1:${port}/ (Ctrl-C stops it)`);
console.log(`The CA lives in ${path.join(userDir, 'esp-fleet-ca')}; the full fleet demo (broker, simulated devices, dashboard) follows with the simulator issue.\n`);
const red = spawn(process.execPath, [require.resolve('node-red/red.js'), '--userDir', userDir, '--settings', settings], { stdio: 'inherit' });
const stop = () => red.kill('SIGINT');
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
red.on('exit', (code) => process.exit(code ?? 0));
