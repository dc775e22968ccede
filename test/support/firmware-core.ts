import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';

/** The repository root (tests run from dist/test/...). */
export const REPO_ROOT = path.resolve(__dirname, '../../..');
export const CORE_DIR = path.join(REPO_ROOT, 'firmware', 'core');
export const VERIFY_IMAGE = path.join(CORE_DIR, 'build', 'verify_image');

/** What building and testing firmware/core needs, and the Debian package that brings it (.ci/run installs them). */
const REQUIREMENTS: { what: string; found: () => boolean; apt: string }[] = [
  { what: 'make', found: () => onPath('make'), apt: 'make' },
  { what: 'g++', found: () => onPath('g++'), apt: 'g++' },
  { what: '/usr/include/bearssl.h', found: () => existsSync('/usr/include/bearssl.h'), apt: 'libbearssl-dev' },
  { what: '/usr/include/nlohmann/json.hpp', found: () => existsSync('/usr/include/nlohmann/json.hpp'), apt: 'nlohmann-json3-dev' },
  { what: 'xtensa-lx106-elf-g++', found: () => onPath('xtensa-lx106-elf-g++'), apt: 'gcc-xtensa-lx106' },
  { what: 'picolibc for lx106', found: () => existsSync('/usr/lib/xtensa-lx106-elf/picolibc.specs'), apt: 'picolibc-xtensa-lx106-elf' },
];

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, tool)));
}

/** Throws (never skips) when a tool is missing, naming the apt packages to install. */
export function requireCoreTools(): void {
  const missing = REQUIREMENTS.filter((r) => !r.found());
  if (missing.length) {
    throw new Error(
      `firmware/core cannot be built here: missing ${missing.map((m) => m.what).join(', ')}. ` +
        `Install with: apt-get install -y --no-install-recommends ${REQUIREMENTS.map((r) => r.apt).join(' ')}`,
    );
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program without a shell; resolves with its exit code and output (never rejects on a non-zero exit). */
export function run(file: string, args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stderr}`));
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}
