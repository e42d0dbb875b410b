#!/usr/bin/env node
/**
 * Builds tlpwire's optional native addons (native/tap) with node-gyp: the TAP binding (tap.node),
 * the DMA paths' bulk copies (bulkcopy.node, src/core/bulk-copy.ts) and the descriptor call that
 * lets accepted sockets read into a reused buffer (sockfd.node, src/link/net-transport.ts). It
 * never fails the install: everything except `tap:` works without them (the bulk copies fall back
 * to JavaScript, accepted sockets to a new buffer per read, both slower), so when the build cannot run or fails this prints one line saying that tap:
 * is unavailable and why, and exits 0. The full build output goes to native/tap/build-native.log.
 *
 *   node scripts/build-native.mjs          (also run by `npm run build:native` and `prepare`)
 *   TLPWIRE_SKIP_NATIVE=1                  skip the build
 *   TLPWIRE_NATIVE_DIR=DIR                 build the sources in DIR instead of native/tap
 *
 * node-gyp: the one npm runs scripts with (npm_config_node_gyp), else a local or npm-bundled copy.
 * Headers: when npm has no nodedir configured and Node's own headers are installed next to the
 * binary (PREFIX/include/node), they are used, so the build works offline.
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// TLPWIRE_NATIVE_DIR builds a copy elsewhere (the tests use it so they never wipe the real build).
const addonDir = process.env.TLPWIRE_NATIVE_DIR ?? join(root, 'native', 'tap');
const logFile = join(addonDir, 'build-native.log');
const output = join(addonDir, 'build', 'Release', 'tap.node');
const bulkOutput = join(addonDir, 'build', 'Release', 'bulkcopy.node');
const sockfdOutput = join(addonDir, 'build', 'Release', 'sockfd.node');
const shown = (p) => (p.startsWith(`${root}/`) ? p.slice(root.length + 1) : p);
const BUILD_TIMEOUT_MS = 5 * 60_000;

function say(line) {
  process.stdout.write(`${line}\n`);
}

function unavailable(why) {
  say(`tap: is unavailable (${why}); everything else in tlpwire works without it`);
  process.exit(0);
}

/** First word of a command line found on PATH (or as a path), else undefined. */
function which(cmd) {
  const name = cmd.trim().split(/\s+/)[0];
  if (!name) return undefined;
  const candidates = name.includes('/') ? [name] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function findNodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return fromNpm;
  try {
    return createRequire(join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // not a dependency of the project; try npm's own copy
  }
  const prefix = dirname(dirname(process.execPath));
  for (const p of [
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(prefix, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), // Windows-style layout
  ]) {
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** What is missing before we even try, in the words a user can act on. */
function missingTools() {
  const missing = [];
  if (!process.env.PYTHON && !which('python3') && !which('python')) missing.push('python3');
  if (!which('make')) missing.push('make');
  const cc = process.env.CC;
  if (cc !== undefined ? !which(cc) : !which('cc') && !which('gcc') && !which('clang')) missing.push('a C compiler');
  return missing;
}

/** Why a build that ran failed, from its output. */
function diagnose(log) {
  if (/gyp ERR! find Python|Could not find any Python/i.test(log)) return 'node-gyp found no usable python3';
  if (/node_api\.h: No such file/i.test(log)) return "Node's headers are missing: install them or set npm_config_nodedir";
  if (/gyp http|network connectivity|ENOTFOUND|ECONNREFUSED|EAI_AGAIN/i.test(log)) {
    return "could not download Node's headers (offline?): install them (PREFIX/include/node) or set npm_config_nodedir";
  }
  if (/linux\/if_tun\.h: No such file/i.test(log)) return 'the Linux kernel headers are missing (linux-libc-dev / linux-headers)';
  if (/make: .*(not found|No such file)|make: \*\*\*.*Error 127/i.test(log)) {
    return 'the C compiler or make could not run';
  }
  if (/\.o\] Error \d/.test(log)) return `compiling failed with ${process.env.CC ? `CC=${process.env.CC}` : 'cc'}`;
  return 'the native build failed';
}

async function main() {
  if (process.env.TLPWIRE_SKIP_NATIVE) unavailable('build skipped: TLPWIRE_SKIP_NATIVE is set');
  if (process.platform !== 'linux') unavailable(`TAP interfaces need Linux; this is ${process.platform}`);
  const missing = missingTools();
  if (missing.length > 0) unavailable(`the native build needs ${missing.join(', ')}`);
  const gyp = findNodeGyp();
  if (!gyp) unavailable('node-gyp not found (it ships with npm); run npm run build:native');

  const args = [gyp, 'rebuild'];
  const prefix = dirname(dirname(process.execPath));
  if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) {
    args.push(`--nodedir=${prefix}`);
  }
  const log = [];
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: addonDir, stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    const timer = setTimeout(() => {
      log.push(`\n[build-native] timed out after ${BUILD_TIMEOUT_MS / 1000} s\n`);
      child.kill('SIGKILL');
    }, BUILD_TIMEOUT_MS);
    child.stdout.on('data', (c) => log.push(c.toString()));
    child.stderr.on('data', (c) => log.push(c.toString()));
    child.on('error', (err) => {
      log.push(`\n[build-native] ${err.message}\n`);
      clearTimeout(timer);
      resolve(-1);
    });
    child.on('close', (c) => {
      clearTimeout(timer);
      resolve(c ?? -1);
    });
  });
  const text = log.join('');
  try {
    writeFileSync(logFile, `$ ${process.execPath} ${args.join(' ')}\n${text}`);
  } catch {
    // a read-only checkout: the one-line reason is still printed
  }
  if (code !== 0 || !existsSync(output)) unavailable(`${diagnose(text)}; see ${shown(logFile)}`);

  // Load it in a fresh process: a module that builds but does not load is just as unavailable.
  const probe = spawnSync(process.execPath, ['-e', `const m = require(${JSON.stringify(output)}); if (typeof m.Tap !== 'function') process.exit(3)`], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (probe.status !== 0) {
    const first = (probe.stderr || '').split('\n').find((l) => l.includes('Error')) ?? `exit ${probe.status}`;
    unavailable(`the addon was built but does not load: ${first.trim()}`);
  }
  say(`tap: native addon built (${shown(output)})`);
  const bulk = spawnSync(process.execPath, ['-e', `const m = require(${JSON.stringify(bulkOutput)}); if (typeof m.gather !== 'function' || typeof m.copyMany !== 'function' || typeof m.scanCompletions !== 'function' || typeof m.completionRun !== 'function') process.exit(3)`], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (bulk.status === 0) say(`bulk copies: native addon built (${shown(bulkOutput)})`);
  else say('bulk copies: the native addon does not load; the DMA paths copy in JavaScript (slower)');
  const sockfd = spawnSync(process.execPath, ['-e', `const m = require(${JSON.stringify(sockfdOutput)}); if (typeof m.dupFd !== 'function') process.exit(3)`], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (sockfd.status === 0) say(`accepted sockets: native addon built (${shown(sockfdOutput)})`);
  else say('accepted sockets: the native addon does not load; accepted tcp:// and unix: sockets read into a new buffer per read (slower)');
}

main().catch((e) => unavailable(`build script error: ${e instanceof Error ? e.message : String(e)}`));
