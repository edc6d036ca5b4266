// Switching from the ebpf mode to another: the socket hooks would otherwise go on translating connections to the
// Services as the maps last knew them, behind the back of the mode now in charge. Whatever svcplane pinned under
// its bpffs root (links and maps) is detached and removed when another mode starts. Nothing else is touched.
import * as fs from 'node:fs';
import type { Logger } from '../../log';
import { LibbpfKernel, defaultObjectPath } from './kernel';

export function removeEbpfLeftovers(root: string, log: Logger): void {
  if (!fs.existsSync(root)) return;
  const links = new LibbpfKernel({ object: defaultObjectPath(), root, cgroup: '' }).detach();
  log.info('the ebpf mode\'s socket LB removed (another mode runs now)', { root, links });
}
