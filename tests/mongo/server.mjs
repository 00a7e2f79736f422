// The MongoDB-wire stand-in for tests: smartmongo's in-memory CongoServer on 127.0.0.1.
//
//   node tests/mongo/server.mjs <port> [--ignore-stdin]
//
// Prints `ready <port>` on stdout once it listens (port 0 picks a free one and prints it),
// and exits when its stdin closes (so a test process that dies takes it along), on SIGTERM
// or on SIGINT. Pass --ignore-stdin to run it by hand in the background, where stdin is
// often /dev/null. The data lives in memory only: a restart starts empty.
// tests/mongo/install.sh must have run first (see README.md).
import { CongoServer } from './node_modules/@push.rocks/smartmongo/dist_ts/congodb/index.js';

const args = process.argv.slice(2);
const port = Number(args.find((a) => !a.startsWith('--')));
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('usage: node server.mjs <port> [--ignore-stdin]');
  process.exit(2);
}

const server = new CongoServer({ port, host: '127.0.0.1' });
let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  // Do not wait long for a clean close: the data is in memory and goes anyway.
  setTimeout(() => process.exit(code), 1000).unref();
  try {
    await server.stop();
  } catch {
    // Nothing to keep.
  }
  process.exit(code);
}
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));
if (!args.includes('--ignore-stdin')) {
  process.stdin.on('end', () => stop(0));
  process.stdin.on('close', () => stop(0));
  process.stdin.on('error', () => stop(0));
  process.stdin.resume();
}

try {
  await server.start();
} catch (e) {
  console.error(`CongoServer cannot listen on 127.0.0.1:${port}: ${e.message}`);
  process.exit(1);
}
process.stdout.write(`ready ${server.server.address().port}\n`);
