/**
 * Layout tests for every field table in src/engine/spec: each exported
 * structure has the size the spec gives it and a consistent table, and
 * checkLayout() detects broken tables.
 *
 * The expectations were written from the NVMe Base Specification 1.4
 * (section numbers and figure titles are given next to each group), in the
 * spec's own notation: byte ranges "hi:lo" and bit ranges "hi:lo" inside a
 * named register / dword. They are not derived from the source tables.
 */
import { describe, it, expect } from 'vitest';
import { checkLayout, struct, type Field } from '../../../../src/engine/spec/index.js';
import { exportedStructs } from './helpers.js';

// ---------------------------------------------------------------------------
// Sizes, from the spec.
// ---------------------------------------------------------------------------

/** Export name -> size in bytes the NVMe 1.4 spec gives the structure. */
const EXPECTED_SIZES: Record<string, number> = {
  // 3.1: controller registers 00h..FFFh, doorbells start at 1000h.
  Regs: 0x1000,
  Cap: 8, // 3.1.1, 64-bit register
  Vs: 4, // 3.1.2
  Cc: 4, // 3.1.5
  Csts: 4, // 3.1.6
  Aqa: 4, // 3.1.8
  Sqe: 64, // 4.2, 64-byte submission queue entry
  Cqe: 16, // 4.6, 16-byte completion queue entry
  IdCtrl: 4096, // 5.15.2.2, Identify data structures are 4 KiB
  IdNs: 4096,
  LbaFormat: 4, // LBA Format Data Structure, one dword
  IdentifyCdw10: 4,
  SetFeaturesCdw10: 4,
  GetFeaturesCdw10: 4,
  ArbitrationDw: 4,
  TemperatureThresholdDw: 4,
  VolatileWriteCacheDw: 4,
  NumberOfQueuesDw: 4,
  AsyncEventConfigDw: 4,
  GetLogPageCdw10: 4,
  GetLogPageCdw11: 4,
  ErrorLogEntry: 64, // 5.14.1.1, 64 bytes per entry
  SmartLog: 512, // 5.14.1.2, 512 bytes
  CommandsEffectsLog: 4096, // 5.14.1.5, 4096 bytes
  AsyncEventDw0: 4,
  CreateCqCdw10: 4,
  CreateCqCdw11: 4,
  CreateSqCdw10: 4,
  CreateSqCdw11: 4,
  DeleteQueueCdw10: 4,
  AbortCdw10: 4,
  RwCdw12: 4,
  DsmCdw10: 4,
  DsmCdw11: 4,
  DsmRange: 16, // 6.7, each range is 16 bytes
  // NVMe/TCP PDU headers (TCP Transport Specification 1.0): HLEN of each PDU type.
  TcpCommonHeader: 8, // common header, 8 bytes
  IcReqPdu: 128, // ICReq HLEN 128
  IcRespPdu: 128, // ICResp HLEN 128
  TermReqPdu: 24, // H2CTermReq / C2HTermReq HLEN 24
  CapsuleCmdPdu: 72, // CH + 64-byte SQE
  CapsuleRespPdu: 24, // CH + 16-byte CQE
  H2CDataPdu: 24,
  C2HDataPdu: 24,
  R2TPdu: 24,
  NsIdDescriptor: 4, // 5.15.2.3, descriptor header (NIDT, NIDL, 2 reserved)
  HostIdentifierCdw11: 4,
  // NVMe over Fabrics 1.1.
  FabricsSqe: 64, // 2.1, a command capsule starts with a 64-byte SQE
  ConnectSqe: 64, // 3.3, Figure 19
  ConnectCattr: 1,
  ConnectData: 1024, // 3.3, Figure 20
  ConnectResponseDw0: 4,
  ConnectInvalidDw0: 4,
  PropertySqe: 64, // 3.6 / 3.7
  PropertyAttrib: 1,
  DisconnectSqe: 64,
  SglDescriptor: 16, // NVMe 1.4 4.4
  DiscoveryLogHeader: 1024, // 5.3, Figure 31: entries start at byte 1024
  DiscoveryLogEntry: 1024, // 5.3, Figure 32
};

describe('every exported structure', () => {
  it('is one this test knows the spec size of', () => {
    expect(exportedStructs.map(([k]) => k).sort()).toEqual(Object.keys(EXPECTED_SIZES).sort());
  });

  for (const [key, s] of exportedStructs) {
    it(`${key}: checkLayout() finds no problems`, () => {
      expect(checkLayout(s)).toEqual([]);
    });
    it(`${key}: $size is ${EXPECTED_SIZES[key]} bytes`, () => {
      expect(s.$size).toBe(EXPECTED_SIZES[key]);
    });
    it(`${key}: no two bit fields of the same word share a bit`, () => {
      const byWord = new Map<string, Field[]>();
      for (const f of s.$fields) {
        if (f.bits === 0) continue;
        const k = `${f.offset}/${f.size}`;
        byWord.set(k, [...(byWord.get(k) ?? []), f]);
      }
      for (const fields of byWord.values()) {
        let used = 0n;
        for (const f of fields) {
          const mask = ((1n << BigInt(f.bits)) - 1n) << BigInt(f.shift);
          expect(used & mask, `${s.$name}.${f.name}`).toBe(0n);
          used |= mask;
        }
      }
    });
    it(`${key}: every field's name matches its key`, () => {
      for (const f of s.$fields) expect((s as unknown as Record<string, Field>)[f.name]).toBe(f);
    });
  }
});

describe('checkLayout() detects broken tables', () => {
  it('a field past the end', () => {
    const s = struct('T', 8, { A: [0, 4], B: [6, 4] });
    expect(checkLayout(s)).toHaveLength(1);
    expect(checkLayout(s)[0]).toContain('T.B');
  });
  it('a negative offset', () => {
    expect(checkLayout(struct('T', 8, { A: [-1, 2] }))).toHaveLength(1);
  });
  it('partially overlapping byte fields', () => {
    const p = checkLayout(struct('T', 8, { A: [0, 4], B: [2, 4] }));
    expect(p).toHaveLength(1);
    expect(p[0]).toContain('overlaps');
  });
  it('a bit field that does not fit its word', () => {
    expect(checkLayout(struct('T', 4, { A: [0, 2, 10, 8] }))).toHaveLength(1);
    expect(checkLayout(struct('T', 4, { A: [0, 4, 30, 3] }))).toHaveLength(1);
  });
  it('accepts contained fields and adjacent ones', () => {
    expect(checkLayout(struct('T', 8, { W: [0, 4], LO: [0, 2], HI: [2, 2], X: [4, 4], F: [4, 4, 31, 1] }))).toEqual([]);
  });
});
