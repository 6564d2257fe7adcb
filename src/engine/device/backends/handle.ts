/**
 * Backends rebuilt in another thread from their handles: the same shared
 * memory, or the same file descriptor (descriptors are process-wide).
 */
import type { Backend, BackendHandle } from './backend.js';
import { MemoryBackend } from './memory.js';
import { FileBackend } from './file.js';

export type { BackendHandle };

export function backendFromHandle(h: BackendHandle): Backend {
  if (h.kind === 'memory') return new MemoryBackend({ buffer: h.buffer });
  return new FileBackend({ handle: h });
}
