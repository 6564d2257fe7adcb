/**
 * `nvmq identify` and `nvmq smart-log`: what the controller reports, printed
 * the way nvme-cli's `id-ctrl`, `id-ns` and `smart-log` print it, so the two
 * can be read side by side.
 */
import type { NvmeDriver } from '../engine/host/driver.js';
import type { SmartHealth } from '../engine/host/identify.js';

const hex = (n: number): string => `0x${n.toString(16)}`;

function rows(pairs: Array<[string, string | number]>, width = 10): string[] {
  return pairs.map(([k, v]) => `${k.padEnd(width)}: ${v}`);
}

export function formatIdentify(d: NvmeDriver): string {
  const c = d.controller;
  const lines = [
    'NVME Identify Controller:',
    ...rows([
      ['vid', hex(c.vid)],
      ['ssvid', hex(c.ssvid)],
      ['sn', c.serial],
      ['mn', c.model],
      ['fr', c.firmware],
      ['rab', c.rab],
      ['ieee', c.ieee],
      ['cmic', c.cmic],
      ['mdts', c.mdts],
      ['cntlid', hex(c.cntlid)],
      ['ver', hex(c.ver)],
      ['oaes', hex(c.oaes)],
      ['ctratt', hex(c.ctratt)],
      ['cntrltype', c.cntrltype],
      ['oacs', hex(c.oacs)],
      ['acl', c.acl],
      ['aerl', c.aerl],
      ['frmw', hex(c.frmw)],
      ['lpa', hex(c.lpa)],
      ['elpe', c.elpe],
      ['npss', c.npss],
      ['wctemp', c.wctemp],
      ['cctemp', c.cctemp],
      ['sqes', hex(c.sqes)],
      ['cqes', hex(c.cqes)],
      ['maxcmd', c.maxcmd],
      ['nn', c.nn],
      ['oncs', hex(c.oncs)],
      ['fna', hex(c.fna)],
      ['vwc', hex(c.vwc)],
      ['awun', c.awun],
      ['awupf', c.awupf],
      ['sgls', hex(c.sgls)],
      ['subnqn', c.subnqn],
    ]),
    `(NVMe ${c.version}; transfers up to ${c.maxTransferBytes} bytes; ${d.grantedIoQueues} I/O queue pairs granted, CAP.MQES ${d.cap.mqes}, CAP.TO ${d.cap.timeoutMs} ms)`,
  ];
  for (const ns of d.namespaces.values()) {
    lines.push(
      '',
      `NVME Identify Namespace ${ns.nsid}:`,
      ...rows([
        ['nsze', hex(ns.blocks)],
        ['ncap', hex(ns.ncap)],
        ['nuse', hex(ns.nuse)],
        ['nsfeat', hex(ns.nsfeat)],
        ['nlbaf', ns.nlbaf],
        ['flbas', hex(ns.flbas)],
        ['mc', hex(ns.mc)],
        ['dpc', hex(ns.dpc)],
        ['dps', ns.dps],
        ['nmic', ns.nmic],
        ['dlfeat', ns.dlfeat],
        ['nguid', ns.nguid],
        ['eui64', ns.eui64],
      ]),
      ...ns.lbaFormats.map((f, i) => `lbaf ${String(i).padStart(2)} : ms:${f.ms}   lbads:${f.lbads}  rp:${hex(f.rp)}${i === (ns.flbas & 0xf) ? ' (in use)' : ''}`),
      `(${ns.blocks} blocks of ${ns.lbaSize} bytes: ${formatSize(ns.blocks * ns.lbaSize)})`,
    );
  }
  return lines.join('\n');
}

function formatSize(n: number): string {
  return n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(2)} MiB`;
}

export function formatSmartLog(s: SmartHealth): string {
  return [
    'Smart Log for NVME device:',
    ...rows([
      ['critical_warning', s.criticalWarning],
      ['temperature', `${s.temperatureKelvin - 273}°C (${s.temperatureKelvin} Kelvin)`],
      ['available_spare', `${s.availableSpare}%`],
      ['available_spare_threshold', `${s.availableSpareThreshold}%`],
      ['percentage_used', `${s.percentageUsed}%`],
      ['data_units_read', s.dataUnitsRead],
      ['data_units_written', s.dataUnitsWritten],
      ['host_read_commands', s.hostReadCommands],
      ['host_write_commands', s.hostWriteCommands],
      ['controller_busy_time', s.controllerBusyTimeMinutes],
      ['power_cycles', s.powerCycles],
      ['power_on_hours', s.powerOnHours],
      ['unsafe_shutdowns', s.unsafeShutdowns],
      ['media_errors', s.mediaErrors],
      ['num_err_log_entries', s.errorLogEntries],
    ], 26),
  ].join('\n');
}
