import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgv, makeJob, makeSettings, parseSize, parseTime, helpText, tcpTargetOptions, OPTIONS, UsageError, type RawOptions } from '../../src/cli/options.js';
import { parseJobFile, loadJobFile } from '../../src/cli/jobfile.js';
import { tempDir } from '../helpers/harness.js';

const usage = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    const msg = (e as Error).message;
    expect(msg.split('\n')).toHaveLength(1);
    return msg;
  }
  throw new Error('no UsageError');
};

describe('option parsing', () => {
  it('parses sizes and times with fio suffixes', () => {
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('4k')).toBe(4096);
    expect(parseSize('4K')).toBe(4096);
    expect(parseSize('1m')).toBe(1 << 20);
    expect(parseSize('1g')).toBe(1 << 30);
    expect(parseSize('1GiB')).toBe(1 << 30);
    expect(parseSize('2t')).toBe(2 * 1024 ** 4);
    expect(parseSize('1.5g')).toBeUndefined();
    expect(parseTime('5')).toBe(5000);
    expect(parseTime('5s')).toBe(5000);
    expect(parseTime('300ms')).toBe(300);
    expect(parseTime('0.3')).toBe(300);
    expect(parseTime('2m')).toBe(120_000);
    expect(parseTime('1h')).toBe(3_600_000);
    expect(parseTime('soon')).toBeUndefined();
  });

  it('reads every job option from the command line, in every spelling fio accepts', () => {
    const { command, options } = parseArgv([
      'bench', '--name=j', '--filename', 'x.img', '--backend', 'memory', '--size=64m', '--offset', '4k', '--readwrite=randrw',
      '--rwmixread', '70', '--blocksize', '8k', '--iodepth', '32', '--numjobs', '4', '--runtime', '2s', '--time_based',
      '--ramp_time=500ms', '--direct=1', '--verify', 'crc32c',
    ]);
    expect(command).toBe('bench');
    const job = makeJob(options);
    expect(job).toMatchObject({
      name: 'j', filename: 'x.img', backend: 'memory', size: 64 << 20, offset: 4096, rw: 'randrw', rwmixread: 70, bs: 8192,
      iodepth: 32, numjobs: 4, runtime: 2000, timeBased: true, rampTime: 500, direct: true, verify: 'crc32c',
    });
    expect(makeJob(parseArgv(['--rw', 'readwrite', '--rwmixwrite', '30']).options)).toMatchObject({ rw: 'rw', rwmixread: 70 });
    expect(makeJob(parseArgv(['--buffered=0']).options).direct).toBe(true);
  });

  it('has fio defaults', () => {
    expect(makeJob({})).toMatchObject({ rw: 'read', bs: 4096, iodepth: 1, numjobs: 1, runtime: 0, timeBased: false, rampTime: 0, direct: false, verify: 'none', offset: 0, size: undefined, rwmixread: 50, backend: 'file', filename: path.join('nvmq-data', 'default.img') });
  });

  it('reads run settings', () => {
    const s = makeSettings(parseArgv(['--output-format', 'json', '--compare', 'node-fs', '--report', 'r.html', '--metrics-port', '9000', '--force']).options, 'bench');
    expect(s).toEqual({ outputFormat: 'json', compare: 'node-fs', report: 'r.html', metrics: { port: 9000, host: '127.0.0.1' }, force: true });
    expect(makeSettings({}, 'bench').metrics).toBeUndefined();
    expect(makeSettings({}, 'serve').metrics).toEqual({ port: 9469, host: '127.0.0.1' });
    expect(makeSettings({ 'metrics-port': '0', 'metrics-host': '::1' }, 'serve').metrics).toEqual({ port: 0, host: '::1' });
  });

  it('regression: checks --metrics-host always, and refuses it on bench without --metrics-port (it would be ignored)', () => {
    for (const host of ['a b', 'http://x', '127.0.0.1:9000', '-x', 'x..y', '[::1]']) {
      expect(usage(() => parseArgv(['serve', '--metrics-host', host])), host).toBe(
        `--metrics-host ${host} is not an IP address or host name (examples: 127.0.0.1, ::1, 0.0.0.0, localhost; the port goes in --metrics-port)`,
      );
    }
    for (const host of ['127.0.0.1', '::1', '0.0.0.0', 'localhost', 'metrics-1.example.org']) {
      expect(makeSettings(parseArgv(['serve', '--metrics-host', host]).options, 'serve').metrics, host).toEqual({ port: 9469, host });
      expect(makeSettings(parseArgv(['--metrics-host', host, '--metrics-port', '0']).options, 'bench').metrics, host).toEqual({ port: 0, host });
    }
    expect(usage(() => makeSettings(parseArgv(['--metrics-host', '0.0.0.0']).options, 'bench'))).toBe(
      '--metrics-host 0.0.0.0 needs --metrics-port (0..65535): nvmq bench serves /metrics only on a port given',
    );
  });

  it('names every bad value in one line with the accepted range', () => {
    const cases: Array<[string[], RegExp]> = [
      [['--iodepth', '0'], /^--iodepth 0 is out of range \(1\.\.4095\)$/],
      [['--iodepth', '4096'], /--iodepth 4096 is out of range \(1\.\.4095\)/],
      [['--iodepth', 'deep'], /--iodepth deep is not a whole number \(1\.\.4095\)/],
      [['--numjobs', '0'], /--numjobs 0 is out of range \(1\.\.256\)/],
      [['--numjobs', '257'], /--numjobs 257 is out of range/],
      [['--rwmixread', '101'], /--rwmixread 101 is out of range \(0\.\.100\)/],
      [['--rwmixwrite', '-1'], /--rwmixwrite -1 is not a whole number/],
      [['--bs', '2m'], /--bs 2m is out of range \(512\.\.1m\)/],
      [['--bs', '256'], /--bs 256 is out of range/],
      [['--bs', 'big'], /--bs big is not a size/],
      [['--size', '1k'], /--size 1k is out of range \(4k\.\.\)/],
      [['--size', 'huge'], /--size huge is not a size/],
      [['--offset', '-4k'], /--offset -4k is not a size/],
      [['--rw', 'sideways'], /--rw sideways is not one of read, write, randread, randwrite, rw, readwrite, randrw/],
      [['--runtime', 'forever'], /--runtime forever is not a time/],
      [['--runtime', '8d'], /--runtime 8d is out of range \(0ms\.\.604800s\)/],
      [['--ramp_time', 'x'], /--ramp_time x is not a time/],
      [['--time_based=maybe'], /--time_based maybe is not a boolean/],
      [['--direct=2'], /--direct 2 is not a boolean/],
      [['--verify', 'md5'], /--verify md5 is not one of none, crc32c/],
      [['--backend', 'tape'], /--backend tape is not one of file, memory/],
      [['--output-format', 'xml'], /--output-format xml is not one of normal, json/],
      [['--compare', 'dd'], /--compare dd is not one of none, node-fs, fio/],
      [['--metrics-port', '65536'], /--metrics-port 65536 is out of range \(0\.\.65535\)/],
      [['--metrics-port', 'http'], /--metrics-port http is not a whole number/],
      [['--metrics-host='], /--metrics-host needs a value/],
      [['--filename'], /--filename needs a value/],
      [['--nope'], /unknown option --nope/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['identify', '--iodepth', '4'], /--iodepth does not apply to nvmq identify/],
      [['identify', 'job.fio'], /takes no job file/],
    ];
    for (const [args, re] of cases) expect(usage(() => parseArgv(args)), args.join(' ')).toMatch(re);
    expect(usage(() => makeJob(parseArgv(['--time_based']).options))).toMatch(/^--time_based 1 needs a --runtime above 0/);
    expect(usage(() => makeJob(parseArgv(['--bs', '1000']).options))).toMatch(/--bs 1000 is not a multiple of 512/);
    expect(usage(() => makeJob(parseArgv(['--bs', '1m', '--iodepth', '512']).options))).toMatch(/--iodepth 512 with bs 1m puts 512m in flight/);
  });

  it('regression: takes rwmixread and rwmixwrite together only when they add up to 100; one alone sets the other', () => {
    expect(usage(() => makeJob(parseArgv(['--rw', 'randrw', '--rwmixread', '70', '--rwmixwrite', '70']).options))).toBe(
      '--rwmixwrite 70 with --rwmixread 70 does not add up to 100 (give one, 0..100: the other is 100 minus it)',
    );
    expect(usage(() => makeJob(parseArgv(['--rwmixwrite', '0', '--rwmixread', '0']).options))).toMatch(/does not add up to 100/);
    expect(makeJob(parseArgv(['--rwmixread', '70', '--rwmixwrite', '30']).options).rwmixread).toBe(70);
    expect(makeJob(parseArgv(['--rwmixread', '30']).options).rwmixread).toBe(30);
    expect(makeJob(parseArgv(['--rwmixwrite', '100']).options).rwmixread).toBe(0);
  });

  it('lists every option with its default in --help', () => {
    const help = helpText();
    for (const [name, d] of Object.entries(OPTIONS)) {
      expect(help).toContain(`--${name}`);
      if ('default' in d) expect(help).toContain(`(default ${d.default})`);
    }
    expect(help).toMatch(/embedded default job: .*--rw randrw .*--verify crc32c/);
    expect(help).toMatch(/--metrics-port .*\{bench, serve\}/);
  });
});

describe('nvmq serve --listen (the NVMe/TCP target)', () => {
  const tcp = (...argv: string[]) => tcpTargetOptions(parseArgv(['serve', ...argv]).options);
  const A = 'nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000000a';
  const B = 'nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000000b';

  it('takes HOST:PORT, [v6]:PORT, a bare port (loopback) or a host alone (port 4420); --allow-host repeats', () => {
    expect(tcp('--listen', '0.0.0.0:4421', '--allow-host', A, '--allow-host', B)).toEqual({ host: '0.0.0.0', port: 4421, subnqn: 'nqn.2026-12.io.nvmq:subsystem', allowHosts: [A, B], allowAnyHost: false });
    expect(tcp('--listen', '[::1]:4420', '--allow-any-host', '--nqn', 'nqn.2026-12.io.example:disk')).toMatchObject({ host: '::1', port: 4420, subnqn: 'nqn.2026-12.io.example:disk', allowHosts: [], allowAnyHost: true });
    expect(tcp('--listen', '4422', '--allow-any-host')).toMatchObject({ host: '127.0.0.1', port: 4422 });
    expect(tcp('--listen', '127.0.0.2', '--allow-any-host')).toMatchObject({ host: '127.0.0.2', port: 4420 });
    expect(tcp()).toBeUndefined();
  });

  it('refuses, in one line: no hosts said, a bad address, target options without --listen, a value left empty', () => {
    expect(() => tcp('--listen', '4420')).toThrow(/^--listen: say which hosts may connect: --allow-host NQN \(repeatable\) or --allow-any-host$/);
    for (const bad of ['1.2.3:44', 'localhost:4420', '127.0.0.1:99999', '[::1', ':4420']) {
      expect(() => tcp('--listen', bad, '--allow-any-host'), bad).toThrow(/is not HOST:PORT with an IP address/);
    }
    expect(() => tcp('--nqn', 'nqn.2026-12.io.example:x')).toThrow(/^--nqn needs --listen HOST:PORT/);
    expect(() => tcp('--allow-host', A)).toThrow(/^--allow-host needs --listen HOST:PORT/);
    // `--allow-host $UNSET --backend memory`: the next option is not taken as the value.
    expect(() => parseArgv(['serve', '--listen', '4420', '--allow-host', '--backend', 'memory'])).toThrow(/^--allow-host needs a value$/);
    expect(() => parseArgv(['bench', '--listen', '4420'])).toThrow(/^--listen does not apply to nvmq bench$/);
  });
});

describe('a remote controller named as nvme connect names it (--transport tcp --traddr --trsvcid --nqn)', () => {
  const NQN = 'nqn.2026-12.io.example:disk';

  it('becomes the --filename nvme-tcp:// address it stands for, on bench, identify and smart-log', () => {
    expect(parseArgv(['identify', '--transport', 'tcp', '--traddr', '192.0.2.10', '--trsvcid', '4421', '--nqn', NQN]).options).toEqual({ filename: `nvme-tcp://192.0.2.10:4421/${NQN}` });
    expect(parseArgv(['smart-log', '--transport=tcp', '--traddr=::1', `--nqn=${NQN}`]).options).toEqual({ filename: `nvme-tcp://[::1]:4420/${NQN}` });
    const bench = parseArgv(['bench', '--transport', 'tcp', '--traddr', 'storage.example', '--nqn', 'nqn.2026-12.io.example:50%', '--rw', 'randread']);
    expect(bench.options).toEqual({ filename: 'nvme-tcp://storage.example:4420/nqn.2026-12.io.example:50%25', rw: 'randread' });
    // The address form reads the NQN back as given.
    expect(makeJob(bench.options).filename).toBe('nvme-tcp://storage.example:4420/nqn.2026-12.io.example:50%25');
  });

  it('refuses, in one line: a part without --transport, --transport without an address or NQN, both ways at once, a bad address', () => {
    expect(usage(() => parseArgv(['identify', '--traddr', '192.0.2.10']))).toBe('--traddr needs --transport tcp (with --traddr and --nqn: the remote controller it names)');
    expect(usage(() => parseArgv(['bench', '--nqn', NQN]))).toBe('--nqn needs --transport tcp (with --traddr and --nqn: the remote controller it names)');
    expect(usage(() => parseArgv(['identify', '--transport', 'tcp', '--nqn', NQN]))).toBe('--transport tcp needs --traddr ADDRESS and --nqn SUBNQN (and --trsvcid PORT, default 4420)');
    expect(usage(() => parseArgv(['identify', '--transport', 'tcp', '--traddr', '192.0.2.10']))).toBe('--transport tcp needs --traddr ADDRESS and --nqn SUBNQN (and --trsvcid PORT, default 4420)');
    expect(usage(() => parseArgv(['identify', '--transport', 'tcp', '--traddr', '192.0.2.10', '--nqn', NQN, '--filename', 'x.img']))).toBe('--transport names the controller already: give it or --filename, not both');
    expect(usage(() => parseArgv(['identify', '--transport', 'tcp', '--traddr', 'bad host', '--nqn', NQN]))).toBe('--traddr bad host is not an IP address or host name');
    expect(usage(() => parseArgv(['identify', '--transport', 'rdma', '--traddr', '192.0.2.10', '--nqn', NQN]))).toBe("--transport rdma is not one of tcp");
    expect(usage(() => parseArgv(['identify', '--transport', 'tcp', '--traddr', '192.0.2.10', '--trsvcid', '0', '--nqn', NQN]))).toMatch(/^--trsvcid /);
    expect(usage(() => parseArgv(['serve', '--transport', 'tcp']))).toBe('--transport does not apply to nvmq serve');
  });
});

describe('fio job files', () => {
  const text = [
    '; a job file as fio reads it',
    '[global]',
    'bs=8k',
    'ioengine=io_uring',
    'time_based',
    'runtime=2',
    '# comment',
    '[seq-read]',
    'rw=read',
    'iodepth = 4',
    '',
    '[global]',
    'numjobs=2',
    '[mixed]',
    'readwrite=randrw',
    'rwmixread=70',
    'bs=16k',
  ].join('\n');

  it('applies [global] keys to the jobs after them, and job keys to their own job', () => {
    const jobs = parseJobFile(text, 'a.fio').map((j) => makeJob(j.raw, j.where));
    expect(jobs).toHaveLength(2);
    expect(jobs[0]).toMatchObject({ name: 'seq-read', rw: 'read', bs: 8192, iodepth: 4, timeBased: true, runtime: 2000, numjobs: 1 });
    expect(jobs[1]).toMatchObject({ name: 'mixed', rw: 'randrw', rwmixread: 70, bs: 16384, numjobs: 2, iodepth: 1 });
    expect(jobs[0]!.given).toMatchObject({ bs: '8k', ioengine: 'io_uring', rw: 'read' });
  });

  it('names an unsupported key, a bad value and its line, in one line', () => {
    expect(usage(() => parseJobFile('[j]\nrw=read\nioscheduler=none\n', 'b.fio'))).toMatch(/^b\.fio:3 \[j\]: unsupported key 'ioscheduler' \(nvmq reads: name, filename/);
    expect(usage(() => parseJobFile('[global]\nstonewall\n[j]\n', 'b.fio'))).toMatch(/b\.fio:2 \[global\]: unsupported key 'stonewall'/);
    expect(usage(() => parseJobFile('[j]\niodepth=0\n', 'b.fio'))).toMatch(/^b\.fio:2 \[j\] iodepth=0 is out of range \(1\.\.4095\)$/);
    expect(usage(() => parseJobFile('[global]\nbs=4k\n', 'b.fio'))).toMatch(/no job section/);
    expect(usage(() => parseJobFile('[j]\noutput-format=json\n', 'b.fio'))).toMatch(/unsupported key 'output-format'/);
    expect(usage(() => makeJob(parseJobFile('[j]\nbs=1000\n', 'b.fio')[0]!.raw, parseJobFile('[j]\nbs=1000\n', 'b.fio')[0]!.where))).toMatch(/^b\.fio:2 \[j\] bs=1000 is not a multiple of 512/);
  });

  it('treats rwmixread / rwmixwrite as one setting: a job section replaces the pair from [global], both in one section must add up to 100', () => {
    const jobs = (t: string): ReturnType<typeof makeJob>[] => parseJobFile(t, 'm.fio').map((j) => makeJob(j.raw, j.where));
    expect(jobs('[global]\nrwmixread=70\n[a]\nrwmixwrite=40\n[b]\n').map((j) => j.rwmixread)).toEqual([60, 70]);
    expect(jobs('[global]\nrwmixwrite=10\n[a]\nrwmixread=25\n').map((j) => j.rwmixread)).toEqual([25]);
    expect(usage(() => jobs('[a]\nrwmixread=70\nrwmixwrite=70\n'))).toBe('m.fio:3 [a] rwmixwrite=70 with m.fio:2 [a] rwmixread=70 does not add up to 100 (give one, 0..100: the other is 100 minus it)');
    expect(usage(() => jobs('[global]\nrwmixread=70\nrwmixwrite=20\n[a]\n'))).toMatch(/^m\.fio:3 \[a\] rwmixwrite=20 with m\.fio:2 \[a\] rwmixread=70 does not add up to 100/);
  });

  it('loads a file, with command-line options overriding it', () => {
    const t = tempDir();
    try {
      const f = path.join(t.dir, 'j.fio');
      fs.writeFileSync(f, text);
      const jobs = loadJobFile(f, { iodepth: '8' });
      expect(jobs.map((j) => j.iodepth)).toEqual([8, 8]);
      // [mixed] says rwmixread=70: --rwmixwrite on the command line replaces it.
      expect(loadJobFile(f, { rwmixwrite: '10' }).map((j) => j.rwmixread)).toEqual([90, 90]);
      expect(usage(() => loadJobFile(path.join(t.dir, 'missing.fio'), {}))).toMatch(/cannot read job file/);
    } finally {
      t.cleanup();
    }
  });
});
