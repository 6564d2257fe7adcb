/**
 * Identify data as a Fabrics host must see it: the local controller's
 * Identify Controller with the fields that belong to this host's virtual
 * controller and to the fabric replaced, Identify Namespace marked shared,
 * and the Namespace Identification Descriptor list (CNS 03h), built from
 * Identify Namespace because the local controller answers only CNS 00h-02h.
 */
import { readField, writeField } from '../spec/layout.js';
import { SQE_SIZE, CQE_SIZE } from '../spec/command.js';
import { IdCtrl, IdNs, Cmic, CtrlAttr, Lpa, Oncs, NsIdDescriptor, Nidt, NIDT_LENGTH, NS_ID_DESCRIPTOR_HEADER_SIZE, CSI_NVM, IDENTIFY_DATA_SIZE } from '../spec/identify.js';
import { ControllerType, SglSupport } from '../spec/fabrics.js';
import { viewOf, writeStringField } from './capsule.js';

export interface ControllerPatch {
  cntlid: number;
  subnqn: string;
  /** VS as the controller reports it. */
  version: number;
  /** Bytes of data an I/O command capsule may carry after its SQE. */
  inCapsuleDataBytes: number;
  /** Largest I/O queue, entries: MAXCMD. */
  maxQueueEntries: number;
  /** KAS, in 100 ms units. */
  kas: number;
  aerl: number;
}

/**
 * Identify Controller (NVMe 1.4 Figure 247) of the local controller, made the
 * host's: its own CNTLID and subsystem, the Fabrics fields (IOCCSZ, IORCSZ,
 * ICDOFF 0 as NVMe/TCP requires, MSDBD 1, SGLS), and nothing advertised that
 * this target does not implement for a remote host (no namespace management,
 * firmware, format, security, directives, APST, timestamps, reservations, ANA,
 * Commands Supported and Effects log, host memory buffer).
 */
export function patchIdentifyController(data: Uint8Array, p: ControllerPatch): void {
  const dv = viewOf(data);
  const set = (f: typeof IdCtrl.CNTLID, v: number): void => writeField(dv, 0, f, v);
  set(IdCtrl.CNTLID, p.cntlid);
  set(IdCtrl.VER, p.version);
  set(IdCtrl.CNTRLTYPE, ControllerType.IO);
  // Several hosts' controllers share the subsystem; there is one port and no ANA.
  set(IdCtrl.CMIC, Cmic.MULTI_CONTROLLER);
  // 128-bit host identifiers (Fabrics); no traffic based keep alive: only Keep Alive commands restart the timer.
  set(IdCtrl.CTRATT, CtrlAttr.HOST_ID_128_BIT);
  set(IdCtrl.OAES, 0);
  set(IdCtrl.RTD3R, 0);
  set(IdCtrl.RTD3E, 0);
  set(IdCtrl.CRDT1, 0);
  set(IdCtrl.CRDT2, 0);
  set(IdCtrl.CRDT3, 0);
  set(IdCtrl.OACS, 0);
  set(IdCtrl.ACL, 3);
  set(IdCtrl.AERL, p.aerl);
  set(IdCtrl.FRMW, 0);
  set(IdCtrl.LPA, readField(dv, 0, IdCtrl.LPA) & (Lpa.SMART_PER_NAMESPACE | Lpa.EXTENDED_DATA));
  set(IdCtrl.APSTA, 0);
  set(IdCtrl.HMPRE, 0);
  set(IdCtrl.HMMIN, 0);
  set(IdCtrl.SANICAP, 0);
  set(IdCtrl.KAS, p.kas);
  set(IdCtrl.SQES, (6 << 4) | 6);
  set(IdCtrl.CQES, (4 << 4) | 4);
  set(IdCtrl.MAXCMD, p.maxQueueEntries);
  const oncsKept = Oncs.COMPARE | Oncs.WRITE_UNCORRECTABLE | Oncs.DSM | Oncs.WRITE_ZEROES | Oncs.VERIFY;
  set(IdCtrl.ONCS, readField(dv, 0, IdCtrl.ONCS) & oncsKept);
  set(IdCtrl.FUSES, 0);
  set(IdCtrl.MNAN, 0);
  // NVMe/TCP 1.0: SGLs only; Offset for in-capsule data, Transport SGL Data Blocks for R2T / C2HData.
  set(IdCtrl.SGLS, SglSupport.SUPPORTED | SglSupport.TRANSPORT_DATA_BLOCK | (p.inCapsuleDataBytes > 0 ? SglSupport.OFFSET : 0));
  writeStringField(data, IdCtrl.SUBNQN.offset, IdCtrl.SUBNQN.size, p.subnqn);
  set(IdCtrl.IOCCSZ, (SQE_SIZE + p.inCapsuleDataBytes) / 16);
  set(IdCtrl.IORCSZ, CQE_SIZE / 16);
  set(IdCtrl.ICDOFF, 0);
  // Dynamic controller model: a new CNTLID per admin Connect.
  set(IdCtrl.FCATT, 0);
  set(IdCtrl.MSDBD, 1);
  // Disconnect is supported (OFCS bit 0).
  set(IdCtrl.OFCS, 1);
}

/** Identify Namespace: every namespace is shared by the subsystem's controllers (NMIC bit 0); no ANA group. */
export function patchIdentifyNamespace(data: Uint8Array): void {
  const dv = viewOf(data);
  // An inactive NSID comes back all zeroes: it stays so (NVMe 1.4 section 5.15.2.1).
  if (readField(dv, 0, IdNs.NSZE) === 0) return;
  writeField(dv, 0, IdNs.NMIC, readField(dv, 0, IdNs.NMIC) | 1);
  writeField(dv, 0, IdNs.ANAGRPID, 0);
}

/**
 * Namespace Identification Descriptor list (NVMe 1.4 section 5.15.2.3) from
 * Identify Namespace: EUI64 and NGUID when non-zero, and the CSI of the NVM
 * command set. Hosts built for 1.3 (Linux among them) drop a namespace whose
 * list cannot be read.
 */
export function namespaceDescriptors(idNs: Uint8Array): Uint8Array {
  const out = new Uint8Array(IDENTIFY_DATA_SIZE);
  const dv = viewOf(out);
  let at = 0;
  const put = (nidt: number, value: Uint8Array): void => {
    writeField(dv, at, NsIdDescriptor.NIDT, nidt);
    writeField(dv, at, NsIdDescriptor.NIDL, NIDT_LENGTH[nidt]!);
    out.set(value, at + NS_ID_DESCRIPTOR_HEADER_SIZE);
    at += NS_ID_DESCRIPTOR_HEADER_SIZE + NIDT_LENGTH[nidt]!;
  };
  const eui64 = idNs.subarray(IdNs.EUI64.offset, IdNs.EUI64.offset + IdNs.EUI64.size);
  const nguid = idNs.subarray(IdNs.NGUID.offset, IdNs.NGUID.offset + IdNs.NGUID.size);
  if (eui64.some((b) => b !== 0)) put(Nidt.EUI64, eui64);
  if (nguid.some((b) => b !== 0)) put(Nidt.NGUID, nguid);
  put(Nidt.CSI, Uint8Array.of(CSI_NVM));
  return out;
}
