/**
 * The host's side of NVMe over Fabrics discovery: connect to a discovery
 * controller (the well-known discovery NQN), enable it, read the Discovery
 * Log Page (LID 70h) whole with its generation counter unchanged, and
 * disconnect. `nvmq discover HOST[:PORT]` prints it as `nvme discover` does.
 */
import { NvmqError } from '../../errors.js';
import { CQE_SIZE_LOG2, SQE_SIZE, SQE_SIZE_LOG2, Sqe } from '../../spec/command.js';
import { readField, withBits, writeField } from '../../spec/layout.js';
import { AdminOpcode } from '../../spec/opcodes.js';
import { Cc, Csts } from '../../spec/registers.js';
import { formatStatus } from '../../spec/status.js';
import {
  Adrfam,
  CNTLID_DYNAMIC,
  DISCOVERY_LOG_ENTRY_SIZE,
  DISCOVERY_LOG_HEADER_SIZE,
  DISCOVERY_LOG_PAGE_ID,
  DISCOVERY_NQN,
  DiscoveryLogEntry,
  DiscoveryLogHeader,
  DiscoverySubtype,
  Property,
  TcpSectype,
  Treq,
  Trtype,
} from '../../spec/fabrics.js';
import { HostConnection } from './host-connection.js';
import { connectQueue, fabricsCommand, hostIdentity, propertyGet, propertySetSqe } from './fabrics-host.js';
import { checkTcpTarget } from './target-options.js';
import { MAX_PDU_BYTES } from './queue-bridge.js';

export interface DiscoveryEntry {
  trtype: number;
  adrfam: number;
  subtype: number;
  treq: number;
  portid: number;
  cntlid: number;
  asqsz: number;
  trsvcid: string;
  subnqn: string;
  traddr: string;
  sectype: number;
}

export interface DiscoveryLog {
  genctr: number;
  entries: DiscoveryEntry[];
}

/** At most this many entries are read (the log's own NUMREC says how many there are). */
const MAX_RECORDS = 1024;
const ascii = (b: Uint8Array): string => new TextDecoder().decode(b.subarray(0, b.indexOf(0) < 0 ? b.length : b.indexOf(0))).trim();

function field(bytes: Uint8Array, at: number, f: { offset: number; size: number }): Uint8Array {
  return bytes.subarray(at + f.offset, at + f.offset + f.size);
}

/** Decodes a Discovery Log Page read whole: its header and `count` entries. */
export function decodeDiscoveryLog(page: Uint8Array, count: number): DiscoveryLog {
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const entries: DiscoveryEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = DISCOVERY_LOG_HEADER_SIZE + i * DISCOVERY_LOG_ENTRY_SIZE;
    entries.push({
      trtype: readField(v, at, DiscoveryLogEntry.TRTYPE),
      adrfam: readField(v, at, DiscoveryLogEntry.ADRFAM),
      subtype: readField(v, at, DiscoveryLogEntry.SUBTYPE),
      treq: readField(v, at, DiscoveryLogEntry.TREQ),
      portid: readField(v, at, DiscoveryLogEntry.PORTID),
      cntlid: readField(v, at, DiscoveryLogEntry.CNTLID),
      asqsz: readField(v, at, DiscoveryLogEntry.ASQSZ),
      trsvcid: ascii(field(page, at, DiscoveryLogEntry.TRSVCID)),
      subnqn: ascii(field(page, at, DiscoveryLogEntry.SUBNQN)),
      traddr: ascii(field(page, at, DiscoveryLogEntry.TRADDR)),
      sectype: readField(v, at, DiscoveryLogEntry.TSAS_SECTYPE),
    });
  }
  return { genctr: readField(v, 0, DiscoveryLogHeader.GENCTR), entries };
}

function getLogPageSqe(cid: number, bytes: number): Uint8Array {
  const sqe = new Uint8Array(SQE_SIZE);
  const v = new DataView(sqe.buffer);
  const numd = bytes / 4 - 1;
  writeField(v, 0, Sqe.OPC, AdminOpcode.GET_LOG_PAGE);
  writeField(v, 0, Sqe.CID, cid);
  writeField(v, 0, Sqe.CDW10, (DISCOVERY_LOG_PAGE_ID | ((numd & 0xffff) << 16)) >>> 0);
  writeField(v, 0, Sqe.CDW11, numd >>> 16);
  return sqe;
}

/** Reads the discovery log of the target at `host:port`. One line on failure; the connection is closed either way. */
export async function discover(opts: { host: string; port?: number; hostnqn?: string; connectTimeoutMs?: number }): Promise<DiscoveryLog> {
  const t = checkTcpTarget({ transport: 'tcp', subnqn: DISCOVERY_NQN, ...opts });
  const where = `${t.host}:${t.port}`;
  const identity = hostIdentity(opts.hostnqn);
  const conn = await HostConnection.open({ host: t.host, port: t.port, label: 'discovery', hdgst: false, ddgst: false, connectTimeoutMs: t.connectTimeoutMs, maxPduBytes: MAX_PDU_BYTES, maxOutstanding: 31 });
  try {
    conn.inCapsuleBytes = 8192;
    let cid = 0;
    await connectQueue(conn, cid++, { qid: 0, entries: 32, kato: 0, cntlid: CNTLID_DYNAMIC, subnqn: DISCOVERY_NQN, identity, where, timeoutMs: t.connectTimeoutMs });
    // CC as Linux's host writes it for a discovery controller too: EN, NVM command set, 4 KiB pages, 64 / 16-byte entries.
    const cc = withBits(withBits(withBits(0, Cc.EN, 1), Cc.IOSQES, SQE_SIZE_LOG2), Cc.IOCQES, CQE_SIZE_LOG2);
    const enable = await fabricsCommand(conn, propertySetSqe(cid++, Property.CC.offset, cc), 'Property Set CC.EN', t.connectTimeoutMs);
    if (enable.status !== 0) throw new NvmqError('NVMQ_TARGET_PROTOCOL', `the discovery controller at ${where} refused CC.EN: ${formatStatus(enable.status, 'fabrics')}`);
    const deadline = Date.now() + t.connectTimeoutMs;
    while (((await propertyGet(conn, cid++ & 0xffff, Property.CSTS.offset, 4, t.connectTimeoutMs)) >>> Csts.RDY.shift) & 1 ^ 1) {
      if (Date.now() > deadline) throw new NvmqError('NVMQ_TIMEOUT', `the discovery controller at ${where} did not become ready within ${t.connectTimeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
    const read = async (bytes: number): Promise<Uint8Array> => {
      const page = new Uint8Array(bytes);
      const r = await fabricsCommand(conn, getLogPageSqe(cid++ & 0xffff, bytes), 'Get Log Page (Discovery)', t.connectTimeoutMs, { in: page });
      if (r.status !== 0) throw new NvmqError('NVMQ_TARGET_PROTOCOL', `the discovery controller at ${where} refused the Discovery Log Page: ${formatStatus(r.status, 'fabrics')}`);
      return page;
    };
    // The header says how many records; the whole page is read again until its generation counter holds still.
    for (let attempt = 0; attempt < 4; attempt++) {
      const head = new DataView((await read(DISCOVERY_LOG_HEADER_SIZE)).buffer);
      const genctr = readField(head, 0, DiscoveryLogHeader.GENCTR);
      const count = Math.min(readField(head, 0, DiscoveryLogHeader.NUMREC), MAX_RECORDS);
      const page = await read(DISCOVERY_LOG_HEADER_SIZE + count * DISCOVERY_LOG_ENTRY_SIZE);
      const log = decodeDiscoveryLog(page, count);
      if (log.genctr === genctr) return log;
    }
    throw new NvmqError('NVMQ_TARGET_PROTOCOL', `the discovery log at ${where} kept changing while it was read`);
  } finally {
    await conn.close();
  }
}

const TRTYPE: Record<number, string> = { [Trtype.RDMA]: 'rdma', [Trtype.FC]: 'fc', [Trtype.TCP]: 'tcp', [Trtype.INTRA_HOST]: 'loop' };
const ADRFAM: Record<number, string> = { [Adrfam.IPV4]: 'ipv4', [Adrfam.IPV6]: 'ipv6', [Adrfam.IB]: 'infiniband', [Adrfam.FC]: 'fibre-channel', [Adrfam.INTRA_HOST]: 'intra-host' };
const SUBTYPE: Record<number, string> = { [DiscoverySubtype.REFERRAL]: 'discovery subsystem referral', [DiscoverySubtype.NVM]: 'nvme subsystem', [DiscoverySubtype.CURRENT_DISCOVERY]: 'current discovery subsystem' };
const SECTYPE: Record<number, string> = { [TcpSectype.NONE]: 'none', [TcpSectype.TLS12]: 'tls1.2', [TcpSectype.TLS13]: 'tls1.3' };
const TREQ_SECURE = ['not specified', 'required', 'not required', 'reserved'];

/** The log as `nvme discover` prints it. */
export function formatDiscoveryLog(log: DiscoveryLog): string {
  const lines = [`Discovery Log Number of Records ${log.entries.length}, Generation counter ${log.genctr}`];
  log.entries.forEach((e, i) => {
    const treq = TREQ_SECURE[e.treq & 3]! + (e.treq & Treq.SQFC_DISABLE_SUPPORTED ? ', sq flow control disable supported' : '');
    lines.push(
      `=====Discovery Log Entry ${i}======`,
      `trtype:  ${TRTYPE[e.trtype] ?? `unrecognized (${e.trtype})`}`,
      `adrfam:  ${ADRFAM[e.adrfam] ?? `unrecognized (${e.adrfam})`}`,
      `subtype: ${SUBTYPE[e.subtype] ?? `unrecognized (${e.subtype})`}`,
      `treq:    ${treq}`,
      `portid:  ${e.portid}`,
      `trsvcid: ${e.trsvcid}`,
      `subnqn:  ${e.subnqn}`,
      `traddr:  ${e.traddr}`,
      ...(e.trtype === Trtype.TCP ? [`sectype: ${SECTYPE[e.sectype] ?? `unrecognized (${e.sectype})`}`] : []),
    );
  });
  return lines.join('\n');
}
