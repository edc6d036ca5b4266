// The API-server double as a process of its own, for tests that need it inside a network namespace (a process
// cannot listen in another namespace than its own): `ip netns exec NS node dist/test/apiserver/serve.js --host IP
// --objects FILE [--cert PEM --key PEM] [--token T]`. It serves the objects of FILE (a JSON array), prints
// {"url": ...} on stdout once listening, and exits when its stdin closes (so it never outlives the test).
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { ApiServerDouble, type KubeObject } from './double';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      objects: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      token: { type: 'string' },
    },
  });
  const tls = values.cert && values.key ? { cert: fs.readFileSync(values.cert), key: fs.readFileSync(values.key) } : undefined;
  const api = new ApiServerDouble({ host: values.host, port: Number(values.port), tls, token: values.token });
  await api.start();
  const objects = values.objects ? (JSON.parse(fs.readFileSync(values.objects, 'utf8')) as KubeObject[]) : [];
  for (const o of objects) api.apply(o);
  process.stdout.write(JSON.stringify({ url: api.url }) + '\n');
  process.stdin.resume();
  process.stdin.on('end', () => void api.stop().then(() => process.exit(0)));
}

main().catch((e: Error) => {
  process.stderr.write(`serve: ${e.message}\n`);
  process.exit(1);
});
