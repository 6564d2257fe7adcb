/**
 * A fabrics I/O command run on the engine's own controller, as a local host
 * would run it: the capsule's SQE goes out as a raw command on a queue pair
 * of the thread serving the connection, its data in a DMA buffer of that
 * pair's arena (no bounce, the PRPs point at it), and the local controller's
 * completion (status, DW0, DW1) becomes the response capsule. So every check
 * the controller makes (namespace, LBA range, write protection, media
 * errors) gives a fabrics host exactly the status a local host gets, and
 * timeouts, metrics and resets work as for any I/O of the engine.
 *
 * What differs from a local command is the data pointer: NVMe/TCP sends SGL
 * descriptors (PSDT 01b, SGL1 in DPTR), which the transport has resolved
 * into `buffer` (in-capsule data, or data an R2T asked for); the SQE goes to
 * the local controller with PSDT 0 and DPTR cleared, and the queue pair
 * fills in PRPs for the buffer. A buffer that does not match what the
 * command moves is refused before anything runs (Data SGL Length Invalid),
 * so the controller never reads or writes past it.
 */
import type { IoQueuePair } from '../host/io-queue-pair.js';
import type { NamespaceInfo } from '../host/identify.js';
import { Sqe, SQE_SIZE } from '../spec/command.js';
import { bitsOf, readField, readU64 } from '../spec/layout.js';
import { NvmOpcode } from '../spec/opcodes.js';
import { RwCdw12, DsmCdw10, DSM_RANGE_SIZE } from '../spec/nvm-commands.js';
import { GenericStatus, makeStatus, Sct } from '../spec/status.js';
import { NvmeStatusError, NvmqError } from '../errors.js';
import type { FabricsResponse } from './capsule.js';
import { FabricsSqe, SGL_ID_IN_CAPSULE, SGL_ID_TRANSPORT, SglDescriptor } from '../spec/fabrics.js';

/** Bytes 24..39 of an SQE: DPTR (SGL1 on a fabric, PRP1 / PRP2 locally). */
const DPTR_START = FabricsSqe.SGL1.offset;
const DPTR_END = DPTR_START + FabricsSqe.SGL1.size;

/** How data moves for an opcode (NVMe 1.4, Figure 80: bits 1:0 of the opcode). */
export const DataDirection = { NONE: 0, TO_DEVICE: 1, FROM_DEVICE: 2, BIDIRECTIONAL: 3 } as const;

export function dataDirection(opcode: number): number {
  return opcode & 3;
}

export const statusResponse = (sc: number, dnr = true): FabricsResponse => ({ status: makeStatus(Sct.GENERIC, sc, dnr), dw0: 0, dw1: 0 });

/**
 * The bytes command `sqe` moves, when the command says (Read, Write,
 * Compare: NLB blocks; Dataset Management: its ranges); undefined when only
 * the controller knows (the SGL's length stands), or the namespace is not
 * one the controller has (it answers that itself).
 */
export function expectedBytes(sqe: DataView, namespaces: ReadonlyMap<number, NamespaceInfo>): number | undefined {
  const opcode = readField(sqe, 0, Sqe.OPC);
  if (opcode === NvmOpcode.READ || opcode === NvmOpcode.WRITE || opcode === NvmOpcode.COMPARE) {
    const ns = namespaces.get(readField(sqe, 0, Sqe.NSID));
    return ns ? (bitsOf(readField(sqe, 0, Sqe.CDW12), RwCdw12.NLB) + 1) * ns.lbaSize : undefined;
  }
  if (opcode === NvmOpcode.DATASET_MANAGEMENT) return (bitsOf(readField(sqe, 0, Sqe.CDW10), DsmCdw10.NR) + 1) * DSM_RANGE_SIZE;
  return undefined;
}

/**
 * Checks a capsule's data pointer (SGL1) against what NVMe/TCP allows, before
 * anything is allocated or run: data only for a command that moves it one
 * way, at most MDTS; in-capsule data (Data Block, Offset subtype) only to the
 * controller, at offset 0 (ICDOFF 0), within the queue's in-capsule size and
 * the bytes the capsule carried; otherwise a Transport Data Block, with no
 * data in the capsule (it comes by R2T, or goes back in C2HData). Returns
 * the generic status to refuse it with, or undefined.
 */
export function checkDataPointer(sqe: Uint8Array, direction: number, capsuleBytes: number, limits: { maxTransferBytes: number; inCapsuleBytes: number }, view?: DataView): number | undefined {
  // SGL1's fields read in place (`view`: a DataView of the 64-byte `sqe`, made here when not given).
  const dv = view ?? new DataView(sqe.buffer, sqe.byteOffset, SQE_SIZE);
  const length = readField(dv, DPTR_START, SglDescriptor.LENGTH);
  if (length === 0) return undefined;
  if (direction === DataDirection.NONE || direction === DataDirection.BIDIRECTIONAL) return GenericStatus.INVALID_FIELD;
  if (length > limits.maxTransferBytes) return GenericStatus.DATA_SGL_LENGTH_INVALID;
  const id = readField(dv, DPTR_START, SglDescriptor.SGL_ID);
  if (id === SGL_ID_IN_CAPSULE) {
    if (direction !== DataDirection.TO_DEVICE || readU64(dv, DPTR_START + SglDescriptor.ADDRESS.offset) !== 0) return GenericStatus.SGL_OFFSET_INVALID;
    if (length > limits.inCapsuleBytes || length > capsuleBytes) return GenericStatus.DATA_SGL_LENGTH_INVALID;
    return undefined;
  }
  return id !== SGL_ID_TRANSPORT || capsuleBytes > 0 ? GenericStatus.SGL_TYPE_INVALID : undefined;
}

/**
 * What an engine error means to a fabrics host. The engine's own failures
 * (a reset, the queue gone, a timeout) are not the host's fault and may
 * succeed if retried: Command Interrupted / Command Abort Requested without
 * DNR, so a Linux host retries them. A status error carries its status.
 */
export function errorStatus(e: unknown): FabricsResponse {
  if (e instanceof NvmeStatusError) return { status: e.status, dw0: 0, dw1: 0 };
  const code = e instanceof NvmqError ? e.code : '';
  if (code === 'NVMQ_TIMEOUT') return statusResponse(GenericStatus.ABORT_REQUESTED, false);
  if (code === 'NVMQ_INVALID_ARGUMENT') return statusResponse(GenericStatus.INVALID_FIELD);
  return statusResponse(GenericStatus.COMMAND_INTERRUPTED, false);
}

/**
 * PRPs, not SGLs, toward the local controller: PSDT and DPTR of `sqe` (the
 * caller's own copy) cleared in place; the queue pair points the PRPs at the
 * command's buffer.
 */
export function clearDataPointer(sqe: Uint8Array): void {
  sqe[Sqe.PSDT.offset]! &= ~(((1 << Sqe.PSDT.bits) - 1) << Sqe.PSDT.shift);
  sqe.fill(0, DPTR_START, DPTR_END);
}

/**
 * Runs fabrics I/O command `sqe` on `q`, with `buffer` (a DMA buffer of q's
 * arena, or none) holding its data: what to write, or where to read to.
 * `done` gets the response, once (a refusal or failure as its status), never
 * inside this call. `sqe` is changed (its data pointer cleared).
 */
export function runLocal(q: IoQueuePair, sqe: Uint8Array, buffer: Uint8Array | undefined, direction: number, done: (r: FabricsResponse) => void): void {
  clearDataPointer(sqe);
  const data = buffer && buffer.length > 0 ? { buffer, direction: direction === DataDirection.TO_DEVICE ? ('to-device' as const) : ('from-device' as const) } : undefined;
  q.passthruCallback({ raw: sqe }, data, (err, c) => done(err || !c ? errorStatus(err) : { status: c.status, dw0: c.dw0, dw1: c.dw1 }));
}
