/**
 * fast-check arbitraries for valid TLPs of every kind, shared by the codec's property tests and
 * anyone else who needs realistic traffic (link, transaction tests). Every generated TLP passes
 * validateTlp and, when td is set, carries the ECRC computed by the independent golden builder,
 * so `decodeTlp(encodeTlp(t))` deep-equals `t`.
 *
 * Payloads are kept short most of the time (up to 16 DW) with the occasional large one (up to
 * 1024 DW) so properties stay fast.
 */
import fc from 'fast-check';
import type {
  AtomicTlp,
  CfgTlp,
  CplStatus,
  CplTlp,
  IoTlp,
  MemTlp,
  MemWriteFields,
  MsgTlp,
  Tlp,
  TlpHeaderBits,
  TlpKind,
} from '../../src/tlp/index.js';
import { goldenEcrcValue } from './golden-builder.js';

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const tag10 = fc.integer({ min: 0, max: 0x3ff });
const nibble = fc.integer({ min: 0, max: 15 });

/** Mostly short lengths, sometimes anything up to `max`. */
function arbLengthDw(max = 1024): fc.Arbitrary<number> {
  return fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: Math.min(16, max) }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max }) });
}

function arbData(lengthDw: number): fc.Arbitrary<Uint8Array> {
  return fc.uint8Array({ minLength: lengthDw * 4, maxLength: lengthDw * 4 });
}

interface BitsOptions {
  /** I/O and configuration requests: TC0, no RO/NS. */
  restricted?: boolean;
}

function arbBits(opts: BitsOptions = {}): fc.Arbitrary<Omit<TlpHeaderBits, 'lengthDw' | 'ecrc'>> {
  return fc.record({
    tc: opts.restricted ? fc.constant(0) : fc.integer({ min: 0, max: 7 }),
    ido: fc.boolean(),
    ro: opts.restricted ? fc.constant(false) : fc.boolean(),
    ns: opts.restricted ? fc.constant(false) : fc.boolean(),
    ln: fc.boolean(),
    th: fc.boolean(),
    td: fc.boolean(),
    ep: fc.boolean(),
    at: fc.integer({ min: 0, max: 3 }),
  });
}

/** Fills in the ECRC with the golden builder's value when td is set. */
function withEcrc<T extends Tlp>(t: T): T {
  if (t.td) t.ecrc = goldenEcrcValue(t);
  return t;
}

const FIRST_CONTIGUOUS = [0b1111, 0b1110, 0b1100, 0b1000];
const LAST_CONTIGUOUS = [0b0001, 0b0011, 0b0111, 0b1111];

function arbByteEnables(lengthDw: number, qwAligned: boolean, free: boolean): fc.Arbitrary<{ firstBe: number; lastBe: number }> {
  if (free) return fc.record({ firstBe: nibble, lastBe: nibble });
  if (lengthDw === 1) return fc.record({ firstBe: nibble, lastBe: fc.constant(0) });
  if (lengthDw === 2 && qwAligned) return fc.record({ firstBe: fc.integer({ min: 1, max: 15 }), lastBe: fc.integer({ min: 1, max: 15 }) });
  return fc.record({ firstBe: fc.constantFrom(...FIRST_CONTIGUOUS), lastBe: fc.constantFrom(...LAST_CONTIGUOUS) });
}

function arbMem(kind: MemTlp['kind']): fc.Arbitrary<MemTlp> {
  const fourDw = kind.endsWith('64');
  const isRead = kind.startsWith('MRd');
  return fc
    .record({ bits: arbBits(), lengthDw: arbLengthDw(), page: fc.integer({ min: 0, max: 0xfffff }), hi: fourDw ? u32 : fc.constant(0) })
    .chain(({ bits, lengthDw, page, hi }) =>
      fc.record({
        bits: fc.constant(bits),
        lengthDw: fc.constant(lengthDw),
        hi: fc.constant(hi),
        // A DW offset in the page such that the request stays inside it (§2.2.7.1).
        addressLo: fc.integer({ min: 0, max: 1024 - lengthDw }).map((dw) => (page * 4096 + dw * 4) >>> 0),
        ph: fc.integer({ min: 0, max: 3 }),
        requesterId: u16,
        tag: tag10,
        data: isRead ? fc.constant(undefined) : arbData(lengthDw),
      }),
    )
    .chain((r) =>
      arbByteEnables(r.lengthDw, (r.addressLo & 4) === 0, isRead && r.bits.th).map(({ firstBe, lastBe }) => {
        const t: MemTlp = {
          kind,
          ...r.bits,
          lengthDw: r.lengthDw,
          requesterId: r.requesterId,
          tag: r.tag,
          firstBe,
          lastBe,
          addressHi: r.hi,
          addressLo: r.addressLo,
          ph: r.ph,
        };
        if (r.data !== undefined) t.data = r.data;
        return withEcrc(t);
      }),
    );
}

function arbIo(kind: IoTlp['kind']): fc.Arbitrary<IoTlp> {
  return fc
    .record({
      bits: arbBits({ restricted: true }),
      requesterId: u16,
      tag: tag10,
      firstBe: nibble,
      addressLo: u32.map((a) => (a & ~3) >>> 0),
      ph: fc.integer({ min: 0, max: 3 }),
      data: kind === 'IOWr' ? arbData(1) : fc.constant(undefined),
    })
    .map((r) => {
      const t: IoTlp = { kind, ...r.bits, lengthDw: 1, requesterId: r.requesterId, tag: r.tag, firstBe: r.firstBe, lastBe: 0, addressHi: 0, addressLo: r.addressLo, ph: r.ph };
      if (r.data !== undefined) t.data = r.data;
      return withEcrc(t);
    });
}

function arbCfg(kind: CfgTlp['kind']): fc.Arbitrary<CfgTlp> {
  return fc
    .record({
      bits: arbBits({ restricted: true }),
      requesterId: u16,
      tag: tag10,
      firstBe: nibble,
      bus: fc.integer({ min: 0, max: 255 }),
      device: fc.integer({ min: 0, max: 31 }),
      fn: fc.integer({ min: 0, max: 7 }),
      register: fc.integer({ min: 0, max: 1023 }),
      reserved: fc.option(fc.integer({ min: 1, max: 0x3f }).map((r) => ((r & 0x3c) << 10) | (r & 3)), { freq: 8 }),
      data: kind.startsWith('CfgWr') ? arbData(1) : fc.constant(undefined),
    })
    .map((r) => {
      const t: CfgTlp = {
        kind,
        ...r.bits,
        lengthDw: 1,
        requesterId: r.requesterId,
        tag: r.tag,
        firstBe: r.firstBe,
        lastBe: 0,
        bus: r.bus,
        device: r.device,
        function: r.fn,
        register: r.register,
      };
      if (r.reserved !== null) t.reserved = r.reserved;
      if (r.data !== undefined) t.data = r.data;
      return withEcrc(t);
    });
}

function arbCpl(kind: CplTlp['kind']): fc.Arbitrary<CplTlp> {
  const withData = kind === 'CplD' || kind === 'CplDLk';
  const len = withData ? arbLengthDw() : fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 1023 }) });
  return fc
    .record({ bits: arbBits(), lengthDw: len })
    .chain(({ bits, lengthDw }) =>
      fc.record({
        bits: fc.constant(bits),
        lengthDw: fc.constant(lengthDw),
        completerId: u16,
        status: fc.constantFrom<CplStatus>('SC', 'UR', 'CRS', 'CA'),
        bcm: fc.boolean(),
        byteCount: fc.integer({ min: 1, max: 4096 }),
        requesterId: u16,
        tag: tag10,
        lowerAddress: fc.integer({ min: 0, max: 127 }),
        reserved: fc.option(fc.constant(0x80), { freq: 8 }),
        data: withData ? arbData(lengthDw) : fc.constant(undefined),
      }),
    )
    .map((r) => {
      const t: CplTlp = {
        kind,
        ...r.bits,
        lengthDw: r.lengthDw,
        completerId: r.completerId,
        status: r.status,
        bcm: r.bcm,
        byteCount: r.byteCount,
        requesterId: r.requesterId,
        tag: r.tag,
        lowerAddress: r.lowerAddress,
      };
      if (r.reserved !== null) t.reserved = r.reserved;
      if (r.data !== undefined) t.data = r.data;
      return withEcrc(t);
    });
}

/** §2.2.8: codes whose receivers must check TC0 (kept here independently of src/spec). */
const TC0_CODES = new Set([0x00, 0x14, 0x18, 0x19, 0x1b, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x30, 0x31, 0x33, 0x50]);

function arbMsg(kind: MsgTlp['kind']): fc.Arbitrary<MsgTlp> {
  const withData = kind === 'MsgD';
  const len = withData ? arbLengthDw() : fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 1023 }) });
  const code = fc.oneof(fc.constantFrom(...TC0_CODES, 0x7e, 0x7f, 0x10, 0x12), fc.integer({ min: 0, max: 255 }));
  return fc
    .record({ bits: arbBits(), lengthDw: len, messageCode: code })
    .chain(({ bits, lengthDw, messageCode }) =>
      fc.record({
        bits: fc.constant(TC0_CODES.has(messageCode) ? { ...bits, tc: 0 } : bits),
        lengthDw: fc.constant(lengthDw),
        messageCode: fc.constant(messageCode),
        requesterId: u16,
        tag: tag10,
        routing: fc.integer({ min: 0, max: 7 }),
        headerDw2: u32,
        headerDw3: u32,
        data: withData ? arbData(lengthDw) : fc.constant(undefined),
      }),
    )
    .map((r) => {
      const t: MsgTlp = {
        kind,
        ...r.bits,
        lengthDw: r.lengthDw,
        requesterId: r.requesterId,
        tag: r.tag,
        routing: r.routing,
        messageCode: r.messageCode,
        headerDw2: r.headerDw2,
        headerDw3: r.headerDw3,
      };
      if (r.data !== undefined) t.data = r.data;
      return withEcrc(t);
    });
}

function arbAtomic(kind: AtomicTlp['kind']): fc.Arbitrary<AtomicTlp> {
  const cas = kind.startsWith('CAS');
  const fourDw = kind.endsWith('64');
  return fc
    .record({ bits: arbBits(), lengthDw: fc.constantFrom(...(cas ? [2, 4, 8] : [1, 2])) })
    .chain(({ bits, lengthDw }) => {
      const operand = cas ? lengthDw * 2 : lengthDw * 4;
      return fc.record({
        bits: fc.constant(bits),
        lengthDw: fc.constant(lengthDw),
        requesterId: u16,
        tag: tag10,
        firstBe: nibble,
        lastBe: nibble,
        addressHi: fourDw ? u32 : fc.constant(0),
        addressLo: u32.map((a) => (a - (a % operand)) >>> 0),
        ph: fc.integer({ min: 0, max: 3 }),
        data: arbData(lengthDw),
      });
    })
    .map((r) =>
      withEcrc<AtomicTlp>({
        kind,
        ...r.bits,
        lengthDw: r.lengthDw,
        requesterId: r.requesterId,
        tag: r.tag,
        firstBe: r.firstBe,
        lastBe: r.lastBe,
        addressHi: r.addressHi,
        addressLo: r.addressLo,
        ph: r.ph,
        data: r.data,
      }),
    );
}

/** A valid TLP of the given kind. */
export function arbTlpOfKind(kind: TlpKind): fc.Arbitrary<Tlp> {
  switch (kind) {
    case 'MRd':
    case 'MRd64':
    case 'MRdLk':
    case 'MRdLk64':
    case 'MWr':
    case 'MWr64':
      return arbMem(kind);
    case 'IORd':
    case 'IOWr':
      return arbIo(kind);
    case 'CfgRd0':
    case 'CfgWr0':
    case 'CfgRd1':
    case 'CfgWr1':
      return arbCfg(kind);
    case 'Cpl':
    case 'CplD':
    case 'CplLk':
    case 'CplDLk':
      return arbCpl(kind);
    case 'Msg':
    case 'MsgD':
      return arbMsg(kind);
    case 'FetchAdd':
    case 'FetchAdd64':
    case 'Swap':
    case 'Swap64':
    case 'CAS':
    case 'CAS64':
      return arbAtomic(kind);
  }
}

export const ALL_KINDS: readonly TlpKind[] = [
  'MRd', 'MRd64', 'MRdLk', 'MRdLk64', 'MWr', 'MWr64', 'IORd', 'IOWr',
  'CfgRd0', 'CfgWr0', 'CfgRd1', 'CfgWr1', 'Cpl', 'CplD', 'CplLk', 'CplDLk',
  'Msg', 'MsgD', 'FetchAdd', 'FetchAdd64', 'Swap', 'Swap64', 'CAS', 'CAS64',
];

/** A valid TLP of any kind, every kind equally likely. */
export const arbTlp: fc.Arbitrary<Tlp> = fc.oneof(...ALL_KINDS.map((k) => arbTlpOfKind(k)));

/** The fields of a whole-DW DMA write (src/tlp MemWriteFields). */
export const arbMemWriteFields: fc.Arbitrary<MemWriteFields> = fc.record({
  requesterId: fc.integer({ min: 0, max: 0xffff }),
  tc: fc.integer({ min: 0, max: 7 }),
  ro: fc.boolean(),
  ns: fc.boolean(),
  ido: fc.boolean(),
  th: fc.boolean(),
});
