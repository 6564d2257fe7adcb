/**
 * Admin command set conformance: Identify (NVMe 1.4, 5.15). Conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { memoryNamespace, type HarnessOptions } from '../../../helpers/harness.js';
import { st, SUCCESS, INVALID_FIELD, INVALID_NAMESPACE, up, arenaBuffer, u32, u16, u64, ascii, identify } from './helpers.js';

describe('Identify', () => {
  const twoNamespaces = (): HarnessOptions => ({ namespaces: [memoryNamespace(8 << 20, 4096, 1), memoryNamespace(4 << 20, 512, 3)] });

  it('CNS 00h for an active NSID returns its Identify Namespace structure', async () => {
    const h = await up(twoNamespaces());
    const b1 = arenaBuffer(h, 4096);
    expect(st(await identify(h, 0x00, 1, b1))).toEqual(SUCCESS);
    expect(u64(b1, 0)).toBe((8 << 20) / 4096); // NSZE
    expect(u64(b1, 8)).toBe((8 << 20) / 4096); // NCAP
    expect(u64(b1, 16)).toBe((8 << 20) / 4096); // NUSE
    expect(b1[25]).toBe(0); // NLBAF: one format
    expect(b1[26]! & 0xf).toBe(0); // FLBAS: format 0
    expect((u32(b1, 128) >>> 16) & 0xff).toBe(12); // LBAF0.LBADS: 4096 bytes
    expect(u32(b1, 128) & 0xffff).toBe(0); // LBAF0.MS: no metadata
    expect(b1[33]! & 0x7).toBe(1); // DLFEAT: deallocated blocks read as zeroes

    const b3 = arenaBuffer(h, 4096);
    expect(st(await identify(h, 0x00, 3, b3))).toEqual(SUCCESS);
    expect(u64(b3, 0)).toBe((4 << 20) / 512);
    expect((u32(b3, 128) >>> 16) & 0xff).toBe(9);
    // Every namespace has its own globally unique identifiers.
    expect(Buffer.from(b1.subarray(104, 120)).equals(Buffer.from(b3.subarray(104, 120)))).toBe(false);
    expect(Buffer.from(b1.subarray(104, 120)).equals(Buffer.alloc(16))).toBe(false);
  });

  it('CNS 00h for an inactive NSID (<= NN) returns a zero-filled structure', async () => {
    const h = await up(twoNamespaces());
    const b = arenaBuffer(h, 4096, 0xa5);
    expect(st(await identify(h, 0x00, 2, b))).toEqual(SUCCESS);
    expect(b.every((x) => x === 0)).toBe(true);
  });

  for (const nsid of [0, 0xffffffff, 4, 0xfffffffe]) {
    it(`CNS 00h with NSID 0x${nsid.toString(16)}: Invalid Namespace or Format, no data written`, async () => {
      const h = await up(twoNamespaces());
      const b = arenaBuffer(h, 4096, 0xa5);
      expect(st(await identify(h, 0x00, nsid, b))).toEqual(INVALID_NAMESPACE);
      expect(b.every((x) => x === 0xa5)).toBe(true);
    });
  }

  it('CNS 01h returns the Identify Controller fields', async () => {
    const h = await up({
      namespaces: [memoryNamespace(8 << 20, 4096, 1), memoryNamespace(4 << 20, 512, 3)],
      controller: { mdts: 5, mqes: 1023, identity: { serial: 'SN-42', model: 'Conformance Model', firmware: 'FW1' } },
    });
    const b = arenaBuffer(h, 4096);
    expect(st(await identify(h, 0x01, 0, b))).toEqual(SUCCESS);
    expect(u16(b, 0)).toBe(0x1b36); // VID
    expect(ascii(b, 4, 20)).toBe('SN-42'.padEnd(20, ' ')); // SN, space padded
    expect(ascii(b, 24, 40)).toBe('Conformance Model'.padEnd(40, ' ')); // MN
    expect(ascii(b, 64, 8)).toBe('FW1'.padEnd(8, ' ')); // FR
    expect(b[77]).toBe(5); // MDTS
    expect(u16(b, 78)).toBe(1); // CNTLID
    expect(u32(b, 80)).toBe(0x00010400); // VER = VS
    expect(b[111]).toBe(1); // CNTRLTYPE: I/O controller
    expect(b[258]).toBe(3); // ACL (0's based)
    expect(b[259]).toBe(3); // AERL (0's based)
    expect(b[261]! & 0x02).toBe(0x02); // LPA: Commands Supported and Effects log
    expect(b[262]).toBe(63); // ELPE: 64 error log entries
    expect(u16(b, 266)).toBe(343); // WCTEMP
    expect(u16(b, 268)).toBe(373); // CCTEMP
    expect(b[512]).toBe(0x66); // SQES: 64-byte entries required and maximum
    expect(b[513]).toBe(0x44); // CQES: 16 bytes
    expect(u16(b, 514)).toBe(1024); // MAXCMD
    expect(u32(b, 516)).toBe(3); // NN: the largest NSID
    expect(u16(b, 520)).toBe(0x1c); // ONCS: DSM, Write Zeroes, Save/Select
    expect(u16(b, 522)).toBe(0); // FUSES: no fused operations
    expect(b[525]! & 0x01).toBe(0x01); // VWC present
    expect(u32(b, 536)).toBe(0); // SGLS: no SGLs
    // SUBNQN is a UTF-8 null-terminated string, not a space-padded one like SN / MN / FR.
    const nqn = 'nqn.2026-11.io.nvmq:SN-42';
    expect(ascii(b, 768, nqn.length)).toBe(nqn);
    expect(b.subarray(768 + nqn.length, 1024).every((x) => x === 0)).toBe(true);
    expect(u16(b, 2048)).toBe(2500); // PSD0.MP
  });

  it('CNS 02h lists the active NSIDs greater than NSID, ascending, zero-terminated', async () => {
    const h = await up(twoNamespaces());
    const list = async (nsid: number): Promise<number[]> => {
      const b = arenaBuffer(h, 4096, 0xa5);
      expect(st(await identify(h, 0x02, nsid, b))).toEqual(SUCCESS);
      const ids: number[] = [];
      for (let i = 0; i < 1024; i++) ids.push(u32(b, i * 4));
      const end = ids.indexOf(0);
      expect(end).toBeGreaterThanOrEqual(0);
      expect(ids.slice(end).every((x) => x === 0)).toBe(true);
      return ids.slice(0, end);
    };
    expect(await list(0)).toEqual([1, 3]);
    expect(await list(1)).toEqual([3]);
    expect(await list(2)).toEqual([3]);
    expect(await list(3)).toEqual([]);
    expect(await list(0xfffffffd)).toEqual([]);
  });

  for (const nsid of [0xfffffffe, 0xffffffff]) {
    it(`CNS 02h with NSID 0x${nsid.toString(16)}: Invalid Namespace or Format`, async () => {
      const h = await up(twoNamespaces());
      expect(st(await identify(h, 0x02, nsid))).toEqual(INVALID_NAMESPACE);
    });
  }

  for (const cns of [0x0e, 0x1f, 0xff]) {
    it(`unknown CNS 0x${cns.toString(16)}: Invalid Field in Command`, async () => {
      const h = await up();
      expect(st(await identify(h, cns, 0))).toEqual(INVALID_FIELD);
    });
  }
});
