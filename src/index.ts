/**
 * nvmq's public API: what the README documents, and nothing else, so the
 * engine's internals (the controller, backends, transports, shared-memory
 * primitives) can change without breaking users.
 */
export { Engine, type EngineOptions, type EngineBatchOp, type EngineEvents, type RemoteEvents } from './engine/engine.js';
export { openController, type OpenControllerOptions, type NamespaceSpec } from './engine/local-device.js';
export { NvmeDriver, type DriverOptions, type AsyncEvent, type IoQueuePairOptions } from './engine/host/driver.js';
export { QueuePair, type CommandFields, type CompletionCallback, type DataSpec } from './engine/host/queue-pair.js';
export { IoQueuePair, type LbaRange, type WriteOptions, type WriteZeroesOptions, type BatchOp, type BatchCallback } from './engine/host/io-queue-pair.js';
export { attach, AttachedQueue } from './workers/attach.js';
export type { AttachHandle } from './workers/protocol.js';
export type { ControllerInfo, NamespaceInfo, SmartHealth, ErrorLogRecord } from './engine/host/identify.js';
export type { Transport } from './engine/transport/transport.js';
export type { DmaBuffer } from './engine/dma-arena.js';
export type { DataPath } from './engine/uring/data-path.js';
export { NvmqError, NvmeStatusError, ImageError, statusToError } from './engine/errors.js';
export * as spec from './engine/spec/index.js';
export { IoMetrics, type IoMetricsHandle } from './engine/metrics/io-metrics.js';
export { startMetricsServer, serveMetrics, DEFAULT_METRICS_PORT, DEFAULT_METRICS_HOST, type MetricsServer, type MetricsServerOptions } from './engine/metrics/server.js';
export { TcpTarget, DEFAULT_NVME_TCP_PORT, DEFAULT_SUBNQN, type TcpTargetOptions } from './engine/target/tcp-target.js';
